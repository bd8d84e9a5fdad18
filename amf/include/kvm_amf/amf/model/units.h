// Durations ("300ms", "5s", "10m", "1h") and sizes ("512Mi", "2Gi") as the configuration writes them.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "kvm_amf/amf/model/config.h"

namespace kvm_amf::model {

// A non-negative whole number of milliseconds with a unit: ms, s, m or h; a fraction is allowed when
// it gives whole milliseconds ("1.5s"). nullopt for anything else, or beyond 1000 days.
std::optional<Duration> parseDuration(std::string_view text);
// The shortest exact form: 1500ms -> "1500ms", 2000ms -> "2s", 600000ms -> "10m".
std::string formatDuration(Duration d);

// A whole number of bytes with an optional binary unit: Ki, Mi, Gi, Ti. nullopt for anything else,
// or beyond 1 PiB.
std::optional<Bytes> parseBytes(std::string_view text);
// The largest exact unit: 536870912 -> "512Mi", 1000 -> "1000".
std::string formatBytes(Bytes b);

}  // namespace kvm_amf::model
