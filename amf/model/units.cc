#include "kvm_amf/amf/model/units.h"

#include <array>
#include <charconv>
#include <cstdint>
#include <utility>

namespace kvm_amf::model {
namespace {

// Splits "123.5xy" into its digits-with-optional-fraction and its unit; nullopt when malformed.
struct Quantity {
  std::uint64_t whole = 0;
  std::uint64_t fraction = 0;       // digits after the point, as an integer
  std::uint64_t fractionScale = 1;  // 10^(number of fraction digits)
  std::string_view unit;
};

std::optional<Quantity> splitQuantity(std::string_view text) {
  Quantity q;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  if (begin == end || *begin < '0' || *begin > '9') return std::nullopt;
  auto [p, ec] = std::from_chars(begin, end, q.whole);
  if (ec != std::errc()) return std::nullopt;
  if (p != end && *p == '.') {
    ++p;
    const char* digits = p;
    while (p != end && *p >= '0' && *p <= '9') {
      if (q.fractionScale > 1'000'000'000) return std::nullopt;
      q.fraction = q.fraction * 10 + static_cast<std::uint64_t>(*p - '0');
      q.fractionScale *= 10;
      ++p;
    }
    if (p == digits) return std::nullopt;
  }
  q.unit = std::string_view(p, static_cast<std::size_t>(end - p));
  return q;
}

constexpr std::uint64_t kMaxDurationMs = 1000ULL * 24 * 3600 * 1000;
constexpr std::uint64_t kMaxBytes = 1ULL << 50;

constexpr std::array<std::pair<std::string_view, std::uint64_t>, 4> kDurationUnits = {
    {{"h", 3'600'000}, {"m", 60'000}, {"s", 1'000}, {"ms", 1}}};
constexpr std::array<std::pair<std::string_view, std::uint64_t>, 4> kSizeUnits = {
    {{"Ti", 1ULL << 40}, {"Gi", 1ULL << 30}, {"Mi", 1ULL << 20}, {"Ki", 1ULL << 10}}};

}  // namespace

std::optional<Duration> parseDuration(std::string_view text) {
  auto q = splitQuantity(text);
  if (!q) return std::nullopt;
  for (const auto& [unit, ms] : kDurationUnits) {
    if (q->unit != unit) continue;
    if (q->whole > kMaxDurationMs / ms) return std::nullopt;
    if ((q->fraction * ms) % q->fractionScale != 0) return std::nullopt;  // not whole milliseconds
    std::uint64_t total = q->whole * ms + q->fraction * ms / q->fractionScale;
    if (total > kMaxDurationMs) return std::nullopt;
    return Duration(static_cast<Duration::rep>(total));
  }
  return std::nullopt;
}

std::string formatDuration(Duration d) {
  auto ms = static_cast<std::uint64_t>(d.count());
  for (const auto& [unit, scale] : kDurationUnits) {
    if (ms != 0 && ms % scale == 0) return std::to_string(ms / scale) + std::string(unit);
  }
  return std::to_string(ms) + "ms";
}

std::optional<Bytes> parseBytes(std::string_view text) {
  auto q = splitQuantity(text);
  if (!q || q->fractionScale != 1) return std::nullopt;
  std::uint64_t scale = 1;
  if (!q->unit.empty()) {
    scale = 0;
    for (const auto& [unit, s] : kSizeUnits) {
      if (q->unit == unit) scale = s;
    }
    if (scale == 0) return std::nullopt;
  }
  if (q->whole > kMaxBytes / scale) return std::nullopt;
  return q->whole * scale;
}

std::string formatBytes(Bytes b) {
  for (const auto& [unit, scale] : kSizeUnits) {
    if (b != 0 && b % scale == 0) return std::to_string(b / scale) + std::string(unit);
  }
  return std::to_string(b);
}

}  // namespace kvm_amf::model
