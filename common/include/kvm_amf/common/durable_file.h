// Files that survive a crash whole or not at all: written to a temporary file, synced, renamed
// into place and the directory synced; framed with a magic, a length and a CRC-32C so that a
// truncated or corrupt file is refused instead of believed.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "kvm_amf/common/result.h"

namespace kvm_amf {

// Replaces `path` with `payload` framed under `magic` (8 characters). On failure (a full disk,
// permissions) the previous file is untouched and the error names the path and the cause.
// Blocking: call it from a worker, not from an event loop.
Status writeDurableFile(const std::string& path, std::string_view magic, std::string_view payload);

// The payload of a file written by writeDurableFile; nullopt if the file does not exist; an error
// naming the path and what is wrong for anything else (bad magic, unknown version, truncated,
// checksum mismatch, unreadable).
Result<std::optional<std::string>> readDurableFile(const std::string& path, std::string_view magic);

// CRC-32C (Castagnoli) of `data`.
std::uint32_t crc32c(std::string_view data);

}  // namespace kvm_amf
