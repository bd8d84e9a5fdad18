// Checks on the typed configuration as a whole: names, references, cycles, clashes, model counts.
// Private to amf/config. Reports through the source map, so every error names its file and line.
#pragma once

#include <string>
#include <vector>

#include "kvm_amf/amf/config/diagnostic.h"
#include "kvm_amf/amf/model/config.h"
#include "source_map.h"

namespace kvm_amf::config {

// Where the loaded documents came from: the root path of each Cluster document read (the first
// one is the configuration's cluster), and of each ServiceGroup document, in
// Configuration::serviceGroups order.
struct Provenance {
  SourceMap where;
  std::vector<std::string> clusterPaths;
  std::vector<std::string> serviceGroupPaths;
};

// Appends every problem found. Values the reader already rejected are left as defaults (or empty
// names), and checks skip empty names so one mistake is reported once.
void validate(const model::Configuration& config, const Provenance& provenance, Diagnostics& errors);

}  // namespace kvm_amf::config
