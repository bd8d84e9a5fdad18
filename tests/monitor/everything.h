// Every collector of amfd with data in it (the small cluster of cluster_fixture.h served, one VM's
// statistics collected, heartbeats seen, an admin request timed, a notifier): what the endpoint
// serves at the least, for the endpoint's tests and the dashboards' check (monitor-sample).
#pragma once

#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>

#include "cluster_fixture.h"
#include "kvm_amf/common/event_loop.h"
#include "kvm_amf/monitor/metrics.h"
#include "kvm_amf/monitor/notifier.h"
#include "kvm_amf/monitor/process_metrics.h"
#include "kvm_amf/monitor/state_metrics.h"
#include "kvm_amf/monitor/vm_metrics.h"
#include "testing/run_until.h"
#include "testing/temp_dir.h"

namespace kvm_amf::monitor::testing {

// Collections every 10 ms; the QEMU of every VM is this process (its pid file in `pidDir`).
inline StatsOptions statsOptions(const std::string& pidDir) {
  StatsOptions options;
  options.interval = Duration(10);
  options.qemuPidDir = pidDir;
  std::ofstream(pidDir + "/mme-a-vm.pid") << getpid() << "\n";
  return options;
}

struct Everything {
  Everything() {
    loop = std::move(EventLoop::create()).value();
    state = clusterState();
    serve(state);
    ProcessOptions processOptions;
    processOptions.adminRequests = {"query"};
    process = std::make_unique<ProcessMetrics>(*loop, metrics, processOptions);
    process->observeAdminRequest("query", Duration(3));
    NotifierOptions notify;
    notify.targets = {{"all", "", "true"}};
    notifier = std::make_unique<Notifier>(*loop, &metrics, notify);
    states = std::make_unique<StateMetrics>(*loop, metrics, "n1", [this] { return &state; });
    states->onView(fullView(1));
    states->refresh();
    vmm::VmStats a;
    a.vm = "mme-a-vm";
    a.running = true;
    a.cpuTimeNs = 7;
    a.disks.push_back({.name = "vda"});
    a.nics.push_back({.name = "vnet0"});
    vms = std::make_unique<VmMetrics>(
        *loop, metrics, "n1", statsOptions(pids.path().string()),
        [a](auto done) { done(std::vector<vmm::VmStats>{a}); },
        [](const std::string&) {
          vmm::GuestStats guest;
          guest.heartbeats = 3;
          guest.lastHeartbeat = TimePoint(0);
          return std::optional<vmm::GuestStats>(guest);
        },
        [this] { return &state; });
    vms->onHeartbeat("mme-a-vm", 1, true);
    vms->onHeartbeat("mme-a-vm", 2, true);
    vms->start();
    ready = kvm_amf::testing::runUntil(
        *loop, [this] { return vms->completed() > 0; }, Duration(5'000));
  }
  kvm_amf::testing::TempDir pids{"monitor-sample"};
  std::unique_ptr<EventLoop> loop;
  engine::ClusterState state;
  Metrics metrics;
  std::unique_ptr<ProcessMetrics> process;
  std::unique_ptr<Notifier> notifier;
  std::unique_ptr<StateMetrics> states;
  std::unique_ptr<VmMetrics> vms;
  bool ready = false;  // the VMs' statistics were collected once
};

}  // namespace kvm_amf::monitor::testing
