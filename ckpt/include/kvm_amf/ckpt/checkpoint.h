// The checkpoint service's vocabulary (docs/checkpoints.md): names, attributes, limits, errors,
// and the operations that change the replicated checkpoints. Everything here is plain data; the
// rules live in checkpoint_store.h.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "kvm_amf/common/result.h"
#include "kvm_amf/common/time.h"

namespace kvm_amf::ckpt {

// A checkpoint name and a section id: 1 to kMaxNameBytes bytes of [A-Za-z0-9._/-].
inline constexpr std::size_t kMaxNameBytes = 255;
bool isValidCheckpointName(std::string_view name);

// Why a request failed, so that a caller can choose its answer (the admin API's reply code).
enum class ErrorKind {
  kInvalid,      // the request is malformed: a bad name, attribute or offset
  kNotFound,     // no such checkpoint, section or opener
  kExists,       // the checkpoint exists with other attributes, or the section exists
  kLimit,        // a count or size limit would be exceeded
  kNoQuorum,     // the cluster is not quorate: nothing is written
  kUnavailable,  // this member cannot serve now: not in the group, or not synchronised yet
  kNoSpace,      // this host's disk lacks room for the write: refused before it was sent
  kIo,           // this host could not persist the write (it left the group)
  kInterrupted,  // the outcome is unknown: a membership change came first; read to find out
};
std::string_view errorKindName(ErrorKind kind);  // "invalid", "not-found", ...

struct CheckpointError {
  ErrorKind kind = ErrorKind::kInvalid;
  std::string message;  // one line for a person, naming the object and, for a limit, its value
  bool operator==(const CheckpointError&) const = default;
};

template <typename T>
using CkptResult = Result<T, CheckpointError>;

// The longest retention a checkpoint may have: ten years.
inline constexpr Duration kMaxRetention{315'360'000'000};

// What one checkpoint may hold; fixed at its creation.
struct CheckpointAttributes {
  // How long the checkpoint is kept after its last opener closed it (or after its creation, when
  // nobody opened it). nullopt: until it is unlinked.
  std::optional<Duration> retention;
  std::uint32_t maxSections = 1000;
  std::uint64_t maxSectionBytes = 1u << 20;  // one section's data
  std::uint64_t maxBytes = 16u << 20;        // all its sections' data together
  bool operator==(const CheckpointAttributes&) const = default;
};

// The store's own limits. They must be the same on every member (amfd uses the defaults): an
// operation is judged against them identically everywhere.
struct StoreLimits {
  std::size_t maxCheckpoints = 1000;
  std::uint64_t maxTotalBytes = 256u << 20;  // all checkpoints' data on each host
  // The highest attributes a checkpoint may be created with.
  std::uint32_t maxSectionsPerCheckpoint = 65536;
  std::uint64_t maxSectionBytes = 1u << 20;  // one operation carries at most one section's data
  std::uint64_t maxCheckpointBytes = 64u << 20;
  bool operator==(const StoreLimits&) const = default;
};

// Who holds a checkpoint open: a client of the service of one process (its node and session).
struct Opener {
  int node = 0;
  std::uint64_t session = 0;
  std::string client;
  auto operator<=>(const Opener&) const = default;
};

struct Section {
  std::string data;
  std::optional<TimePoint> expiry;  // removed once the cluster's time reaches it
  TimePoint updated{0};             // the stream time of the last change
  bool operator==(const Section&) const = default;
};

struct Checkpoint {
  CheckpointAttributes attributes;
  TimePoint created{0};
  std::map<std::string, Section> sections;
  std::set<Opener> openers;
  TimePoint lastClosed{0};  // when the last opener closed it (its creation if nobody opened it)
  std::uint64_t bytes = 0;  // the sections' data, summed
  bool operator==(const Checkpoint&) const = default;
};

// ---- Operations: the only way the replicated checkpoints change ---------------------------------

struct CreateCheckpoint {
  std::string name;
  CheckpointAttributes attributes;
  bool operator==(const CreateCheckpoint&) const = default;
};
// Opens for the op's origin and `client`; with `create`, creates the checkpoint if it is missing.
struct OpenCheckpoint {
  std::string name;
  std::string client;
  std::optional<CheckpointAttributes> create;
  bool operator==(const OpenCheckpoint&) const = default;
};
struct CloseCheckpoint {
  std::string name;
  std::string client;
  bool operator==(const CloseCheckpoint&) const = default;
};
// Removes the checkpoint at once, whoever holds it open.
struct UnlinkCheckpoint {
  std::string name;
  bool operator==(const UnlinkCheckpoint&) const = default;
};
struct CreateSection {
  std::string name;
  std::string section;
  std::string data;
  std::optional<TimePoint> expiry;
  bool operator==(const CreateSection&) const = default;
};
// Writes `data` at `offset` of an existing section (offset at most its size), extending it.
struct WriteSection {
  std::string name;
  std::string section;
  std::uint64_t offset = 0;
  std::string data;
  bool operator==(const WriteSection&) const = default;
};
// Replaces a section's data. `createSection`: a missing section is created; `createCheckpoint`: a
// missing checkpoint is created with these attributes. `expiry`: set on the section.
struct OverwriteSection {
  std::string name;
  std::string section;
  std::string data;
  bool createSection = false;
  std::optional<CheckpointAttributes> createCheckpoint;
  std::optional<TimePoint> expiry;
  bool operator==(const OverwriteSection&) const = default;
};
struct DeleteSection {
  std::string name;
  std::string section;
  bool operator==(const DeleteSection&) const = default;
};
struct SetSectionExpiry {
  std::string name;
  std::string section;
  std::optional<TimePoint> expiry;  // nullopt: never
  bool operator==(const SetSectionExpiry&) const = default;
};
// Closes every open of these processes (node, session): they left the group.
struct CloseOpeners {
  std::vector<std::pair<int, std::uint64_t>> sessions;
  bool operator==(const CloseOpeners&) const = default;
};
// Removes what is due at the op's time: checkpoints past their retention, sections past expiry.
struct Expire {
  bool operator==(const Expire&) const = default;
};

using OpBody = std::variant<CreateCheckpoint, OpenCheckpoint, CloseCheckpoint, UnlinkCheckpoint, CreateSection,
                            WriteSection, OverwriteSection, DeleteSection, SetSectionExpiry, CloseOpeners, Expire>;

// One operation as multicast: its origin (node and session: one run of the service there), the
// origin's count of operations it sent in this session (from 1), and the origin's clock. `sync`:
// the origin waits for every member's "applied" (the store ignores it; members that apply it know
// someone waits for them).
struct Op {
  int node = 0;
  std::uint64_t session = 0;
  std::uint64_t counter = 0;
  TimePoint at{0};
  OpBody body;
  bool sync = false;
  bool operator==(const Op&) const = default;
};

// The op's word for logs and errors: "create", "open", "write", ...
std::string_view opName(const OpBody& body);
// The section data an op carries (0 for the others): what a disk-space check must allow for.
std::uint64_t opDataBytes(const OpBody& body);

// A checkpoint as list/info show it.
struct CheckpointInfo {
  std::string name;
  CheckpointAttributes attributes;
  TimePoint created{0};
  std::size_t sections = 0;
  std::uint64_t bytes = 0;
  std::size_t openers = 0;
  // When retention removes it, while nobody holds it open; nullopt: not due.
  std::optional<TimePoint> removeAt;
  bool operator==(const CheckpointInfo&) const = default;
};
struct SectionInfo {
  std::string id;
  std::uint64_t bytes = 0;
  std::optional<TimePoint> expiry;
  TimePoint updated{0};
  bool operator==(const SectionInfo&) const = default;
};

}  // namespace kvm_amf::ckpt
