// Reading Prometheus's text format in tests: a sample's value by name and labels.
#pragma once

#include <map>
#include <optional>
#include <sstream>
#include <string>

namespace kvm_amf::monitor::testing {

using LabelSet = std::map<std::string, std::string>;

// Parses `{a="x",b="y"}` (values without escaped quotes, as the tests' names have none).
inline LabelSet parseLabels(const std::string& text) {
  LabelSet labels;
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t equals = text.find('=', at);
    if (equals == std::string::npos) break;
    const std::size_t open = equals + 1;  // the quote
    const std::size_t close = text.find('"', open + 1);
    labels[text.substr(at, equals - at)] = text.substr(open + 1, close - open - 1);
    at = close + 2;  // past the quote and the comma
  }
  return labels;
}

// The value of the first sample named `name` whose labels include `labels`; nullopt if none.
inline std::optional<double> valueOf(const std::string& text, const std::string& name, const LabelSet& labels = {}) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const std::size_t brace = line.find('{');
    const std::size_t space = line.rfind(' ');
    const std::string sampleName = line.substr(0, brace != std::string::npos && brace < space ? brace : space);
    if (sampleName != name) continue;
    LabelSet have;
    if (brace != std::string::npos && brace < space) {
      have = parseLabels(line.substr(brace + 1, line.rfind('}') - brace - 1));
    }
    bool match = true;
    for (const auto& [key, value] : labels) {
      auto it = have.find(key);
      match = match && it != have.end() && it->second == value;
    }
    if (match) return std::stod(line.substr(space + 1));
  }
  return std::nullopt;
}

}  // namespace kvm_amf::monitor::testing
