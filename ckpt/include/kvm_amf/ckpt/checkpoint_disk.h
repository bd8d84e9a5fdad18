// Where a member keeps its copy of the checkpoints across restarts: a snapshot of the store and an
// append-only log of the ops applied since. Real: DiskCheckpointLog (disk_checkpoint_log.h); the
// tests' SimCheckpointDisk (sim_checkpoint_disk.h) keeps them in memory on simulated time.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvm_amf/ckpt/checkpoint_store.h"
#include "kvm_amf/common/result.h"

namespace kvm_amf::ckpt {

class CheckpointDisk {
 public:
  // Runs on the owner's event loop: ok once the data (and everything given before it) is synced
  // to the disk; an error naming the file and the cause otherwise (a full disk, an I/O error).
  using Durable = std::function<void(Status)>;

  virtual ~CheckpointDisk() = default;

  // Appends log records (encodeRecord), after everything given before. Records given while a
  // write is in progress go to the disk together in the next one (one sync for all of them).
  // After a failed write, appends fail until a snapshot succeeds. REQUIRES: a snapshot was
  // given first (the service writes one whenever it synchronises with the group).
  virtual void append(std::vector<std::string> records, Durable durable) = 0;
  // Replaces what is stored by `state` (encodeState of a state at `epoch` and `seq`); the records
  // appended afterwards follow it. Completes after every write given before.
  virtual void snapshot(std::string state, std::uint64_t epoch, std::uint64_t seq, Durable durable) = 0;

  // Free bytes where the data goes, as last measured (after each write); nullopt: unknown.
  virtual std::optional<std::uint64_t> freeBytes() const = 0;
  // Bytes appended since the last snapshot was given: the service takes a new snapshot when the
  // log has grown large.
  virtual std::uint64_t logBytes() const = 0;
};

// The writes a CheckpointDisk has been given and not started yet, in order: appends given one
// after another merge into one write (one sync for all of them); a snapshot stands alone. The real
// and the simulated disk both queue their work here.
class DiskWriteQueue {
 public:
  struct Write {
    bool isSnapshot = false;
    std::vector<std::string> records;  // append
    std::string state;                 // snapshot: encodeState of a state at epoch and seq
    std::uint64_t epoch = 0;
    std::uint64_t seq = 0;
    std::vector<CheckpointDisk::Durable> done;
  };

  void append(std::vector<std::string> records, CheckpointDisk::Durable durable);
  void snapshot(std::string state, std::uint64_t epoch, std::uint64_t seq, CheckpointDisk::Durable durable);
  bool empty() const { return writes_.empty(); }
  // The oldest write. REQUIRES: !empty().
  Write pop();
  std::vector<Write> takeAll();

 private:
  std::deque<Write> writes_;
};

// A log as read back: the snapshot it follows, and its records (encodeRecord) in order.
struct LogImage {
  std::uint64_t epoch = 0;
  std::uint64_t baseSeq = 0;  // the seq of the snapshot the log was started after
  std::vector<std::string> records;
};

// The store that a snapshot and a log hold: the snapshot, then the log's records past it (a log
// started after another snapshot than this one, of an older epoch or a later seq, is ignored: it
// belongs to a state this one replaced). nullopt when there is neither (a new host). An error
// names what is wrong: an undecodable snapshot or record, a log without a snapshot, a gap in the
// records' seqs, a record that applies to another seq.
Result<std::optional<CheckpointStore>> restoreStore(const StoreLimits& limits,
                                                    const std::optional<std::string>& snapshot,
                                                    const std::optional<LogImage>& log);

}  // namespace kvm_amf::ckpt
