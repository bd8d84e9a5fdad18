// The guest agent's line protocol (docs/guest-protocol.md): message types and a pure codec for
// both directions, and a reader that splits a byte stream into lines. No I/O; the host's guest
// channel and the agent (guest/agent/) share it. This header depends only on the standard library
// and common/result.h (the agent is built without the project's libraries).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "kvm_amf/common/result.h"

namespace kvm_amf::vmm {

inline constexpr std::string_view kGuestPortName = "org.kvm-amf.agent.0";
inline constexpr std::uint32_t kGuestProtocolVersion = 1;
// The longest line, including its '\n'.
inline constexpr std::size_t kMaxGuestLineBytes = 4096;
inline constexpr std::uint32_t kMaxHeartbeatIntervalMs = 3600000;

// The HA states a guest can be told it holds.
enum class GuestHaState { kActive, kStandby, kQuiesced };
std::string_view guestHaStateName(GuestHaState state);  // "active", "standby", "quiesced"

// Guest to host.
struct HelloMessage {
  std::uint32_t version = kGuestProtocolVersion;
  std::string agentVersion;
  bool operator==(const HelloMessage&) const = default;
};
struct HeartbeatMessage {
  std::uint64_t seq = 0;
  bool healthy = true;
  std::string reason;  // empty: none
  bool operator==(const HeartbeatMessage&) const = default;
};
struct AckMessage {
  std::uint64_t id = 0;
  bool ok = true;
  std::string reason;  // empty: none
  bool operator==(const AckMessage&) const = default;
};
struct CheckpointReadMessage {
  std::uint64_t id = 0;
  std::string name;
  std::string section;
  bool operator==(const CheckpointReadMessage&) const = default;
};
struct CheckpointWriteMessage {
  std::uint64_t id = 0;
  std::string name;
  std::string section;
  std::string data;  // raw bytes (base64 on the wire)
  bool operator==(const CheckpointWriteMessage&) const = default;
};
using GuestMessage =
    std::variant<HelloMessage, HeartbeatMessage, AckMessage, CheckpointReadMessage, CheckpointWriteMessage>;

// Host to guest.
struct WelcomeMessage {
  std::uint32_t version = kGuestProtocolVersion;
  std::uint32_t intervalMs = 1000;  // 1..kMaxHeartbeatIntervalMs
  bool operator==(const WelcomeMessage&) const = default;
};
struct AssignMessage {
  std::uint64_t id = 0;
  std::string si;  // not empty
  GuestHaState state = GuestHaState::kActive;
  std::map<std::string, std::string> attributes;  // keys not empty
  bool operator==(const AssignMessage&) const = default;
};
struct RemoveMessage {
  std::uint64_t id = 0;
  std::string si;  // not empty
  bool operator==(const RemoveMessage&) const = default;
};
struct CheckpointReplyMessage {
  std::uint64_t id = 0;
  bool ok = true;
  std::optional<std::string> data;  // ok only: the section read (raw bytes); absent answering a write
  std::string reason;               // !ok only: not empty
  bool operator==(const CheckpointReplyMessage&) const = default;
};
struct ErrorMessage {
  std::uint64_t id = 0;
  std::string reason;  // not empty
  bool operator==(const ErrorMessage&) const = default;
};
using HostMessage = std::variant<WelcomeMessage, AssignMessage, RemoveMessage, CheckpointReplyMessage, ErrorMessage>;

// Parses one line, without its '\n'. The error says what is wrong: unknown verb, missing, extra
// or empty field, bad number, bad encoding, control byte, too long.
Result<GuestMessage> parseGuestLine(std::string_view line);
Result<HostMessage> parseHostLine(std::string_view line);

// One line, with its '\n'. REQUIRES: the message satisfies the field comments above (not empty
// where it says so); a line longer than kMaxGuestLineBytes is the caller's to avoid (receivers
// drop it).
std::string formatGuestMessage(const GuestMessage& message);
std::string formatHostMessage(const HostMessage& message);

// The field encodings (docs/guest-protocol.md), exposed for tests and for the agent.
std::string percentEncode(std::string_view bytes);
Result<std::string> percentDecode(std::string_view text);
std::string base64Encode(std::string_view bytes);
Result<std::string> base64Decode(std::string_view text);

// Accumulates bytes read from the port and yields complete lines (without '\n'). A line longer
// than the limit (counting its '\n') is dropped up to its '\n' and counted; the next line is
// yielded normally. Not thread-safe.
class GuestLineReader {
 public:
  explicit GuestLineReader(std::size_t maxLineBytes = kMaxGuestLineBytes) : maxLineBytes_(maxLineBytes) {}

  void feed(std::string_view bytes);
  // The next complete line, or nothing until more bytes arrive.
  std::optional<std::string> next();
  // Lines dropped for length so far (one dropped line counts once, however long).
  std::uint64_t droppedLines() const { return droppedLines_; }
  // Discards a partial line (after the port was reopened).
  void reset();

 private:
  std::size_t maxLineBytes_;
  std::string buffer_;
  std::size_t start_ = 0;    // the first unread byte in buffer_
  bool discarding_ = false;  // inside an oversized line: drop up to the next '\n'
  std::uint64_t droppedLines_ = 0;
};

}  // namespace kvm_amf::vmm
