// amf-sim's world: N complete node managers (the classes amfd runs) over a simulated group,
// simulated hypervisors and guests, and one seeded random source and clock. Runs a scenario and
// reports what happened, with invariants checked at every change of the ground truth: at most the
// allowed number of active units per SI, never one VM on two hosts, nothing recovered on another
// host while its old host may still run it. Same seed, same bytes out.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvm_amf/amf/model/config.h"
#include "kvm_amf/amf/model/scenario.h"
#include "kvm_amf/common/time.h"

namespace kvm_amf::sim {

struct Violation {
  TimePoint at{0};
  std::string invariant;  // "dual-active", "vm-on-two-hosts", "recovered-before-fence", "si-not-recovered"
  std::string detail;
};

struct Outage {
  std::string si;
  TimePoint start{0};
  std::optional<TimePoint> end;  // nullopt: still out at the end of the run
};

struct RunResult {
  nlohmann::ordered_json report;  // the JSON report of docs/simulation.md
  std::vector<Violation> violations;
  std::vector<Outage> outages;
  std::vector<std::string> unmet;  // expectations of the scenario that did not hold
  double simulatedSeconds = 0;
  std::uint64_t events = 0;  // scheduler events run
};

struct RunOptions {
  bool requireRecovery = false;  // at the end every wanted SI must be served (fuzzing)
};

// Runs `scenario` over `config` (which has a Cluster). Deterministic for a given seed.
RunResult runScenario(std::shared_ptr<const model::Configuration> config, const model::Scenario& scenario,
                      const RunOptions& options = {});

// The report as a readable timeline with the final state, outages and violations.
std::string reportText(const nlohmann::ordered_json& report);

}  // namespace kvm_amf::sim
