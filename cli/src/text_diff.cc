#include "text_diff.h"

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <vector>

namespace kvm_amf::cli {
namespace {

constexpr std::size_t kMaxPairs = 4'000'000;  // bounds the longest-common-subsequence table (16 MB)

struct Edit {
  char op;  // ' ' kept, '-' removed, '+' added
  std::string_view line;
};

std::vector<std::string_view> linesOf(const std::string& text) {
  std::vector<std::string_view> lines;
  std::string_view rest = text;
  while (!rest.empty()) {
    const std::size_t end = rest.find('\n');
    lines.push_back(rest.substr(0, end));
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end + 1);
  }
  return lines;
}

// The shortest edit script by the longest common subsequence of the lines between the common
// prefix and suffix.
std::vector<Edit> editScript(const std::vector<std::string_view>& a, const std::vector<std::string_view>& b) {
  std::size_t prefix = 0;
  while (prefix < a.size() && prefix < b.size() && a[prefix] == b[prefix]) ++prefix;
  std::size_t suffix = 0;
  while (suffix < a.size() - prefix && suffix < b.size() - prefix &&
         a[a.size() - 1 - suffix] == b[b.size() - 1 - suffix]) {
    ++suffix;
  }
  std::vector<Edit> edits;
  for (std::size_t i = 0; i < prefix; ++i) edits.push_back({' ', a[i]});
  const std::size_t n = a.size() - prefix - suffix;
  const std::size_t m = b.size() - prefix - suffix;
  auto x = [&](std::size_t i) { return a[prefix + i]; };
  auto y = [&](std::size_t j) { return b[prefix + j]; };
  if (n != 0 && m != 0 && n * m <= kMaxPairs) {
    // common[i][j]: the longest common subsequence of x[i..] and y[j..].
    std::vector<std::uint32_t> common((n + 1) * (m + 1), 0);
    auto at = [&](std::size_t i, std::size_t j) -> std::uint32_t& { return common[i * (m + 1) + j]; };
    for (std::size_t i = n; i-- > 0;) {
      for (std::size_t j = m; j-- > 0;) {
        at(i, j) = x(i) == y(j) ? at(i + 1, j + 1) + 1 : std::max(at(i + 1, j), at(i, j + 1));
      }
    }
    std::size_t i = 0;
    std::size_t j = 0;
    while (i < n && j < m) {
      if (x(i) == y(j)) {
        edits.push_back({' ', x(i)});
        ++i;
        ++j;
      } else if (at(i + 1, j) >= at(i, j + 1)) {
        edits.push_back({'-', x(i++)});
      } else {
        edits.push_back({'+', y(j++)});
      }
    }
    for (; i < n; ++i) edits.push_back({'-', x(i)});
    for (; j < m; ++j) edits.push_back({'+', y(j)});
  } else {
    for (std::size_t i = 0; i < n; ++i) edits.push_back({'-', x(i)});
    for (std::size_t j = 0; j < m; ++j) edits.push_back({'+', y(j)});
  }
  for (std::size_t i = a.size() - suffix; i < a.size(); ++i) edits.push_back({' ', a[i]});
  return edits;
}

// "-3,4" as a hunk header writes a range of `count` lines after line `before` (0-based count of
// the lines that come first): the first line's number, or the line before an empty range.
std::string range(char side, std::size_t before, std::size_t count) {
  return std::string(1, side) + std::to_string(count == 0 ? before : before + 1) + "," + std::to_string(count);
}

}  // namespace

std::string unifiedDiff(const std::string& before, const std::string& after, int context) {
  const std::vector<std::string_view> a = linesOf(before);
  const std::vector<std::string_view> b = linesOf(after);
  const std::vector<Edit> edits = editScript(a, b);
  const std::size_t around = static_cast<std::size_t>(std::max(context, 0));
  // Lines of each text before each edit.
  std::vector<std::size_t> lineA(edits.size() + 1, 0);
  std::vector<std::size_t> lineB(edits.size() + 1, 0);
  for (std::size_t k = 0; k < edits.size(); ++k) {
    lineA[k + 1] = lineA[k] + (edits[k].op != '+' ? 1 : 0);
    lineB[k + 1] = lineB[k] + (edits[k].op != '-' ? 1 : 0);
  }
  std::string out;
  std::size_t k = 0;
  while (k < edits.size()) {
    while (k < edits.size() && edits[k].op == ' ') ++k;
    if (k == edits.size()) break;
    // A hunk runs from `around` lines before its first change to `around` lines after its last;
    // changes with at most 2 x `around` unchanged lines between them share one.
    const std::size_t start = k >= around ? k - around : 0;
    std::size_t last = k;
    for (std::size_t next = k; next < edits.size(); ++next) {
      if (edits[next].op != ' ') {
        last = next;
      } else if (next - last > 2 * around) {
        break;
      }
    }
    const std::size_t end = std::min(edits.size(), last + around + 1);
    out += "@@ " + range('-', lineA[start], lineA[end] - lineA[start]) + " " +
           range('+', lineB[start], lineB[end] - lineB[start]) + " @@\n";
    for (std::size_t i = start; i < end; ++i) {
      out += edits[i].op;
      out += edits[i].line;
      out += '\n';
    }
    k = end;
  }
  return out;
}

}  // namespace kvm_amf::cli
