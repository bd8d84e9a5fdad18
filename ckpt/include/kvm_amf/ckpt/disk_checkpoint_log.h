// The checkpoints on this host's disk, in a directory (amfd: STATE_DIR/ckpt/):
//
//   snapshot   the store at some seq (common/durable_file.h: replaced atomically, framed with a
//              magic, a length and a CRC-32C)
//   log        a 32-byte header (magic "KVMCKPTL", format version, the epoch and seq of the snapshot
//              it follows, a CRC-32C of the header), then records: a 4-byte length, a 4-byte
//              CRC-32C of the payload, the payload (codec.h: encodeRecord). Little-endian.
//
// Writes run on a worker thread, one at a time, never on the event loop: appends given while a
// write is in progress are written together by the next one, with one fdatasync (group commit). A
// snapshot is written to its file, then a new log is started after it (written beside the old one,
// synced and renamed over it). After a failed append the log is cut back to where it was, and
// appends fail until the next snapshot has replaced it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvm_amf/ckpt/checkpoint_disk.h"
#include "kvm_amf/common/event_loop.h"
#include "kvm_amf/common/worker.h"

namespace kvm_amf::ckpt {

class DiskCheckpointLog : public CheckpointDisk {
 public:
  // REQUIRES: `loop` outlives the log; the directory exists.
  DiskCheckpointLog(EventLoop& loop, std::string dir);
  // Finishes the writes given (their callbacks no longer run) and closes the log.
  ~DiskCheckpointLog() override;
  DiskCheckpointLog(const DiskCheckpointLog&) = delete;
  DiskCheckpointLog& operator=(const DiskCheckpointLog&) = delete;

  void append(std::vector<std::string> records, Durable durable) override;
  void snapshot(std::string state, std::uint64_t epoch, std::uint64_t seq, Durable durable) override;
  std::optional<std::uint64_t> freeBytes() const override;
  std::uint64_t logBytes() const override { return logBytes_; }

  // What `dir` holds, as a store: nullopt when it holds nothing (a new host). A log whose last
  // record is cut short (the host stopped while writing it: it was never acknowledged) loses that
  // record, and the file is cut back, with `warning` saying so. Refused with an error naming the
  // file and what is wrong: a snapshot that does not check out, a log header or a record whose
  // checksum does not match, a record that does not decode or apply (the member then takes the
  // state from its peers). Blocking: call it before the loop runs, or from a worker.
  static Result<std::optional<CheckpointStore>> load(const std::string& dir, const StoreLimits& limits,
                                                     std::string* warning = nullptr);

  std::uint64_t writes() const { return writes_; }      // jobs completed
  std::uint64_t failures() const { return failures_; }  // jobs that failed
  std::uint64_t syncs() const { return syncs_; }        // fdatasyncs of the log

  // The log's framing, for tests that build or damage files.
  static constexpr std::size_t kLogHeaderBytes = 32;
  static std::string logHeader(std::uint64_t epoch, std::uint64_t baseSeq);
  static std::string frameRecord(const std::string& payload);

 private:
  using Job = DiskWriteQueue::Write;  // an append's records are framed already
  // The worker's side: touched only by jobs on the worker thread (and the destructor after it).
  struct Files {
    std::string dir;
    int fd = -1;  // the log, open for appending; -1: none yet, or broken after a failure
    std::uint64_t size = 0;
    std::uint64_t syncs = 0;
    Status write(Job& job);
    Status appendRecords(const std::vector<std::string>& records);
    Status writeSnapshot(const Job& job);
    void close();
  };

  void startNext();

  std::string dir_;
  std::unique_ptr<Worker> worker_;
  std::shared_ptr<Files> files_;  // used by the worker's jobs only
  DiskWriteQueue queue_;          // loop thread: waiting to be written
  bool writing_ = false;
  std::uint64_t logBytes_ = 0;
  std::shared_ptr<std::atomic<std::uint64_t>> free_;  // measured by the worker after each job
  std::shared_ptr<std::atomic<bool>> freeKnown_;
  std::uint64_t writes_ = 0;
  std::uint64_t failures_ = 0;
  std::uint64_t syncs_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace kvm_amf::ckpt
