// YAML text as a tree of located values, built from libyaml's parser events. libyaml is the
// hardened parser (yaml-cpp 0.7 loops forever on some valid and invalid input); the tree keeps
// every value's line and column for diagnostics. Private to amf/config.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvm_amf/amf/config/diagnostic.h"

namespace kvm_amf::config {

struct YamlValue;
using YamlRef = std::shared_ptr<const YamlValue>;  // shared: an alias is its anchor's value

struct YamlValue {
  enum class Kind { kNull, kScalar, kSequence, kMap };
  Kind kind = Kind::kNull;
  std::string text;                                  // kScalar
  std::vector<YamlRef> items;                        // kSequence
  std::vector<std::pair<YamlRef, YamlRef>> entries;  // kMap, in document order (duplicates kept)
  int line = 1;                                      // 1-based
  int column = 1;
};

struct YamlLimits {
  int maxDepth = 64;                // nested maps and lists; configurations need about 12
  std::size_t maxAliases = 10'000;  // alias uses per source
};

struct ParsedYaml {
  std::vector<YamlRef> documents;   // empty documents are kNull values
  std::optional<Diagnostic> error;  // set: the text is not well-formed YAML within the limits
};

// Parses every document of `text`. An alias must name an anchor whose value is complete, so
// values never contain themselves.
ParsedYaml parseYaml(const std::string& name, const std::string& text, const YamlLimits& limits = {});

}  // namespace kvm_amf::config
