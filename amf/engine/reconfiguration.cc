#include "kvm_amf/amf/engine/reconfiguration.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "kvm_amf/amf/model/words.h"

namespace kvm_amf::engine {
namespace {

using model::toWord;

// Where each name of a configuration belongs.
struct Membership {
  std::map<std::string, const model::ServiceGroupSpec*> sgs;
  std::map<std::string, std::string> sgOfUnit;
  std::map<std::string, std::string> sgOfInstance;
  std::map<std::string, std::string> unitOfVm;
};

Membership membershipOf(const model::Configuration& config) {
  Membership m;
  for (const auto& sg : config.serviceGroups) {
    m.sgs[sg.name] = &sg;
    for (const auto& unit : sg.units) {
      m.sgOfUnit[unit.name] = sg.name;
      for (const auto& vm : unit.vms) m.unitOfVm[vm.name] = unit.name;
    }
    for (const auto& si : sg.serviceInstances) m.sgOfInstance[si.name] = sg.name;
  }
  return m;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& part : parts) out += (out.empty() ? "" : ", ") + part;
  return out;
}

// "su/a active, su/b standby": the SI's assignments.
std::string assignmentText(const SiRuntime& si) {
  std::vector<std::string> parts;
  for (const auto& a : si.assignments) parts.push_back("su/" + a.su + " " + std::string(toWord(a.ha)));
  return join(parts);
}

// The unit's assignments: "si/x active".
std::vector<std::string> heldBy(const ClusterState& state, const std::string& su) {
  std::vector<std::string> held;
  for (const auto& [name, si] : state.sis) {
    for (const auto& a : si.assignments) {
      if (a.su == su) held.push_back("si/" + name + " " + std::string(toWord(a.ha)));
    }
  }
  return held;
}

// Why the unit is not uninstantiated ("su/a is instantiated on node1"); nullopt when it is: none
// of its VMs placed or running and no assignment.
std::optional<std::string> busy(const ClusterState& state, const SuRuntime& su) {
  const std::string subject = "su/" + su.name;
  const PresenceState presence = suPresence(state, su);
  if (presence != PresenceState::kUninstantiated) {
    return subject + " is " + std::string(toWord(presence)) + (su.node.empty() ? "" : " on " + su.node);
  }
  if (!su.node.empty()) return subject + " is placed on " + su.node;
  for (const auto& spec : state.suSpec(su.name).vms) {
    const VmRuntime& vm = state.vms.at(spec.name);
    if (!vm.node.empty()) return subject + " has vm/" + vm.name + " placed on " + vm.node;
  }
  if (auto held = heldBy(state, su.name); !held.empty()) return subject + " holds " + join(held);
  return std::nullopt;
}

std::string lockFirst(const SuRuntime& su) {
  return "lock su/" + su.name + " (or sg/" + su.sg + "), then lock-in it, and apply again once it is uninstantiated";
}

constexpr const char* kCorosyncHosts =
    "the hosts are Corosync's nodelist, which changes only with corosync.conf on every host and every Corosync "
    "restarted; apply does not change hosts";

void checkHosts(const model::ClusterSpec& running, const model::ClusterSpec& next, std::vector<std::string>& problems) {
  std::map<std::string, const model::NodeSpec*> before;
  for (const auto& node : running.nodes) before[node.name] = &node;
  std::set<std::string> seen;
  for (const auto& node : next.nodes) {
    seen.insert(node.name);
    auto it = before.find(node.name);
    if (it == before.end()) {
      problems.push_back("node/" + node.name + " would be added: " + kCorosyncHosts);
      continue;
    }
    if (it->second->id != node.id) {
      problems.push_back("node/" + node.name + ": its id would change from " + std::to_string(it->second->id) + " to " +
                         std::to_string(node.id) + ": " + kCorosyncHosts);
    }
    if (it->second->address != node.address) {
      problems.push_back("node/" + node.name + ": its address would change from " + it->second->address + " to " +
                         node.address + ": " + kCorosyncHosts);
    }
  }
  for (const auto& node : running.nodes) {
    if (!seen.contains(node.name)) problems.push_back("node/" + node.name + " would be removed: " + kCorosyncHosts);
  }
}

// Units that go or move, and VMs that come, go or move; each busy unit is reported once.
void checkUnits(const ClusterState& state, const Membership& next, std::vector<std::string>& problems) {
  std::set<std::string> reported;
  auto report = [&](const SuRuntime& su, const std::string& what) {
    if (!reported.insert(su.name).second) return;
    if (auto why = busy(state, su)) problems.push_back(*why + ", so " + what + "; " + lockFirst(su));
  };
  for (const auto& [name, su] : state.sus) {
    auto it = next.sgOfUnit.find(name);
    if (it == next.sgOfUnit.end()) {
      report(su, "it cannot be removed");
    } else if (it->second != su.sg) {
      report(su, "it cannot move from sg/" + su.sg + " to sg/" + it->second);
    }
  }
  for (const auto& [name, vm] : state.vms) {
    auto it = next.unitOfVm.find(name);
    if (it == next.unitOfVm.end()) {
      report(state.sus.at(vm.su), "vm/" + name + " cannot be removed from it");
    } else if (it->second != vm.su) {
      const std::string move = "vm/" + name + " cannot move from su/" + vm.su + " to su/" + it->second;
      report(state.sus.at(vm.su), move);
      if (auto to = state.sus.find(it->second); to != state.sus.end()) report(to->second, move);
    }
  }
  for (const auto& [vm, unit] : next.unitOfVm) {
    if (state.vms.contains(vm)) continue;
    if (auto su = state.sus.find(unit); su != state.sus.end())
      report(su->second, "vm/" + vm + " cannot be added to it");
  }
}

void checkInstances(const ClusterState& state, const Membership& next, std::vector<std::string>& problems) {
  for (const auto& [name, si] : state.sis) {
    if (si.assignments.empty()) continue;
    auto it = next.sgOfInstance.find(name);
    const std::string has = "si/" + name + " has assignments (" + assignmentText(si) + "), so it cannot ";
    const std::string lock = "; lock si/" + name + " and apply again once they are gone";
    if (it == next.sgOfInstance.end()) {
      problems.push_back(has + "be removed" + lock);
    } else if (it->second != si.sg) {
      problems.push_back(has + "move from sg/" + si.sg + " to sg/" + it->second + lock);
    }
  }
}

void checkModels(const ClusterState& state, const Membership& next, std::vector<std::string>& problems) {
  for (const auto& [name, sg] : state.sgs) {
    auto it = next.sgs.find(name);
    if (it == next.sgs.end()) continue;
    const model::RedundancyModel from = state.sgSpec(name).redundancy.model;
    const model::RedundancyModel to = it->second->redundancy.model;
    if (from == to) continue;
    std::vector<std::string> assigned;
    for (const auto& si : state.index().instancesOf.at(name)) {
      if (!state.sis.at(si).assignments.empty()) assigned.push_back("si/" + si);
    }
    if (assigned.empty()) continue;
    problems.push_back("sg/" + name + ": " + join(assigned) + (assigned.size() == 1 ? " has" : " have") +
                       " assignments, so its redundancy model cannot change from " + std::string(toWord(from)) +
                       " to " + std::string(toWord(to)) + "; lock sg/" + name + " and apply again once they are gone");
  }
}

// Keeps the runtime of every entity `fresh` and `old` both have (after `update(kept, fresh)`),
// takes the rest from `fresh`, and drops what only `old` has.
template <typename Runtime, typename Update>
void carryOver(std::map<std::string, Runtime>& old, std::map<std::string, Runtime>& fresh, Update update) {
  for (auto& [name, runtime] : fresh) {
    auto it = old.find(name);
    if (it == old.end()) continue;
    Runtime kept = std::move(it->second);
    update(kept, runtime);
    runtime = std::move(kept);
  }
  old = std::move(fresh);
}

}  // namespace

std::vector<std::string> checkReconfiguration(const ClusterState& state, const model::Configuration& next) {
  std::vector<std::string> problems;
  if (!next.cluster) return {"the configuration has no Cluster document"};
  checkHosts(state.cluster(), *next.cluster, problems);
  const Membership membership = membershipOf(next);
  checkUnits(state, membership, problems);
  checkInstances(state, membership, problems);
  checkModels(state, membership, problems);
  return problems;
}

void installConfiguration(ClusterState& state, std::shared_ptr<const model::Configuration> config,
                          std::uint64_t generation) {
  ClusterState next = initialState(config, generation);
  carryOver(state.nodes, next.nodes, [](NodeRuntime& kept, const NodeRuntime& fresh) { kept.id = fresh.id; });
  carryOver(state.sgs, next.sgs, [](SgRuntime&, const SgRuntime&) {});
  carryOver(state.sus, next.sus, [&](SuRuntime& kept, const SuRuntime& fresh) {
    kept.sg = fresh.sg;
    kept.rank = fresh.rank;
    if (!state.nodes.contains(kept.avoidNode)) kept.avoidNode.clear();
  });
  carryOver(state.vms, next.vms, [](VmRuntime& kept, const VmRuntime& fresh) { kept.su = fresh.su; });
  carryOver(state.sis, next.sis, [](SiRuntime& kept, const SiRuntime& fresh) {
    kept.sg = fresh.sg;
    kept.rank = fresh.rank;
  });
  // What ran on a host that is gone is not known to run anywhere (checkReconfiguration refuses
  // removing hosts; this keeps the state whole whatever the configuration).
  for (auto& [name, vm] : state.vms) {
    if (!vm.node.empty() && !state.nodes.contains(vm.node)) {
      vm.node.clear();
      vm.presence = PresenceState::kUninstantiated;
    }
  }
  for (auto& [name, su] : state.sus) {
    if (!su.node.empty() && !state.nodes.contains(su.node)) su.node.clear();
  }
  // An SI is held only by units of its own group.
  auto unitOf = [&](const std::string& su, const std::string& sg) {
    auto it = state.sus.find(su);
    return it != state.sus.end() && it->second.sg == sg;
  };
  for (auto& entry : state.sis) {
    SiRuntime& si = entry.second;
    std::erase_if(si.assignments, [&](const Assignment& a) { return !unitOf(a.su, si.sg); });
    if (!si.preferredActive.empty() && !unitOf(si.preferredActive, si.sg)) si.preferredActive.clear();
  }
  state.config = std::move(config);
  state.generation = generation;
}

}  // namespace kvm_amf::engine
