// A CheckpointDisk in memory on a (simulated) scheduler, for tests of the service: what is on
// "disk" lives in SimDiskContents, which outlives the disk object the way a host's files outlive a
// process, and can be held back, made to fail (a full disk) or inspected.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvm_amf/ckpt/checkpoint_disk.h"
#include "kvm_amf/common/scheduler.h"

namespace kvm_amf::ckpt {

struct SimDiskContents {
  std::optional<std::string> snapshot;
  std::optional<LogImage> log;
  // Knobs a test turns:
  bool hold = false;                   // writes do not complete until release()
  std::optional<std::string> failure;  // writes fail with this message (e.g. "No space left on device")
  std::optional<std::uint64_t> free;   // what freeBytes() says
  std::uint64_t syncs = 0;             // writes completed

  // What a process starting on this host would load (restoreStore).
  Result<std::optional<CheckpointStore>> load(const StoreLimits& limits = {}) const {
    return restoreStore(limits, snapshot, log);
  }
};

class SimCheckpointDisk : public CheckpointDisk {
 public:
  // Each write completes `latency` after it starts, one at a time, in order. REQUIRES: the
  // scheduler outlives the disk.
  SimCheckpointDisk(Scheduler& scheduler, std::shared_ptr<SimDiskContents> contents, Duration latency = Duration(1));
  ~SimCheckpointDisk() override;

  void append(std::vector<std::string> records, Durable durable) override;
  void snapshot(std::string state, std::uint64_t epoch, std::uint64_t seq, Durable durable) override;
  std::optional<std::uint64_t> freeBytes() const override { return contents_->free; }
  std::uint64_t logBytes() const override { return logBytes_; }

  // Lets held writes complete (contents->hold is cleared).
  void release();

 private:
  void startNext();
  void complete();

  Scheduler& scheduler_;
  std::shared_ptr<SimDiskContents> contents_;
  Duration latency_;
  DiskWriteQueue queue_;
  std::optional<DiskWriteQueue::Write> writing_;
  bool broken_ = false;  // a write failed: appends fail until a snapshot
  std::uint64_t logBytes_ = 0;
  std::optional<TimerId> timer_;
};

}  // namespace kvm_amf::ckpt
