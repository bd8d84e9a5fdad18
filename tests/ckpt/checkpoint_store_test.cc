// The replicated checkpoint store: every op's rules, the limits, retention and section expiry, and
// the bookkeeping that state transfer relies on (seq, origin marks, stream time).
#include "kvm_amf/ckpt/checkpoint_store.h"

#include <gtest/gtest.h>

#include <string>

namespace kvm_amf::ckpt {
namespace {

using namespace std::chrono_literals;

class StoreTest : public ::testing::Test {
 protected:
  // Applies `body` as the next op of node 1 at time `at` (default: 1 s after the previous one).
  CkptResult<std::uint64_t> apply(OpBody body, std::optional<TimePoint> at = std::nullopt, int node = 1,
                                  std::uint64_t session = 1) {
    now_ = at ? *at : now_ + 1000ms;
    return store_.apply(Op{node, session, ++counter_, now_, std::move(body)});
  }
  void ok(OpBody body) {
    const std::string what(opName(body));
    CkptResult<std::uint64_t> result = apply(std::move(body));
    ASSERT_TRUE(result.ok()) << what << ": " << result.error().message;
  }
  ErrorKind refused(OpBody body) {
    CkptResult<std::uint64_t> result = apply(std::move(body));
    EXPECT_FALSE(result.ok());
    if (result.ok()) return ErrorKind::kInvalid;
    lastError_ = result.error().message;
    return result.error().kind;
  }
  std::string data(const std::string& name, const std::string& section) {
    CkptResult<std::string> read = store_.read(name, section);
    return read.ok() ? read.value() : "<" + read.error().message + ">";
  }

  CheckpointStore store_;
  TimePoint now_{1'000'000};
  std::uint64_t counter_ = 0;
  std::string lastError_;
};

TEST(CheckpointNames, AreOneTo255BytesOfTheAllowedCharacters) {
  EXPECT_TRUE(isValidCheckpointName("a"));
  EXPECT_TRUE(isValidCheckpointName("sg/mme/Counter-1.v2_x"));
  EXPECT_TRUE(isValidCheckpointName(std::string(255, 'x')));
  EXPECT_FALSE(isValidCheckpointName(""));
  EXPECT_FALSE(isValidCheckpointName(std::string(256, 'x')));
  EXPECT_FALSE(isValidCheckpointName("a b"));
  EXPECT_FALSE(isValidCheckpointName("a:b"));
  EXPECT_FALSE(isValidCheckpointName(std::string("a\0b", 3)));
  EXPECT_FALSE(isValidCheckpointName("caf\xc3\xa9"));
}

TEST_F(StoreTest, CreateWriteReadOverwriteDeleteUnlink) {
  ok(CreateCheckpoint{"c", {}});
  ok(CreateSection{"c", "s1", "hello", std::nullopt});
  EXPECT_EQ(data("c", "s1"), "hello");
  ok(WriteSection{"c", "s1", 5, " world"});
  EXPECT_EQ(data("c", "s1"), "hello world");
  ok(WriteSection{"c", "s1", 0, "J"});
  EXPECT_EQ(data("c", "s1"), "Jello world");
  EXPECT_EQ(store_.read("c", "s1", 6, 3).value(), "wor");
  EXPECT_EQ(store_.read("c", "s1", 100).value(), "");
  ok(OverwriteSection{"c", "s1", "new", false, std::nullopt, std::nullopt});
  EXPECT_EQ(data("c", "s1"), "new");
  EXPECT_EQ(store_.info("c").value().bytes, 3u);
  EXPECT_EQ(store_.totalBytes(), 3u);
  ok(DeleteSection{"c", "s1"});
  EXPECT_EQ(store_.read("c", "s1").error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(store_.info("c").value().bytes, 0u);
  ok(UnlinkCheckpoint{"c"});
  EXPECT_EQ(store_.info("c").error().kind, ErrorKind::kNotFound);
  EXPECT_TRUE(store_.list().empty());
  EXPECT_EQ(store_.seq(), 7u);
}

TEST_F(StoreTest, CreatingAgainWithTheSameAttributesIsAcceptedAndWithOthersRefused) {
  CheckpointAttributes attributes;
  attributes.maxSections = 3;
  ok(CreateCheckpoint{"c", attributes});
  ok(CreateCheckpoint{"c", attributes});
  attributes.maxSections = 4;
  EXPECT_EQ(refused(CreateCheckpoint{"c", attributes}), ErrorKind::kExists);
  EXPECT_NE(lastError_.find("maxSections 3"), std::string::npos) << lastError_;
  EXPECT_EQ(store_.info("c").value().attributes.maxSections, 3u);
}

TEST_F(StoreTest, OpsOnWhatDoesNotExistAreRefusedAndChangeNothing) {
  EXPECT_EQ(refused(CreateSection{"none", "s", "x", std::nullopt}), ErrorKind::kNotFound);
  EXPECT_EQ(refused(WriteSection{"none", "s", 0, "x"}), ErrorKind::kNotFound);
  EXPECT_EQ(refused(OverwriteSection{"none", "s", "x", true, std::nullopt, std::nullopt}), ErrorKind::kNotFound);
  EXPECT_EQ(refused(DeleteSection{"none", "s"}), ErrorKind::kNotFound);
  EXPECT_EQ(refused(UnlinkCheckpoint{"none"}), ErrorKind::kNotFound);
  EXPECT_EQ(refused(CloseCheckpoint{"none", "app"}), ErrorKind::kNotFound);
  EXPECT_EQ(refused(OpenCheckpoint{"none", "app", std::nullopt}), ErrorKind::kNotFound);
  ok(CreateCheckpoint{"c", {}});
  EXPECT_EQ(refused(WriteSection{"c", "s", 0, "x"}), ErrorKind::kNotFound);
  EXPECT_EQ(refused(OverwriteSection{"c", "s", "x", false, std::nullopt, std::nullopt}), ErrorKind::kNotFound);
  EXPECT_EQ(refused(SetSectionExpiry{"c", "s", std::nullopt}), ErrorKind::kNotFound);
  ok(CreateSection{"c", "s", "x", std::nullopt});
  EXPECT_EQ(refused(CreateSection{"c", "s", "y", std::nullopt}), ErrorKind::kExists);
  EXPECT_EQ(refused(WriteSection{"c", "s", 2, "y"}), ErrorKind::kInvalid);  // beyond the end
  EXPECT_EQ(data("c", "s"), "x");
  // Refused ops are counted all the same: every member counts them alike.
  EXPECT_EQ(store_.seq(), 14u);
}

TEST_F(StoreTest, NamesAreValidated) {
  EXPECT_EQ(refused(CreateCheckpoint{"bad name", {}}), ErrorKind::kInvalid);
  EXPECT_NE(lastError_.find("'bad name'"), std::string::npos) << lastError_;
  EXPECT_EQ(refused(CreateCheckpoint{"", {}}), ErrorKind::kInvalid);
  ok(CreateCheckpoint{"c", {}});
  EXPECT_EQ(refused(CreateSection{"c", std::string(256, 's'), "x", std::nullopt}), ErrorKind::kInvalid);
  EXPECT_NE(lastError_.find("256 bytes"), std::string::npos) << lastError_;
  EXPECT_EQ(store_.read("c", "a b").error().kind, ErrorKind::kInvalid);
}

TEST_F(StoreTest, OverwriteCanCreateTheSectionAndTheCheckpoint) {
  CheckpointAttributes attributes;
  attributes.maxSections = 2;
  ok(OverwriteSection{"c", "s", "1", true, attributes, std::nullopt});
  EXPECT_EQ(data("c", "s"), "1");
  EXPECT_EQ(store_.info("c").value().attributes.maxSections, 2u);
  ok(OverwriteSection{"c", "s", "2", true, CheckpointAttributes{}, std::nullopt});  // exists: attributes ignored
  EXPECT_EQ(data("c", "s"), "2");
  EXPECT_EQ(store_.info("c").value().attributes.maxSections, 2u);
}

TEST_F(StoreTest, SectionAndCheckpointLimitsAreEnforcedWholly) {
  CheckpointAttributes attributes;
  attributes.maxSections = 2;
  attributes.maxSectionBytes = 10;
  attributes.maxBytes = 15;
  ok(CreateCheckpoint{"c", attributes});
  ok(CreateSection{"c", "a", "0123456789", std::nullopt});
  EXPECT_EQ(refused(CreateSection{"c", "b", "0123456789", std::nullopt}), ErrorKind::kLimit);
  EXPECT_NE(lastError_.find("would hold 20 bytes; its limit is 15 (maxBytes)"), std::string::npos) << lastError_;
  ok(CreateSection{"c", "b", "01234", std::nullopt});
  EXPECT_EQ(refused(CreateSection{"c", "x", "", std::nullopt}), ErrorKind::kLimit);
  EXPECT_NE(lastError_.find("maxSections 2"), std::string::npos) << lastError_;
  EXPECT_EQ(refused(OverwriteSection{"c", "a", "01234567890", false, std::nullopt, std::nullopt}), ErrorKind::kLimit);
  EXPECT_NE(lastError_.find("would hold 11 bytes; the checkpoint's limit is 10 (maxSectionBytes)"), std::string::npos)
      << lastError_;
  EXPECT_EQ(refused(WriteSection{"c", "b", 5, "x"}), ErrorKind::kLimit);  // 16 bytes in all
  // Nothing of a refused op is applied.
  EXPECT_EQ(data("c", "a"), "0123456789");
  EXPECT_EQ(data("c", "b"), "01234");
  EXPECT_EQ(store_.info("c").value().bytes, 15u);
  // Shrinking is always possible.
  ok(OverwriteSection{"c", "a", "", false, std::nullopt, std::nullopt});
  EXPECT_EQ(store_.totalBytes(), 5u);
}

TEST_F(StoreTest, StoreLimitsBoundCheckpointsAttributesAndTotalBytes) {
  StoreLimits limits;
  limits.maxCheckpoints = 2;
  limits.maxTotalBytes = 8;
  limits.maxSectionBytes = 6;
  store_ = CheckpointStore(limits);
  CheckpointAttributes attributes;
  attributes.maxSectionBytes = 6;
  attributes.maxBytes = 64;
  ok(CreateCheckpoint{"a", attributes});
  ok(CreateCheckpoint{"b", attributes});
  EXPECT_EQ(refused(CreateCheckpoint{"c", attributes}), ErrorKind::kLimit);
  EXPECT_NE(lastError_.find("maxCheckpoints"), std::string::npos) << lastError_;
  // A missing checkpoint that an overwrite would create counts too, and nothing is created.
  EXPECT_EQ(refused(OverwriteSection{"c", "s", "x", true, attributes, std::nullopt}), ErrorKind::kLimit);
  EXPECT_EQ(store_.info("c").error().kind, ErrorKind::kNotFound);
  ok(CreateSection{"a", "s", "12345", std::nullopt});
  EXPECT_EQ(refused(CreateSection{"b", "s", "1234", std::nullopt}), ErrorKind::kLimit);
  EXPECT_NE(lastError_.find("maxTotalBytes"), std::string::npos) << lastError_;
  EXPECT_EQ(refused(CreateSection{"b", "s", "1234567", std::nullopt}), ErrorKind::kLimit);
  EXPECT_NE(lastError_.find("7 bytes; a section holds at most 6"), std::string::npos) << lastError_;
  attributes.maxSectionBytes = 7;
  EXPECT_EQ(refused(CreateCheckpoint{"x", attributes}), ErrorKind::kLimit);
  EXPECT_NE(lastError_.find("maxSectionBytes 7 is not between 1 and 6"), std::string::npos) << lastError_;
}

TEST_F(StoreTest, AttributesAreChecked) {
  CheckpointAttributes attributes;
  attributes.maxSections = 0;
  EXPECT_EQ(refused(CreateCheckpoint{"c", attributes}), ErrorKind::kLimit);
  attributes = {};
  attributes.retention = Duration(-1);
  EXPECT_EQ(refused(CreateCheckpoint{"c", attributes}), ErrorKind::kInvalid);
  attributes.retention = kMaxRetention + Duration(1);
  EXPECT_EQ(refused(CreateCheckpoint{"c", attributes}), ErrorKind::kInvalid);
  EXPECT_TRUE(CheckpointStore::check(CreateCheckpoint{"c", {}}, StoreLimits{}) == std::nullopt);
}

TEST_F(StoreTest, RetentionCountsFromTheLastCloseAndOpensKeepACheckpoint) {
  CheckpointAttributes attributes;
  attributes.retention = 10s;
  ok(OpenCheckpoint{"c", "app", attributes});
  EXPECT_EQ(store_.info("c").value().openers, 1u);
  EXPECT_EQ(store_.nextDeadline(), std::nullopt) << "an open checkpoint is not due";
  ok(OpenCheckpoint{"c", "other", std::nullopt});
  ok(CloseCheckpoint{"c", "app"});
  EXPECT_EQ(store_.nextDeadline(), std::nullopt);
  EXPECT_EQ(refused(CloseCheckpoint{"c", "app"}), ErrorKind::kNotFound);
  ok(CloseCheckpoint{"c", "other"});
  const TimePoint closed = now_;
  EXPECT_EQ(store_.nextDeadline(), closed + 10s);
  EXPECT_EQ(store_.info("c").value().removeAt, closed + 10s);
  // An Expire before the time removes nothing; at the time, it removes it.
  ASSERT_TRUE(apply(Expire{}, closed + 9s).ok());
  EXPECT_TRUE(store_.info("c").ok());
  ASSERT_TRUE(apply(Expire{}, closed + 10s).ok());
  EXPECT_EQ(store_.info("c").error().kind, ErrorKind::kNotFound);
}

TEST_F(StoreTest, ACheckpointNobodyOpenedIsRetainedFromItsCreationAndWithoutRetentionForever) {
  CheckpointAttributes attributes;
  attributes.retention = 5s;
  ok(CreateCheckpoint{"short", attributes});
  const TimePoint created = now_;
  ok(CreateCheckpoint{"forever", {}});
  EXPECT_EQ(store_.nextDeadline(), created + 5s);
  ASSERT_TRUE(apply(Expire{}, created + 1h).ok());
  EXPECT_FALSE(store_.info("short").ok());
  EXPECT_TRUE(store_.info("forever").ok());
  EXPECT_EQ(store_.nextDeadline(), std::nullopt);
}

TEST_F(StoreTest, SectionsExpireAtTheirTime) {
  ok(CreateCheckpoint{"c", {}});
  ok(CreateSection{"c", "soon", "1", now_ + 5s});
  ok(CreateSection{"c", "later", "22", std::nullopt});
  const TimePoint later = now_ + 60s;
  ok(SetSectionExpiry{"c", "later", later});
  ok(OverwriteSection{"c", "third", "333", true, std::nullopt, now_ + 90s});
  ASSERT_EQ(store_.sections("c").value().size(), 3u);
  ASSERT_TRUE(apply(Expire{}, now_ + 10s).ok());
  std::vector<SectionInfo> left = store_.sections("c").value();
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].id, "later");
  EXPECT_EQ(left[0].expiry, later);
  EXPECT_EQ(store_.info("c").value().bytes, 5u);
  EXPECT_EQ(store_.nextDeadline(), later);
  ok(SetSectionExpiry{"c", "later", std::nullopt});
  ASSERT_TRUE(apply(Expire{}, later + 40s).ok());
  EXPECT_EQ(store_.sections("c").value().size(), 1u);
  EXPECT_EQ(store_.sections("c").value()[0].id, "later");
}

TEST_F(StoreTest, StreamTimeNeverGoesBackAndStampsChanges) {
  ok(CreateCheckpoint{"c", {}});
  const TimePoint t = now_;
  ASSERT_TRUE(apply(CreateSection{"c", "s", "x", std::nullopt}, t - 500s).ok());  // a slow origin's clock
  EXPECT_EQ(store_.state().streamTime, t);
  EXPECT_EQ(store_.sections("c").value()[0].updated, t);
}

TEST_F(StoreTest, CloseOpenersClosesTheOpensOfDeadSessionsOnly) {
  CheckpointAttributes attributes;
  attributes.retention = 1s;
  ASSERT_TRUE(apply(OpenCheckpoint{"c", "a", attributes}, std::nullopt, 2, 7).ok());
  ASSERT_TRUE(apply(OpenCheckpoint{"c", "b", std::nullopt}, std::nullopt, 2, 8).ok());
  ASSERT_TRUE(apply(OpenCheckpoint{"c", "a", std::nullopt}, std::nullopt, 3, 1).ok());
  auto dead = store_.deadSessions([](int node, std::uint64_t session) { return node == 3 || session == 8; });
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0], std::make_pair(2, std::uint64_t{7}));
  ok(CloseOpeners{dead});
  EXPECT_EQ(store_.info("c").value().openers, 2u);
  ok(CloseOpeners{{{2, 8}, {3, 1}}});
  EXPECT_EQ(store_.info("c").value().openers, 0u);
  EXPECT_EQ(store_.info("c").value().removeAt, now_ + 1s);
}

TEST_F(StoreTest, OriginMarksTellWhichOpsAreHeld) {
  ASSERT_TRUE(store_.apply(Op{2, 5, 3, now_, CreateCheckpoint{"c", {}}}).ok());
  EXPECT_TRUE(store_.includes(Op{2, 5, 3, now_, Expire{}}));
  EXPECT_TRUE(store_.includes(Op{2, 5, 1, now_, Expire{}}));
  EXPECT_TRUE(store_.includes(Op{2, 4, 99, now_, Expire{}})) << "an earlier session's ops came first";
  EXPECT_FALSE(store_.includes(Op{2, 5, 4, now_, Expire{}}));
  EXPECT_FALSE(store_.includes(Op{2, 6, 1, now_, Expire{}}));
  EXPECT_FALSE(store_.includes(Op{3, 5, 1, now_, Expire{}}));
}

TEST_F(StoreTest, TwoStoresApplyingTheSameOpsAreEqual) {
  CheckpointStore other;
  std::vector<Op> ops = {
      Op{1, 1, 1, TimePoint(10), CreateCheckpoint{"c", {}}},
      Op{2, 1, 1, TimePoint(20), CreateSection{"c", "s", "abc", std::nullopt}},
      Op{1, 1, 2, TimePoint(15), WriteSection{"c", "s", 9, "x"}},  // refused
      Op{3, 1, 1, TimePoint(30), OverwriteSection{"d", "s", "q", true, CheckpointAttributes{}, TimePoint(40)}},
      Op{1, 1, 3, TimePoint(50), Expire{}},
  };
  CheckpointStore a;
  for (const Op& op : ops) {
    (void)a.apply(op);
    (void)other.apply(op);
  }
  EXPECT_TRUE(a == other);
  EXPECT_EQ(a.seq(), 5u);
  EXPECT_EQ(a.read("d", "s").error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(inconsistency(a.state()), std::nullopt);
}

}  // namespace
}  // namespace kvm_amf::ckpt
