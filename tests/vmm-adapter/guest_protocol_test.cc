#include "kvm_amf/vmm/guest_protocol.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kvm_amf::vmm {
namespace {

using ::testing::HasSubstr;

std::string chomp(std::string line) {
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  line.pop_back();
  return line;
}

GuestMessage roundTrip(const GuestMessage& message) {
  auto parsed = parseGuestLine(chomp(formatGuestMessage(message)));
  EXPECT_TRUE(parsed.ok()) << (parsed.ok() ? "" : parsed.error().message);
  return parsed.ok() ? parsed.value() : GuestMessage{};
}

HostMessage roundTrip(const HostMessage& message) {
  auto parsed = parseHostLine(chomp(formatHostMessage(message)));
  EXPECT_TRUE(parsed.ok()) << (parsed.ok() ? "" : parsed.error().message);
  return parsed.ok() ? parsed.value() : HostMessage{};
}

std::string guestError(std::string_view line) {
  auto parsed = parseGuestLine(line);
  EXPECT_FALSE(parsed.ok()) << "parsed: " << line;
  return parsed.ok() ? "" : parsed.error().message;
}

std::string hostError(std::string_view line) {
  auto parsed = parseHostLine(line);
  EXPECT_FALSE(parsed.ok()) << "parsed: " << line;
  return parsed.ok() ? "" : parsed.error().message;
}

TEST(GuestProtocolTest, GuestMessagesRoundTrip) {
  std::vector<GuestMessage> messages = {
      HelloMessage{1, "0.1.0 beta"},
      HeartbeatMessage{1, true, ""},
      HeartbeatMessage{18446744073709551615ULL, false, "disk full: /var"},
      AckMessage{7, true, ""},
      AckMessage{8, false, "exit 3"},
      CheckpointReadMessage{9, "sessions", "user 1"},
      CheckpointWriteMessage{10, "sessions", "s", std::string("\0\x01\xff bytes", 9)},
      CheckpointWriteMessage{11, "n", "s", ""},
  };
  for (const auto& message : messages) EXPECT_EQ(roundTrip(message), message);
}

TEST(GuestProtocolTest, HostMessagesRoundTrip) {
  std::vector<HostMessage> messages = {
      WelcomeMessage{1, 100},
      AssignMessage{1, "si-web", GuestHaState::kActive, {}},
      AssignMessage{2, "safApp=web,si 1", GuestHaState::kStandby, {{"vip", "10.0.0.1/24"}, {"mode", "hot"}}},
      AssignMessage{3, "db", GuestHaState::kQuiesced, {{"x", ""}}},
      RemoveMessage{4, "si-web"},
      CheckpointReplyMessage{5, true, std::nullopt, ""},
      CheckpointReplyMessage{6, true, std::string("abc"), ""},
      CheckpointReplyMessage{7, true, std::string(), ""},
      CheckpointReplyMessage{8, false, std::nullopt, "no such section"},
      ErrorMessage{9, "unsupported"},
  };
  for (const auto& message : messages) EXPECT_EQ(roundTrip(message), message);
}

TEST(GuestProtocolTest, FormatsTheDocumentedLines) {
  EXPECT_EQ(formatGuestMessage(HelloMessage{1, "0.1.0"}), "HELLO 1 0.1.0\n");
  EXPECT_EQ(formatGuestMessage(HeartbeatMessage{5, false, "exit 1"}), "HB 5 fail exit%201\n");
  EXPECT_EQ(formatHostMessage(WelcomeMessage{1, 100}), "WELCOME 1 100\n");
  EXPECT_EQ(formatHostMessage(AssignMessage{3, "si a", GuestHaState::kStandby, {{"k", "v w"}}}),
            "ASSIGN 3 si%20a standby k=v%20w\n");
  EXPECT_EQ(formatHostMessage(RemoveMessage{4, "si"}), "REMOVE 4 si\n");
  EXPECT_EQ(formatHostMessage(ErrorMessage{6, "unsupported"}), "ERR 6 unsupported\n");
  EXPECT_EQ(formatHostMessage(CheckpointReplyMessage{7, true, std::string(), ""}), "CKPT 7 ok -\n");
}

TEST(GuestProtocolTest, AttributesWithSpacesEqualsAndNonAscii) {
  std::map<std::string, std::string> attributes = {
      {"with space", "a b  c"},
      {"a=b", "x=y==z"},
      {"grüße", "日本語 ✓"},
      {"percent%", "100%"},
  };
  AssignMessage message{42, "si ü", GuestHaState::kActive, attributes};
  std::string line = formatHostMessage(message);
  for (char c : line) EXPECT_LT(static_cast<unsigned char>(c), 0x80) << "the wire form is ASCII";
  EXPECT_EQ(std::count(line.begin(), line.end(), ' '), 3 + 4);
  EXPECT_EQ(roundTrip(HostMessage{message}), HostMessage{message});
  // A receiver accepts raw UTF-8 and a literal '=' in the value.
  auto parsed = parseHostLine("ASSIGN 1 si active name=日本=x");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(std::get<AssignMessage>(parsed.value()).attributes.at("name"), "日本=x");
}

TEST(GuestProtocolTest, PercentAndBase64Codings) {
  EXPECT_EQ(percentEncode("a b%=\n"), "a%20b%25%3D%0A");
  EXPECT_EQ(percentDecode("a%20b%2f").value(), "a b/");
  EXPECT_FALSE(percentDecode("%").ok());
  EXPECT_FALSE(percentDecode("a%2").ok());
  EXPECT_FALSE(percentDecode("%zz").ok());
  EXPECT_EQ(base64Encode("f"), "Zg==");
  EXPECT_EQ(base64Encode("fo"), "Zm8=");
  EXPECT_EQ(base64Encode("foo"), "Zm9v");
  EXPECT_EQ(base64Decode("Zm9vYg==").value(), "foob");
  EXPECT_EQ(base64Decode("Zm9vYmE=").value(), "fooba");
  EXPECT_EQ(base64Decode("-").value(), "");
  EXPECT_FALSE(base64Decode("Zm9").ok());
  EXPECT_FALSE(base64Decode("Zm=v").ok());
  EXPECT_FALSE(base64Decode("Z===").ok());
  EXPECT_FALSE(base64Decode("Zm!v").ok());
  EXPECT_FALSE(base64Decode("").ok());
}

TEST(GuestProtocolTest, MalformedGuestLines) {
  EXPECT_THAT(guestError(""), HasSubstr("empty line"));
  EXPECT_THAT(guestError("HELLO"), HasSubstr("missing field"));
  EXPECT_THAT(guestError("HELLO 1"), HasSubstr("missing field"));
  EXPECT_THAT(guestError("HELLO 1 a b"), HasSubstr("extra field"));
  EXPECT_THAT(guestError("HELLO x 1"), HasSubstr("bad number for version"));
  EXPECT_THAT(guestError("HELLO 0 1"), HasSubstr("bad number for version"));
  EXPECT_THAT(guestError("HELLO 1 a%2"), HasSubstr("bad encoding of agent-version"));
  EXPECT_THAT(guestError("hello 1 a"), HasSubstr("unknown verb 'hello'"));
  EXPECT_THAT(guestError("PING 1"), HasSubstr("unknown verb 'PING'"));
  EXPECT_THAT(guestError("WELCOME 1 100"), HasSubstr("unknown verb"));
  EXPECT_THAT(guestError("HB"), HasSubstr("missing field"));
  EXPECT_THAT(guestError("HB 1"), HasSubstr("missing field"));
  EXPECT_THAT(guestError("HB -1 ok"), HasSubstr("bad number for seq"));
  EXPECT_THAT(guestError("HB +1 ok"), HasSubstr("bad number for seq"));
  EXPECT_THAT(guestError("HB 1x ok"), HasSubstr("bad number for seq"));
  EXPECT_THAT(guestError("HB 18446744073709551616 ok"), HasSubstr("bad number for seq"));
  EXPECT_THAT(guestError("HB 1 good"), HasSubstr("bad verdict"));
  EXPECT_THAT(guestError("HB 1 fail a b"), HasSubstr("extra field"));
  EXPECT_THAT(guestError("HB 1 fail %g0"), HasSubstr("bad encoding of reason"));
  EXPECT_THAT(guestError("HB  1 ok"), HasSubstr("empty field"));
  EXPECT_THAT(guestError("HB 1 ok "), HasSubstr("empty field"));
  EXPECT_THAT(guestError(" HB 1 ok"), HasSubstr("empty field"));
  EXPECT_THAT(guestError("HB 1 ok\r"), HasSubstr("control byte"));
  EXPECT_THAT(guestError("HB 1\tok"), HasSubstr("control byte"));
  EXPECT_THAT(guestError("ACK x ok"), HasSubstr("bad number for id"));
  EXPECT_THAT(guestError("ACK 1 maybe"), HasSubstr("bad verdict"));
  EXPECT_THAT(guestError("CKPT-READ 1 n"), HasSubstr("missing field"));
  EXPECT_THAT(guestError("CKPT-READ 1 n s x"), HasSubstr("extra field"));
  EXPECT_THAT(guestError("CKPT-WRITE 1 n s"), HasSubstr("missing field"));
  EXPECT_THAT(guestError("CKPT-WRITE 1 n s abc"), HasSubstr("bad encoding of data"));
  EXPECT_THAT(guestError("CKPT-WRITE 1 n% s Zg=="), HasSubstr("bad encoding of name"));
  EXPECT_THAT(guestError(std::string(kMaxGuestLineBytes, 'A')), HasSubstr("line too long"));
  // The longest line allowed (4095 bytes + '\n') parses.
  std::string longest = "HB 1 fail " + std::string(kMaxGuestLineBytes - 1 - 10, 'r');
  EXPECT_TRUE(parseGuestLine(longest).ok());
}

TEST(GuestProtocolTest, MalformedHostLines) {
  EXPECT_THAT(hostError("WELCOME 1"), HasSubstr("missing field"));
  EXPECT_THAT(hostError("WELCOME 1 0"), HasSubstr("bad number for interval-ms"));
  EXPECT_THAT(hostError("WELCOME 1 3600001"), HasSubstr("bad number for interval-ms"));
  EXPECT_THAT(hostError("WELCOME 1 4294967296"), HasSubstr("bad number for interval-ms"));
  EXPECT_THAT(hostError("WELCOME 1 100 x"), HasSubstr("extra field"));
  EXPECT_THAT(hostError("ASSIGN 1 si"), HasSubstr("missing field"));
  EXPECT_THAT(hostError("ASSIGN 1 si quiescing"), HasSubstr("bad HA state"));
  EXPECT_THAT(hostError("ASSIGN x si active"), HasSubstr("bad number for id"));
  EXPECT_THAT(hostError("ASSIGN 1 si active novalue"), HasSubstr("attribute without '='"));
  EXPECT_THAT(hostError("ASSIGN 1 si active =v"), HasSubstr("empty attribute key"));
  EXPECT_THAT(hostError("ASSIGN 1 si active k=1 k=2"), HasSubstr("duplicate attribute key 'k'"));
  EXPECT_THAT(hostError("ASSIGN 1 si active k=%ZZ"), HasSubstr("bad encoding of attribute value"));
  EXPECT_THAT(hostError("ASSIGN 1 si active %=v"), HasSubstr("bad encoding of attribute key"));
  EXPECT_THAT(hostError("ASSIGN 1 s%i active"), HasSubstr("bad encoding of si"));
  EXPECT_THAT(hostError("REMOVE 1"), HasSubstr("missing field"));
  EXPECT_THAT(hostError("REMOVE 1 a b"), HasSubstr("extra field"));
  EXPECT_THAT(hostError("CKPT 1"), HasSubstr("missing field"));
  EXPECT_THAT(hostError("CKPT 1 fail"), HasSubstr("missing field"));
  EXPECT_THAT(hostError("CKPT 1 ok a b"), HasSubstr("extra field"));
  EXPECT_THAT(hostError("CKPT 1 ok @@@@"), HasSubstr("bad encoding of data"));
  EXPECT_THAT(hostError("CKPT 1 fail a b"), HasSubstr("extra field"));
  EXPECT_THAT(hostError("ERR 1"), HasSubstr("missing field"));
  EXPECT_THAT(hostError("HB 1 ok"), HasSubstr("unknown verb 'HB'"));
}

TEST(GuestProtocolTest, GarbageBytesAreErrorsNotCrashes) {
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes += static_cast<char>(i);
  for (std::size_t length = 0; length < bytes.size(); length += 7) {
    std::string line = bytes.substr(length, 13);
    EXPECT_FALSE(parseGuestLine(line).ok());
    EXPECT_FALSE(parseHostLine(line).ok());
  }
  EXPECT_FALSE(parseGuestLine("\xff\xfe HB 1 ok").ok());
}

std::vector<std::string> drain(GuestLineReader& reader) {
  std::vector<std::string> lines;
  while (auto line = reader.next()) lines.push_back(*line);
  return lines;
}

TEST(GuestLineReaderTest, SplitsLinesAcrossFeeds) {
  GuestLineReader reader;
  reader.feed("HB 1 o");
  EXPECT_TRUE(drain(reader).empty());
  reader.feed("k\nHB 2 ok\nHB");
  EXPECT_THAT(drain(reader), ::testing::ElementsAre("HB 1 ok", "HB 2 ok"));
  reader.feed(" 3 ok\n\n");
  EXPECT_THAT(drain(reader), ::testing::ElementsAre("HB 3 ok", ""));
  EXPECT_EQ(reader.droppedLines(), 0u);
}

TEST(GuestLineReaderTest, DropsOversizedLinesAndKeepsSync) {
  GuestLineReader reader;
  // Over the limit within one feed.
  reader.feed(std::string(5000, 'x') + "\nHB 1 ok\n");
  EXPECT_THAT(drain(reader), ::testing::ElementsAre("HB 1 ok"));
  EXPECT_EQ(reader.droppedLines(), 1u);
  // Over the limit across many feeds, the good line arriving in the same feed as the end.
  for (int i = 0; i < 100; ++i) {
    reader.feed(std::string(1000, 'y'));
    EXPECT_TRUE(drain(reader).empty());
  }
  reader.feed("yyy\nHB 2 ok\n");
  EXPECT_THAT(drain(reader), ::testing::ElementsAre("HB 2 ok"));
  EXPECT_EQ(reader.droppedLines(), 2u);
  // Exactly at the limit: 4095 bytes and '\n' is kept; 4096 and '\n' is dropped.
  reader.feed(std::string(kMaxGuestLineBytes - 1, 'a') + "\n");
  reader.feed(std::string(kMaxGuestLineBytes, 'b') + "\n");
  reader.feed("HB 3 ok\n");
  auto lines = drain(reader);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].size(), kMaxGuestLineBytes - 1);
  EXPECT_EQ(lines[1], "HB 3 ok");
  EXPECT_EQ(reader.droppedLines(), 3u);
  EXPECT_TRUE(parseGuestLine(lines[1]).ok());
}

TEST(GuestLineReaderTest, FeedingWithoutReadingWhileDiscardingStaysBounded) {
  GuestLineReader reader(16);
  reader.feed(std::string(20, 'z'));
  EXPECT_FALSE(reader.next());
  EXPECT_EQ(reader.droppedLines(), 1u);
  for (int i = 0; i < 10; ++i) reader.feed(std::string(100, 'z'));
  reader.feed("\nok\n");
  EXPECT_THAT(drain(reader), ::testing::ElementsAre("ok"));
  EXPECT_EQ(reader.droppedLines(), 1u);
}

TEST(GuestLineReaderTest, ResetDropsAPartialLine) {
  GuestLineReader reader;
  reader.feed("HB 1");
  reader.reset();
  reader.feed("HB 2 ok\n");
  EXPECT_THAT(drain(reader), ::testing::ElementsAre("HB 2 ok"));
}

}  // namespace
}  // namespace kvm_amf::vmm
