// The checkpoint service's bytes: every message, the store's state and log records round-trip
// exactly; damaged bytes are refused with a reason, never read out of bounds.
#include "kvm_amf/ckpt/codec.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kvm_amf::ckpt {
namespace {

using namespace std::chrono_literals;

std::string binary() {
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes.push_back(static_cast<char>(i));
  return bytes;
}

std::vector<OpBody> everyBody() {
  CheckpointAttributes attributes;
  attributes.retention = 90s;
  attributes.maxSections = 7;
  attributes.maxSectionBytes = 4096;
  attributes.maxBytes = 1u << 20;
  return {
      CreateCheckpoint{"sg/mme/state", attributes},
      OpenCheckpoint{"c", "client-1", attributes},
      OpenCheckpoint{"c", "client-2", std::nullopt},
      CloseCheckpoint{"c", "client-1"},
      UnlinkCheckpoint{"c"},
      CreateSection{"c", "s", binary(), TimePoint(-5)},
      CreateSection{"c", "s", "", std::nullopt},
      WriteSection{"c", "s", 1234567, "data"},
      OverwriteSection{"c", "s", binary(), true, attributes, TimePoint(1700000000000)},
      OverwriteSection{"c", "s", "x", false, std::nullopt, std::nullopt},
      DeleteSection{"c", "s"},
      SetSectionExpiry{"c", "s", TimePoint(99)},
      SetSectionExpiry{"c", "s", std::nullopt},
      CloseOpeners{{{1, 2}, {-3, 18446744073709551615ull}}},
      Expire{},
  };
}

TEST(CkptCodec, EveryOpRoundTrips) {
  std::uint64_t counter = 0;
  for (const OpBody& body : everyBody()) {
    const Op op{-7 + static_cast<int>(counter),
                1700000000123ull,
                ++counter,
                TimePoint(-1 - counter * 1000),
                body,
                counter % 2 == 0};
    Result<Message> back = decode(encode(op));
    ASSERT_TRUE(back.ok()) << opName(body) << ": " << back.error().message;
    EXPECT_EQ(std::get<Op>(back.value()), op) << opName(body);
  }
}

TEST(CkptCodec, EveryOtherMessageRoundTrips) {
  OpBatch batch;
  for (const OpBody& body : everyBody()) {
    batch.ops.push_back(Op{2, 9, batch.ops.size() + 1, TimePoint(5), body, batch.ops.size() % 2 == 0});
  }
  const std::vector<Message> messages = {
      batch,
      OpBatch{},
      AppliedMessage{3, 77, 2, 123456789},
      OfferMessage{2, 5, 9, true, 4, 1000},
      OfferMessage{1, 1, 1, false, 0, 0},
      SnapshotChunk{1, 3, 0, false, binary()},
      SnapshotChunk{1, 3, 1, true, ""},
  };
  for (const Message& message : messages) {
    Result<Message> back = decode(encode(message));
    ASSERT_TRUE(back.ok()) << back.error().message;
    EXPECT_EQ(back.value(), message);
  }
}

TEST(CkptCodec, TheStateRoundTrips) {
  CheckpointStore store;
  std::uint64_t counter = 0;
  CheckpointAttributes attributes;
  attributes.retention = 1h;
  ASSERT_TRUE(store.apply(Op{1, 9, ++counter, TimePoint(100), OpenCheckpoint{"a", "app", attributes}}).ok());
  ASSERT_TRUE(store.apply(Op{2, 3, ++counter, TimePoint(200), CreateSection{"a", "s", binary(), TimePoint(500)}}).ok());
  ASSERT_TRUE(store.apply(Op{2, 3, ++counter, TimePoint(300), CreateCheckpoint{"b", {}}}).ok());
  ASSERT_TRUE(store.apply(Op{3, 1, ++counter, TimePoint(400), OverwriteSection{"b", "x", "y", true, {}, {}}}).ok());
  store.setEpoch(6);
  Result<StoreState> back = decodeState(encodeState(store.state()));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back.value(), store.state());
  EXPECT_EQ(back.value().epoch, 6u);
  EXPECT_EQ(back.value().checkpoints.at("a").bytes, 256u);
  EXPECT_EQ(decodeState(encodeState(StoreState{})).value(), StoreState{});
}

TEST(CkptCodec, LogRecordsRoundTrip) {
  const LogRecord record{42, Op{1, 2, 3, TimePoint(4), WriteSection{"c", "s", 5, binary()}}};
  Result<LogRecord> back = decodeRecord(encodeRecord(record));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back.value(), record);
  EXPECT_EQ(recordFromMessage(42, encode(record.op)), encodeRecord(record)) << "made from the delivered message";
  EXPECT_FALSE(decode(encodeRecord(record)).ok()) << "a record is not a group message";
  EXPECT_FALSE(decodeRecord(encode(record.op)).ok()) << "a group message is not a record";
}

TEST(CkptCodec, EveryTruncationAndTrailingByteIsRefused) {
  const std::string bytes = encode(Op{1, 2, 3, TimePoint(4), OverwriteSection{"c", "s", "data", true, {}, {}}});
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(decode(bytes.substr(0, n)).ok()) << "cut at " << n;
  }
  Result<Message> trailing = decode(bytes + "x");
  ASSERT_FALSE(trailing.ok());
  EXPECT_NE(trailing.error().message.find("trailing"), std::string::npos) << trailing.error().message;
}

TEST(CkptCodec, DamagedBytesAreRefusedWithAReason) {
  std::string op = encode(Op{1, 2, 3, TimePoint(4), Expire{}});
  std::string badMagic = op;
  badMagic[0] = 'x';
  EXPECT_NE(decode(badMagic).error().message.find("magic"), std::string::npos);
  std::string badVersion = op;
  badVersion[1] = 9;
  EXPECT_NE(decode(badVersion).error().message.find("version 9"), std::string::npos);
  std::string badType = op;
  badType[2] = 77;
  EXPECT_NE(decode(badType).error().message.find("type 77"), std::string::npos);
  std::string badKind = op;
  badKind.back() = 42;  // the body's tag
  EXPECT_NE(decode(badKind).error().message.find("op kind 42"), std::string::npos);
  // A length far beyond the bytes is refused, not allocated.
  const std::string state("\xC7\x01\x05\x00\x00\x00\x00\xff\xff\xff\xff\x0f", 12);
  Result<StoreState> refused = decodeState(state);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("too many"), std::string::npos) << refused.error().message;
}

TEST(CkptCodec, AStateWithNamesTheStoreWouldRefuseIsRefused) {
  StoreState badName;
  badName.checkpoints["not valid"];
  Result<StoreState> back = decodeState(encodeState(badName));
  ASSERT_FALSE(back.ok());
  EXPECT_NE(back.error().message.find("inconsistent"), std::string::npos);
  StoreState badSection;
  badSection.checkpoints["c"].sections[""];
  EXPECT_FALSE(decodeState(encodeState(badSection)).ok());
  StoreState counted;
  counted.checkpoints["c"].sections["s"].data = "abc";  // bytes not counted here: decoding counts them
  EXPECT_EQ(decodeState(encodeState(counted)).value().checkpoints.at("c").bytes, 3u);
}

}  // namespace
}  // namespace kvm_amf::ckpt
