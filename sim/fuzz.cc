#include "kvm_amf/sim/fuzz.h"

#include <algorithm>
#include <sstream>

#include "kvm_amf/amf/config/scenario_loader.h"
#include "kvm_amf/amf/model/units.h"
#include "kvm_amf/sim/random.h"

namespace kvm_amf::sim {
namespace {

model::ScenarioStep faultStep(Duration at, const model::Fault& fault) {
  return {at, fault, config::formatFault(fault)};
}

}  // namespace

model::Scenario randomScenario(const model::Configuration& config, std::uint64_t seed, const FuzzOptions& options) {
  Random random(seed * 0x2545f4914f6cdd1dULL + 1);  // a stream apart from the world's, which uses the seed
  model::Scenario scenario;
  scenario.seed = seed;
  scenario.until = options.duration;
  std::vector<std::string> nodes;
  for (const auto& n : config.cluster->nodes) nodes.push_back(n.name);
  std::vector<std::string> vms;
  std::vector<std::string> units;
  std::vector<std::string> sis;
  for (const auto& sg : config.serviceGroups) {
    for (const auto& u : sg.units) {
      units.push_back(u.name);
      for (const auto& vm : u.vms) vms.push_back(vm.name);
    }
    for (const auto& si : sg.serviceInstances) sis.push_back(si.name);
  }
  // Faults start after the cluster came up and end before the settling stretch.
  const auto first = std::chrono::duration_cast<Duration>(std::chrono::seconds(20)).count();
  const auto last = std::max<std::int64_t>(first + 1, (options.duration - options.settle).count() - 30000);
  auto when = [&] { return Duration(first + static_cast<std::int64_t>(random.below(last - first))); };
  auto undoAt = [&](Duration at) {
    const auto latest = (options.duration - options.settle).count();
    const auto delay = 2000 + static_cast<std::int64_t>(random.below(40000));
    return Duration(std::min(at.count() + delay, latest));
  };
  using Kind = model::Fault::Kind;
  for (int i = 0; i < options.faults; ++i) {
    const Duration at = when();
    model::Fault f;
    switch (random.below(9)) {
      case 0:
      case 1:
        f.kind = Kind::kVmCrash;
        f.vm = random.pick(vms);
        scenario.steps.push_back(faultStep(at, f));
        break;
      case 2:
        f.kind = Kind::kGuestHang;
        f.vm = random.pick(vms);
        scenario.steps.push_back(faultStep(at, f));
        break;
      case 3: {
        f.kind = Kind::kNodeCrash;
        f.node = random.pick(nodes);
        scenario.steps.push_back(faultStep(at, f));
        model::Fault start;
        start.kind = Kind::kNodeStart;
        start.node = f.node;
        scenario.steps.push_back(faultStep(undoAt(at), start));
        break;
      }
      case 4: {
        f.kind = Kind::kPartition;
        std::vector<std::string> shuffled = nodes;
        for (std::size_t k = shuffled.size(); k > 1; --k) std::swap(shuffled[k - 1], shuffled[random.below(k)]);
        const std::size_t cut = 1 + random.below(std::max<std::size_t>(1, shuffled.size() - 1));
        f.groups = {std::vector<std::string>(shuffled.begin(), shuffled.begin() + static_cast<long>(cut)),
                    std::vector<std::string>(shuffled.begin() + static_cast<long>(cut), shuffled.end())};
        scenario.steps.push_back(faultStep(at, f));
        model::Fault heal;
        heal.kind = Kind::kHeal;
        scenario.steps.push_back(faultStep(undoAt(at), heal));
        break;
      }
      case 5: {
        f.kind = Kind::kAmfdCrash;
        f.node = random.pick(nodes);
        scenario.steps.push_back(faultStep(at, f));
        model::Fault start;
        start.kind = Kind::kAmfdStart;
        start.node = f.node;
        scenario.steps.push_back(faultStep(undoAt(at), start));
        break;
      }
      case 6:
        f.kind = Kind::kIoError;
        f.vm = random.pick(vms);
        scenario.steps.push_back(faultStep(at, f));
        break;
      case 7: {
        f.kind = Kind::kOpFail;
        f.node = random.pick(nodes);
        const model::Fault::Op ops[] = {model::Fault::Op::kStart, model::Fault::Op::kStop, model::Fault::Op::kFence};
        f.op = ops[random.below(3)];
        f.count = 1 + static_cast<int>(random.below(3));
        scenario.steps.push_back(faultStep(at, f));
        break;
      }
      default: {
        model::AdminCommand lock;
        lock.verb = model::AdminVerb::kLock;
        lock.target = {model::AdminTarget::Kind::kServiceUnit, random.pick(units)};
        scenario.steps.push_back({at, lock, model::formatAdminCommand(lock)});
        model::AdminCommand unlock = lock;
        unlock.verb = model::AdminVerb::kUnlock;
        scenario.steps.push_back({undoAt(at), unlock, model::formatAdminCommand(unlock)});
        break;
      }
    }
  }
  // Then the operator repairs whatever the escalation ladder took out of service for good, and
  // unlocks every unit again (an earlier unlock may have been refused for want of quorum).
  const Duration repairAt = options.duration - options.settle;
  for (const auto& u : units) {
    model::AdminCommand unlock;
    unlock.verb = model::AdminVerb::kUnlock;
    unlock.target = {model::AdminTarget::Kind::kServiceUnit, u};
    scenario.steps.push_back({repairAt, unlock, model::formatAdminCommand(unlock)});
  }
  for (const auto& u : units) {
    model::AdminCommand repaired;
    repaired.verb = model::AdminVerb::kRepaired;
    repaired.target = {model::AdminTarget::Kind::kServiceUnit, u};
    scenario.steps.push_back({repairAt, repaired, model::formatAdminCommand(repaired)});
  }
  for (const auto& n : nodes) {
    model::AdminCommand repaired;
    repaired.verb = model::AdminVerb::kRepaired;
    repaired.target = {model::AdminTarget::Kind::kNode, n};
    scenario.steps.push_back({repairAt, repaired, model::formatAdminCommand(repaired)});
  }
  std::stable_sort(scenario.steps.begin(), scenario.steps.end(),
                   [](const model::ScenarioStep& a, const model::ScenarioStep& b) { return a.at < b.at; });
  return scenario;
}

std::string scenarioYaml(const model::Scenario& scenario, const std::vector<std::string>& configPaths) {
  std::ostringstream out;
  out << "# generated by amf-sim fuzz\nconfig: [";
  for (std::size_t i = 0; i < configPaths.size(); ++i) out << (i ? ", " : "") << configPaths[i];
  out << "]\nseed: " << scenario.seed << "\nuntil: " << model::formatDuration(scenario.until) << "\nsteps:\n";
  for (const auto& step : scenario.steps) {
    out << "  - at: " << model::formatDuration(step.at) << "\n";
    if (const auto* c = std::get_if<model::AdminCommand>(&step.action)) {
      out << "    admin: \"" << model::formatAdminCommand(*c) << "\"\n";
      continue;
    }
    const auto& f = std::get<model::Fault>(step.action);
    out << "    fault: {" << config::faultYaml(f);
    out << "}\n";
  }
  return out.str();
}

}  // namespace kvm_amf::sim
