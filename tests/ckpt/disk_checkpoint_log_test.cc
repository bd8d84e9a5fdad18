// The checkpoints on a real disk (DiskCheckpointLog) on a real event loop: a snapshot and the log
// after it come back as the same store; writes given while one is in progress share one sync; a
// record cut short by a stop is dropped; damage is refused with the file and what is wrong.
#include "kvm_amf/ckpt/disk_checkpoint_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvm_amf/ckpt/codec.h"
#include "kvm_amf/common/durable_file.h"
#include "kvm_amf/common/event_loop.h"
#include "testing/run_until.h"
#include "testing/temp_dir.h"

namespace kvm_amf::ckpt {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr Duration kPatience{10000};

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void writeFile(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

class DiskLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop).value();
    log_ = std::make_unique<DiskCheckpointLog>(*loop_, dir());
  }

  std::string dir() const { return dir_.path().string(); }

  // Applies `body` to the test's store (accepted or refused by its rules) and returns the record to log.
  std::string applied(OpBody body) {
    Op op{1, 1, ++counter_, TimePoint(1000 * static_cast<std::int64_t>(counter_)), std::move(body)};
    (void)store_.apply(op);
    return encodeRecord(LogRecord{store_.seq(), op});
  }

  // Waits until `statuses` holds `n` outcomes.
  bool waitFor(const std::vector<Status>& statuses, std::size_t n) {
    return testing::runUntil(
        *loop_, [&] { return statuses.size() >= n; }, kPatience);
  }

  Status snapshotNow() {
    std::vector<Status> done;
    log_->snapshot(encodeState(store_.state()), store_.epoch(), store_.seq(),
                   [&](Status s) { done.push_back(std::move(s)); });
    EXPECT_TRUE(waitFor(done, 1));
    return done.empty() ? Status(Error{"no answer"}) : done[0];
  }

  Status appendNow(std::vector<std::string> records) {
    std::vector<Status> done;
    log_->append(std::move(records), [&](Status s) { done.push_back(std::move(s)); });
    EXPECT_TRUE(waitFor(done, 1));
    return done.empty() ? Status(Error{"no answer"}) : done[0];
  }

  // Replaces the snapshot file as the log would (its framing is durable_file.h's).
  bool writeDurableFileForTest(const CheckpointStore& store) {
    return writeDurableFile((dir_ / "snapshot").string(), "KVMCKPTS", encodeState(store.state())).ok();
  }

  Result<std::optional<CheckpointStore>> load(std::string* warning = nullptr) {
    return DiskCheckpointLog::load(dir(), StoreLimits{}, warning);
  }

  testing::TempDir dir_{"ckpt-disk"};
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<DiskCheckpointLog> log_;
  CheckpointStore store_;
  std::uint64_t counter_ = 0;
};

TEST_F(DiskLogTest, AnEmptyDirectoryIsANewHost) {
  Result<std::optional<CheckpointStore>> loaded = load();
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_FALSE(loaded.value().has_value());
}

TEST_F(DiskLogTest, ASnapshotAndTheLogAfterItComeBackAsTheSameStore) {
  (void)applied(CreateCheckpoint{"c", {}});
  store_.setEpoch(3);
  ASSERT_TRUE(snapshotNow().ok());
  ASSERT_TRUE(appendNow({applied(CreateSection{"c", "a", "one", std::nullopt})}).ok());
  ASSERT_TRUE(appendNow({applied(CreateSection{"c", "b", "two", std::nullopt}), applied(WriteSection{"c", "a", 3, "+"}),
                         applied(WriteSection{"c", "zz", 0, "refused"})})
                  .ok());
  log_.reset();
  Result<std::optional<CheckpointStore>> loaded = load();
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  ASSERT_TRUE(loaded.value().has_value());
  EXPECT_TRUE(*loaded.value() == store_);
  EXPECT_EQ(loaded.value()->read("c", "a").value(), "one+");
  EXPECT_EQ(loaded.value()->seq(), 5u);
  EXPECT_EQ(loaded.value()->epoch(), 3u);
}

TEST_F(DiskLogTest, AppendsGivenDuringAWriteShareTheNextSync) {
  (void)applied(CreateCheckpoint{"c", {}});
  ASSERT_TRUE(snapshotNow().ok());
  std::vector<Status> done;
  for (int i = 0; i < 50; ++i) {
    log_->append({applied(OverwriteSection{"c", "s", std::to_string(i), true, std::nullopt, std::nullopt})},
                 [&](Status s) { done.push_back(std::move(s)); });
  }
  ASSERT_TRUE(waitFor(done, 50));
  for (const Status& s : done) EXPECT_TRUE(s.ok());
  // The first append is written alone; the 49 given while it was written go together.
  EXPECT_LE(log_->syncs(), 2u);
  EXPECT_GE(log_->syncs(), 1u);
  log_.reset();
  EXPECT_EQ(load().value()->read("c", "s").value(), "49");
}

TEST_F(DiskLogTest, ANewSnapshotStartsANewLog) {
  (void)applied(CreateCheckpoint{"c", {}});
  ASSERT_TRUE(snapshotNow().ok());
  ASSERT_TRUE(appendNow({applied(CreateSection{"c", "a", std::string(1000, 'x'), std::nullopt})}).ok());
  EXPECT_GT(log_->logBytes(), 1000u);
  ASSERT_TRUE(snapshotNow().ok());
  EXPECT_EQ(log_->logBytes(), 0u);
  EXPECT_EQ(fs::file_size(dir_ / "log"), DiskCheckpointLog::kLogHeaderBytes);
  ASSERT_TRUE(appendNow({applied(DeleteSection{"c", "a"})}).ok());
  log_.reset();
  EXPECT_TRUE(*load().value() == store_);
}

TEST_F(DiskLogTest, ALogOfAnOlderStateIsIgnored) {
  // The host stopped between writing a snapshot of an adopted state and starting its new log.
  (void)applied(CreateCheckpoint{"c", {}});
  store_.setEpoch(1);
  ASSERT_TRUE(snapshotNow().ok());
  ASSERT_TRUE(appendNow({applied(CreateSection{"c", "old", "x", std::nullopt})}).ok());
  log_.reset();
  CheckpointStore adopted;
  ASSERT_TRUE(adopted.apply(Op{2, 1, 1, TimePoint(5), CreateCheckpoint{"other", {}}}).ok());
  adopted.setEpoch(2);
  ASSERT_TRUE(writeDurableFileForTest(adopted));
  Result<std::optional<CheckpointStore>> loaded = load();
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_TRUE(*loaded.value() == adopted);
}

TEST_F(DiskLogTest, ARecordCutShortByAStopIsDroppedAndTheFileCutBack) {
  (void)applied(CreateCheckpoint{"c", {}});
  ASSERT_TRUE(snapshotNow().ok());
  ASSERT_TRUE(appendNow({applied(CreateSection{"c", "a", "kept", std::nullopt})}).ok());
  log_.reset();
  const std::uint64_t whole = fs::file_size(dir_ / "log");
  const std::string torn = DiskCheckpointLog::frameRecord(encodeRecord(
      LogRecord{store_.seq() + 1, Op{1, 1, 99, TimePoint(0), CreateSection{"c", "b", "lost", std::nullopt}}}));
  writeFile(dir_ / "log", readFile(dir_ / "log") + torn.substr(0, torn.size() - 3));
  std::string warning;
  Result<std::optional<CheckpointStore>> loaded = load(&warning);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_TRUE(*loaded.value() == store_);
  EXPECT_NE(warning.find("cut short"), std::string::npos) << warning;
  EXPECT_EQ(fs::file_size(dir_ / "log"), whole);
}

TEST_F(DiskLogTest, ACorruptRecordIsRefusedNamingTheFile) {
  (void)applied(CreateCheckpoint{"c", {}});
  ASSERT_TRUE(snapshotNow().ok());
  ASSERT_TRUE(appendNow({applied(CreateSection{"c", "a", "payload", std::nullopt}),
                         applied(CreateSection{"c", "b", "payload", std::nullopt})})
                  .ok());
  log_.reset();
  std::string bytes = readFile(dir_ / "log");
  bytes[bytes.size() - 2] ^= 0x20;  // a bit flips in the last record
  writeFile(dir_ / "log", bytes);
  Result<std::optional<CheckpointStore>> loaded = load();
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.error().message.find((dir_ / "log").string()), std::string::npos) << loaded.error().message;
  EXPECT_NE(loaded.error().message.find("record 2"), std::string::npos) << loaded.error().message;
  EXPECT_NE(loaded.error().message.find("checksum mismatch"), std::string::npos) << loaded.error().message;
}

TEST_F(DiskLogTest, ADamagedHeaderOrSnapshotIsRefused) {
  (void)applied(CreateCheckpoint{"c", {}});
  ASSERT_TRUE(snapshotNow().ok());
  log_.reset();
  std::string header = readFile(dir_ / "log");
  header[15] ^= 1;
  writeFile(dir_ / "log", header);
  ASSERT_FALSE(load().ok());
  EXPECT_NE(load().error().message.find("header's checksum"), std::string::npos) << load().error().message;
  writeFile(dir_ / "log", DiskCheckpointLog::logHeader(0, 1));
  std::string snapshot = readFile(dir_ / "snapshot");
  writeFile(dir_ / "snapshot", snapshot.substr(0, snapshot.size() - 1));
  ASSERT_FALSE(load().ok());
  EXPECT_NE(load().error().message.find("snapshot"), std::string::npos) << load().error().message;
}

TEST_F(DiskLogTest, AGapInTheLogIsRefused) {
  (void)applied(CreateCheckpoint{"c", {}});
  ASSERT_TRUE(snapshotNow().ok());
  (void)applied(CreateSection{"c", "a", "x", std::nullopt});  // never logged
  ASSERT_TRUE(appendNow({applied(CreateSection{"c", "b", "y", std::nullopt})}).ok());
  log_.reset();
  Result<std::optional<CheckpointStore>> loaded = load();
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.error().message.find("records are missing"), std::string::npos) << loaded.error().message;
}

TEST_F(DiskLogTest, AppendsBeforeAnySnapshotFailAndSayWhy) {
  Status status = appendNow({applied(CreateCheckpoint{"c", {}})});
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("snapshot"), std::string::npos) << status.error().message;
  EXPECT_EQ(log_->failures(), 1u);
  ASSERT_TRUE(snapshotNow().ok());
  EXPECT_TRUE(appendNow({applied(CreateSection{"c", "a", "x", std::nullopt})}).ok());
}

TEST_F(DiskLogTest, FreeSpaceIsMeasured) {
  ASSERT_TRUE(testing::runUntil(
      *loop_, [&] { return log_->freeBytes().has_value(); }, kPatience));
  EXPECT_GT(*log_->freeBytes(), 0u);
}

}  // namespace
}  // namespace kvm_amf::ckpt
