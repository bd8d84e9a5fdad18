#include "kvm_amf/amf/engine/apply.h"
#include "kvm_amf/common/overloaded.h"

#include "kvm_amf/amf/engine/reconfiguration.h"

#include <algorithm>

namespace kvm_amf::engine {
namespace {

bool running(PresenceState p) {
  return p == PresenceState::kInstantiated || p == PresenceState::kInstantiating || p == PresenceState::kRestarting;
}

// Clears a unit's placement once none of its VMs is anywhere.
void settleUnit(ClusterState& state, SuRuntime& su) {
  for (const auto& spec : state.suSpec(su.name).vms) {
    if (state.vms.at(spec.name).presence != PresenceState::kUninstantiated) return;
  }
  su.node.clear();
}

// The VM's report is about the copy the state knows of.
VmRuntime* reported(ClusterState& state, const std::string& vm, const std::string& node) {
  auto it = state.vms.find(vm);
  if (it == state.vms.end() || it->second.node != node) return nullptr;
  return &it->second;
}

void removeAssignmentsOf(ClusterState& state, const std::string& su) {
  for (auto& [name, si] : state.sis) {
    std::erase_if(si.assignments, [&](const Assignment& a) { return a.su == su; });
  }
}

// The node is known to run nothing: its VMs are gone and its units unplaced.
void markDown(ClusterState& state, const std::string& nodeName) {
  NodeRuntime& node = state.nodes.at(nodeName);
  node.status = NodeStatus::kDown;
  node.fencer = 0;
  node.fenceAttempts = 0;
  node.alarm.clear();
  for (auto& [name, vm] : state.vms) {
    if (vm.node != nodeName) continue;
    vm.presence = PresenceState::kUninstantiated;
    vm.node.clear();
    vm.failure.reset();
    vm.paused = false;
  }
  for (auto& [name, su] : state.sus) {
    if (su.node == nodeName) {
      su.node.clear();
      removeAssignmentsOf(state, name);
    }
  }
}

// The unit's guests must be told their HA states again (after a restart).
void unacknowledge(ClusterState& state, const std::string& su) {
  for (auto& [name, si] : state.sis) {
    for (auto& a : si.assignments) {
      if (a.su == su) a.acked = false;
    }
  }
}

void setAdmin(ClusterState& state, const model::AdminTarget& target, AdminState admin) {
  using Kind = model::AdminTarget::Kind;
  switch (target.kind) {
    case Kind::kNode:
      if (auto it = state.nodes.find(target.name); it != state.nodes.end()) it->second.admin = admin;
      break;
    case Kind::kNodeGroup:
      for (const auto& group : state.cluster().nodeGroups) {
        if (group.name != target.name) continue;
        for (const auto& node : group.nodes) state.nodes.at(node).admin = admin;
      }
      break;
    case Kind::kServiceGroup:
      if (auto it = state.sgs.find(target.name); it != state.sgs.end()) it->second.admin = admin;
      break;
    case Kind::kServiceUnit:
      if (auto it = state.sus.find(target.name); it != state.sus.end()) it->second.admin = admin;
      break;
    case Kind::kServiceInstance:
      if (auto it = state.sis.find(target.name); it != state.sis.end()) it->second.admin = admin;
      break;
    case Kind::kVm:
      break;
  }
}

void startVm(VmRuntime& vm, const std::string& node, PresenceState presence) {
  vm.presence = presence;
  vm.node = node;
  vm.failure.reset();
  vm.paused = false;
}

// The VM is being stopped (or is gone): it is no longer paused.
void stopping(VmRuntime& vm) {
  vm.failure.reset();
  vm.paused = false;
  if (vm.presence != PresenceState::kUninstantiated) vm.presence = PresenceState::kTerminating;
}

bool heldStopped(const VmRuntime& vm) { return vm.hold != VmHold::kNone; }

}  // namespace

Counter countFailure(Counter counter, TimePoint at, Duration probation) {
  if (counter.count == 0 || at - counter.since > probation) return Counter{1, at};
  ++counter.count;
  return counter;
}

int failuresWithin(const Counter& counter, TimePoint at, Duration probation) {
  return (counter.count == 0 || at - counter.since > probation) ? 0 : counter.count;
}

void applyReport(ClusterState& state, const Report& report) {
  ++state.applied;
  std::visit(
      Overloaded{
          [&](const VmStarted& r) {
            VmRuntime* vm = reported(state, r.vm, r.node);
            if (!vm || (vm->presence != PresenceState::kInstantiating && vm->presence != PresenceState::kRestarting)) {
              return;
            }
            vm->presence = PresenceState::kInstantiated;
            vm->savedOn.clear();  // it runs again: any managed save of it is stale now
            state.sus.at(vm->su).startFailures = 0;
          },
          [&](const VmStartFailed& r) {
            VmRuntime* vm = reported(state, r.vm, r.node);
            if (!vm || !running(vm->presence)) return;
            vm->presence = PresenceState::kUninstantiated;
            vm->failure = FailureKind::kCrash;
            ++state.sus.at(vm->su).startFailures;
          },
          [&](const VmStopped& r) {
            VmRuntime* vm = reported(state, r.vm, r.node);
            if (!vm || vm->presence != PresenceState::kTerminating) return;
            vm->presence = PresenceState::kUninstantiated;
            vm->node.clear();
            settleUnit(state, state.sus.at(vm->su));
          },
          [&](const VmStopFailed& r) {
            VmRuntime* vm = reported(state, r.vm, r.node);
            if (!vm || (vm->presence != PresenceState::kTerminating && vm->presence != PresenceState::kRestarting)) {
              return;
            }
            vm->presence = PresenceState::kTerminationFailed;
          },
          [&](const VmFailed& r) {
            VmRuntime* vm = reported(state, r.vm, r.node);
            if (!vm || !running(vm->presence) || vm->failure) return;
            vm->failure = r.kind;
            // A crashed QEMU is gone; a hung or unhealthy guest still runs until it is cleaned up.
            if (r.kind == FailureKind::kCrash) {
              vm->presence = PresenceState::kUninstantiated;
              vm->paused = false;
            }
          },
          [&](const HaAcked& r) {
            auto it = state.sis.find(r.si);
            if (it == state.sis.end() || !state.sus.contains(r.su)) return;
            // An acknowledgement from before a restart does not tell the restarted guests.
            if (suPresence(state, state.sus.at(r.su)) != PresenceState::kInstantiated) return;
            for (auto& a : it->second.assignments) {
              if (a.su == r.su && a.ha == r.ha) a.acked = true;
            }
          },
          [&](const AgentUp& r) {
            auto it = state.nodes.find(r.node);
            if (it == state.nodes.end()) return;
            NodeRuntime& node = it->second;
            node.agentReady = true;
            if (node.status == NodeStatus::kAmfdDown) node.status = NodeStatus::kUp;
            // A lost host whose node manager reports none of the cluster's VMs running has nothing to
            // fence: it is down (its VMs are known not to run) and comes up from there.
            if ((node.status == NodeStatus::kLost || node.status == NodeStatus::kFencing) && r.runningVms.empty()) {
              markDown(state, r.node);
            } else if (node.status == NodeStatus::kLost) {
              // Back before anyone fenced it (a membership flap, or no fencer): its node manager is
              // in the group again and nothing of it was recovered (recovery waits for kDown).
              node.status = NodeStatus::kUp;
            }
            // A node manager that restarted forgot the fence runs it had started: they are void.
            for (auto& [name, other] : state.nodes) {
              if (other.status == NodeStatus::kFencing && other.fencer == node.id) {
                other.status = NodeStatus::kLost;
                other.fencer = 0;
              }
            }
            // VMs being started here that run: their start completed while nobody watched.
            for (auto& [name, vm] : state.vms) {
              if (vm.node != r.node ||
                  (vm.presence != PresenceState::kInstantiating && vm.presence != PresenceState::kRestarting)) {
                continue;
              }
              if (std::find(r.runningVms.begin(), r.runningVms.end(), name) != r.runningVms.end()) {
                vm.presence = PresenceState::kInstantiated;
              }
            }
            // VMs the state has running here that no longer run: they died while nobody watched.
            // (A start or restart in progress reports its own outcome; the list may predate it.)
            for (auto& [name, vm] : state.vms) {
              if (vm.node != r.node || vm.presence != PresenceState::kInstantiated) continue;
              if (std::find(r.runningVms.begin(), r.runningVms.end(), name) == r.runningVms.end() && !vm.failure) {
                vm.failure = FailureKind::kCrash;
                vm.presence = PresenceState::kUninstantiated;
                vm.paused = false;
              }
            }
          },
          [&](const FenceDone& r) {
            auto it = state.nodes.find(r.node);
            if (it == state.nodes.end() || it->second.status != NodeStatus::kFencing) return;
            NodeRuntime& node = it->second;
            node.lastFenceEnd = r.at;
            if (r.ok) {
              markDown(state, r.node);
              node.agentReady = false;  // it must report in again after it was powered off
            } else {
              ++node.fenceAttempts;
              node.alarm = "fencing " + r.node + " failed: " + r.message;
              node.status = NodeStatus::kLost;
              node.fencer = 0;
            }
          },
          [&](const AdminRequest& r) {
            state.pendingAdmin.push_back({r.id, r.from, r.command});
          },
          [&](const ConfigChange& r) {
            state.pendingConfig.push_back({r.id, r.from, r.baseGeneration, r.config});
          },
      },
      report);
}

void applyAction(ClusterState& state, const Action& action, TimePoint at) {
  std::visit(Overloaded{
                 [&](const SetNodeStatus& a) {
                   NodeRuntime& node = state.nodes.at(a.node);
                   node.status = a.status;
                   node.since = at;
                   if (a.status != NodeStatus::kUp && a.status != NodeStatus::kDown) node.agentReady = false;
                   if (a.status == NodeStatus::kDown) {
                     for (auto& [name, vm] : state.vms) {
                       if (vm.node != a.node) continue;
                       vm.presence = PresenceState::kUninstantiated;
                       vm.node.clear();
                       vm.failure.reset();
                       vm.paused = false;
                     }
                     for (auto& [name, su] : state.sus) {
                       if (su.node == a.node) {
                         su.node.clear();
                         removeAssignmentsOf(state, name);
                       }
                     }
                   }
                 },
                 [&](const StartFence& a) {
                   NodeRuntime& node = state.nodes.at(a.node);
                   node.status = NodeStatus::kFencing;
                   node.since = at;
                   node.fencer = a.fencer;
                 },
                 [&](const StartSu& a) {
                   SuRuntime& su = state.sus.at(a.su);
                   su.node = a.node;
                   su.instantiationFailed = false;
                   for (const auto& spec : state.suSpec(a.su).vms) {
                     VmRuntime& vm = state.vms.at(spec.name);
                     if (!heldStopped(vm)) startVm(vm, a.node, PresenceState::kInstantiating);
                   }
                 },
                 [&](const StopSu& a) {
                   SuRuntime& su = state.sus.at(a.su);
                   for (const auto& spec : state.suSpec(a.su).vms) {
                     VmRuntime& vm = state.vms.at(spec.name);
                     stopping(vm);
                     if (vm.presence == PresenceState::kUninstantiated) vm.node.clear();
                   }
                   settleUnit(state, su);
                 },
                 [&](const RestartVm& a) {
                   VmRuntime& vm = state.vms.at(a.vm);
                   SuRuntime& su = state.sus.at(vm.su);
                   if (su.node.empty() || heldStopped(vm)) return;
                   if (a.counted) {
                     vm.restarts = countFailure(vm.restarts, at, state.sgSpec(su.sg).recovery.vmRestartProbation);
                   }
                   startVm(vm, su.node, PresenceState::kRestarting);
                   unacknowledge(state, su.name);
                 },
                 [&](const RestartSu& a) {
                   SuRuntime& su = state.sus.at(a.su);
                   if (su.node.empty()) return;
                   if (a.counted)
                     su.restarts = countFailure(su.restarts, at, state.sgSpec(su.sg).recovery.suRestartProbation);
                   for (const auto& spec : state.suSpec(a.su).vms) {
                     VmRuntime& vm = state.vms.at(spec.name);
                     if (!heldStopped(vm)) startVm(vm, su.node, PresenceState::kRestarting);
                   }
                   unacknowledge(state, a.su);
                 },
                 [&](const FailoverSu& a) {
                   SuRuntime& su = state.sus.at(a.su);
                   su.oper = OperState::kDisabled;
                   su.avoidNode = su.node;
                   const auto& escalation = state.cluster().escalation;
                   su.failovers = countFailure(su.failovers, at, escalation.suFailoverProbation);
                   if (!a.nodeLevel && !su.node.empty()) {
                     NodeRuntime& node = state.nodes.at(su.node);
                     node.suFailovers = countFailure(node.suFailovers, at, escalation.suFailoverProbation);
                   }
                   for (const auto& spec : state.suSpec(a.su).vms) stopping(state.vms.at(spec.name));
                   settleUnit(state, su);
                 },
                 [&](const SetNodeOper& a) { state.nodes.at(a.node).oper = a.oper; },
                 [&](const DestroyVm&) {},  // carried out by the node's agent; the state does not place that copy
                 [&](const RepairSu& a) {
                   SuRuntime& su = state.sus.at(a.su);
                   su.oper = OperState::kEnabled;
                   su.instantiationFailed = false;
                   su.startFailures = 0;
                   if (su.node.empty()) su.restarts = Counter{};
                 },
                 [&](const SetHa& a) {
                   SiRuntime& si = state.sis.at(a.si);
                   for (auto& assignment : si.assignments) {
                     if (assignment.su == a.su) {
                       assignment.ha = a.ha;
                       assignment.acked = false;
                       return;
                     }
                   }
                   si.assignments.push_back({a.su, a.ha, false});
                 },
                 [&](const RemoveAssignment& a) {
                   std::erase_if(state.sis.at(a.si).assignments, [&](const Assignment& x) { return x.su == a.su; });
                 },
                 [&](const SetAdmin& a) { setAdmin(state, a.target, a.admin); },
                 [&](const SetPreferredActive& a) { state.sis.at(a.si).preferredActive = a.su; },
                 [&](const SetSgAdjust& a) { state.sgs.at(a.sg).adjust = a.adjust; },
                 [&](const AdminReply& a) {
                   std::erase_if(state.pendingAdmin,
                                 [&](const PendingAdmin& p) { return p.id == a.id && p.from == a.from; });
                 },
                 [&](const SetConfiguration& a) {
                   // Decided against the configuration before it; a repeated decision finds it installed.
                   if (a.generation != state.generation + 1 || !a.config || !a.config->cluster) return;
                   installConfiguration(state, a.config, a.generation);
                 },
                 [&](const StopVm& a) {
                   auto it = state.vms.find(a.vm);
                   if (it == state.vms.end()) return;
                   VmRuntime& vm = it->second;
                   vm.hold = a.method == VmStopMethod::kSuspend ? VmHold::kSuspended : VmHold::kStopped;
                   // A suspend leaves a managed save there; any other stop leaves none worth restoring.
                   vm.savedOn = a.method == VmStopMethod::kSuspend ? a.node : std::string();
                   vm.failure.reset();  // the operator's stop supersedes the recovery of a failure
                   vm.paused = false;
                   if (!a.node.empty() && vm.node == a.node && running(vm.presence)) {
                     stopping(vm);
                   } else if (vm.presence == PresenceState::kUninstantiated) {
                     vm.node.clear();
                     settleUnit(state, state.sus.at(vm.su));
                   }
                 },
                 [&](const StartVm& a) {
                   auto it = state.vms.find(a.vm);
                   if (it == state.vms.end()) return;
                   VmRuntime& vm = it->second;
                   vm.hold = VmHold::kNone;
                   SuRuntime& su = state.sus.at(vm.su);
                   if (a.node.empty() || su.node != a.node || vm.presence != PresenceState::kUninstantiated) return;
                   startVm(vm, a.node, PresenceState::kInstantiating);
                   unacknowledge(state, su.name);  // the started guest is told the unit's assignments
                 },
                 [&](const SetVmPaused& a) {
                   auto it = state.vms.find(a.vm);
                   if (it == state.vms.end()) return;
                   VmRuntime& vm = it->second;
                   if (a.paused && (vm.node != a.node || vm.presence != PresenceState::kInstantiated)) return;
                   vm.paused = a.paused;
                 },
                 [&](const ConfigReply& a) {
                   std::erase_if(state.pendingConfig,
                                 [&](const PendingConfigChange& p) { return p.id == a.id && p.from == a.from; });
                 },
             },
             action);
}

void applyDecision(ClusterState& state, const Decision& decision) {
  for (const Action& action : decision.actions) applyAction(state, action, decision.at);
  ++state.decisions;
  ++state.applied;
}

}  // namespace kvm_amf::engine
