// Declarative changes to a running configuration, as `amf-admin apply` and `diff` make them (in
// the manner of kubectl): the documents given replace those of the same kind and name, or are
// added; the documents not given stay. The running configuration takes part as its canonical
// documents (serialize.h) in a source of its own, so every problem of the result is reported as
// FILE:LINE:COLUMN, in the operator's files or in "(running configuration)".
#pragma once

#include <compare>
#include <string>
#include <string_view>
#include <vector>

#include "kvm_amf/amf/config/loader.h"
#include "kvm_amf/amf/model/config.h"

namespace kvm_amf::config {

// What the running configuration's documents are called in diagnostics.
inline constexpr std::string_view kRunningConfigurationName = "(running configuration)";

// A document's identity: its kind ("Cluster", "ServiceGroup") and metadata.name.
struct DocumentKey {
  std::string kind;
  std::string name;
  auto operator<=>(const DocumentKey&) const = default;
};

// The documents `sources` define, in order, as far as they can be told: a document that does not
// parse, or names no kind or no name, is left out (loading it reports why).
std::vector<DocumentKey> documentKeys(const std::vector<Source>& sources);

// Loads `changes` onto `running`: running's documents, less those `changes` define and those in
// `removed`, are loaded after the changes as one more source, kRunningConfigurationName. A Cluster
// document replaces the running one whatever its name (a configuration has one). Service groups
// keep running's order; new ones follow in the order of `changes`. REQUIRES: running was loaded.
LoadResult loadOnto(const model::Configuration& running, const std::vector<Source>& changes,
                    const std::vector<DocumentKey>& removed = {});

// One document that differs between two configurations, with its canonical YAML on each side.
struct DocumentChange {
  enum class Kind { kAdded, kChanged, kRemoved };
  DocumentKey key;
  Kind change = Kind::kChanged;
  std::string before;  // the document as it was; empty when added
  std::string after;   // the document as it becomes; empty when removed

  std::string object() const;           // "sg/web", "cluster/lab"
  std::string_view changeWord() const;  // "added", "changed", "removed"
  bool operator==(const DocumentChange&) const = default;
};

// The documents that differ from `before` to `after`: the Cluster first (compared whatever their
// names), then the service groups by name.
std::vector<DocumentChange> compareConfigurations(const model::Configuration& before,
                                                  const model::Configuration& after);

// "sg/web added, sg/mme changed"; "" for none.
std::string summarize(const std::vector<DocumentChange>& changes);

}  // namespace kvm_amf::config
