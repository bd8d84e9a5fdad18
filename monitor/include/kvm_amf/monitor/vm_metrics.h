// Per-VM figures of this host's VMs (docs/monitoring.md): libvirt's statistics (CPU, memory,
// disks, NICs), the context switches of each VM's QEMU threads, and what the guest channel saw
// of its agent (heartbeats).
//
// Statistics are gathered in bulk every `interval`: the source (LibvirtHypervisor::stats in amfd)
// works on the adapter's workers and answers on the loop; the QEMU threads' context switches are
// then read from /proc on a worker of this collector. Nothing here blocks the loop. While a
// collection is outstanding, ticks are skipped (and counted); one the source has not answered
// within `timeout` is abandoned, its late answer dropped. A VM whose QEMU did not answer in time
// (VmStats::complete false) keeps the QEMU figures of its last complete collection.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvm_amf/amf/engine/cluster_state.h"
#include "kvm_amf/common/event_loop.h"
#include "kvm_amf/common/result.h"
#include "kvm_amf/monitor/metrics.h"
#include "kvm_amf/vmm/libvirt_hypervisor.h"
#include "kvm_amf/vmm/socket_guest_channel.h"

namespace kvm_amf::monitor {

struct StatsOptions {
  Duration interval = Duration(15'000);
  // A collection the source has not answered by then is abandoned.
  Duration timeout = Duration(30'000);
  std::string qemuPidDir = "/run/libvirt/qemu";  // libvirt's QEMU pid files: DIR/VM.pid
  std::string proc = "/proc";
};

// Statistics of every active VM of this host; `done` on the loop thread.
using StatsSource = std::function<void(std::function<void(Result<std::vector<vmm::VmStats>>)> done)>;
// What the guest channel has seen of a VM's agent; nullopt when it does not watch the VM.
using GuestStatsSource = std::function<std::optional<vmm::GuestStats>(const std::string& vm)>;

class VmMetrics : public vmm::GuestObserver {
 public:
  // `node`: this host's name (the `node` label). `state`: the replicated state now (nullptr
  // while not synchronised), for each VM's unit and group; a VM the cluster does not know is
  // not exported. `log` (optional): a line when collections start failing (each new reason) and
  // when they succeed again. REQUIRES: loop thread; all outlive this.
  VmMetrics(EventLoop& loop, Metrics& metrics, std::string node, StatsOptions options, StatsSource stats,
            GuestStatsSource guests, std::function<const engine::ClusterState*()> state,
            std::function<void(const std::string&)> log = {});
  // Drops a collection in progress (its answer is ignored) after the /proc reads under way end.
  ~VmMetrics() override;
  VmMetrics(const VmMetrics&) = delete;
  VmMetrics& operator=(const VmMetrics&) = delete;

  // Collects now, then every interval; an interval of 0 collects nothing. Loop thread.
  void start();

  // The guest channel's telemetry (loop thread): the time between heartbeats.
  void onHeartbeat(const std::string& vm, std::uint64_t seq, bool healthy) override;
  void onHello(const std::string& vm, const std::string& agentVersion) override;

  // Collections that completed (loop thread; for tests and tools).
  std::uint64_t completed() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvm_amf::monitor
