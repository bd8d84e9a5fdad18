#include "kvm_amf/amf/model/units.h"

#include <gtest/gtest.h>

namespace kvm_amf::model {
namespace {

using std::chrono::milliseconds;

TEST(Units, ParsesDurationsWithEveryUnit) {
  EXPECT_EQ(parseDuration("300ms"), milliseconds(300));
  EXPECT_EQ(parseDuration("5s"), milliseconds(5000));
  EXPECT_EQ(parseDuration("10m"), milliseconds(600000));
  EXPECT_EQ(parseDuration("1h"), milliseconds(3600000));
  EXPECT_EQ(parseDuration("1.5s"), milliseconds(1500));
  EXPECT_EQ(parseDuration("0ms"), milliseconds(0));
}

TEST(Units, RejectsMalformedDurations) {
  for (const char* bad : {"", "5", "s", "5 s", "-5s", "5sec", "1.0005s", "0.5ms", "5.s", ".5s", "99999999999999999999h",
                          "24001h", "1e3ms"}) {
    EXPECT_EQ(parseDuration(bad), std::nullopt) << bad;
  }
}

TEST(Units, FormatsDurationsInTheLargestExactUnit) {
  EXPECT_EQ(formatDuration(milliseconds(300)), "300ms");
  EXPECT_EQ(formatDuration(milliseconds(2000)), "2s");
  EXPECT_EQ(formatDuration(milliseconds(1500)), "1500ms");
  EXPECT_EQ(formatDuration(milliseconds(600000)), "10m");
  EXPECT_EQ(formatDuration(milliseconds(7200000)), "2h");
  EXPECT_EQ(formatDuration(milliseconds(0)), "0ms");
}

TEST(Units, ParsesAndFormatsSizes) {
  EXPECT_EQ(parseBytes("512Mi"), 512ULL << 20);
  EXPECT_EQ(parseBytes("2Gi"), 2ULL << 30);
  EXPECT_EQ(parseBytes("4096"), 4096ULL);
  EXPECT_EQ(parseBytes("1Ki"), 1024ULL);
  EXPECT_EQ(formatBytes(512ULL << 20), "512Mi");
  EXPECT_EQ(formatBytes(1ULL << 40), "1Ti");
  EXPECT_EQ(formatBytes(1000), "1000");
  for (const char* bad : {"", "Mi", "1.5Gi", "512M", "512MB", "-1", "2048Ti", "1 Gi", "0x10"}) {
    EXPECT_EQ(parseBytes(bad), std::nullopt) << bad;
  }
}

}  // namespace
}  // namespace kvm_amf::model
