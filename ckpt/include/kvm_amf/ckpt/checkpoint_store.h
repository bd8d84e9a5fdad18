// The replicated checkpoints: pure state and the deterministic apply of operations, like the
// engine's apply. Every member applies the same operations in the group's total order and so holds
// the same store. No I/O, no clock: the only time is the stream time, the latest time an operation
// carried (Op::at), so that every member removes and stamps alike.
//
// An operation is applied whole or not at all: every check is made before anything changes, and
// a refused operation changes nothing but the bookkeeping below (seq, origins, stream time), which
// every member updates alike.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvm_amf/ckpt/checkpoint.h"

namespace kvm_amf::ckpt {

// The last op applied from each origin node: its session and counter. An origin's ops arrive in
// the order it sent them, so an op at or below this mark has been applied (state transfer uses it
// to skip the ops a snapshot already holds).
struct OriginMark {
  std::uint64_t session = 0;
  std::uint64_t counter = 0;
  bool operator==(const OriginMark&) const = default;
};

// Everything the store holds; what a snapshot carries.
struct StoreState {
  // Freshness: a state with a higher (epoch, seq) holds every acknowledged write a lower one does.
  // epoch: state transfers completed in quorate views; seq: ops applied in quorate views.
  std::uint64_t epoch = 0;
  std::uint64_t seq = 0;
  TimePoint streamTime{0};
  std::map<int, OriginMark> origins;
  std::map<std::string, Checkpoint> checkpoints;
  bool operator==(const StoreState&) const = default;
};

class CheckpointStore {
 public:
  explicit CheckpointStore(StoreLimits limits = {});
  // REQUIRES: `state` is consistent (each checkpoint's bytes is its sections' sum); the codec
  // checks it before building a store.
  CheckpointStore(StoreLimits limits, StoreState state);

  // Whether `op` has been applied already (it is at or below its origin's mark).
  bool includes(const Op& op) const;

  // Applies an op delivered in a quorate view. REQUIRES: !includes(op). Counts it (seq, the
  // origin's mark, the stream time) and carries it out, or refuses it with the reason and changes
  // nothing else. Returns the seq it was given.
  CkptResult<std::uint64_t> apply(const Op& op);

  // The checks that do not depend on the state (names, attributes, sizes against the limits): an
  // origin refuses a request that fails them before sending it. apply() makes them too.
  static std::optional<CheckpointError> check(const OpBody& body, const StoreLimits& limits);

  // Reads. kNotFound when the checkpoint or section does not exist; kInvalid for a bad name.
  // `length` 0: to the section's end. An offset past the end reads nothing.
  CkptResult<std::string> read(const std::string& name, const std::string& section, std::uint64_t offset = 0,
                               std::uint64_t length = 0) const;
  CkptResult<CheckpointInfo> info(const std::string& name) const;
  CkptResult<std::vector<SectionInfo>> sections(const std::string& name) const;  // in id order
  std::vector<CheckpointInfo> list() const;                                      // in name order

  // The earliest time something is due for removal (retention, section expiry), if any.
  std::optional<TimePoint> nextDeadline() const;
  // Sessions holding opens that `alive(node, session)` says are gone, each once, in order.
  template <typename Alive>
  std::vector<std::pair<int, std::uint64_t>> deadSessions(Alive alive) const {
    std::vector<std::pair<int, std::uint64_t>> out;
    for (const auto& [name, checkpoint] : state_.checkpoints) {
      for (const Opener& opener : checkpoint.openers) {
        std::pair<int, std::uint64_t> key{opener.node, opener.session};
        if (alive(key.first, key.second)) continue;
        bool seen = false;
        for (const auto& s : out) seen = seen || s == key;
        if (!seen) out.push_back(key);
      }
    }
    return out;
  }

  const StoreState& state() const { return state_; }
  const StoreLimits& limits() const { return limits_; }
  std::uint64_t epoch() const { return state_.epoch; }
  std::uint64_t seq() const { return state_.seq; }
  std::uint64_t totalBytes() const { return totalBytes_; }
  // A state transfer completed in a quorate view.
  void setEpoch(std::uint64_t epoch) { state_.epoch = epoch; }

  bool operator==(const CheckpointStore& other) const { return state_ == other.state_; }

 private:
  struct Apply;

  StoreLimits limits_;
  StoreState state_;
  std::uint64_t totalBytes_ = 0;
};

// Checks that `state` is consistent (names, each checkpoint's byte count, limits it was made
// under); the codec refuses a state that is not.
std::optional<std::string> inconsistency(const StoreState& state);

}  // namespace kvm_amf::ckpt
