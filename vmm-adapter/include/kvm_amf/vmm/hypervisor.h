// The hypervisor of one host: VM lifecycle and failure events. Real: vmm-adapter/libvirt;
// simulated: vmm-adapter/sim. Every call is asynchronous and bounded: its callback runs on the
// owner's event loop, with an error if the operation failed or timed out.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kvm_amf/amf/model/config.h"
#include "kvm_amf/common/result.h"
#include "kvm_amf/common/time.h"

namespace kvm_amf::vmm {

// Completion of an asynchronous operation: success, or why it failed.
using Done = std::function<void(Status)>;

enum class VmEvent {
  kCrashed,   // the VM stopped on its own (QEMU died, guest powered off unexpectedly)
  kWatchdog,  // its watchdog fired
  kIoError,   // a disk under it failed
};

class HypervisorListener {
 public:
  virtual ~HypervisorListener() = default;
  virtual void onVmEvent(const std::string& vm, VmEvent event) = 0;
};

// None of the calls below produces a VmEvent for what it was asked to do: a deliberate stop, pause,
// suspend, reboot or reset is not a failure.
class Hypervisor {
 public:
  virtual ~Hypervisor() = default;
  virtual void setListener(HypervisorListener* listener) = 0;
  // Defines and starts the VM, with a watchdog device when `watchdog` is set; done once it runs. It
  // boots afresh: a managed save of it on this host (suspend()) is discarded.
  virtual void start(const model::VmSpec& spec, const std::optional<model::WatchdogSpec>& watchdog, Done done) = 0;
  // Stops the VM at once (power off); done once it no longer runs. A VM not running is success;
  // a managed save of it on this host is discarded.
  virtual void destroy(const std::string& vm, Done done) = 0;
  // The names of the VMs running now (paused ones included; suspended ones are not running).
  virtual void listRunning(std::function<void(Result<std::vector<std::string>>)> done) = 0;

  // Asks the guest to power off, and destroys the VM if it still runs after `grace` (at once if it
  // cannot be asked); done once it no longer runs. A VM not running is success.
  virtual void shutdown(const std::string& vm, Duration grace, Done done) = 0;
  // Freezes the running VM where it is (its memory and devices kept), and lets it run on. Pausing a
  // paused VM and resuming a running one are success.
  virtual void pause(const std::string& vm, Done done) = 0;
  virtual void resume(const std::string& vm, Done done) = 0;
  // Stops the VM with its memory saved on this host (a managed save); done once it no longer runs.
  // Bounded by `timeout` (the time depends on the VM's memory).
  virtual void suspend(const std::string& vm, Duration timeout, Done done) = 0;
  // Starts the VM again from its managed save on this host, as it was when suspended (paused
  // or running); done once it runs. An error when there is no managed save of it here.
  virtual void restore(const std::string& vm, Duration timeout, Done done) = 0;
  // Asks the guest to reboot (ACPI, or its agent), and resets the VM if the guest has not rebooted
  // within `grace`; done once it has restarted (the guest that ran is gone; the new one may still
  // be booting). The VM keeps running throughout.
  virtual void reboot(const std::string& vm, Duration grace, Done done) = 0;
  // The reset button: the guest restarts at once, without being asked; done once it has.
  virtual void reset(const std::string& vm, Done done) = 0;
};

}  // namespace kvm_amf::vmm
