#include "kvm_amf/ckpt/checkpoint_disk.h"
#include "kvm_amf/ckpt/codec.h"

namespace kvm_amf::ckpt {

Result<std::optional<CheckpointStore>> restoreStore(const StoreLimits& limits,
                                                    const std::optional<std::string>& snapshot,
                                                    const std::optional<LogImage>& log) {
  if (!snapshot) {
    if (log && !log->records.empty())
      return Error{"a log of " + std::to_string(log->records.size()) + " records without the snapshot it follows"};
    return std::optional<CheckpointStore>();
  }
  Result<StoreState> state = decodeState(*snapshot);
  if (!state.ok()) return Error{"the snapshot: " + state.error().message};
  CheckpointStore store(limits, std::move(state).value());
  if (!log || log->epoch != store.epoch() || log->baseSeq > store.seq()) return std::optional(std::move(store));
  for (std::size_t i = 0; i < log->records.size(); ++i) {
    Result<LogRecord> record = decodeRecord(log->records[i]);
    if (!record.ok()) return Error{"log record " + std::to_string(i + 1) + ": " + record.error().message};
    const std::uint64_t seq = record.value().seq;
    if (seq <= store.seq()) continue;  // the snapshot holds it
    if (seq != store.seq() + 1) {
      return Error{"log record " + std::to_string(i + 1) + " has seq " + std::to_string(seq) + " after " +
                   std::to_string(store.seq()) + ": records are missing"};
    }
    if (store.includes(record.value().op)) {
      return Error{"log record " + std::to_string(i + 1) + " (seq " + std::to_string(seq) +
                   ") repeats an op the state holds"};
    }
    CkptResult<std::uint64_t> applied = store.apply(record.value().op);
    if (store.seq() != seq)
      return Error{"log record " + std::to_string(i + 1) + " did not apply as seq " + std::to_string(seq)};
    (void)applied;  // a refused op is refused again, alike: it changed nothing then either
  }
  return std::optional(std::move(store));
}

}  // namespace kvm_amf::ckpt
