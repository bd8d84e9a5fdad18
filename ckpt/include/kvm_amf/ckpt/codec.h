// The checkpoint service's bytes: the messages of its group, the store's state (snapshots, state
// transfer) and the records of the log on disk. A compact binary form, since sections carry
// arbitrary bytes and a write's cost is mostly its encoding:
//
//   message = 0xC7, version (1), type, fields...
//   unsigned integers as LEB128 varints; signed ones (node ids, times) zigzag-encoded first;
//   strings as a varint length and the bytes; an optional as a 0/1 byte and the value.
//
// decode() never throws and never reads out of bounds: truncated, oversized, trailing or unknown
// bytes give an Error naming what is wrong. decode(encode(m)) == m for every message.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kvm_amf/ckpt/checkpoint.h"
#include "kvm_amf/ckpt/checkpoint_store.h"
#include "kvm_amf/common/result.h"

namespace kvm_amf::ckpt {

inline constexpr int kCkptCodecVersion = 1;

// A member has everything up to seq `upTo` of epoch `epoch` applied and on its disk.
struct AppliedMessage {
  int node = 0;
  std::uint64_t session = 0;
  std::uint64_t epoch = 0;
  std::uint64_t upTo = 0;
  bool operator==(const AppliedMessage&) const = default;
};

// A member's offer in state-transfer round `round`: how fresh its state is.
struct OfferMessage {
  int node = 0;
  std::uint64_t session = 0;
  std::uint64_t round = 0;
  bool hasState = false;
  std::uint64_t epoch = 0;
  std::uint64_t seq = 0;
  bool operator==(const OfferMessage&) const = default;
};

// One piece of the freshest member's state (encodeState), in order; `last` ends it.
struct SnapshotChunk {
  int node = 0;
  std::uint64_t round = 0;
  std::uint32_t index = 0;
  bool last = false;
  std::string bytes;
  bool operator==(const SnapshotChunk&) const = default;
};

// Several ops of one origin sent at once (those requested in one loop turn), in their order.
struct OpBatch {
  std::vector<Op> ops;
  bool operator==(const OpBatch&) const = default;
};

using Message = std::variant<Op, AppliedMessage, OfferMessage, SnapshotChunk, OpBatch>;

std::string encode(const Message& message);
Result<Message> decode(std::string_view bytes);

// The whole store; decodeState also refuses a state that is not consistent (checkpoint_store.h).
std::string encodeState(const StoreState& state);
Result<StoreState> decodeState(std::string_view bytes);

// A record of the log on disk: an op and the seq it was applied as.
struct LogRecord {
  std::uint64_t seq = 0;
  Op op;
  bool operator==(const LogRecord&) const = default;
};
std::string encodeRecord(const LogRecord& record);
// The same record made from the op's message as delivered (encode(op)), without encoding the op
// again. REQUIRES: `opMessage` decodes as an Op.
std::string recordFromMessage(std::uint64_t seq, std::string_view opMessage);
Result<LogRecord> decodeRecord(std::string_view bytes);

}  // namespace kvm_amf::ckpt
