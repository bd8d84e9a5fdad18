// The channel to the guest agents of one host's VMs (docs/guest-protocol.md): HA state
// assignments with the SI's attributes, acknowledged by the guest; heartbeats watched on the host
// side. Real: vmm-adapter/libvirt (virtio-serial); simulated: vmm-adapter/sim.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "kvm_amf/amf/model/config.h"
#include "kvm_amf/amf/model/states.h"
#include "kvm_amf/common/result.h"
#include "kvm_amf/vmm/hypervisor.h"

namespace kvm_amf::vmm {

class GuestListener {
 public:
  virtual ~GuestListener() = default;
  // No heartbeat for the watched timeout: the guest is hung.
  virtual void onGuestHung(const std::string& vm) = 0;
  // The guest's health command reports it unwell.
  virtual void onGuestUnhealthy(const std::string& vm) = 0;
};

class GuestChannel {
 public:
  virtual ~GuestChannel() = default;
  virtual void setListener(GuestListener* listener) = 0;
  // Watches the VM's heartbeats from now on (after it started); unwatch() when it stops.
  virtual void watch(const std::string& vm, const model::HeartbeatSpec& heartbeat) = 0;
  virtual void unwatch(const std::string& vm) = 0;
  // Tells the guest it holds `si` in `ha`; done once the guest acknowledged (after its hook ran).
  virtual void assign(const std::string& vm, const std::string& si, model::HaState ha,
                      const std::map<std::string, std::string>& attributes, Done done) = 0;
  // Tells the guest it no longer holds `si`.
  virtual void unassign(const std::string& vm, const std::string& si, Done done) = 0;
};

}  // namespace kvm_amf::vmm
