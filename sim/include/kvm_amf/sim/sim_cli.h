// amf-sim: `run SCENARIO.yaml [--seed N] [-o json|text]` and
// `fuzz -f CONFIG... --seeds N [--faults K] [--duration D] [--first-seed S] [--keep DIR] [-o json]`
// and `plan SCENARIO.yaml` (the scenario as JSON, for amf-lab run).
#pragma once

#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

namespace kvm_amf::sim {

// Exit codes: 0 success; 1 an invariant was violated or an expectation unmet; 64 usage; 65 invalid
// scenario or configuration. `wallSeconds` reads the real clock (only for fuzz's report).
int runSimCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
              const std::function<double()>& wallSeconds);

}  // namespace kvm_amf::sim
