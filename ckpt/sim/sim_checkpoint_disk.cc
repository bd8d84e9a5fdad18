#include "kvm_amf/ckpt/sim_checkpoint_disk.h"

namespace kvm_amf::ckpt {

SimCheckpointDisk::SimCheckpointDisk(Scheduler& scheduler, std::shared_ptr<SimDiskContents> contents, Duration latency)
    : scheduler_(scheduler), contents_(std::move(contents)), latency_(latency) {}

SimCheckpointDisk::~SimCheckpointDisk() {
  if (timer_) scheduler_.cancel(*timer_);
}

void SimCheckpointDisk::append(std::vector<std::string> records, Durable durable) {
  for (const auto& record : records) logBytes_ += record.size() + 8;
  queue_.append(std::move(records), std::move(durable));
  startNext();
}

void SimCheckpointDisk::snapshot(std::string state, std::uint64_t epoch, std::uint64_t seq, Durable durable) {
  logBytes_ = 0;
  queue_.snapshot(std::move(state), epoch, seq, std::move(durable));
  startNext();
}

void SimCheckpointDisk::release() {
  contents_->hold = false;
  startNext();
}

void SimCheckpointDisk::startNext() {
  if (writing_ || queue_.empty() || contents_->hold) return;
  writing_ = queue_.pop();
  timer_ = scheduler_.after(latency_, [this] {
    timer_.reset();
    complete();
  });
}

void SimCheckpointDisk::complete() {
  DiskWriteQueue::Write job = std::move(*writing_);
  writing_.reset();
  Status status;
  if (contents_->failure) {
    status = Error{"sim disk: " + *contents_->failure};
    if (!job.isSnapshot) broken_ = true;
  } else if (job.isSnapshot) {
    contents_->snapshot = std::move(job.state);
    contents_->log = LogImage{job.epoch, job.seq, {}};
    broken_ = false;
    ++contents_->syncs;
  } else if (broken_ || !contents_->log) {
    status = Error{"sim disk: the log is not open for appending"};
  } else {
    for (auto& record : job.records) contents_->log->records.push_back(std::move(record));
    ++contents_->syncs;
  }
  // The next write starts before the callbacks run, as a real worker would go on.
  startNext();
  for (auto& done : job.done) done(status);
}

}  // namespace kvm_amf::ckpt
