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

class Hypervisor {
 public:
  virtual ~Hypervisor() = default;
  virtual void setListener(HypervisorListener* listener) = 0;
  // Defines and starts the VM, with a watchdog device when `watchdog` is set; done once it runs.
  virtual void start(const model::VmSpec& spec, const std::optional<model::WatchdogSpec>& watchdog, Done done) = 0;
  // Stops the VM at once (power off); done once it no longer runs. A VM not running is success.
  virtual void destroy(const std::string& vm, Done done) = 0;
  // The names of the VMs running now.
  virtual void listRunning(std::function<void(Result<std::vector<std::string>>)> done) = 0;
};

}  // namespace kvm_amf::vmm
