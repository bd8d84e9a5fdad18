#include "kvm_amf/ckpt/checkpoint_disk.h"

namespace kvm_amf::ckpt {

void DiskWriteQueue::append(std::vector<std::string> records, CheckpointDisk::Durable durable) {
  if (writes_.empty() || writes_.back().isSnapshot) writes_.emplace_back();
  Write& write = writes_.back();
  write.records.insert(write.records.end(), std::make_move_iterator(records.begin()),
                       std::make_move_iterator(records.end()));
  if (durable) write.done.push_back(std::move(durable));
}

void DiskWriteQueue::snapshot(std::string state, std::uint64_t epoch, std::uint64_t seq,
                              CheckpointDisk::Durable durable) {
  Write& write = writes_.emplace_back();
  write.isSnapshot = true;
  write.state = std::move(state);
  write.epoch = epoch;
  write.seq = seq;
  if (durable) write.done.push_back(std::move(durable));
}

DiskWriteQueue::Write DiskWriteQueue::pop() {
  Write write = std::move(writes_.front());
  writes_.pop_front();
  return write;
}

std::vector<DiskWriteQueue::Write> DiskWriteQueue::takeAll() {
  std::vector<Write> all(std::make_move_iterator(writes_.begin()), std::make_move_iterator(writes_.end()));
  writes_.clear();
  return all;
}

}  // namespace kvm_amf::ckpt
