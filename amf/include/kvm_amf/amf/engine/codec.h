// The wire form of the replicated stream: the bytes of one multicast Envelope.
//
// A message is the CBOR encoding (RFC 8949, as nlohmann::json::to_cbor writes it) of one map
// {"v": 3, "type": "<kind>", ...fields}. Kinds are the words of the Report alternatives
// ("vm-started", "vm-start-failed", "vm-stopped", "vm-stop-failed", "vm-failed", "ha-acked",
// "agent-up", "fence-done", "admin-request", "config-change"), then "decision", "state-offer" and
// "state-snapshot". Field names are the C++ member names; enumerations are their words; times and
// durations are integer milliseconds; an AdminCommand is its canonical words; a configuration (a
// snapshot's, a change's) is its canonical documents (config/serialize.h). Every member of every
// message round-trips exactly: decode(encode(m)) == m for every m whose AdminCommands and
// AdminTargets format and parse back (parseAdminCommand accepts them) and whose configurations, if
// any, loadConfiguration produced.
//
// The format is versioned by "v": a change of meaning, or a field added or removed, is a new
// version. A decoder accepts only the versions it knows, and only the fields it knows, so every
// member interprets an accepted message the same way. Version 2 added configuration changes
// (ConfigChange, SetConfiguration, ConfigReply, ClusterState::pendingConfig); version 3 the VM
// operations (StopVm, StartVm, SetVmPaused, RestartVm::method, VmRuntime::paused, hold and
// savedOn). An older message (a state an older amfd stored) is read as the current version: with
// no configuration change pending, no VM paused or held, and every VM restart a destroy and start.
#pragma once

#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "kvm_amf/amf/engine/messages.h"
#include "kvm_amf/common/result.h"

namespace kvm_amf::engine {

// The wire format version encode() writes; decode() accepts it and versions 1 and 2.
inline constexpr int kCodecVersion = 3;

// Bounds decode() enforces on untrusted bytes, so a hostile message costs bounded time and memory.
inline constexpr std::size_t kMaxMessageBytes = 16u << 20;  // a whole message
inline constexpr std::size_t kMaxStringBytes = 1u << 20;    // one string (or map key)
inline constexpr std::size_t kMaxItems = 1'000'000;         // items of one array or map
inline constexpr int kMaxNesting = 100;                     // nested arrays and maps

// The bytes of one multicast message. Pure; never fails.
std::string encode(const Envelope& message);

// The message the bytes encode. Never throws: malformed, truncated, oversized or hostile bytes,
// an unknown version or type, a missing, unknown or mistyped field, an out-of-range number, an
// unknown word, an admin command that does not parse, or a snapshot configuration that does not
// load give an Error naming what is wrong (and where, as a field path such as
// "state.nodes.node1.status").
// A configuration the receiver already holds, with its canonical documents: a snapshot carrying
// the same documents reuses it instead of loading them again (the costly part of decoding).
struct KnownConfiguration {
  std::shared_ptr<const model::Configuration> config;
  nlohmann::json documents;
};
KnownConfiguration knownConfiguration(std::shared_ptr<const model::Configuration> config);

Result<Envelope> decode(std::string_view bytes, const KnownConfiguration* known = nullptr);

}  // namespace kvm_amf::engine
