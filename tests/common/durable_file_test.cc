#include "kvm_amf/common/durable_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>

namespace kvm_amf {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr std::string_view kMagic = "TESTFILE";
constexpr std::size_t kHeaderSize = 24;  // magic (8), version (4), length (8), CRC-32C (4)

// A payload whose bytes all differ from their neighbours, so that a misplaced byte shows.
std::string patternedPayload(std::size_t size) {
  std::string payload(size, '\0');
  for (std::size_t i = 0; i < size; ++i) payload[i] = static_cast<char>((i * 131 + i / 256) & 0xff);
  return payload;
}

std::string readRaw(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void writeRaw(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

class DurableFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "durable_file_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = (dir_ / "state").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes `payload` and expects success.
  void write(std::string_view payload) {
    const Status status = writeDurableFile(path_, kMagic, payload);
    ASSERT_TRUE(status.ok()) << status.error().message;
  }

  // The error reading path_ gives; fails the test when it reads.
  std::string readError() {
    const Result<std::optional<std::string>> read = readDurableFile(path_, kMagic);
    EXPECT_FALSE(read.ok()) << "read a file that should be refused";
    return read.ok() ? std::string() : read.error().message;
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(DurableFileTest, EmptyPayloadRoundTrips) {
  write("");
  EXPECT_EQ(fs::file_size(path_), kHeaderSize);
  const auto read = readDurableFile(path_, kMagic);
  ASSERT_TRUE(read.ok()) << read.error().message;
  ASSERT_TRUE(read.value().has_value());
  EXPECT_EQ(*read.value(), "");
}

TEST_F(DurableFileTest, OneMebibytePayloadRoundTrips) {
  const std::string payload = patternedPayload(1 << 20);
  write(payload);
  EXPECT_EQ(fs::file_size(path_), kHeaderSize + payload.size());
  const auto read = readDurableFile(path_, kMagic);
  ASSERT_TRUE(read.ok()) << read.error().message;
  ASSERT_TRUE(read.value().has_value());
  EXPECT_TRUE(*read.value() == payload);  // not EXPECT_EQ: a mismatch would print 1 MiB twice
}

TEST_F(DurableFileTest, AWriteReplacesThePreviousFileAndLeavesNoTemporary) {
  write("first");
  write("second, longer than the first");
  const auto read = readDurableFile(path_, kMagic);
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_EQ(read.value(), std::optional<std::string>("second, longer than the first"));
  EXPECT_FALSE(fs::exists(path_ + ".tmp"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(DurableFileTest, AMissingFileIsNullopt) {
  const auto read = readDurableFile(path_, kMagic);
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_FALSE(read.value().has_value());
}

TEST_F(DurableFileTest, WrongMagicIsRefused) {
  ASSERT_TRUE(writeDurableFile(path_, "OTHERKND", "payload").ok());
  const std::string error = readError();
  EXPECT_THAT(error, HasSubstr(path_));
  EXPECT_THAT(error, HasSubstr("wrong magic"));
}

TEST_F(DurableFileTest, AMagicOfTheWrongSizeIsNotWritten) {
  const Status status = writeDurableFile(path_, "SHORT", "payload");
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.error().message, HasSubstr(path_));
  EXPECT_FALSE(fs::exists(path_));
}

TEST_F(DurableFileTest, UnknownVersionIsRefused) {
  write("payload");
  std::string bytes = readRaw(path_);
  bytes[8] = 2;  // version, little-endian, right after the magic
  writeRaw(path_, bytes);
  const std::string error = readError();
  EXPECT_THAT(error, HasSubstr(path_));
  EXPECT_THAT(error, HasSubstr("unknown format version 2"));
}

TEST_F(DurableFileTest, TruncatedFilesAreRefused) {
  const std::string payload = patternedPayload(1000);
  write(payload);
  const std::string whole = readRaw(path_);
  ASSERT_EQ(whole.size(), kHeaderSize + payload.size());
  // Inside the magic, the version, the length, the CRC; right after the header; inside the payload.
  for (std::size_t size : {std::size_t{0}, std::size_t{5}, std::size_t{10}, std::size_t{17}, kHeaderSize - 1,
                           kHeaderSize, kHeaderSize + 1, kHeaderSize + 500, whole.size() - 1}) {
    SCOPED_TRACE("truncated to " + std::to_string(size) + " bytes");
    writeRaw(path_, whole.substr(0, size));
    const std::string error = readError();
    EXPECT_THAT(error, HasSubstr(path_));
    EXPECT_THAT(error, HasSubstr("truncated"));
  }
}

TEST_F(DurableFileTest, AnEmptyPayloadFileCutInsideTheHeaderIsRefused) {
  write("");
  writeRaw(path_, readRaw(path_).substr(0, kHeaderSize - 1));
  const std::string error = readError();
  EXPECT_THAT(error, HasSubstr(path_));
  EXPECT_THAT(error, HasSubstr("truncated"));
}

TEST_F(DurableFileTest, AnExtendedFileIsRefused) {
  write("payload");
  writeRaw(path_, readRaw(path_) + "x");
  const std::string error = readError();
  EXPECT_THAT(error, HasSubstr(path_));
  EXPECT_THAT(error, HasSubstr("truncated or extended"));
}

TEST_F(DurableFileTest, AFlippedBitInThePayloadIsAChecksumMismatch) {
  const std::string payload = patternedPayload(4096);
  write(payload);
  const std::string whole = readRaw(path_);
  for (std::size_t at : {kHeaderSize, kHeaderSize + 2048, whole.size() - 1}) {
    SCOPED_TRACE("bit flipped at byte " + std::to_string(at));
    std::string corrupt = whole;
    corrupt[at] = static_cast<char>(corrupt[at] ^ 0x10);
    writeRaw(path_, corrupt);
    const std::string error = readError();
    EXPECT_THAT(error, HasSubstr(path_));
    EXPECT_THAT(error, HasSubstr("checksum mismatch"));
  }
}

TEST_F(DurableFileTest, AFlippedBitInTheStoredChecksumIsAChecksumMismatch) {
  write("payload");
  std::string bytes = readRaw(path_);
  bytes[kHeaderSize - 1] = static_cast<char>(bytes[kHeaderSize - 1] ^ 0x01);
  writeRaw(path_, bytes);
  EXPECT_THAT(readError(), HasSubstr("checksum mismatch"));
}

TEST_F(DurableFileTest, ADirectoryIsUnreadable) {
  fs::create_directory(path_);
  EXPECT_THAT(readError(), HasSubstr(path_));
}

TEST_F(DurableFileTest, AWriteIntoAMissingDirectoryNamesThePath) {
  const std::string path = (dir_ / "missing" / "state").string();
  const Status status = writeDurableFile(path, kMagic, "payload");
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.error().message, HasSubstr(path));
  EXPECT_FALSE(fs::exists(dir_ / "missing"));
}

TEST(Crc32cTest, StandardCheckValue) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(""), 0u);
}

// A file system that fills up: a 64 KiB tmpfs, mounted for the test (root only).
class DurableFileFullDiskTest : public DurableFileTest {
 protected:
  void SetUp() override {
    DurableFileTest::SetUp();
    if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
    const std::string command = "mount -t tmpfs -o size=64k tmpfs '" + dir_.string() + "' 2>/dev/null";
    if (std::system(command.c_str()) != 0) GTEST_SKIP() << "cannot mount a tmpfs on " << dir_;
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) {
      const std::string command = "umount '" + dir_.string() + "'";
      EXPECT_EQ(std::system(command.c_str()), 0) << command;
    }
    DurableFileTest::TearDown();
  }

  bool mounted_ = false;
};

TEST_F(DurableFileFullDiskTest, AFailedWriteKeepsThePreviousFileAndLeavesNoTemporary) {
  write("the previous state");
  const Status status = writeDurableFile(path_, kMagic, patternedPayload(256 * 1024));
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.error().message, HasSubstr(path_));
  EXPECT_THAT(status.error().message, HasSubstr("No space left on device"));

  EXPECT_FALSE(fs::exists(path_ + ".tmp"));
  const auto read = readDurableFile(path_, kMagic);
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_EQ(read.value(), std::optional<std::string>("the previous state"));

  // The space the failed write took is free again: a small write still succeeds.
  write("the next state");
  const auto next = readDurableFile(path_, kMagic);
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next.value(), std::optional<std::string>("the next state"));
}

}  // namespace
}  // namespace kvm_amf
