#include "kvm_amf/amf/engine/status.h"

#include <cstdio>

#include "kvm_amf/amf/config/serialize.h"
#include "kvm_amf/amf/engine/messages.h"
#include "kvm_amf/amf/model/words.h"
#include "kvm_amf/common/durable_file.h"

namespace kvm_amf::engine {
namespace {

using nlohmann::json;

json nameOrNull(const std::string& name) { return name.empty() ? json(nullptr) : json(name); }

}  // namespace

json statusDocument(const ClusterState& s, const View& view) {
  const int director = directorOf(view);
  json problems = json::array();
  // Without a director nothing is decided here, and what this host holds may be stale: another
  // partition (or the cluster this host has not rejoined yet) may have moved everything since.
  if (director == 0) {
    problems.push_back(std::string(view.quorate ? "no director: this host's group has no majority of the node managers"
                                                : "this host's partition has no quorum") +
                       "; the state below is its last known one, and nothing is decided here");
  }
  json nodes = json::array();
  std::string directorName;
  for (const auto& [name, node] : s.nodes) {
    if (node.id == director) directorName = name;
    nodes.push_back({{"name", name},
                     {"id", node.id},
                     {"member", view.hosts.contains(node.id)},
                     {"amfd", view.group.contains(node.id)},
                     {"status", nodeStatusWord(node.status)},
                     {"admin", model::toWord(node.admin)},
                     {"oper", model::toWord(node.oper)},
                     {"alarm", node.alarm}});
  }
  json sis = json::array();
  for (const auto& [name, si] : s.sis) {
    json assignments = json::array();
    bool active = false;
    for (const auto& a : si.assignments) {
      assignments.push_back({{"su", a.su}, {"ha", model::toWord(a.ha)}, {"acked", a.acked}});
      active = active || (a.ha == HaState::kActive && a.acked);
    }
    sis.push_back({{"name", name}, {"sg", si.sg}, {"admin", model::toWord(si.admin)}, {"assignments", assignments}});
    if (!active && si.admin == AdminState::kUnlocked)
      problems.push_back("si/" + name + " is not served: no active assignment");
  }
  for (const auto& [name, node] : s.nodes) {
    if (node.status == NodeStatus::kLost || node.status == NodeStatus::kFencing) {
      problems.push_back("node/" + name + " is " + nodeStatusWord(node.status) +
                         (node.alarm.empty() ? "" : ": " + node.alarm));
    } else if (!node.alarm.empty()) {
      problems.push_back("node/" + name + ": " + node.alarm);
    }
    if (node.oper == OperState::kDisabled) problems.push_back("node/" + name + " is disabled (repaired clears it)");
  }
  json sus = json::array();
  for (const auto& [name, su] : s.sus) {
    json ha = json::object();
    for (const auto& [siName, si] : s.sis) {
      for (const auto& a : si.assignments) {
        if (a.su == name) ha[siName] = model::toWord(a.ha);
      }
    }
    sus.push_back({{"name", name},
                   {"sg", su.sg},
                   {"rank", su.rank},
                   {"node", nameOrNull(su.node)},
                   {"admin", model::toWord(su.admin)},
                   {"oper", model::toWord(effectiveSuOper(s, su))},
                   {"presence", model::toWord(suPresence(s, su))},
                   {"readiness", model::toWord(suReadiness(s, su))},
                   {"ha", ha}});
    if (su.instantiationFailed) problems.push_back("su/" + name + " failed to instantiate");
    if (su.oper == OperState::kDisabled) problems.push_back("su/" + name + " is disabled (repaired clears it)");
  }
  json vms = json::array();
  for (const auto& [name, vm] : s.vms) {
    const std::string operatorState = vmOperatorWord(vm);
    vms.push_back({{"name", name},
                   {"su", vm.su},
                   {"node", nameOrNull(vm.node)},
                   {"presence", model::toWord(vm.presence)},
                   {"failure", vm.failure ? json(failureWord(*vm.failure)) : json(nullptr)},
                   {"admin", nameOrNull(operatorState)}});
    if (vm.failure) problems.push_back("vm/" + name + " failed (" + failureWord(*vm.failure) + "), recovery pending");
  }
  // VMs an operator paused or stopped keep their unit out of service; a locked unit is out of
  // service anyway, so only those of unlocked units are a problem.
  for (const auto& [name, vm] : s.vms) {
    const std::string operatorState = vmOperatorWord(vm);
    if (operatorState.empty() || s.sus.at(vm.su).admin != AdminState::kUnlocked) continue;
    const std::string undo = vm.paused ? "vm resume" : "vm start";
    problems.push_back("vm/" + name + " is " + operatorState + " by an operator: su/" + vm.su + " is out of service (" +
                       undo + " vm/" + name + ")");
  }
  json sgs = json::array();
  for (const auto& [name, sg] : s.sgs) {
    const auto& spec = s.sgSpec(name);
    json units = json::array();
    for (const auto& unit : spec.units) units.push_back(unit.name);
    sgs.push_back({{"name", name},
                   {"model", model::toWord(spec.redundancy.model)},
                   {"admin", model::toWord(sg.admin)},
                   {"units", units}});
  }
  // Equal on every host that holds the same configuration: what a convergence check compares.
  char digest[9];
  std::snprintf(digest, sizeof digest, "%08x", crc32c(config::toDocuments(*s.config).dump()));
  return {{"quorate", view.quorate},
          {"director", nameOrNull(directorName)},
          {"generation", s.generation},
          {"configDigest", std::string(digest)},
          {"decisions", s.decisions},
          {"nodes", nodes},
          {"sgs", sgs},
          {"sus", sus},
          {"sis", sis},
          {"vms", vms},
          {"problems", problems}};
}

}  // namespace kvm_amf::engine
