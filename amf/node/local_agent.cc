#include "kvm_amf/amf/node/local_agent.h"
#include "kvm_amf/common/overloaded.h"

#include <algorithm>
#include <map>

namespace kvm_amf::node {
namespace {

using engine::ClusterState;
using model::PresenceState;
using vmm::Done;

}  // namespace

LocalAgent::LocalAgent(std::string node, int nodeId, Scheduler& scheduler, vmm::Hypervisor& hypervisor,
                       vmm::GuestChannel& guests, cluster::FenceAgent& fence,
                       std::function<const engine::ClusterState*()> state, Reporter report, VmOperationLimits limits)
    : node_(std::move(node)),
      nodeId_(nodeId),
      scheduler_(scheduler),
      hypervisor_(hypervisor),
      guests_(guests),
      fence_(fence),
      state_(std::move(state)),
      report_(std::move(report)),
      limits_(limits) {
  hypervisor_.setListener(this);
  guests_.setListener(this);
}

LocalAgent::~LocalAgent() {
  *alive_ = false;
  hypervisor_.setListener(nullptr);
  guests_.setListener(nullptr);
}

bool LocalAgent::mine(const std::string& vm) const {
  const ClusterState* s = state();
  if (!s) return false;
  auto it = s->vms.find(vm);
  return it != s->vms.end() && it->second.node == node_;
}

void LocalAgent::onDecision(const engine::Decision& decision) {
  const ClusterState* s = state();
  if (!s) return;
  // A unit the state no longer has (a configuration change removed it; only an uninstantiated
  // one can be) has nothing to carry out.
  auto known = [s](const std::string& su) { return s->sus.contains(su); };
  for (const auto& action : decision.actions) {
    std::visit(Overloaded{
                   [&](const engine::StartSu& a) {
                     if (a.node == node_) startUnit(a.su, 0);
                   },
                   [&](const engine::SetNodeStatus& a) {
                     // Marked lost or down while in the group (a membership flap raced with this
                     // host's report): report in again, or the host would stay out for good.
                     if (a.node == node_ && a.status != engine::NodeStatus::kUp) reportIn();
                   },
                   [&](const engine::StopSu& a) {
                     if (!known(a.su)) return;
                     for (const auto& vm : s->suSpec(a.su).vms) stopVm(vm.name);
                   },
                   [&](const engine::FailoverSu& a) {
                     if (!known(a.su)) return;
                     for (const auto& vm : s->suSpec(a.su).vms) stopVm(vm.name);
                   },
                   [&](const engine::RestartVm& a) { restartVm(a.vm, a.method); },
                   [&](const engine::RestartSu& a) {
                     if (!known(a.su)) return;
                     for (const auto& vm : s->suSpec(a.su).vms) restartVm(vm.name, engine::RestartMethod::kRecreate);
                   },
                   [&](const engine::StopVm& a) {
                     if (a.node == node_) operatorStop(a);
                   },
                   [&](const engine::StartVm& a) {
                     if (a.node == node_) startVm(a.vm, [] {});
                   },
                   [&](const engine::SetVmPaused& a) {
                     if (a.node != node_ || !mine(a.vm)) return;
                     if (a.paused) {
                       pauseVm(a.vm);
                     } else {
                       resumeVm(a.vm);
                     }
                   },
                   [&](const engine::SetHa& a) {
                     if (known(a.su) && s->sus.at(a.su).node == node_) assignUnit(a.su, a.si, a.ha);
                   },
                   [&](const engine::RemoveAssignment& a) {
                     if (!known(a.su) || s->sus.at(a.su).node != node_) return;
                     for (const auto& vm : s->suSpec(a.su).vms) guests_.unassign(vm.name, a.si, [](Status) {});
                   },
                   [&](const engine::StartFence& a) {
                     if (a.fencer != nodeId_) return;
                     const model::FenceAgentSpec& agent = s->config->cluster->fencing.agent;
                     fence_.fence(a.node, cluster::FenceMethod{agent.command, agent.timeout},
                                  guarded([this, target = a.node](bool ok, std::string message) {
                                    report_(engine::FenceDone{target, ok, std::move(message), scheduler_.now()});
                                  }));
                   },
                   [&](const engine::DestroyVm& a) {
                     if (a.node == node_) hypervisor_.destroy(a.vm, [](Status) {});
                   },
                   [](const auto&) {},
               },
               action);
  }
}

void LocalAgent::onReport(const engine::Report& report) {
  if (const auto* up = std::get_if<engine::AgentUp>(&report); up && up->node == node_) {
    resume();
    return;
  }
  const auto* started = std::get_if<engine::VmStarted>(&report);
  if (!started || started->node != node_) return;
  const ClusterState* s = state();
  auto vm = s->vms.find(started->vm);
  if (vm == s->vms.end()) return;  // removed by a configuration change since
  tellUnconfirmed(vm->second.su);
}

void LocalAgent::tellUnconfirmed(const std::string& su) {
  const ClusterState* s = state();
  for (const auto& [name, si] : s->sis) {
    for (const auto& a : si.assignments) {
      if (a.su == su && !a.acked) assignUnit(su, name, a.ha);
    }
  }
}

void LocalAgent::resume() {
  const ClusterState* s = state();
  for (const auto& [name, su] : s->sus) {
    if (su.node != node_) continue;
    bool starting = false;
    for (const auto& vm : s->suSpec(name).vms) {
      const engine::VmRuntime& runtime = s->vms.at(vm.name);
      const auto presence = runtime.presence;
      if (presence == PresenceState::kTerminating) {
        // A managed save that ended while nobody watched: the VM no longer runs, it is saved.
        if (runtime.hold == engine::VmHold::kSuspended && !lastRunning_.contains(vm.name)) {
          report_(engine::VmStopped{vm.name, node_});
        } else {
          stopVm(vm.name);
        }
      }
      if (presence == PresenceState::kInstantiated) reconcilePause(vm.name, runtime);
      starting = starting || presence == PresenceState::kInstantiating || presence == PresenceState::kRestarting;
    }
    if (starting) startUnit(name, 0);
    tellUnconfirmed(name);
  }
  reportedIn_ = true;
}

void LocalAgent::reconcilePause(const std::string& vm, const engine::VmRuntime& runtime) {
  if (runtime.paused) {
    if (!pausedHere_.contains(vm)) pauseVm(vm);
    return;
  }
  if (runtime.failure) return;  // (an I/O error may have paused it: its recovery decides)
  // Its heartbeats are watched again already (reportIn); the resume is a no-op for a running VM.
  if (!reportedIn_ || pausedHere_.erase(vm) > 0) hypervisor_.resume(vm, [](Status) {});
}

void LocalAgent::startUnit(const std::string& su, int fromBootOrder) {
  const ClusterState* s = state();
  if (!s->sus.contains(su)) return;  // removed by a configuration change since its start began
  // The VMs of the lowest boot order not started yet; the next order starts when they all ran.
  // VMs the state does not start here (held stopped by an operator, or running) are left out.
  std::vector<std::string> batch;
  int order = -1;
  for (const auto& vm : s->suSpec(su).vms) {
    if (vm.bootOrder < fromBootOrder) continue;
    const engine::VmRuntime& runtime = s->vms.at(vm.name);
    if (runtime.node != node_ ||
        (runtime.presence != PresenceState::kInstantiating && runtime.presence != PresenceState::kRestarting)) {
      continue;
    }
    if (order == -1 || vm.bootOrder < order) {
      order = vm.bootOrder;
      batch.clear();
    }
    if (vm.bootOrder == order) batch.push_back(vm.name);
  }
  if (batch.empty()) return;
  auto remaining = std::make_shared<std::size_t>(batch.size());
  for (const auto& vm : batch) {
    startVm(vm, [this, su, order, remaining] {
      if (--*remaining == 0) startUnit(su, order + 1);
    });
  }
}

void LocalAgent::startVm(const std::string& vm, std::function<void()> then) {
  const ClusterState* s = state();
  auto found = s->vms.find(vm);
  if (found == s->vms.end()) return;
  const auto& runtime = found->second;
  if (runtime.node != node_ ||
      (runtime.presence != PresenceState::kInstantiating && runtime.presence != PresenceState::kRestarting)) {
    return;
  }
  if (!starting_.insert(vm).second) return;  // already being started (its completion reports)
  const auto& watchdog = s->sgSpec(s->sus.at(runtime.su).sg).health.watchdog;
  Done completed = guarded([this, vm, then = std::move(then)](Status status) {
    starting_.erase(vm);
    // Unwanted once stopped, and once removed by a configuration change after its stop.
    const auto now = state()->vms.find(vm);
    const bool wanted =
        now != state()->vms.end() && now->second.node == node_ &&
        (now->second.presence == PresenceState::kInstantiating || now->second.presence == PresenceState::kRestarting ||
         now->second.presence == PresenceState::kInstantiated);
    if (status.ok() && !wanted) {
      // The cluster stopped wanting it while it started: it must not run.
      hypervisor_.destroy(vm, [](Status) {});
      then();
      return;
    }
    if (status.ok()) {
      ++startsCompleted_;
      failed_.erase(vm);
      watch(vm);
      report_(engine::VmStarted{vm, node_});
    } else {
      report_(engine::VmStartFailed{vm, node_, status.error().message});
    }
    then();
  });
  if (runtime.savedOn != node_ || runtime.presence != PresenceState::kInstantiating) {
    hypervisor_.start(s->vmSpec(vm), watchdog, std::move(completed));
    return;
  }
  // Suspended here by an operator: restored as it was. A managed save that is gone or cannot be
  // restored is given up: the VM boots afresh (start() discards what is left of it).
  hypervisor_.restore(vm, limits_.suspendTimeout,
                      guarded([this, vm, spec = s->vmSpec(vm), watchdog, completed](Status status) mutable {
                        if (status.ok()) return completed(std::move(status));
                        hypervisor_.start(spec, watchdog, std::move(completed));
                      }));
}

void LocalAgent::stopVm(const std::string& vm) {
  if (!mine(vm) || state()->vms.at(vm).presence != PresenceState::kTerminating) return;
  if (suspending_.contains(vm)) return;  // its managed save is under way and reports
  if (state()->vms.at(vm).hold == engine::VmHold::kSuspended) return suspendVm(vm);
  guests_.unwatch(vm);
  hypervisor_.destroy(vm, guarded([this, vm](Status status) { stopped(vm, status); }));
}

void LocalAgent::stopped(const std::string& vm, const Status& status) {
  if (status.ok()) {
    failed_.erase(vm);
    report_(engine::VmStopped{vm, node_});
  } else {
    report_(engine::VmStopFailed{vm, node_, status.error().message});
  }
}

void LocalAgent::restartVm(const std::string& vm, engine::RestartMethod method) {
  if (!mine(vm) || state()->vms.at(vm).presence != PresenceState::kRestarting) return;
  guests_.unwatch(vm);
  auto recreate = [this, vm] {
    hypervisor_.destroy(vm, guarded([this, vm](Status status) {
                          if (!status.ok()) {
                            // It may still run: only fencing its host makes that certain.
                            report_(engine::VmStopFailed{vm, node_, status.error().message});
                            return;
                          }
                          startVm(vm, [] {});
                        }));
  };
  const std::uint64_t restart = ++restarts_[vm];
  if (method == engine::RestartMethod::kRecreate) return recreate();
  // In place: the guest restarts and QEMU runs on. Its first heartbeat may take a boot's time again
  // (watched anew once it has restarted). A hypervisor that cannot do it restarts the VM the usual
  // way. A later restart of the VM (its unit's, say) supersedes this one's outcome.
  Done done = guarded([this, vm, recreate, restart](Status status) {
    if (restarts_[vm] != restart || !mine(vm) || state()->vms.at(vm).presence != PresenceState::kRestarting) return;
    if (!status.ok()) return recreate();
    restarted(vm);
  });
  if (method == engine::RestartMethod::kReboot) {
    hypervisor_.reboot(vm, limits_.rebootGrace, std::move(done));
  } else {
    hypervisor_.reset(vm, std::move(done));
  }
}

void LocalAgent::restarted(const std::string& vm) {
  ++startsCompleted_;
  failed_.erase(vm);
  watch(vm);
  report_(engine::VmStarted{vm, node_});
}

void LocalAgent::operatorStop(const engine::StopVm& stop) {
  const ClusterState* s = state();
  auto it = s->vms.find(stop.vm);
  if (it == s->vms.end()) return;
  const engine::VmRuntime& vm = it->second;
  if (vm.node != node_ || vm.presence != PresenceState::kTerminating) {
    // Not running here: a managed save of it here is what a destroy discards (no report: the
    // state places nothing here).
    if (stop.method == engine::VmStopMethod::kDestroy) hypervisor_.destroy(stop.vm, [](Status) {});
    return;
  }
  switch (stop.method) {
    case engine::VmStopMethod::kShutdown:
      return shutdownVm(stop.vm);
    case engine::VmStopMethod::kSuspend:
      return suspendVm(stop.vm);
    case engine::VmStopMethod::kDestroy:
      break;
  }
  stopVm(stop.vm);
}

void LocalAgent::shutdownVm(const std::string& vm) {
  guests_.unwatch(vm);  // a guest powering off stops its heartbeats: not a hang
  hypervisor_.shutdown(vm, limits_.shutdownGrace, guarded([this, vm](Status status) { stopped(vm, status); }));
}

void LocalAgent::suspendVm(const std::string& vm) {
  if (!suspending_.insert(vm).second) return;
  guests_.unwatch(vm);
  hypervisor_.suspend(vm, limits_.suspendTimeout, guarded([this, vm](Status status) {
                        suspending_.erase(vm);
                        if (status.ok()) return stopped(vm, status);
                        // No managed save: the VM is destroyed instead. It stays stopped, and boots
                        // afresh on `vm start`.
                        hypervisor_.destroy(vm, guarded([this, vm](Status destroyed) { stopped(vm, destroyed); }));
                      }));
}

void LocalAgent::pauseVm(const std::string& vm) {
  pausedHere_.insert(vm);
  guests_.unwatch(vm);  // a paused guest sends no heartbeats: not a hang
  hypervisor_.pause(vm, guarded([this, vm](Status status) {
                      if (status.ok()) return;
                      // It runs on: watched again, so that a hang of it is still seen.
                      if (mine(vm) && state()->vms.at(vm).presence == PresenceState::kInstantiated) watch(vm);
                    }));
}

void LocalAgent::resumeVm(const std::string& vm) {
  pausedHere_.erase(vm);
  hypervisor_.resume(
      vm, guarded([this, vm](Status) {
        const ClusterState* s = state();
        if (!mine(vm) || s->vms.at(vm).presence != PresenceState::kInstantiated || s->vms.at(vm).paused) {
          return;
        }
        // Watched again whatever the outcome (with the first heartbeat's grace): a
        // guest that does not run on is found hung. Told what it missed while paused.
        watch(vm);
        tellUnconfirmed(s->vms.at(vm).su);
      }));
}

void LocalAgent::assignUnit(const std::string& su, const std::string& si, model::HaState ha) {
  const ClusterState* s = state();
  // Only running guests can take it; restarted ones are told once they run again (onReport).
  if (engine::suPresence(*s, s->sus.at(su)) != PresenceState::kInstantiated) return;
  std::map<std::string, std::string> attributes;
  for (const auto& spec : s->sgSpec(s->sus.at(su).sg).serviceInstances) {
    if (spec.name == si) attributes = spec.attributes;
  }
  const auto& vms = s->suSpec(su).vms;
  auto pending = std::make_shared<std::size_t>(vms.size());
  auto failed = std::make_shared<bool>(false);
  for (const auto& vm : vms) {
    guests_.assign(vm.name, si, ha, attributes, guarded([this, su, si, ha, pending, failed](Status status) {
                     if (!status.ok()) *failed = true;
                     if (--*pending == 0 && !*failed) report_(engine::HaAcked{su, si, ha});
                   }));
  }
}

void LocalAgent::watch(const std::string& vm) {
  const ClusterState* s = state();
  const auto& heartbeat = s->sgSpec(s->sus.at(s->vms.at(vm).su).sg).health.heartbeat;
  if (heartbeat) guests_.watch(vm, *heartbeat);
}

void LocalAgent::reportIn() {
  const std::uint64_t starts = startsCompleted_;
  hypervisor_.listRunning(guarded([this, starts](Result<std::vector<std::string>> running) {
    const ClusterState* s = state();
    if (!s || !running.ok()) return;
    if (starts != startsCompleted_) {
      reportIn();  // a VM started while the list was taken: the list may miss it
      return;
    }
    std::vector<std::string> ours;
    for (const auto& vm : running.value()) {
      if (s->vms.contains(vm)) ours.push_back(vm);
    }
    std::sort(ours.begin(), ours.end());
    lastRunning_ = std::set<std::string>(ours.begin(), ours.end());
    for (const auto& vm : ours) {
      if (mine(vm) && !s->vms.at(vm).paused) watch(vm);  // a paused guest sends no heartbeats
    }
    report_(engine::AgentUp{node_, ours});
    for (const auto& [vm, kind] : failed_) {
      if (mine(vm) && !s->vms.at(vm).failure && std::find(ours.begin(), ours.end(), vm) != ours.end()) {
        report_(engine::VmFailed{vm, node_, kind});
      }
    }
  }));
}

void LocalAgent::selfFence() {
  hypervisor_.listRunning(guarded([this](Result<std::vector<std::string>> running) {
    const ClusterState* s = state();
    if (!s || !running.ok()) return;
    for (const auto& vm : running.value()) {
      if (!s->vms.contains(vm)) continue;
      guests_.unwatch(vm);
      // Reported like a crash, for the state this host will hold next: a report taken before the
      // stop (after a quick return of quorum) may still list the VM as running.
      hypervisor_.destroy(vm, guarded([this, vm](Status status) {
                            if (status.ok() && state()) onVmEvent(vm, vmm::VmEvent::kCrashed);
                          }));
    }
  }));
}

void LocalAgent::onVmEvent(const std::string& vm, vmm::VmEvent event) {
  if (!mine(vm)) return;
  const auto presence = state()->vms.at(vm).presence;
  if (presence != PresenceState::kInstantiated && presence != PresenceState::kInstantiating) return;
  engine::FailureKind kind = engine::FailureKind::kCrash;
  if (event == vmm::VmEvent::kWatchdog) kind = engine::FailureKind::kWatchdog;
  if (event == vmm::VmEvent::kIoError) kind = engine::FailureKind::kIoError;
  if (kind == engine::FailureKind::kCrash) guests_.unwatch(vm);
  if (kind != engine::FailureKind::kCrash) failed_[vm] = kind;
  report_(engine::VmFailed{vm, node_, kind});
}

void LocalAgent::onGuestHung(const std::string& vm) {
  if (!mine(vm) || state()->vms.at(vm).presence != PresenceState::kInstantiated) return;
  failed_[vm] = engine::FailureKind::kHang;
  report_(engine::VmFailed{vm, node_, engine::FailureKind::kHang});
}

void LocalAgent::onGuestUnhealthy(const std::string& vm) {
  if (!mine(vm) || state()->vms.at(vm).presence != PresenceState::kInstantiated) return;
  failed_[vm] = engine::FailureKind::kUnhealthy;
  report_(engine::VmFailed{vm, node_, engine::FailureKind::kUnhealthy});
}

}  // namespace kvm_amf::node
