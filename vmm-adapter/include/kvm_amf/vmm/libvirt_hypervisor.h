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

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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
  // Where libvirt keeps its QEMUs' pid files (NAME.pid); empty: unknown. destroy() kills a QEMU
  // stopped by a signal itself first, which libvirt's destroy would wait 10 s on (see there).
  std::string qemuPidDir = "/run/libvirt/qemu";
};

// One VM's figures from libvirt's statistics (stats()); a figure libvirt did not give is 0 (and the
// VM's list of disks or NICs may be empty).
struct VmStats {
  std::string vm;
  bool running = false;  // the guest executes; false: paused (or another state of an active VM)
  // False when the VM's QEMU did not answer in time (or was still being asked by an earlier
  // query): the figures QEMU gives (CPU time, memory, disks) are then missing (0, no disks).
  bool complete = true;
  std::uint64_t cpuTimeNs = 0;        // all vCPUs and QEMU's own threads
  std::uint64_t memoryKiB = 0;        // current balloon size (the guest's memory)
  std::uint64_t memoryMaxKiB = 0;     // the most the balloon may give the guest
  std::uint64_t memoryRssKiB = 0;     // QEMU's resident set
  std::uint64_t memoryUsableKiB = 0;  // what the guest can still use, from its balloon driver (0 without one)
  struct Block {
    std::string name;  // the target device, e.g. vda
    // `errors`: libvirt reports it for Xen only; 0 under QEMU.
    std::uint64_t readBytes = 0, writeBytes = 0, readRequests = 0, writeRequests = 0, errors = 0;
    // Bytes: the image's allocation (highest written offset), the size the guest sees, the image
    // on the host's storage.
    std::uint64_t allocation = 0, capacity = 0, physical = 0;
  };
  struct Net {
    std::string name;  // the host-side device, e.g. vnet0
    std::uint64_t rxBytes = 0, txBytes = 0, rxPackets = 0, txPackets = 0, rxDrops = 0, txDrops = 0, rxErrors = 0,
                  txErrors = 0;
  };
  std::vector<Block> disks;
  std::vector<Net> nics;
};

struct MigrationOptions {
  // The destination libvirt daemon, as the source daemon reaches it (peer-to-peer migration),
  // e.g. qemu+tls://host-b/system.
  std::string destinationUri;
  // Where QEMU's migration stream goes, e.g. tcp://10.0.0.2 (the migration network); empty: the
  // destination daemon's choice (its host name).
  std::string migrationUri;
  // The destination's definition differs from the source's only in host-local paths: the agent
  // socket directory of the destination host (it must exist there); empty: the same as this host's.
  std::string destinationAgentSocketDir;
  Duration maxDowntime = Duration(300);  // the longest pause the switch-over may take
  std::uint64_t bandwidthMiBps = 0;      // 0: unlimited
  Duration timeout = Duration(120'000);  // not done by then: aborted, the VM keeps running here
};

// A migration's progress, from libvirt's job statistics.
struct MigrationProgress {
  Duration elapsed{0};
  std::uint64_t dataTotal = 0, dataProcessed = 0, dataRemaining = 0;  // bytes
  std::uint64_t memoryIteration = 0;                                  // the pre-copy pass
};

// `downtime` and `dataTransferred` come from libvirt's job-completed event; should it not arrive
// within 2 s of the call's return, downtime is 0 and the data is the last progress reading.
struct MigrationOutcome {
  Duration total{0};     // from the call to its return (the VM runs at the destination), as the adapter measured it
  Duration downtime{0};  // the VM paused for the switch-over, as QEMU measured it
  std::uint64_t dataTransferred = 0;  // bytes
};

// Events that are not failures, for logs and metrics. Called on the loop thread.
class LibvirtObserver {
 public:
  virtual ~LibvirtObserver() = default;
  // The guest rebooted or was reset (QEMU kept running); one reset may be reported twice.
  virtual void onRebooted(const std::string& vm) = 0;
  // The VM started here (booted, or restored from a managed save) or arrived here by migration,
  // and QEMU was asked to announce its MACs (announce-self); `status` says whether it could be.
  // Not called where the driver has no QEMU monitor (libvirt's test driver).
  virtual void onAnnounced(const std::string& vm, const Status& status) = 0;
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

  // Loop thread. Deregisters the callbacks, stops the event thread, aborts the migrations in
  // flight (their VMs keep running here), waits for the libvirt calls in flight to return (their
  // `done` is not called), and closes the connection. No listener or observer call and no `done`
  // happen after it returns.
  ~LibvirtHypervisor() override;
  LibvirtHypervisor(const LibvirtHypervisor&) = delete;
  LibvirtHypervisor& operator=(const LibvirtHypervisor&) = delete;

  // All of these: loop thread only; callbacks run on the loop thread.
  void setListener(HypervisorListener* listener) override;
  // Defines the domain (redefining one that exists) and starts it; a domain running already is
  // success (its definition is updated for its next start). A managed save of it is removed first
  // (virDomainCreate would restore it): restore() is the way back from suspend().
  void start(const model::VmSpec& spec, const std::optional<model::WatchdogSpec>& watchdog, Done done) override;
  // Destroys, then undefines the domain (with its managed save, snapshots' metadata and NVRAM).
  // An unknown or stopped VM is success. Produces no VmEvent.
  void destroy(const std::string& vm, Done done) override;
  void listRunning(std::function<void(Result<std::vector<std::string>>)> done) override;

  // The rest of the lifecycle (the Hypervisor's VM operations). Loop thread only; each call
  // bounded by callTimeout unless it says otherwise; none produces a VmEvent (a deliberate stop or
  // pause is not a failure).
  // Asks the guest to power off (ACPI), destroys the VM if it still runs after `grace` (or at once
  // if the request is refused), then undefines it as destroy() does. An unknown VM is success; a
  // stopped one is undefined. Bounded by grace + callTimeout.
  void shutdown(const std::string& vm, Duration grace, Done done) override;
  // Idempotent: pausing a paused VM, resuming a running one is success.
  void pause(const std::string& vm, Done done) override;
  void resume(const std::string& vm, Done done) override;
  // Managed save: the VM's memory goes to disk and it stops, still defined; restore() starts it
  // again from there (an error if there is no managed save). Bounded by `timeout` (memory size
  // dependent).
  void suspend(const std::string& vm, Duration timeout, Done done) override;
  void restore(const std::string& vm, Duration timeout, Done done) override;
  // virDomainReboot (ACPI first, else the guest agent), then waits for libvirt's reboot event (the
  // guest reset itself); a guest that has not rebooted within `grace` gets virDomainReset. Bounded
  // by grace + 2 callTimeouts. One reboot of a VM at a time: a second one while it waits is an error.
  void reboot(const std::string& vm, Duration grace, Done done) override;
  void reset(const std::string& vm, Done done) override;  // the reset button: no guest involvement

  // Beyond the Hypervisor interface: statistics and live migration, for operators and the later
  // orchestration.
  void setObserver(LibvirtObserver* observer);
  // Statistics of every active VM (running or paused) of this host: what libvirt has without
  // QEMU (state, NICs) in one call, then CPU time, memory and disks from each VM's QEMU on its
  // worker. A VM whose QEMU is busy or hung is not waited for more than 1 s: it comes without
  // those (0, no disks), and is not asked again until that query returned. Bounded by
  // callTimeout + 1 s.
  void stats(std::function<void(Result<std::vector<VmStats>>)> done);
  // Live-migrates the running VM to another host (peer-to-peer): persistent there, undefined
  // here once it runs there. `progress` (optional) is called about once a second while it runs.
  // On an error, the timeout, or an I/O error that pauses the VM meanwhile, the migration is
  // aborted and the VM keeps running here. One migration per VM at a time (a second one is an
  // error). Bounded by options.timeout + callTimeout.
  void migrate(const std::string& vm, const MigrationOptions& options,
               std::function<void(const MigrationProgress&)> progress,
               std::function<void(Result<MigrationOutcome>)> done);

 private:
  explicit LibvirtHypervisor(std::shared_ptr<libvirt_detail::Core> core);
  std::shared_ptr<libvirt_detail::Core> core_;
};

}  // namespace kvm_amf::vmm
