#include "kvm_amf/vmm/guest_protocol.h"

#include <charconv>
#include <vector>

namespace kvm_amf::vmm {
namespace {

template <typename... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <typename... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

Error fail(std::string_view verb, std::string what) {
  return Error{verb.empty() ? what : std::string(verb) + ": " + what};
}

bool isUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == '.' || c == '~' || c == '/' || c == ':' || c == '@' || c == '+' || c == ',';
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr std::string_view kBase64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Splits a line into its fields, checking the line-level rules.
Result<std::vector<std::string_view>> splitLine(std::string_view line) {
  if (line.size() + 1 > kMaxGuestLineBytes) {
    return Error{"line too long: " + std::to_string(line.size() + 1) + " bytes, at most " +
                 std::to_string(kMaxGuestLineBytes)};
  }
  if (line.empty()) return Error{"empty line"};
  for (std::size_t i = 0; i < line.size(); ++i) {
    auto c = static_cast<unsigned char>(line[i]);
    if (c < 0x20 || c == 0x7f) return Error{"control byte " + std::to_string(c) + " at " + std::to_string(i)};
  }
  std::vector<std::string_view> fields;
  std::size_t start = 0;
  while (true) {
    std::size_t space = line.find(' ', start);
    std::string_view field = line.substr(start, space == std::string_view::npos ? line.npos : space - start);
    if (field.empty()) return Error{"empty field " + std::to_string(fields.size() + 1) + " (extra space)"};
    fields.push_back(field);
    if (space == std::string_view::npos) break;
    start = space + 1;
  }
  return fields;
}

template <typename T>
Result<T> parseNumber(std::string_view verb, std::string_view what, std::string_view text) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || text[0] == '+' || text[0] == '-') {
    return fail(verb, "bad number for " + std::string(what) + ": '" + std::string(text) + "'");
  }
  return value;
}

Result<std::string> parseText(std::string_view verb, std::string_view what, std::string_view text) {
  auto decoded = percentDecode(text);
  if (!decoded) return fail(verb, "bad encoding of " + std::string(what) + ": " + decoded.error().message);
  return std::move(decoded).value();
}

Result<bool> parseVerdict(std::string_view verb, std::string_view text) {
  if (text == "ok") return true;
  if (text == "fail") return false;
  return fail(verb, "bad verdict '" + std::string(text) + "' (ok or fail)");
}

// Checks the field count: `required` fields after the verb, up to `optional` more.
Status checkFields(const std::vector<std::string_view>& fields, std::size_t required, std::size_t optional,
                   const char* names) {
  std::size_t given = fields.size() - 1;
  if (given < required) return fail(fields[0], std::string("missing field (") + names + ")");
  if (given > required + optional) return fail(fields[0], std::string("extra field (") + names + ")");
  return Status::success();
}

Result<GuestMessage> parseGuestFields(const std::vector<std::string_view>& f) {
  std::string_view verb = f[0];
  if (verb == "HELLO") {
    if (auto s = checkFields(f, 2, 0, "version agent-version"); !s) return s.error();
    auto version = parseNumber<std::uint32_t>(verb, "version", f[1]);
    if (!version) return version.error();
    if (version.value() == 0) return fail(verb, "bad number for version: 0");
    auto agent = parseText(verb, "agent-version", f[2]);
    if (!agent) return agent.error();
    return GuestMessage{HelloMessage{version.value(), std::move(agent).value()}};
  }
  if (verb == "HB" || verb == "ACK") {
    if (auto s = checkFields(f, 2, 1, verb == "HB" ? "seq ok|fail [reason]" : "id ok|fail [reason]"); !s) {
      return s.error();
    }
    auto number = parseNumber<std::uint64_t>(verb, verb == "HB" ? "seq" : "id", f[1]);
    if (!number) return number.error();
    auto verdict = parseVerdict(verb, f[2]);
    if (!verdict) return verdict.error();
    std::string reason;
    if (f.size() > 3) {
      auto decoded = parseText(verb, "reason", f[3]);
      if (!decoded) return decoded.error();
      reason = std::move(decoded).value();
    }
    if (verb == "HB") return GuestMessage{HeartbeatMessage{number.value(), verdict.value(), std::move(reason)}};
    return GuestMessage{AckMessage{number.value(), verdict.value(), std::move(reason)}};
  }
  if (verb == "CKPT-READ" || verb == "CKPT-WRITE") {
    bool write = verb == "CKPT-WRITE";
    if (auto s = checkFields(f, write ? 4 : 3, 0, write ? "id name section data" : "id name section"); !s) {
      return s.error();
    }
    auto id = parseNumber<std::uint64_t>(verb, "id", f[1]);
    if (!id) return id.error();
    auto name = parseText(verb, "name", f[2]);
    if (!name) return name.error();
    auto section = parseText(verb, "section", f[3]);
    if (!section) return section.error();
    if (!write) {
      return GuestMessage{CheckpointReadMessage{id.value(), std::move(name).value(), std::move(section).value()}};
    }
    auto data = base64Decode(f[4]);
    if (!data) return fail(verb, "bad encoding of data: " + data.error().message);
    return GuestMessage{CheckpointWriteMessage{id.value(), std::move(name).value(), std::move(section).value(),
                                               std::move(data).value()}};
  }
  return Error{"unknown verb '" + std::string(verb) + "'"};
}

Result<GuestHaState> parseHaState(std::string_view verb, std::string_view text) {
  if (text == "active") return GuestHaState::kActive;
  if (text == "standby") return GuestHaState::kStandby;
  if (text == "quiesced") return GuestHaState::kQuiesced;
  return fail(verb, "bad HA state '" + std::string(text) + "' (active, standby or quiesced)");
}

Result<HostMessage> parseHostFields(const std::vector<std::string_view>& f) {
  std::string_view verb = f[0];
  if (verb == "WELCOME") {
    if (auto s = checkFields(f, 2, 0, "version interval-ms"); !s) return s.error();
    auto version = parseNumber<std::uint32_t>(verb, "version", f[1]);
    if (!version) return version.error();
    if (version.value() == 0) return fail(verb, "bad number for version: 0");
    auto interval = parseNumber<std::uint32_t>(verb, "interval-ms", f[2]);
    if (!interval) return interval.error();
    if (interval.value() == 0 || interval.value() > kMaxHeartbeatIntervalMs) {
      return fail(verb, "bad number for interval-ms: " + std::string(f[2]) + " (1.." +
                            std::to_string(kMaxHeartbeatIntervalMs) + ")");
    }
    return HostMessage{WelcomeMessage{version.value(), interval.value()}};
  }
  if (verb == "ASSIGN") {
    if (f.size() < 4) return fail(verb, "missing field (id si active|standby|quiesced [key=value ...])");
    auto id = parseNumber<std::uint64_t>(verb, "id", f[1]);
    if (!id) return id.error();
    auto si = parseText(verb, "si", f[2]);
    if (!si) return si.error();
    auto state = parseHaState(verb, f[3]);
    if (!state) return state.error();
    AssignMessage message{id.value(), std::move(si).value(), state.value(), {}};
    for (std::size_t i = 4; i < f.size(); ++i) {
      std::size_t eq = f[i].find('=');
      if (eq == std::string_view::npos) return fail(verb, "attribute without '=': '" + std::string(f[i]) + "'");
      auto key = parseText(verb, "attribute key", f[i].substr(0, eq));
      if (!key) return key.error();
      if (key.value().empty()) return fail(verb, "empty attribute key");
      auto value = parseText(verb, "attribute value", f[i].substr(eq + 1));
      if (!value) return value.error();
      auto [where, inserted] = message.attributes.emplace(std::move(key).value(), std::move(value).value());
      if (!inserted) return fail(verb, "duplicate attribute key '" + where->first + "'");
    }
    return HostMessage{std::move(message)};
  }
  if (verb == "REMOVE") {
    if (auto s = checkFields(f, 2, 0, "id si"); !s) return s.error();
    auto id = parseNumber<std::uint64_t>(verb, "id", f[1]);
    if (!id) return id.error();
    auto si = parseText(verb, "si", f[2]);
    if (!si) return si.error();
    return HostMessage{RemoveMessage{id.value(), std::move(si).value()}};
  }
  if (verb == "CKPT") {
    if (f.size() < 3) return fail(verb, "missing field (id ok [data] | id fail reason)");
    auto id = parseNumber<std::uint64_t>(verb, "id", f[1]);
    if (!id) return id.error();
    auto verdict = parseVerdict(verb, f[2]);
    if (!verdict) return verdict.error();
    CheckpointReplyMessage reply{id.value(), verdict.value(), std::nullopt, {}};
    if (verdict.value()) {
      if (auto s = checkFields(f, 2, 1, "id ok [data]"); !s) return s.error();
      if (f.size() > 3) {
        auto data = base64Decode(f[3]);
        if (!data) return fail(verb, "bad encoding of data: " + data.error().message);
        reply.data = std::move(data).value();
      }
    } else {
      if (auto s = checkFields(f, 3, 0, "id fail reason"); !s) return s.error();
      auto reason = parseText(verb, "reason", f[3]);
      if (!reason) return reason.error();
      reply.reason = std::move(reason).value();
    }
    return HostMessage{std::move(reply)};
  }
  if (verb == "ERR") {
    if (auto s = checkFields(f, 2, 0, "id reason"); !s) return s.error();
    auto id = parseNumber<std::uint64_t>(verb, "id", f[1]);
    if (!id) return id.error();
    auto reason = parseText(verb, "reason", f[2]);
    if (!reason) return reason.error();
    return HostMessage{ErrorMessage{id.value(), std::move(reason).value()}};
  }
  return Error{"unknown verb '" + std::string(verb) + "'"};
}

std::string verdict(bool ok) { return ok ? "ok" : "fail"; }

std::string withReason(std::string line, const std::string& reason) {
  if (!reason.empty()) line += " " + percentEncode(reason);
  return line + "\n";
}

std::string dataField(const std::string& data) { return data.empty() ? "-" : base64Encode(data); }

}  // namespace

std::string_view guestHaStateName(GuestHaState state) {
  switch (state) {
    case GuestHaState::kActive:
      return "active";
    case GuestHaState::kStandby:
      return "standby";
    case GuestHaState::kQuiesced:
      return "quiesced";
  }
  return "?";
}

std::string percentEncode(std::string_view bytes) {
  static constexpr std::string_view kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(bytes.size());
  for (char ch : bytes) {
    auto c = static_cast<unsigned char>(ch);
    if (isUnreserved(c)) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

Result<std::string> percentDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) return Error{"'%' at " + std::to_string(i) + " without two hex digits"};
    int high = hexValue(text[i + 1]);
    int low = hexValue(text[i + 2]);
    if (high < 0 || low < 0) return Error{"'%' at " + std::to_string(i) + " without two hex digits"};
    out += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return out;
}

std::string base64Encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    std::uint32_t n = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) n |= static_cast<unsigned char>(bytes[i + 2]);
    out += kBase64[(n >> 18) & 63];
    out += kBase64[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? kBase64[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kBase64[n & 63] : '=';
  }
  return out;
}

Result<std::string> base64Decode(std::string_view text) {
  if (text == "-") return std::string();
  if (text.empty() || text.size() % 4 != 0) return Error{"base64 length " + std::to_string(text.size())};
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    std::uint32_t n = 0;
    int padding = 0;
    for (std::size_t j = 0; j < 4; ++j) {
      char c = text[i + j];
      bool last = i + 4 == text.size();
      if (c == '=' && last && j >= 2 && (j == 3 || text[i + 3] == '=')) {
        ++padding;
        n <<= 6;
        continue;
      }
      std::size_t value = kBase64.find(c);
      if (value == std::string_view::npos || padding > 0) {
        return Error{"bad base64 byte at " + std::to_string(i + j)};
      }
      n = (n << 6) | static_cast<std::uint32_t>(value);
    }
    out += static_cast<char>((n >> 16) & 0xff);
    if (padding < 2) out += static_cast<char>((n >> 8) & 0xff);
    if (padding < 1) out += static_cast<char>(n & 0xff);
  }
  return out;
}

Result<GuestMessage> parseGuestLine(std::string_view line) {
  auto fields = splitLine(line);
  if (!fields) return fields.error();
  return parseGuestFields(fields.value());
}

Result<HostMessage> parseHostLine(std::string_view line) {
  auto fields = splitLine(line);
  if (!fields) return fields.error();
  return parseHostFields(fields.value());
}

std::string formatGuestMessage(const GuestMessage& message) {
  return std::visit(
      Overloaded{
          [](const HelloMessage& m) {
            return "HELLO " + std::to_string(m.version) + " " + percentEncode(m.agentVersion) + "\n";
          },
          [](const HeartbeatMessage& m) {
            return withReason("HB " + std::to_string(m.seq) + " " + verdict(m.healthy), m.reason);
          },
          [](const AckMessage& m) { return withReason("ACK " + std::to_string(m.id) + " " + verdict(m.ok), m.reason); },
          [](const CheckpointReadMessage& m) {
            return "CKPT-READ " + std::to_string(m.id) + " " + percentEncode(m.name) + " " + percentEncode(m.section) +
                   "\n";
          },
          [](const CheckpointWriteMessage& m) {
            return "CKPT-WRITE " + std::to_string(m.id) + " " + percentEncode(m.name) + " " + percentEncode(m.section) +
                   " " + dataField(m.data) + "\n";
          },
      },
      message);
}

std::string formatHostMessage(const HostMessage& message) {
  return std::visit(
      Overloaded{
          [](const WelcomeMessage& m) {
            return "WELCOME " + std::to_string(m.version) + " " + std::to_string(m.intervalMs) + "\n";
          },
          [](const AssignMessage& m) {
            std::string line = "ASSIGN " + std::to_string(m.id) + " " + percentEncode(m.si) + " " +
                               std::string(guestHaStateName(m.state));
            for (const auto& [key, value] : m.attributes) {
              line += " " + percentEncode(key) + "=" + percentEncode(value);
            }
            return line + "\n";
          },
          [](const RemoveMessage& m) { return "REMOVE " + std::to_string(m.id) + " " + percentEncode(m.si) + "\n"; },
          [](const CheckpointReplyMessage& m) {
            std::string line = "CKPT " + std::to_string(m.id) + " " + verdict(m.ok);
            if (m.ok) {
              if (m.data) line += " " + dataField(*m.data);
              return line + "\n";
            }
            return line + " " + percentEncode(m.reason) + "\n";
          },
          [](const ErrorMessage& m) { return "ERR " + std::to_string(m.id) + " " + percentEncode(m.reason) + "\n"; },
      },
      message);
}

void GuestLineReader::feed(std::string_view bytes) {
  if (discarding_) {
    std::size_t newline = bytes.find('\n');
    if (newline == std::string_view::npos) return;
    discarding_ = false;
    bytes.remove_prefix(newline + 1);
  }
  if (start_ > 0 && start_ * 2 >= buffer_.size()) {
    buffer_.erase(0, start_);
    start_ = 0;
  }
  buffer_.append(bytes);
}

std::optional<std::string> GuestLineReader::next() {
  while (true) {
    if (discarding_) {
      std::size_t newline = buffer_.find('\n', start_);
      if (newline == std::string::npos) {
        buffer_.clear();
        start_ = 0;
        return std::nullopt;
      }
      discarding_ = false;
      start_ = newline + 1;
      continue;
    }
    std::size_t newline = buffer_.find('\n', start_);
    if (newline == std::string::npos) {
      if (buffer_.size() - start_ >= maxLineBytes_) {
        // Already at the limit without '\n': the line is too long, whatever follows.
        ++droppedLines_;
        discarding_ = true;
        buffer_.clear();
        start_ = 0;
      }
      return std::nullopt;
    }
    std::size_t length = newline - start_ + 1;
    std::size_t begin = start_;
    start_ = newline + 1;
    if (length > maxLineBytes_) {
      ++droppedLines_;
      continue;
    }
    return buffer_.substr(begin, length - 1);
  }
}

void GuestLineReader::reset() {
  buffer_.clear();
  start_ = 0;
  discarding_ = false;
}

}  // namespace kvm_amf::vmm
