// amfd: the node manager of one host with its real parts around it, on one event loop: the
// Corosync group, the state on disk, the fence command, libvirt, the guest agents' channel and
// the admin API (docs/amfd.md). cmd/amfd parses the options and runs the loop.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kvm_amf/admin/admin_server.h"
#include "kvm_amf/amf/node/local_agent.h"
#include "kvm_amf/common/event_loop.h"
#include "kvm_amf/common/result.h"
#include "kvm_amf/monitor/notifier.h"
#include "kvm_amf/vmm/libvirt_hypervisor.h"

namespace kvm_amf::daemon {

struct AmfdOptions {
  std::string node;                      // this host's name in the Cluster document (and Corosync's)
  std::vector<std::string> configFiles;  // the cluster's YAML
  std::string stateDir = "/var/lib/kvm-amf";
  admin::AdminServerOptions admin;                     // ipcPath (required), group, eventsPath, TCP with CURVE
  vmm::LibvirtOptions libvirt;                         // uri, domain.kvm, domain.agentSocketDir (required)
  Duration firstHeartbeatTimeout = Duration(120'000);  // a guest's boot, to its agent's first heartbeat
  node::VmOperationLimits vmLimits;                    // vm shutdown's and vm reboot's graces
  // The metrics endpoint, "ADDR:PORT"; empty: no endpoint (the figures are still kept). While the
  // address cannot be bound amfd runs without it, logs why and tries again every 10 s.
  // docs/monitoring.md.
  std::string metricsAddress = "127.0.0.1:9464";
  Duration statsInterval = Duration(15'000);  // how often the VMs' statistics are collected
  // Where the QEMUs' pid files are (libvirt's run directory for QEMU), for their threads' figures.
  std::string qemuPidDir = "/run/libvirt/qemu";
  // Event notifications: sent by the amfd that directs the cluster, so give every amfd the same.
  monitor::NotifierOptions notify;
  std::string version;  // amf_build_info
  // One line of amfd's log (what it started, refused or dropped, every report and decision it
  // applies, what the guests' channels saw). Called on the loop thread. Default: stderr.
  std::function<void(const std::string&)> log;
};

// Why start() failed, for the exit code: the configuration or the stored options are bad (65), or a
// service amfd needs is not there (69: Corosync, libvirt, the admin socket).
struct StartError {
  enum class Kind { kConfiguration, kUnavailable } kind;
  std::string message;
};

class Amfd {
 public:
  // Loads the configuration and this host's stored state (a state file that is refused is
  // logged, and the state comes from the peers), connects to Corosync and libvirt, opens the
  // admin API and joins the group. VMs already running are reattached (the node manager reports
  // them). REQUIRES: called on the loop thread; `loop` outlives the result.
  static std::unique_ptr<Amfd> start(EventLoop& loop, const AmfdOptions& options, StartError& error);

  // Leaves the group and closes the admin API; the VMs keep running. Loop thread.
  ~Amfd();
  Amfd(const Amfd&) = delete;
  Amfd& operator=(const Amfd&) = delete;

  struct Parts;

 private:
  explicit Amfd(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

}  // namespace kvm_amf::daemon
