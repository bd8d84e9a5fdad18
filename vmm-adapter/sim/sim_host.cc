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

bool SimHost::paused(const std::string& vm) const {
  auto it = vms_.find(vm);
  return it != vms_.end() && it->second.running && it->second.paused;
}

bool SimHost::hasManagedSave(const std::string& vm) const {
  auto it = vms_.find(vm);
  return it != vms_.end() && it->second.saved.has_value();
}

void SimHost::start(const model::VmSpec& spec, const std::optional<model::WatchdogSpec>& watchdog, Done done) {
  const std::string name = spec.name;
  const std::uint64_t power = power_;
  const bool fail = takeFailure(Op::kStart);
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
                       vm.saved.reset();  // a fresh start: a managed save is discarded
                       vm.ha.clear();
                       vm.watchdog = watchdog;
                       startRunning(name, vm);
                     }
                     done(Status::success());
                   });
}

void SimHost::destroy(const std::string& name, Done done) { stopAfter(name, timing_.vmStop, "stop", std::move(done)); }

void SimHost::shutdown(const std::string& name, Duration grace, Done done) {
  stopAfter(name, std::min(timing_.vmStop, grace), "shutdown", std::move(done));
}

bool SimHost::takeFailure(Op op) {
  auto& n = failures_[op];
  if (n == 0) return false;
  --n;
  return true;
}

void SimHost::stopAfter(const std::string& name, Duration delay, const std::string& what, Done done) {
  const std::uint64_t power = power_;
  ++vms_[name].destroys;
  const bool fail = takeFailure(Op::kStop);
  scheduler_.after(delay, [this, alive = alive_, name, what, power, fail, done = std::move(done)] {
    if (!*alive || power != power_) return;
    if (fail) {
      done(Error{what + " of " + name + " failed (injected)"});
      return;
    }
    auto it = vms_.find(name);
    if (it != vms_.end()) {
      if (it->second.running) stopVm(name, it->second);
      it->second.saved.reset();
    }
    done(Status::success());
  });
}

void SimHost::afterOnVm(const std::string& name, Duration delay, std::function<Status(Vm&)> fn, Done done) {
  const std::uint64_t power = power_;
  Vm& vm = vms_[name];
  if (!vm.running) {
    scheduler_.after(Duration(0), [name, done = std::move(done)] { done(Error{name + " is not running"}); });
    return;
  }
  const std::uint64_t incarnation = vm.incarnation;
  scheduler_.after(delay, [this, alive = alive_, name, power, incarnation, fn = std::move(fn), done = std::move(done)] {
    if (!*alive || power != power_) return;
    Vm& v = vms_[name];
    if (v.incarnation != incarnation || !v.running) {
      done(Error{name + " stopped or restarted meanwhile"});
      return;
    }
    done(fn(v));
  });
}

void SimHost::pause(const std::string& name, Done done) {
  afterOnVm(
      name, timing_.vmPause,
      [this, name](Vm& vm) {
        setPaused(name, vm, true);
        // Its clock stops: the watchdog does not count while it is paused.
        if (vm.watchdogTimer) scheduler_.cancel(*vm.watchdogTimer);
        vm.watchdogTimer.reset();
        return Status::success();
      },
      std::move(done));
}

void SimHost::resume(const std::string& name, Done done) {
  afterOnVm(
      name, timing_.vmPause,
      [this, name](Vm& vm) {
        setPaused(name, vm, false);
        if (vm.hung) armWatchdog(name, vm);
        return Status::success();
      },
      std::move(done));
}

void SimHost::suspend(const std::string& name, Duration, Done done) {
  const bool fail = takeFailure(Op::kStop);
  afterOnVm(
      name, timing_.vmStop,
      [this, name, fail](Vm& vm) -> Status {
        if (fail) return Error{"managed save of " + name + " failed (injected)"};
        const std::map<std::string, model::HaState> beliefs = vm.ha;
        stopVm(name, vm);
        vm.saved = beliefs;
        return Status::success();
      },
      std::move(done));
}

void SimHost::restore(const std::string& name, Duration, Done done) {
  const std::uint64_t power = power_;
  if (!vms_[name].saved) {
    scheduler_.after(Duration(0), [name, done = std::move(done)] {
      done(Error{"restore of " + name + ": it has no managed save image"});
    });
    return;
  }
  const std::uint64_t destroys = vms_[name].destroys;
  // The memory image is read back: about as long as writing it took.
  scheduler_.after(timing_.vmStop, [this, alive = alive_, name, power, destroys, done = std::move(done)] {
    if (!*alive || power != power_) return;
    Vm& vm = vms_[name];
    if (vm.destroys != destroys || !vm.saved || vm.running) {
      done(Error{"restore of " + name + " cancelled: destroyed or started meanwhile"});
      return;
    }
    const std::map<std::string, model::HaState> beliefs = *vm.saved;
    vm.saved.reset();
    vm.ha.clear();
    startRunning(name, vm);
    for (const auto& [si, ha] : beliefs) {
      vm.ha[si] = ha;
      truth_.onGuestHa(name, node_, si, ha);
    }
    done(Status::success());
  });
}

void SimHost::reboot(const std::string& name, Duration grace, Done done) {
  resetAfter(name, std::min(timing_.vmStop, grace), std::move(done));  // the guest shuts down first
}

void SimHost::reset(const std::string& name, Done done) { resetAfter(name, timing_.vmReset, std::move(done)); }

void SimHost::resetAfter(const std::string& name, Duration delay, Done done) {
  afterOnVm(
      name, delay,
      [this, name](Vm& vm) {
        resetGuest(name, vm);
        return Status::success();
      },
      [this, name, done = std::move(done)](Status status) mutable {
        if (!status.ok()) return done(std::move(status));
        afterOnVm(
            name, timing_.vmStart, [](Vm&) { return Status::success(); }, std::move(done));  // it boots
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
  if (vm.hung || vm.paused) {
    vm.hung = false;
    vm.paused = false;
    truth_.onGuestHung(name, node_, false);
  }
  truth_.onVmRunning(name, node_, false);
}

void SimHost::startRunning(const std::string& name, Vm& vm) {
  ++vm.incarnation;
  vm.running = true;
  truth_.onVmRunning(name, node_, true);
  setHung(name, vm, false);
}

void SimHost::resetGuest(const std::string& name, Vm& vm) {
  for (const auto& [si, ha] : vm.ha) truth_.onGuestHa(name, node_, si, std::nullopt);
  vm.ha.clear();
  ++vm.incarnation;
  setHung(name, vm, false);
}

// The truth hears of a guest that does not serve (hung or paused) when that changes.
void SimHost::setHung(const std::string& name, Vm& vm, bool hung) {
  if (vm.hung == hung) return;
  const bool before = vm.hung || vm.paused;
  vm.hung = hung;
  if ((vm.hung || vm.paused) != before) truth_.onGuestHung(name, node_, !before);
}

void SimHost::setPaused(const std::string& name, Vm& vm, bool paused) {
  if (vm.paused == paused) return;
  const bool before = vm.hung || vm.paused;
  vm.paused = paused;
  if ((vm.hung || vm.paused) != before) truth_.onGuestHung(name, node_, !before);
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
  if (!vm.paused) armWatchdog(name, vm);
}

void SimHost::armWatchdog(const std::string& name, Vm& vm) {
  if (!vm.watchdog || vm.watchdogTimer) return;
  const std::uint64_t incarnation = vm.incarnation;
  vm.watchdogTimer = scheduler_.after(vm.watchdog->timeout, [this, alive = alive_, name, incarnation] {
    if (!*alive) return;
    Vm& v = vms_[name];
    v.watchdogTimer.reset();
    if (v.incarnation == incarnation && v.running && v.hung) fireWatchdog(name);
  });
}

void SimHost::fireWatchdog(const std::string& name) {
  Vm& vm = vms_[name];
  const model::WatchdogAction action = vm.watchdog->action;
  if (action == model::WatchdogAction::kPoweroff) stopVm(name, vm);
  if (action == model::WatchdogAction::kReset) {
    // The guest reboots: it runs again, forgets its HA states, and is no longer hung.
    resetGuest(name, vm);
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
