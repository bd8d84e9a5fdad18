// Loading and validating configuration documents (`Cluster`, `ServiceGroup`; docs/configuration.md).
// The only part of kvm-amf that reads YAML (parsed by libyaml; yaml-cpp only emits it). Pure: no
// clock, no I/O except loadConfigurationFiles.
#pragma once

#include <string>
#include <vector>

#include "kvm_amf/amf/config/diagnostic.h"
#include "kvm_amf/amf/model/config.h"

namespace kvm_amf::config {

// One file's worth of YAML text. `name` is what diagnostics call it.
struct Source {
  std::string name;
  std::string text;
};

// Bounds that keep hostile input from costing more than a bounded amount of time and memory.
struct LoadLimits {
  std::size_t maxSourceBytes = 4 << 20;  // per source
  std::size_t maxValues = 500'000;       // YAML values visited per load, aliases counted each time
};

struct LoadResult {
  model::Configuration config;  // meaningful only when ok()
  Diagnostics errors;           // every error found, in file order
  bool ok() const { return errors.empty(); }
};

// Parses every document of every source, fills defaults, and checks the whole set: types, ranges,
// unknown keys, names, references, dependency cycles, address clashes, redundancy counts.
// Cross-references to nodes and node groups are checked only when a Cluster document is present.
// Judges the documents only: no host path is looked at.
LoadResult loadConfiguration(const std::vector<Source>& sources, const LoadLimits& limits = {});

// Reads the files, then loadConfiguration. An unreadable or oversized file is a diagnostic.
LoadResult loadConfigurationFiles(const std::vector<std::string>& paths, const LoadLimits& limits = {});

}  // namespace kvm_amf::config
