// A simulated hypervisor host with its guests' agents, for amf-sim and tests. It keeps the
// ground truth (which VM runs, which guest believes which HA state) and reports every change of
// it to an observer, so invariants are checked against what runs, not against what the node
// managers believe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "kvm_amf/common/scheduler.h"
#include "kvm_amf/vmm/guest_channel.h"
#include "kvm_amf/vmm/hypervisor.h"

namespace kvm_amf::vmm {

// How long simulated operations take. vmStart: a start, or a guest's boot after a reboot or reset;
// vmStop: a destroy, a guest's orderly power-off (shutdown, or the first half of a reboot), a
// managed save or a restore from one (the memory image written or read back); vmPause: pausing or
// resuming (measured 20 ms); vmReset: the reset button (measured 0.16-0.27 s), then the guest boots.
struct SimHostTiming {
  Duration vmStart{2000};
  Duration vmStop{500};
  Duration guestAck{5};
  Duration vmPause{20};
  Duration vmReset{200};
};

class SimTruthObserver {
 public:
  virtual ~SimTruthObserver() = default;
  virtual void onVmRunning(const std::string& vm, const std::string& node, bool running) = 0;
  // The guest now believes it holds `si` in `ha` (nullopt: not at all).
  virtual void onGuestHa(const std::string& vm, const std::string& node, const std::string& si,
                         std::optional<model::HaState> ha) = 0;
  // The guest runs but does not serve: hung, or paused by an operator (false: it serves again).
  virtual void onGuestHung(const std::string& vm, const std::string& node, bool hung) = 0;
};

class SimHost : public Hypervisor, public GuestChannel {
 public:
  enum class Op { kStart, kStop };

  // `random(n)` gives a number in [0, n): the seeded source of the simulation.
  SimHost(std::string node, Scheduler& scheduler, SimHostTiming timing, SimTruthObserver& truth,
          std::function<std::uint64_t(std::uint64_t)> random);
  ~SimHost() override;

  void setListener(HypervisorListener* listener) override { hypervisorListener_ = listener; }
  void start(const model::VmSpec& spec, const std::optional<model::WatchdogSpec>& watchdog, Done done) override;
  void destroy(const std::string& vm, Done done) override;
  void listRunning(std::function<void(Result<std::vector<std::string>>)> done) override;
  // The guest honours a power-off request within vmStop (destroyed at `grace` if that is shorter).
  void shutdown(const std::string& vm, Duration grace, Done done) override;
  // A paused guest sends no heartbeat, feeds no watchdog and answers no assignment until resumed.
  void pause(const std::string& vm, Done done) override;
  void resume(const std::string& vm, Done done) override;
  // The managed save keeps the HA states the guest believed: a restored guest believes them again.
  // It survives a power cycle; start() and destroy() discard it.
  void suspend(const std::string& vm, Duration timeout, Done done) override;
  void restore(const std::string& vm, Duration timeout, Done done) override;
  // The guest shuts down (vmStop, or `grace` if shorter: then the reset button), resets (forgets
  // its HA states, no longer hung) and boots (vmStart); done once it runs again.
  void reboot(const std::string& vm, Duration grace, Done done) override;
  void reset(const std::string& vm, Done done) override;

  void setListener(GuestListener* listener) override { guestListener_ = listener; }
  void watch(const std::string& vm, const model::HeartbeatSpec& heartbeat) override;
  void unwatch(const std::string& vm) override;
  void assign(const std::string& vm, const std::string& si, model::HaState ha,
              const std::map<std::string, std::string>& attributes, Done done) override;
  void unassign(const std::string& vm, const std::string& si, Done done) override;

  // Faults.
  void crashVm(const std::string& vm);  // QEMU dies
  void hangGuest(const std::string& vm);
  void resumeGuest(const std::string& vm);  // a hung guest runs on (its watchdog, if it did not fire, is fed again)  //
                                            // heartbeats and watchdog feeding stop; QEMU runs on
  void ioError(const std::string& vm);
  void powerOff();  // every VM stops at once, silently; pending operations never complete
  void powerOn();
  void failNext(Op op, int count);

  bool running(const std::string& vm) const;
  bool paused(const std::string& vm) const;
  bool hasManagedSave(const std::string& vm) const;
  bool poweredOn() const { return poweredOn_; }
  const std::string& node() const { return node_; }

 private:
  struct Vm {
    bool running = false;
    bool hung = false;
    bool paused = false;
    // A managed save on this host (suspend): the HA states the guest believed then.
    std::optional<std::map<std::string, model::HaState>> saved;
    std::map<std::string, model::HaState> ha;
    std::optional<model::HeartbeatSpec> watched;
    std::optional<model::WatchdogSpec> watchdog;
    std::optional<TimerId> hangTimer;
    std::optional<TimerId> watchdogTimer;
    std::uint64_t incarnation = 0;  // bumped when it starts or stops: stale completions are ignored
    std::uint64_t destroys = 0;     // a destroy cancels a start still in progress
  };

  void stopVm(const std::string& name, Vm& vm);
  // True when an injected failure of `op` is due (and uses it up).
  bool takeFailure(Op op);
  // Stops the VM after `delay` and discards its managed save (destroy, shutdown); an injected stop
  // failure leaves it running.
  void stopAfter(const std::string& name, Duration delay, const std::string& what, Done done);
  void startRunning(const std::string& name, Vm& vm);
  // The guest forgets its HA states and is no longer hung (a reset, or the watchdog's).
  void resetGuest(const std::string& name, Vm& vm);
  // The guest resets after `delay` and boots (vmStart); done once it runs again.
  void resetAfter(const std::string& name, Duration delay, Done done);
  // Runs `fn` with the running VM after `delay` and gives `done` its outcome; an error instead when
  // the VM is not running, or stopped or restarted meanwhile. Nothing after a power-off.
  void afterOnVm(const std::string& name, Duration delay, std::function<Status(Vm&)> fn, Done done);
  void setHung(const std::string& name, Vm& vm, bool hung);
  void setPaused(const std::string& name, Vm& vm, bool paused);
  void armWatchdog(const std::string& name, Vm& vm);
  void armHangDetection(const std::string& name, Vm& vm);
  void fireWatchdog(const std::string& name);

  std::string node_;
  Scheduler& scheduler_;
  SimHostTiming timing_;
  SimTruthObserver& truth_;
  std::function<std::uint64_t(std::uint64_t)> random_;
  HypervisorListener* hypervisorListener_ = nullptr;
  GuestListener* guestListener_ = nullptr;
  bool poweredOn_ = true;
  std::uint64_t power_ = 0;  // bumped on power off
  std::map<std::string, Vm> vms_;
  std::map<Op, int> failures_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace kvm_amf::vmm
