// The local agent of a node manager: carries out the actions that concern its own host (start,
// stop and restart VMs, tell guests their HA state, run the fence agent) and turns what it
// observes (VM events, guest hangs, completions) into reports for the group.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "kvm_amf/amf/engine/cluster_state.h"
#include "kvm_amf/amf/engine/messages.h"
#include "kvm_amf/cluster/fence_agent.h"
#include "kvm_amf/common/scheduler.h"
#include "kvm_amf/vmm/guest_channel.h"
#include "kvm_amf/vmm/hypervisor.h"

namespace kvm_amf::node {

// How long the VM operations (`vm shutdown`, `vm reboot`, `vm suspend`) may take on a host.
struct VmOperationLimits {
  Duration shutdownGrace{60'000};    // the guest's time to power off before it is destroyed
  Duration rebootGrace{60'000};      // the guest's time to reboot before it is reset
  Duration suspendTimeout{300'000};  // a managed save, or a restore from one (depends on memory)
};

class LocalAgent : public vmm::HypervisorListener, public vmm::GuestListener {
 public:
  using Reporter = std::function<void(engine::Report)>;
  // `state()` gives the current replicated state (nullptr while there is none). All references
  // must outlive the agent; callbacks that arrive after its destruction are ignored.
  LocalAgent(std::string node, int nodeId, Scheduler& scheduler, vmm::Hypervisor& hypervisor, vmm::GuestChannel& guests,
             cluster::FenceAgent& fence, std::function<const engine::ClusterState*()> state, Reporter report,
             VmOperationLimits limits = {});
  ~LocalAgent() override;
  LocalAgent(const LocalAgent&) = delete;
  LocalAgent& operator=(const LocalAgent&) = delete;

  // After `decision` was applied: carry out its actions that concern this host.
  void onDecision(const engine::Decision& decision);
  // After `report` was applied: a VM of this host that (re)started is told its assignments; after
  // this host's own AgentUp, unfinished work of an earlier node manager is resumed.
  void onReport(const engine::Report& report);
  // After a state transfer: report which of the cluster's VMs run here (AgentUp), watch them, and
  // report again the failures seen here that the state does not show.
  void reportIn();
  // Without quorum under `fencing.mode: self`: stop every VM of the cluster on this host.
  void selfFence();

  void onVmEvent(const std::string& vm, vmm::VmEvent event) override;
  void onGuestHung(const std::string& vm) override;
  void onGuestUnhealthy(const std::string& vm) override;

 private:
  const engine::ClusterState* state() const { return state_(); }
  bool mine(const std::string& vm) const;  // the state places vm on this host
  // Carries on what the state expects of this host: starts, stops and unacknowledged assignments.
  void resume();
  void startUnit(const std::string& su, int fromBootOrder);
  // Starts the VM the state has instantiating or restarting here: restored from its managed save
  // when the state says it has one here (a fresh start if that fails), else a fresh start.
  void startVm(const std::string& vm, std::function<void()> then);
  // Stops the VM the state has terminating here: destroyed, or suspended if it is held suspended.
  void stopVm(const std::string& vm);
  void restartVm(const std::string& vm, engine::RestartMethod method);
  // The VM runs again after a restart in place (reboot, reset) that the state still wants.
  void restarted(const std::string& vm);
  // Operators' VM operations (StopVm, SetVmPaused). None is reported as a failure.
  void operatorStop(const engine::StopVm& stop);
  void shutdownVm(const std::string& vm);
  void suspendVm(const std::string& vm);
  void pauseVm(const std::string& vm);
  void resumeVm(const std::string& vm);
  // After this host's report-in: a pause or resume decided while this node manager was away
  // (restarted, or cut off from the group) is carried out now (both are idempotent). A VM the state
  // has running is resumed when this node manager paused it, or knows nothing of it (it restarted).
  void reconcilePause(const std::string& vm, const engine::VmRuntime& runtime);
  // The outcome of a stop the cluster asked for.
  void stopped(const std::string& vm, const Status& status);
  void assignUnit(const std::string& su, const std::string& si, model::HaState ha);
  // Tells the unit's guests the assignments they have not confirmed yet.
  void tellUnconfirmed(const std::string& su);
  void watch(const std::string& vm);
  // Wraps a callback so it does nothing once the agent is gone.
  template <typename F>
  auto guarded(F fn) {
    return [alive = alive_, fn = std::move(fn)](auto&&... args) mutable {
      if (*alive) fn(std::forward<decltype(args)>(args)...);
    };
  }

  std::string node_;
  int nodeId_;
  Scheduler& scheduler_;
  vmm::Hypervisor& hypervisor_;
  vmm::GuestChannel& guests_;
  cluster::FenceAgent& fence_;
  std::function<const engine::ClusterState*()> state_;
  Reporter report_;
  std::map<std::string, engine::FailureKind> failed_;  // failures seen here, until the VM stops or restarts
  std::uint64_t startsCompleted_ = 0;                  // a listing that raced with a start is retaken
  std::set<std::string> starting_;                     // VMs with a start in progress
  std::set<std::string> suspending_;                   // VMs with a managed save in progress
  std::set<std::string> lastRunning_;                  // the cluster's VMs running here at the last report-in
  std::map<std::string, std::uint64_t> restarts_;      // restarts asked of each VM, the latest one counts
  std::set<std::string> pausedHere_;                   // VMs this agent paused and did not resume
  bool reportedIn_ = false;                            // its first report-in has been applied
  VmOperationLimits limits_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace kvm_amf::node
