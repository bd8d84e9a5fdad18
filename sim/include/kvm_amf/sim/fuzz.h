// Random fault schedules for `amf-sim fuzz`: every seed gives one scenario, replayable by writing
// it out (scenarioYaml) and running it with `amf-sim run`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvm_amf/amf/model/config.h"
#include "kvm_amf/amf/model/scenario.h"
#include "kvm_amf/common/time.h"

namespace kvm_amf::sim {

struct FuzzOptions {
  int faults = 20;            // faults per run
  Duration duration{600000};  // simulated time per run
  Duration settle{90000};     // the last stretch: every fault is undone, every SI must be served again
};

// A scenario of `options.faults` random faults and admin operations over the configuration, each
// undone before the settling stretch (a crashed host starts again, a partition heals, a locked
// unit is unlocked), so that at the end every SI can and must be served.
model::Scenario randomScenario(const model::Configuration& config, std::uint64_t seed, const FuzzOptions& options);

// The scenario as a file `amf-sim run` takes; `configPaths` are written as its `config:` list.
std::string scenarioYaml(const model::Scenario& scenario, const std::vector<std::string>& configPaths);

}  // namespace kvm_amf::sim
