#include "kvm_amf/amf/engine/engine.h"

#include <algorithm>
#include <tuple>

#include "kvm_amf/amf/engine/apply.h"
#include "kvm_amf/amf/engine/reconfiguration.h"
#include "kvm_amf/amf/model/words.h"
#include "redundancy/redundancy_model.h"

namespace kvm_amf::engine {
namespace {

using model::AdminTarget;
using model::AdminVerb;

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// One decision in the making: actions are applied to a scratch copy as they are chosen, so that
// every later phase sees their effect.
class Decider {
 public:
  Decider(const ClusterState& state, const View& view, TimePoint now) : work_(state), view_(view), now_(now) {}

  EngineStep run() {
    nodes();
    admin();
    failures();
    units();
    for (const auto& [name, sg] : state().sgs) assignments(name);
    completeShutdowns();
    return {std::move(actions_), wake_};
  }

 private:
  const ClusterState& state() const { return work_; }

  void emit(Action action) {
    applyAction(work_, action, now_);
    actions_.push_back(std::move(action));
  }
  void wakeAt(TimePoint t) {
    if (!wake_ || t < *wake_) wake_ = t;
  }

  // ---- Hosts ---------------------------------------------------------------------------------

  bool hostsAnything(const std::string& node) const {
    for (const auto& [name, vm] : state().vms) {
      if (vm.node == node && vm.presence != PresenceState::kUninstantiated) return true;
    }
    for (const auto& [name, su] : state().sus) {
      if (su.node == node) return true;
    }
    return false;
  }

  void nodes() {
    const auto& cluster = state().cluster();
    for (const auto& spec : cluster.nodes) {
      const NodeRuntime& node = state().nodes.at(spec.name);
      const bool inGroup = view_.group.contains(node.id);
      const bool hostUp = view_.hosts.contains(node.id);
      switch (node.status) {
        case NodeStatus::kDown:
          if (inGroup && node.agentReady) emit(SetNodeStatus{spec.name, NodeStatus::kUp, "node manager joined"});
          break;
        case NodeStatus::kUp:
          if (!hostUp) {
            emit(SetNodeStatus{spec.name, NodeStatus::kLost, "host left the membership"});
            fence(spec.name, hostUp);
          } else if (!inGroup) {
            emit(SetNodeStatus{spec.name, NodeStatus::kAmfdDown, "node manager left the group"});
            wakeAt(now_ + cluster.membership.amfdRestartGrace);
          }
          break;
        case NodeStatus::kAmfdDown: {
          const TimePoint deadline = node.since + cluster.membership.amfdRestartGrace;
          if (!hostUp) {
            emit(SetNodeStatus{spec.name, NodeStatus::kLost, "host left the membership"});
            fence(spec.name, hostUp);
          } else if (inGroup) {
            // Its node manager is back; it becomes up once it has reported in (AgentUp).
          } else if (now_ >= deadline) {
            emit(SetNodeStatus{spec.name, NodeStatus::kLost, "node manager did not return within the grace period"});
            fence(spec.name, hostUp);
          } else {
            wakeAt(deadline);
          }
          break;
        }
        case NodeStatus::kLost:
          fence(spec.name, hostUp);
          break;
        case NodeStatus::kFencing:
          if (!view_.group.contains(node.fencer)) {
            emit(SetNodeStatus{spec.name, NodeStatus::kLost, "the fencing node left"});
            fence(spec.name, hostUp);
          }
          break;
      }
    }
  }

  // REQUIRES: the node is kLost. Marks it down once that is certain, or starts fencing it.
  void fence(const std::string& name, bool hostUp) {
    const NodeRuntime& node = state().nodes.at(name);
    const auto& fencing = state().cluster().fencing;
    if (!hostsAnything(name)) {
      emit(SetNodeStatus{name, NodeStatus::kDown, "nothing ran there"});
      return;
    }
    switch (fencing.mode) {
      case model::FencingMode::kNone:
        emit(SetNodeStatus{name, NodeStatus::kDown, "fencing mode none"});
        break;
      case model::FencingMode::kSelf: {
        // A host still in the membership has quorum and will not stop its VMs by itself.
        if (hostUp) break;
        const TimePoint deadline = node.since + fencing.self.timeout + fencing.self.margin;
        if (now_ >= deadline) {
          emit(SetNodeStatus{name, NodeStatus::kDown, "self-fenced: its bound has passed"});
        } else {
          wakeAt(deadline);
        }
        break;
      }
      case model::FencingMode::kAgent: {
        const TimePoint retry = node.lastFenceEnd + fencing.agent.retryInterval;
        // Another member runs the agent: a host never fences itself (the director's own host may
        // need fencing when a VM there cannot be stopped).
        int fencer = 0;
        for (int member : view_.group) {
          if (member != node.id) {
            fencer = member;
            break;
          }
        }
        if (fencer == 0) break;
        if (node.fenceAttempts > 0 && now_ < retry) {
          wakeAt(retry);
        } else {
          emit(StartFence{name, fencer});
        }
        break;
      }
    }
  }

  // ---- Operators' commands -------------------------------------------------------------------

  void admin() {
    const std::vector<PendingAdmin> pending = state().pendingAdmin;
    for (const auto& request : pending) {
      auto [ok, message] = adminOperation(request.command);
      emit(AdminReply{request.id, request.from, ok, message});
    }
    configChanges();
  }

  // Operators' configuration changes, in the order received, each checked against the
  // configuration and state at its place: one accepted before it moves the generation on, so a
  // second change merged onto the same generation is refused as stale (its node manager merges it
  // again onto the new configuration).
  void configChanges() {
    const std::vector<PendingConfigChange> pending = state().pendingConfig;
    for (const auto& change : pending) {
      ConfigReply reply;
      reply.id = change.id;
      reply.from = change.from;
      if (change.baseGeneration != state().generation) {
        reply.stale = true;
        reply.problems = {"the configuration is at generation " + std::to_string(state().generation) + ", not " +
                          std::to_string(change.baseGeneration)};
      } else if (!change.config) {
        reply.problems = {"the change carries no configuration"};
      } else {
        reply.problems = checkReconfiguration(state(), *change.config);
        if (reply.problems.empty()) {
          emit(SetConfiguration{change.config, state().generation + 1});
          reply.ok = true;
        }
      }
      reply.generation = state().generation;
      emit(std::move(reply));
    }
  }

  std::optional<AdminState> adminOf(const AdminTarget& t) const {
    using Kind = AdminTarget::Kind;
    switch (t.kind) {
      case Kind::kNode:
        if (auto it = state().nodes.find(t.name); it != state().nodes.end()) return it->second.admin;
        break;
      case Kind::kNodeGroup:
        for (const auto& g : state().cluster().nodeGroups) {
          if (g.name == t.name && !g.nodes.empty()) return state().nodes.at(g.nodes.front()).admin;
        }
        break;
      case Kind::kServiceGroup:
        if (auto it = state().sgs.find(t.name); it != state().sgs.end()) return it->second.admin;
        break;
      case Kind::kServiceUnit:
        if (auto it = state().sus.find(t.name); it != state().sus.end()) return it->second.admin;
        break;
      case Kind::kServiceInstance:
        if (auto it = state().sis.find(t.name); it != state().sis.end()) return it->second.admin;
        break;
      case Kind::kVm:
        break;
    }
    return std::nullopt;
  }

  std::pair<bool, std::string> adminOperation(const model::AdminCommand& c) {
    using Kind = AdminTarget::Kind;
    const std::string target = model::formatAdminTarget(c.target);
    const bool isVm = c.target.kind == Kind::kVm;
    const bool exists = isVm ? state().vms.contains(c.target.name) : adminOf(c.target).has_value();
    if (!exists) return {false, "no such " + target};
    auto set = [&](AdminState admin) {
      emit(SetAdmin{c.target, admin});
      return std::pair<bool, std::string>{true, target + " " + std::string(model::toWord(admin))};
    };
    const AdminState current = isVm ? AdminState::kUnlocked : *adminOf(c.target);
    const std::string now(model::toWord(current));
    switch (c.verb) {
      case AdminVerb::kLock:
        if (current == AdminState::kUnlocked || current == AdminState::kShuttingDown) return set(AdminState::kLocked);
        return {false, target + " is " + now + ", not unlocked"};
      case AdminVerb::kUnlock:
        if (current == AdminState::kLocked || current == AdminState::kShuttingDown) return set(AdminState::kUnlocked);
        return {false,
                target + " is " + now + (current == AdminState::kLockedInstantiation ? "; unlock-in first" : "")};
      case AdminVerb::kLockInstantiation:
        if (current == AdminState::kLocked) return set(AdminState::kLockedInstantiation);
        return {false, target + " is " + now + "; lock it first"};
      case AdminVerb::kUnlockInstantiation:
        if (current == AdminState::kLockedInstantiation) return set(AdminState::kLocked);
        return {false, target + " is " + now + ", not locked-instantiation"};
      case AdminVerb::kShutdown:
        if (current == AdminState::kUnlocked) return set(AdminState::kShuttingDown);
        return {false, target + " is " + now + ", not unlocked"};
      case AdminVerb::kRestart:
        if (c.target.kind == Kind::kServiceUnit) {
          const SuRuntime& su = state().sus.at(c.target.name);
          if (su.node.empty() || suPresence(state(), su) != PresenceState::kInstantiated) {
            return {false, target + " is not instantiated"};
          }
          emit(RestartSu{c.target.name, false});
          return {true, target + " restarting"};
        }
        if (isVm) {
          const VmRuntime& vm = state().vms.at(c.target.name);
          if (vm.presence != PresenceState::kInstantiated) return {false, target + " is not running"};
          emit(RestartVm{c.target.name, false});
          return {true, target + " restarting"};
        }
        break;
      case AdminVerb::kRepaired:
        if (c.target.kind == Kind::kServiceUnit) {
          const SuRuntime& su = state().sus.at(c.target.name);
          if (su.oper == OperState::kEnabled && !su.instantiationFailed) return {false, target + " is not failed"};
          emit(RepairSu{c.target.name});
          return {true, target + " repaired"};
        }
        if (c.target.kind == Kind::kNode) {
          if (state().nodes.at(c.target.name).oper == OperState::kEnabled) return {false, target + " is not failed"};
          emit(SetNodeOper{c.target.name, OperState::kEnabled});
          return {true, target + " repaired"};
        }
        break;
      case AdminVerb::kSiSwap:
        return siSwap(c.target.name);
      case AdminVerb::kSgAdjust:
        emit(SetSgAdjust{c.target.name, true});
        return {true, target + " adjusting"};
      case AdminVerb::kVmStart:
      case AdminVerb::kVmShutdown:
      case AdminVerb::kVmDestroy:
      case AdminVerb::kVmPause:
      case AdminVerb::kVmResume:
      case AdminVerb::kVmSuspend:
      case AdminVerb::kVmReboot:
      case AdminVerb::kVmReset:
        if (isVm) return vmOperation(c.verb, c.target.name);
        break;
      default:
        return {false, "'" + model::formatAdminCommand(c) + "' is carried out by the node manager, not the engine"};
    }
    return {false, "'" + model::formatAdminCommand(c) + "' does not apply to " + target};
  }

  // ---- VM operations ---------------------------------------------------------------------------
  //
  // An operator's act on one VM is never a failure and never recovered: a paused VM keeps its
  // unit's assignments (out of service, its heartbeats not watched); a stopped or suspended one is
  // held (never started by the engine) until `vm start`, and its unit's standby assignments go once
  // it is stopped. Neither may happen to a unit that may still serve an SI actively, which would
  // leave the SI without a server and with nothing allowed to take it over.

  // Why the unit must be switched over before one of its VMs is paused or stopped; nullopt when it
  // holds no assignment that may still be active (active, quiescing, or told to quiesce and not
  // yet confirmed).
  std::optional<std::string> mayServeActively(const std::string& vm, const SuRuntime& su) const {
    for (const auto& si : state().index().instancesOf.at(su.sg)) {
      for (const auto& a : state().sis.at(si).assignments) {
        if (a.su != su.name) continue;
        if (a.ha == HaState::kActive || a.ha == HaState::kQuiescing || (a.ha == HaState::kQuiesced && !a.acked)) {
          return "vm/" + vm + ": su/" + su.name + " holds si/" + si + " " + std::string(model::toWord(a.ha)) +
                 "; switch over first: si-swap si/" + si + ", or lock su/" + su.name;
        }
      }
    }
    return std::nullopt;
  }

  // The unit runs where the VM can start in place: placed, enabled, allowed to instantiate, and
  // none of its VMs being stopped.
  bool startsInPlace(const SuRuntime& su) const {
    if (su.node.empty() || su.oper != OperState::kEnabled || lockedInstantiation(su)) return false;
    for (const auto& spec : state().suSpec(su.name).vms) {
      const PresenceState p = state().vms.at(spec.name).presence;
      if (p == PresenceState::kTerminating || p == PresenceState::kTerminationFailed) return false;
    }
    return true;
  }

  std::pair<bool, std::string> vmOperation(AdminVerb verb, const std::string& name) {
    const VmRuntime& vm = state().vms.at(name);
    const SuRuntime& su = state().sus.at(vm.su);
    const std::string target = "vm/" + name;
    const std::string presence(model::toWord(vm.presence));
    const std::pair<bool, std::string> notInstantiated{false, target + " is not instantiated (" + presence + ")"};
    const std::pair<bool, std::string> paused{false, target + " is paused; vm resume it first"};
    switch (verb) {
      case AdminVerb::kVmReboot:
      case AdminVerb::kVmReset: {
        if (vm.presence != PresenceState::kInstantiated) return notInstantiated;
        if (vm.paused) return paused;
        const bool reboot = verb == AdminVerb::kVmReboot;
        emit(RestartVm{name, false, reboot ? RestartMethod::kReboot : RestartMethod::kReset});
        return {true, target + (reboot ? " rebooting" : " resetting")};
      }
      case AdminVerb::kVmPause:
        if (vm.paused) return {false, target + " is paused already"};
        if (vm.presence != PresenceState::kInstantiated) return notInstantiated;
        if (auto why = mayServeActively(name, su)) return {false, *why};
        emit(SetVmPaused{name, vm.node, true});
        return {true, target + " paused on " + vm.node};
      case AdminVerb::kVmResume:
        if (!vm.paused) return {false, target + " is not paused"};
        emit(SetVmPaused{name, vm.node, false});
        return {true, target + " resumed on " + vm.node};
      case AdminVerb::kVmShutdown:
      case AdminVerb::kVmDestroy:
      case AdminVerb::kVmSuspend:
        return vmStop(verb, vm, su);
      case AdminVerb::kVmStart: {
        if (vm.hold == VmHold::kNone) {
          return {false, target + " was not stopped by an operator (vm start follows vm shutdown, destroy or suspend)"};
        }
        if (vm.presence != PresenceState::kUninstantiated) {
          return {false, target + " is still stopping (" + presence + "); vm start it once it is stopped"};
        }
        const std::string node = startsInPlace(su) ? su.node : std::string();
        const std::string savedOn = vm.hold == VmHold::kSuspended ? vm.savedOn : std::string();
        const std::string unit = su.name;
        emit(StartVm{name, node});  // `vm` and `su` reflect it from here on
        if (node.empty()) {
          return {true, target + " starting with su/" + unit +
                            (savedOn.empty() ? "" : " (restored from its managed save if placed on " + savedOn + ")")};
        }
        return {true, target + (node == savedOn ? " restoring on " : " starting on ") + node};
      }
      default:
        break;
    }
    return {false, "'" + model::formatAdminCommand({verb, {AdminTarget::Kind::kVm, name}, {}, {}, {}}) +
                       "' does not apply to " + target};
  }

  std::pair<bool, std::string> vmStop(AdminVerb verb, const VmRuntime& vm, const SuRuntime& su) {
    const std::string target = "vm/" + vm.name;
    if (vm.hold == VmHold::kStopped) return {false, target + " is stopped already; vm start starts it"};
    if (vm.hold == VmHold::kSuspended && verb != AdminVerb::kVmDestroy) {
      return {false, target + " is suspended already; vm start restores it, vm destroy discards its managed save"};
    }
    if (verb == AdminVerb::kVmSuspend) {
      if (vm.presence != PresenceState::kInstantiated) {
        return {false, target + " is not instantiated (" + std::string(model::toWord(vm.presence)) + ")"};
      }
      if (vm.paused) return {false, target + " is paused; vm resume it first"};
    }
    if (auto why = mayServeActively(vm.name, su)) return {false, *why};
    const VmStopMethod method = verb == AdminVerb::kVmShutdown  ? VmStopMethod::kShutdown
                                : verb == AdminVerb::kVmSuspend ? VmStopMethod::kSuspend
                                                                : VmStopMethod::kDestroy;
    // (Values taken before emit(): `vm` reflects the action from then on.)
    if (vm.hold == VmHold::kSuspended) {
      const std::string savedOn = vm.savedOn;
      emit(StopVm{vm.name, savedOn, VmStopMethod::kDestroy});
      return {true,
              target + " stopped; its managed save" + (savedOn.empty() ? "" : " on " + savedOn) + " is discarded"};
    }
    const bool runs = vm.presence == PresenceState::kInstantiated || vm.presence == PresenceState::kInstantiating ||
                      vm.presence == PresenceState::kRestarting;
    const std::string node = runs ? vm.node : std::string();
    const std::string presence(model::toWord(vm.presence));
    emit(StopVm{vm.name, node, method});
    if (!runs) return {true, target + " held stopped (it is " + presence + ")"};
    switch (method) {
      case VmStopMethod::kShutdown:
        return {true, target + " shutting down on " + node};
      case VmStopMethod::kSuspend:
        return {true, target + " suspending on " + node};
      case VmStopMethod::kDestroy:
        break;
    }
    return {true, target + " stopping on " + node};
  }

  std::pair<bool, std::string> siSwap(const std::string& name) {
    const SiRuntime& si = state().sis.at(name);
    if (state().sgSpec(si.sg).redundancy.model == model::RedundancyModel::kNWayActive ||
        state().sgSpec(si.sg).redundancy.model == model::RedundancyModel::kNoRedundancy) {
      return {false, "si/" + name + ": its redundancy model has no standby to swap with"};
    }
    std::string active;
    std::string standby;
    for (const auto& a : si.assignments) {
      if (a.ha == HaState::kActive && a.acked) active = a.su;
      if (a.ha == HaState::kStandby && a.acked && standby.empty()) standby = a.su;
    }
    if (active.empty() || standby.empty()) return {false, "si/" + name + " needs an active and a standby assignment"};
    emit(SetPreferredActive{name, standby});
    return {true, "si/" + name + ": " + standby + " becomes active, " + active + " standby"};
  }

  // ---- Failures and the escalation ladder ----------------------------------------------------

  void failures() {
    std::set<std::string> handled;
    for (const auto& [name, vm] : std::map<std::string, VmRuntime>(state().vms)) {
      if (!vm.failure) continue;
      const SuRuntime& su = state().sus.at(vm.su);
      if (handled.contains(su.name) || su.oper != OperState::kEnabled) continue;
      if (su.node.empty() || state().nodes.at(su.node).status != NodeStatus::kUp) continue;  // node-level
      const auto& recovery = state().sgSpec(su.sg).recovery;
      if (recovery.defaultAction == model::RecoveryAction::kRestart) {
        if (failuresWithin(vm.restarts, now_, recovery.vmRestartProbation) < recovery.vmRestartMax) {
          emit(RestartVm{name, true});
          continue;
        }
        if (failuresWithin(su.restarts, now_, recovery.suRestartProbation) < recovery.suRestartMax) {
          emit(RestartSu{su.name, true});
          handled.insert(su.name);
          continue;
        }
      }
      handled.insert(su.name);
      failover(su.name);
    }
  }

  void failover(const std::string& suName) {
    const std::string node = state().sus.at(suName).node;
    emit(FailoverSu{suName, false});
    const auto& escalation = state().cluster().escalation;
    const NodeRuntime& host = state().nodes.at(node);
    if (failuresWithin(host.suFailovers, now_, escalation.suFailoverProbation) <= escalation.suFailoverMax) return;
    // Node failover: the node is disabled and every unit on it leaves.
    emit(SetNodeOper{node, OperState::kDisabled});
    for (const auto& [name, su] : std::map<std::string, SuRuntime>(state().sus)) {
      if (su.node == node && su.oper == OperState::kEnabled) emit(FailoverSu{name, true});
    }
  }

  // ---- Units: cleanup, repair, instantiation ---------------------------------------------------

  bool lockedInstantiation(const SuRuntime& su) const {
    auto lockedIn = [](AdminState a) { return a == AdminState::kLockedInstantiation; };
    if (lockedIn(su.admin) || lockedIn(state().sgs.at(su.sg).admin)) return true;
    return !su.node.empty() && lockedIn(state().nodes.at(su.node).admin);
  }

  // Every SI of the group is held active (acknowledged), or wanted ones are.
  bool inService(const std::string& sg) const {
    for (const auto& [name, si] : state().sis) {
      if (si.sg != sg || si.admin != AdminState::kUnlocked) continue;
      bool active = false;
      for (const auto& a : si.assignments) active = active || (a.ha == HaState::kActive && a.acked);
      if (!active) return false;
    }
    return true;
  }

  bool dependenciesReady(const std::string& sg) const {
    for (const auto& dep : state().sgSpec(sg).dependsOn) {
      if (!inService(dep)) return false;
    }
    return true;
  }

  // A node manager in the group that has not reported in yet: placing units before it has would
  // crowd them onto the hosts that came first (the cluster's start).
  bool hostsStillReporting() const {
    for (const auto& [name, node] : state().nodes) {
      if (view_.group.contains(node.id) && node.status != NodeStatus::kUp) return true;
    }
    return false;
  }

  void units() {
    const auto& escalation = state().cluster().escalation;
    const bool waitForHosts = hostsStillReporting();
    for (const auto& [name, su] : std::map<std::string, SuRuntime>(state().sus)) {
      const PresenceState presence = suPresence(state(), su);
      if (presence == PresenceState::kTerminationFailed) {
        // A VM that cannot be stopped: only fencing its host makes it certain.
        if (!su.node.empty() && state().nodes.at(su.node).status == NodeStatus::kUp) {
          emit(SetNodeStatus{su.node, NodeStatus::kLost, "a VM of " + name + " could not be stopped"});
          fence(su.node, true);
        }
        continue;
      }
      if (su.oper == OperState::kDisabled) {
        if (suCertainlyDown(state(), su) && presence == PresenceState::kUninstantiated &&
            state().sgSpec(su.sg).autoRepair &&
            failuresWithin(su.failovers, now_, escalation.suFailoverProbation) <= escalation.suFailoverMax) {
          emit(RepairSu{name});
        }
        continue;
      }
      if (lockedInstantiation(su)) {
        if (presence != PresenceState::kUninstantiated && presence != PresenceState::kTerminating) emit(StopSu{name});
        continue;
      }
      if (presence == PresenceState::kUninstantiated && su.node.empty() && !waitForHosts && dependenciesReady(su.sg) &&
          !allHeld(su)) {
        if (auto node = place(su)) {
          emit(StartSu{name, *node});
          addLoad(state().sus.at(name));
        }
      }
    }
  }

  // Every VM of the unit is held stopped by an operator: there is nothing to start.
  bool allHeld(const SuRuntime& su) const {
    for (const auto& spec : state().suSpec(su.name).vms) {
      if (state().vms.at(spec.name).hold == VmHold::kNone) return false;
    }
    return true;
  }

  // A host holding a managed save of one of the unit's VMs (`vm suspend`), where it restores.
  bool holdsSaveOf(const SuRuntime& su, const std::string& node) const {
    for (const auto& spec : state().suSpec(su.name).vms) {
      if (state().vms.at(spec.name).savedOn == node) return true;
    }
    return false;
  }

  struct Load {
    int vcpus = 0;
    model::Bytes memory = 0;
  };
  struct HostLoad {
    Load total;
    int units = 0;
    std::map<std::string, int> unitsOfGroup;
  };

  Load loadOf(const std::string& su) const {
    Load load;
    for (const auto& vm : state().suSpec(su).vms) {
      load.vcpus += vm.vcpus;
      load.memory += std::max(vm.memory, vm.maxMemory);
    }
    return load;
  }

  // What the placed units take on each host; computed once a decision, then kept up to date as
  // units are placed (a unit leaving is not subtracted: a decision never over-fills a host).
  std::map<std::string, HostLoad>& hostLoads() {
    if (!hostLoads_) {
      hostLoads_.emplace();
      for (const auto& [name, su] : state().sus) {
        if (!su.node.empty()) addLoad(su);
      }
    }
    return *hostLoads_;
  }
  void addLoad(const SuRuntime& su) {
    HostLoad& host = (*hostLoads_)[su.node];
    const Load load = loadOf(su.name);
    host.total.vcpus += load.vcpus;
    host.total.memory += load.memory;
    ++host.units;
    ++host.unitsOfGroup[su.sg];
  }

  // The host for a unit: one it may run on, up, unlocked and with room; preferring hosts without
  // another unit of its group (a host loss must not take both), then one holding a managed save of
  // one of its VMs (it restores there), then other than where it last failed, then with fewer units.
  std::optional<std::string> place(const SuRuntime& su) {
    const auto& spec = state().suSpec(su.name);
    const auto& sgSpec = state().sgSpec(su.sg);
    std::vector<std::string> allowed = spec.nodes;
    if (allowed.empty()) {
      for (const auto& g : state().cluster().nodeGroups) {
        if (g.name == sgSpec.nodeGroup) allowed = g.nodes;
      }
    }
    if (allowed.empty()) {
      for (const auto& n : state().cluster().nodes) allowed.push_back(n.name);
    }
    const Load need = loadOf(su.name);
    std::optional<std::tuple<int, int, int, int, std::string>> best;
    for (const auto& nodeSpec : state().cluster().nodes) {
      if (!contains(allowed, nodeSpec.name)) continue;
      const NodeRuntime& node = state().nodes.at(nodeSpec.name);
      if (node.status != NodeStatus::kUp || node.admin != AdminState::kUnlocked || node.oper != OperState::kEnabled) {
        continue;
      }
      const HostLoad& used = hostLoads()[nodeSpec.name];
      const auto& cap = nodeSpec.capacity;
      if ((cap.vcpus != 0 && used.total.vcpus + need.vcpus > cap.vcpus) ||
          (cap.memory != 0 && used.total.memory + need.memory > cap.memory)) {
        continue;
      }
      auto it = used.unitsOfGroup.find(su.sg);
      const int sameGroup = it == used.unitsOfGroup.end() ? 0 : it->second;
      auto score = std::tuple(sameGroup, holdsSaveOf(su, nodeSpec.name) ? 0 : 1, nodeSpec.name == su.avoidNode ? 1 : 0,
                              used.units, nodeSpec.name);
      if (!best || score < *best) best = score;
    }
    if (!best) return std::nullopt;
    return std::get<4>(*best);
  }

  // ---- Assignments ----------------------------------------------------------------------------

  // The unit runs and can be told its HA state.
  bool serving(const SuRuntime& su) const {
    if (su.node.empty() || su.oper != OperState::kEnabled) return false;
    if (state().nodes.at(su.node).status != NodeStatus::kUp) return false;
    if (suPresence(state(), su) != PresenceState::kInstantiated) return false;
    for (const auto& vm : state().suSpec(su.name).vms) {
      if (state().vms.at(vm.name).failure) return false;
    }
    return !suHeldByOperator(state(), su);
  }

  // A unit that holds assignments and is only briefly unreachable keeps them: one restarting in
  // place (SA Forum AMF restart), or one on a host whose node manager is within its restart grace
  // (nothing moves while amfd restarts).
  bool keeps(const SuRuntime& su) const {
    if (su.oper != OperState::kEnabled || su.node.empty() || suHeldByOperator(state(), su)) return false;
    const NodeStatus host = state().nodes.at(su.node).status;
    const PresenceState presence = suPresence(state(), su);
    const bool restarting = host == NodeStatus::kUp && presence == PresenceState::kRestarting;
    const bool amfdRestarting = host == NodeStatus::kAmfdDown && presence == PresenceState::kInstantiated;
    if (!restarting && !amfdRestarting) return false;
    for (const auto& si : state().index().instancesOf.at(su.sg)) {
      for (const auto& a : state().sis.at(si).assignments) {
        if (a.su == su.name) return true;
      }
    }
    return false;
  }

  GroupView view(const std::string& sg) const {
    GroupView group;
    group.spec = &state().sgSpec(sg);
    const SgRuntime& runtime = state().sgs.at(sg);
    group.rebalance = group.spec->failback || runtime.adjust;
    for (const auto& name : state().index().unitsOf.at(sg)) {
      const SuRuntime& su = state().sus.at(name);
      group.units.push_back({name, su.rank, suReadiness(state(), su) == ReadinessState::kInService || keeps(su)});
    }
    std::sort(group.units.begin(), group.units.end(), [](const UnitStatus& a, const UnitStatus& b) {
      return std::tie(a.rank, a.name) < std::tie(b.rank, b.name);
    });
    for (const auto& name : state().index().instancesOf.at(sg)) {
      const SiRuntime& si = state().sis.at(name);
      const bool wanted = si.admin == AdminState::kUnlocked && runtime.admin == AdminState::kUnlocked;
      group.sis.push_back({name, si.rank, wanted, si.assignments, si.preferredActive});
    }
    std::sort(group.sis.begin(), group.sis.end(),
              [](const SiStatus& a, const SiStatus& b) { return std::tie(a.rank, a.name) < std::tie(b.rank, b.name); });
    return group;
  }

  void assignments(const std::string& sg) {
    const GroupView group = view(sg);
    const auto targets = redundancyModel(group.spec->redundancy.model).target(group);
    const auto& redundancy = group.spec->redundancy;
    const int allowedActives =
        redundancy.model == model::RedundancyModel::kNWayActive ? std::max(1, redundancy.activeUnits) : 1;
    bool settled = true;
    for (const auto& si : group.sis) {
      auto it = targets.find(si.name);
      const SiTarget target = it == targets.end() ? SiTarget{} : it->second;
      const std::size_t before = actions_.size();
      transition(si.name, target, allowedActives);
      settled = settled && actions_.size() == before && atTarget(si.name, target);
    }
    if (state().sgs.at(sg).adjust && settled) emit(SetSgAdjust{sg, false});
  }

  bool atTarget(const std::string& si, const SiTarget& target) const {
    const auto& current = state().sis.at(si).assignments;
    std::size_t matching = 0;
    for (const auto& a : current) {
      const bool ok = a.acked && ((a.ha == HaState::kActive && contains(target.active, a.su)) ||
                                  (a.ha == HaState::kStandby && contains(target.standby, a.su)));
      if (!ok) return false;
      ++matching;
    }
    return matching == target.active.size() + target.standby.size();
  }

  void transition(const std::string& siName, const SiTarget& target, int allowedActives) {
    // 1. Existing assignments: keep, quiesce, demote or remove.
    const std::vector<Assignment> existing = state().sis.at(siName).assignments;
    for (const Assignment& a : existing) {
      const SuRuntime& su = state().sus.at(a.su);
      if (!serving(su)) {
        // A unit that failed or is gone: its assignment ends once its VMs certainly do not run.
        // Until then it still counts as active (a hung VM may still be serving). A paused unit
        // keeps its assignments: it may resume holding them.
        if (suCertainlyDown(state(), su) || stoppedByOperator(su, a)) emit(RemoveAssignment{a.su, siName});
        continue;
      }
      const bool wantActive = contains(target.active, a.su);
      const bool wantStandby = contains(target.standby, a.su);
      const bool stopping = suReadiness(state(), su) == ReadinessState::kStopping;
      switch (a.ha) {
        case HaState::kActive:
          if (stopping) {
            emit(SetHa{a.su, siName, HaState::kQuiescing});
          } else if (!wantActive) {
            emit(SetHa{a.su, siName, HaState::kQuiesced});
          }
          break;
        case HaState::kQuiescing:
          if (a.acked) emit(RemoveAssignment{a.su, siName});
          break;
        case HaState::kQuiesced:
          if (!a.acked) break;
          if (wantStandby) {
            emit(SetHa{a.su, siName, HaState::kStandby});
          } else if (!wantActive) {
            emit(RemoveAssignment{a.su, siName});
          }
          break;
        case HaState::kStandby:
          if (!wantActive && !wantStandby) emit(RemoveAssignment{a.su, siName});
          break;
      }
    }

    // 2. New actives, once no other unit may still hold the SI active.
    for (const auto& unit : target.active) {
      const auto& current = state().sis.at(siName).assignments;
      auto mine = std::find_if(current.begin(), current.end(), [&](const Assignment& a) { return a.su == unit; });
      if (mine != current.end() && mine->ha == HaState::kActive) continue;
      if (mine != current.end() && mine->ha != HaState::kStandby && !(mine->ha == HaState::kQuiesced && mine->acked)) {
        continue;
      }
      if (liveActives(siName, unit) >= allowedActives) continue;
      emit(SetHa{unit, siName, HaState::kActive});
    }

    // 3. New standbys.
    for (const auto& unit : target.standby) {
      const auto& current = state().sis.at(siName).assignments;
      const bool has = std::any_of(current.begin(), current.end(), [&](const Assignment& a) { return a.su == unit; });
      if (!has) emit(SetHa{unit, siName, HaState::kStandby});
    }

    // si-swap done: forget the preference.
    const SiRuntime& si = state().sis.at(siName);
    if (!si.preferredActive.empty()) {
      bool done = false;
      for (const auto& a : si.assignments)
        done = done || (a.su == si.preferredActive && a.ha == HaState::kActive && a.acked);
      const bool impossible = !serving(state().sus.at(si.preferredActive));
      if (done || impossible) emit(SetPreferredActive{siName, ""});
    }
  }

  // An assignment that cannot be active (standby, or quiesced and confirmed) of a unit one of whose
  // VMs an operator stopped: it goes once that VM is stopped, as for a unit certainly down.
  bool stoppedByOperator(const SuRuntime& su, const Assignment& a) const {
    if (a.ha != HaState::kStandby && !(a.ha == HaState::kQuiesced && a.acked)) return false;
    for (const auto& spec : state().suSpec(su.name).vms) {
      const VmRuntime& vm = state().vms.at(spec.name);
      if (vm.hold != VmHold::kNone && vm.presence == PresenceState::kUninstantiated) return true;
    }
    return false;
  }

  // The other units that may still hold `si` active: active or quiescing, or told to quiesce and
  // not yet confirmed, whether or not they are reachable.
  int liveActives(const std::string& si, const std::string& unit) const {
    int live = 0;
    for (const auto& a : state().sis.at(si).assignments) {
      if (a.su == unit) continue;
      if (a.ha == HaState::kActive || a.ha == HaState::kQuiescing || (a.ha == HaState::kQuiesced && !a.acked)) ++live;
    }
    return live;
  }

  // shutting-down entities become locked once they hold no assignment.
  void completeShutdowns() {
    auto holdsAny = [&](const std::string& su) {
      for (const auto& [name, si] : state().sis) {
        for (const auto& a : si.assignments) {
          if (a.su == su) return true;
        }
      }
      return false;
    };
    for (const auto& [name, su] : std::map<std::string, SuRuntime>(state().sus)) {
      if (su.admin == AdminState::kShuttingDown && !holdsAny(name)) {
        emit(SetAdmin{{AdminTarget::Kind::kServiceUnit, name}, AdminState::kLocked});
      }
    }
    for (const auto& [name, si] : std::map<std::string, SiRuntime>(state().sis)) {
      if (si.admin == AdminState::kShuttingDown && si.assignments.empty()) {
        emit(SetAdmin{{AdminTarget::Kind::kServiceInstance, name}, AdminState::kLocked});
      }
    }
    for (const auto& [name, sg] : std::map<std::string, SgRuntime>(state().sgs)) {
      if (sg.admin != AdminState::kShuttingDown) continue;
      bool any = false;
      for (const auto& [siName, si] : state().sis) any = any || (si.sg == name && !si.assignments.empty());
      if (!any) emit(SetAdmin{{AdminTarget::Kind::kServiceGroup, name}, AdminState::kLocked});
    }
    for (const auto& [name, node] : std::map<std::string, NodeRuntime>(state().nodes)) {
      if (node.admin != AdminState::kShuttingDown) continue;
      bool any = false;
      for (const auto& [suName, su] : state().sus) any = any || (su.node == name && holdsAny(suName));
      if (!any) emit(SetAdmin{{AdminTarget::Kind::kNode, name}, AdminState::kLocked});
    }
  }

  ClusterState work_;
  const View& view_;
  const TimePoint now_;
  std::vector<Action> actions_;
  std::optional<TimePoint> wake_;
  std::optional<std::map<std::string, HostLoad>> hostLoads_;
};

}  // namespace

int directorOf(const View& view) {
  if (!view.quorate || view.group.empty()) return 0;
  const bool majority = view.group.size() * 2 > view.clusterSize || (view.twoNode && view.clusterSize == 2);
  if (!majority) return 0;
  return *view.group.begin();
}

EngineStep decide(const ClusterState& state, const View& view, TimePoint now) {
  return Decider(state, view, now).run();
}

}  // namespace kvm_amf::engine
