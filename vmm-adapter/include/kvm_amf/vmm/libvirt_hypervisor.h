// The real Hypervisor: libvirt. Every libvirt call runs on a worker thread (one per VM, created on
// demand, plus one for connection-wide calls), so a call stuck on a hung (e.g. SIGSTOPped) QEMU
// holds up only that VM's calls; each call has a deadline, after which `done` gets an error and the
// late result is dropped. Domain events come from libvirt's default event loop, run on a thread
// of its own, and reach the listener on the owner's event loop. When the libvirt daemon goes away
// the adapter reconnects every second in the background; VMs that stopped meanwhile are reported
// as crashed, the others are not.
//
// No libvirt type appears here: only vmm-adapter/libvirt/ includes libvirt.
#pragma once

#include <memory>
#include <string>

#include "kvm_amf/common/event_loop.h"
#include "kvm_amf/common/result.h"
#include "kvm_amf/common/time.h"
#include "kvm_amf/vmm/hypervisor.h"
#include "kvm_amf/vmm/libvirt_domain_xml.h"

namespace kvm_amf::vmm {

struct LibvirtOptions {
  std::string uri = "qemu:///system";  // for tests: test:///default or test:///ABS/PATH/node.xml
  // Passed to domainXml for every VM (its `watchdog` and `uuid` are set per call by start()).
  DomainOptions domain;
  Duration callTimeout = Duration(10'000);  // per libvirt call, from the moment it is asked for
  Duration reconnectInterval = Duration(1'000);
};

namespace libvirt_detail {
struct Core;
}

class LibvirtHypervisor : public Hypervisor {
 public:
  // Opens the connection (blocking, on the calling thread, once) and starts the event thread.
  // REQUIRES: called on the loop thread; `loop` outlives the result. Fails if libvirt refuses the
  // connection or the event callbacks.
  static Result<std::unique_ptr<LibvirtHypervisor>> connect(EventLoop& loop, LibvirtOptions options);

  // Loop thread. Deregisters the callbacks, stops the event thread, waits for the libvirt calls in
  // flight to return (their `done` is not called), and closes the connection. No listener call
  // and no `done` happen after it returns.
  ~LibvirtHypervisor() override;
  LibvirtHypervisor(const LibvirtHypervisor&) = delete;
  LibvirtHypervisor& operator=(const LibvirtHypervisor&) = delete;

  // All of these: loop thread only; callbacks run on the loop thread.
  void setListener(HypervisorListener* listener) override;
  // Defines the domain (redefining one that exists) and starts it; a domain running already is
  // success (its definition is updated for its next start).
  void start(const model::VmSpec& spec, const std::optional<model::WatchdogSpec>& watchdog, Done done) override;
  // Destroys, then undefines the domain (with its managed save, snapshots' metadata and NVRAM).
  // An unknown or stopped VM is success. Produces no VmEvent.
  void destroy(const std::string& vm, Done done) override;
  void listRunning(std::function<void(Result<std::vector<std::string>>)> done) override;

 private:
  explicit LibvirtHypervisor(std::shared_ptr<libvirt_detail::Core> core);
  std::shared_ptr<libvirt_detail::Core> core_;
};

}  // namespace kvm_amf::vmm
