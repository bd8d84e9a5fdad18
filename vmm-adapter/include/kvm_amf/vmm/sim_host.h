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

struct SimHostTiming {
  Duration vmStart{2000};
  Duration vmStop{500};
  Duration guestAck{5};
};

class SimTruthObserver {
 public:
  virtual ~SimTruthObserver() = default;
  virtual void onVmRunning(const std::string& vm, const std::string& node, bool running) = 0;
  // The guest now believes it holds `si` in `ha` (nullopt: not at all).
  virtual void onGuestHa(const std::string& vm, const std::string& node, const std::string& si,
                         std::optional<model::HaState> ha) = 0;
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
  bool poweredOn() const { return poweredOn_; }
  const std::string& node() const { return node_; }

 private:
  struct Vm {
    bool running = false;
    bool hung = false;
    std::map<std::string, model::HaState> ha;
    std::optional<model::HeartbeatSpec> watched;
    std::optional<model::WatchdogSpec> watchdog;
    std::optional<TimerId> hangTimer;
    std::optional<TimerId> watchdogTimer;
    std::uint64_t incarnation = 0;  // bumped when it starts or stops: stale completions are ignored
    std::uint64_t destroys = 0;     // a destroy cancels a start still in progress
  };

  void stopVm(const std::string& name, Vm& vm);
  void setHung(const std::string& name, Vm& vm, bool hung);
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
