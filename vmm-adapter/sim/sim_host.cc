#include "kvm_amf/vmm/sim_host.h"

namespace kvm_amf::vmm {

SimHost::SimHost(std::string node, Scheduler& scheduler, SimHostTiming timing, SimTruthObserver& truth,
                 std::function<std::uint64_t(std::uint64_t)> random)
    : node_(std::move(node)), scheduler_(scheduler), timing_(timing), truth_(truth), random_(std::move(random)) {}

SimHost::~SimHost() { *alive_ = false; }

bool SimHost::running(const std::string& vm) const {
  auto it = vms_.find(vm);
  return it != vms_.end() && it->second.running;
}

void SimHost::start(const model::VmSpec& spec, const std::optional<model::WatchdogSpec>& watchdog, Done done) {
  const std::string name = spec.name;
  const std::uint64_t power = power_;
  bool fail = false;
  if (auto& n = failures_[Op::kStart]; n > 0) {
    --n;
    fail = true;
  }
  const std::uint64_t destroys = vms_[name].destroys;
  scheduler_.after(timing_.vmStart,
                   [this, alive = alive_, name, watchdog, power, fail, destroys, done = std::move(done)] {
                     if (!*alive || power != power_) return;
                     if (fail) {
                       done(Error{"start of " + name + " failed (injected)"});
                       return;
                     }
                     Vm& vm = vms_[name];
                     if (vm.destroys != destroys) {
                       done(Error{"start of " + name + " cancelled: destroyed while starting"});
                       return;
                     }
                     if (!vm.running) {
                       ++vm.incarnation;
                       vm.running = true;
                       vm.ha.clear();
                       vm.watchdog = watchdog;
                       truth_.onVmRunning(name, node_, true);
                       setHung(name, vm, false);
                     }
                     done(Status::success());
                   });
}

void SimHost::destroy(const std::string& name, Done done) {
  const std::uint64_t power = power_;
  ++vms_[name].destroys;
  bool fail = false;
  if (auto& n = failures_[Op::kStop]; n > 0) {
    --n;
    fail = true;
  }
  scheduler_.after(timing_.vmStop, [this, alive = alive_, name, power, fail, done = std::move(done)] {
    if (!*alive || power != power_) return;
    if (fail) {
      done(Error{"stop of " + name + " failed (injected)"});
      return;
    }
    auto it = vms_.find(name);
    if (it != vms_.end() && it->second.running) stopVm(name, it->second);
    done(Status::success());
  });
}

void SimHost::listRunning(std::function<void(Result<std::vector<std::string>>)> done) {
  scheduler_.after(Duration(0), [this, alive = alive_, done = std::move(done)] {
    if (!*alive) return;
    std::vector<std::string> names;
    for (const auto& [name, vm] : vms_) {
      if (vm.running) names.push_back(name);
    }
    done(names);
  });
}

void SimHost::stopVm(const std::string& name, Vm& vm) {
  vm.running = false;
  ++vm.incarnation;
  for (const auto& [si, ha] : vm.ha) truth_.onGuestHa(name, node_, si, std::nullopt);
  vm.ha.clear();
  if (vm.hangTimer) scheduler_.cancel(*vm.hangTimer);
  if (vm.watchdogTimer) scheduler_.cancel(*vm.watchdogTimer);
  vm.hangTimer.reset();
  vm.watchdogTimer.reset();
  if (vm.hung) {
    vm.hung = false;
    truth_.onGuestHung(name, node_, false);
  }
  truth_.onVmRunning(name, node_, false);
}

void SimHost::setHung(const std::string& name, Vm& vm, bool hung) {
  if (vm.hung == hung) return;
  vm.hung = hung;
  truth_.onGuestHung(name, node_, hung);
}

void SimHost::watch(const std::string& name, const model::HeartbeatSpec& heartbeat) {
  Vm& vm = vms_[name];
  vm.watched = heartbeat;
  if (vm.hung) armHangDetection(name, vm);
}

void SimHost::unwatch(const std::string& name) {
  auto it = vms_.find(name);
  if (it == vms_.end()) return;
  it->second.watched.reset();
  if (it->second.hangTimer) scheduler_.cancel(*it->second.hangTimer);
  it->second.hangTimer.reset();
}

void SimHost::armHangDetection(const std::string& name, Vm& vm) {
  if (!vm.watched || vm.hangTimer) return;
  // The last heartbeat came up to one interval before the hang.
  const auto interval = static_cast<std::uint64_t>(vm.watched->interval.count());
  const Duration phase(static_cast<Duration::rep>(random_(interval == 0 ? 1 : interval)));
  const Duration delay = std::max(Duration(0), vm.watched->timeout - phase);
  const std::uint64_t incarnation = vm.incarnation;
  vm.hangTimer = scheduler_.after(delay, [this, alive = alive_, name, incarnation] {
    if (!*alive) return;
    Vm& v = vms_[name];
    v.hangTimer.reset();
    if (v.incarnation != incarnation || !v.hung || !v.running) return;
    if (guestListener_) guestListener_->onGuestHung(name);
  });
}

void SimHost::assign(const std::string& name, const std::string& si, model::HaState ha,
                     const std::map<std::string, std::string>&, Done done) {
  Vm& vm = vms_[name];
  if (!vm.running) {
    scheduler_.after(Duration(0), [done = std::move(done), name] { done(Error{name + " is not running"}); });
    return;
  }
  const std::uint64_t incarnation = vm.incarnation;
  scheduler_.after(timing_.guestAck, [this, alive = alive_, name, si, ha, incarnation, done = std::move(done)] {
    if (!*alive) return;
    Vm& v = vms_[name];
    if (v.incarnation != incarnation || !v.running || v.hung) return;  // a hung guest never answers
    v.ha[si] = ha;
    truth_.onGuestHa(name, node_, si, ha);
    done(Status::success());
  });
}

void SimHost::unassign(const std::string& name, const std::string& si, Done done) {
  Vm& vm = vms_[name];
  const std::uint64_t incarnation = vm.incarnation;
  scheduler_.after(timing_.guestAck, [this, alive = alive_, name, si, incarnation, done = std::move(done)] {
    if (!*alive) return;
    Vm& v = vms_[name];
    if (v.incarnation != incarnation || !v.running || v.hung) return;
    if (v.ha.erase(si) > 0) truth_.onGuestHa(name, node_, si, std::nullopt);
    done(Status::success());
  });
}

void SimHost::resumeGuest(const std::string& name) {
  auto it = vms_.find(name);
  if (it == vms_.end() || !it->second.running || !it->second.hung) return;
  Vm& vm = it->second;
  if (vm.watchdogTimer) {
    scheduler_.cancel(*vm.watchdogTimer);
    vm.watchdogTimer.reset();
  }
  setHung(name, vm, false);
}

void SimHost::crashVm(const std::string& name) {
  auto it = vms_.find(name);
  if (it == vms_.end() || !it->second.running) return;
  stopVm(name, it->second);
  if (hypervisorListener_) hypervisorListener_->onVmEvent(name, VmEvent::kCrashed);
}

void SimHost::hangGuest(const std::string& name) {
  auto it = vms_.find(name);
  if (it == vms_.end() || !it->second.running) return;
  Vm& vm = it->second;
  setHung(name, vm, true);
  armHangDetection(name, vm);
  if (vm.watchdog && !vm.watchdogTimer) {
    const std::uint64_t incarnation = vm.incarnation;
    vm.watchdogTimer = scheduler_.after(vm.watchdog->timeout, [this, alive = alive_, name, incarnation] {
      if (!*alive) return;
      Vm& v = vms_[name];
      v.watchdogTimer.reset();
      if (v.incarnation == incarnation && v.running && v.hung) fireWatchdog(name);
    });
  }
}

void SimHost::fireWatchdog(const std::string& name) {
  Vm& vm = vms_[name];
  const model::WatchdogAction action = vm.watchdog->action;
  if (action == model::WatchdogAction::kPoweroff) stopVm(name, vm);
  if (action == model::WatchdogAction::kReset) {
    // The guest reboots: it runs again, forgets its HA states, and is no longer hung.
    for (const auto& [si, ha] : vm.ha) truth_.onGuestHa(name, node_, si, std::nullopt);
    vm.ha.clear();
    ++vm.incarnation;
    setHung(name, vm, false);
  }
  if (hypervisorListener_) hypervisorListener_->onVmEvent(name, VmEvent::kWatchdog);
}

void SimHost::ioError(const std::string& name) {
  if (!running(name)) return;
  if (hypervisorListener_) hypervisorListener_->onVmEvent(name, VmEvent::kIoError);
}

void SimHost::powerOff() {
  if (!poweredOn_) return;
  poweredOn_ = false;
  ++power_;
  for (auto& [name, vm] : vms_) {
    if (vm.running) stopVm(name, vm);
  }
}

void SimHost::powerOn() { poweredOn_ = true; }

void SimHost::failNext(Op op, int count) { failures_[op] += count; }

}  // namespace kvm_amf::vmm
