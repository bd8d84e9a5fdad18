// Loading `amf-sim` scenario files (spec: interfaces.md section 3; model: model/scenario.h) together
// with the configuration they name. Pure except for reading files: no clock.
#pragma once

#include <string>
#include <string_view>

#include "kvm_amf/amf/config/diagnostic.h"
#include "kvm_amf/amf/config/loader.h"
#include "kvm_amf/amf/model/config.h"
#include "kvm_amf/amf/model/scenario.h"

namespace kvm_amf::config {

struct ScenarioLoadResult {
  model::Scenario scenario;     // meaningful only when ok()
  model::Configuration config;  // the configuration its `config:` files declare; meaningful only when ok()
  Diagnostics errors;           // every error, FILE:LINE:COLUMN, the scenario's first, then its config files'
  bool ok() const { return errors.empty(); }
};

// Reads the scenario, loads the configuration files it lists (with loadConfigurationFiles, their
// diagnostics kept as they are, except that a file that cannot be read is reported at its entry in
// `config:`), and checks that every node, VM, unit, instance, group and node group a step or an
// expectation names exists in that configuration, and that it has a Cluster document. Names are
// checked only when the configuration itself loaded without error. `scenario.config` holds the
// paths as resolved against `baseDir` (absolute paths are kept); steps are sorted by `at`, stable.
ScenarioLoadResult loadScenario(const Source& scenario, const std::string& baseDir);

// Reads `path` (an unreadable or oversized file is a diagnostic at line 0) and loads it with the
// folder that holds it as the base of its config paths.
ScenarioLoadResult loadScenarioFile(const std::string& path);

// A fault as the canonical words of ScenarioStep::text: "node-crash node1",
// "partition node1,node2|node3", "op-fail node1 start 2".
std::string formatFault(const model::Fault& fault);
// A fault as the inside of a scenario's `fault: {...}` ("node-crash: node1",
// "op-fail: {node: node1, op: start, count: 2}"); loading it back gives the same fault.
std::string faultYaml(const model::Fault& fault);
// The YAML word of an op-fail operation: "start", "stop", "migrate", "fence".
std::string_view faultOpWord(model::Fault::Op op);

}  // namespace kvm_amf::config
