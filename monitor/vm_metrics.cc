#include "kvm_amf/monitor/vm_metrics.h"

#include <array>
#include <iterator>
#include <map>
#include <set>

#include "kvm_amf/common/worker.h"
#include "proc_reader.h"
#include "registry.h"

namespace kvm_amf::monitor {

namespace {

const prometheus::Histogram::BucketBoundaries kCollectionBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                                    0.25,  0.5,    1,     2.5,  5,     10,   30};
const prometheus::Histogram::BucketBoundaries kHeartbeatBuckets = {0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4,
                                                                   0.5,  0.6, 0.75, 1,   1.5,  2,   5};

constexpr double kKiB = 1024.0;

// What the worker read for one VM: its QEMU's pid (libvirt's pid file) and its threads.
struct QemuThreads {
  std::optional<int> pid;
  std::map<int, ThreadSwitches> threads;
};

MetricFamily gauge(const char* name, const char* help) { return family(name, help, MetricType::Gauge); }
MetricFamily counter(const char* name, const char* help) { return family(name, help, MetricType::Counter); }

// A figure of a VM's disk or NIC: its family, and the member of T that holds it.
template <typename T>
struct Figure {
  const char* name;
  const char* help;
  MetricType type;
  std::uint64_t T::*value;
};
using Block = vmm::VmStats::Block;
using Net = vmm::VmStats::Net;
constexpr MetricType kCounter = MetricType::Counter;
constexpr MetricType kGauge = MetricType::Gauge;
const std::array<Figure<Block>, 7> kDiskFigures = {{
    {"amf_vm_block_read_bytes_total", "Bytes read from the VM's disk", kCounter, &Block::readBytes},
    {"amf_vm_block_write_bytes_total", "Bytes written to the VM's disk", kCounter, &Block::writeBytes},
    {"amf_vm_block_read_requests_total", "Read requests to the VM's disk", kCounter, &Block::readRequests},
    {"amf_vm_block_write_requests_total", "Write requests to the VM's disk", kCounter, &Block::writeRequests},
    {"amf_vm_block_allocation_bytes", "Storage the disk's image has allocated (the highest written offset)", kGauge,
     &Block::allocation},
    {"amf_vm_block_capacity_bytes", "The disk's size as the guest sees it", kGauge, &Block::capacity},
    {"amf_vm_block_physical_bytes", "The disk's image on the host's storage", kGauge, &Block::physical},
}};
const std::array<Figure<Net>, 8> kNicFigures = {{
    {"amf_vm_network_receive_bytes_total", "Bytes the VM's NIC received", kCounter, &Net::rxBytes},
    {"amf_vm_network_transmit_bytes_total", "Bytes the VM's NIC sent", kCounter, &Net::txBytes},
    {"amf_vm_network_receive_packets_total", "Packets the VM's NIC received", kCounter, &Net::rxPackets},
    {"amf_vm_network_transmit_packets_total", "Packets the VM's NIC sent", kCounter, &Net::txPackets},
    {"amf_vm_network_receive_drops_total", "Received packets dropped", kCounter, &Net::rxDrops},
    {"amf_vm_network_transmit_drops_total", "Packets to send dropped", kCounter, &Net::txDrops},
    {"amf_vm_network_receive_errors_total", "Receive errors of the VM's NIC", kCounter, &Net::rxErrors},
    {"amf_vm_network_transmit_errors_total", "Transmit errors of the VM's NIC", kCounter, &Net::txErrors},
}};

template <typename T, std::size_t N>
std::vector<MetricFamily> familiesOf(const std::array<Figure<T>, N>& figures) {
  std::vector<MetricFamily> out;
  for (const auto& f : figures) out.push_back(family(f.name, f.help, f.type));
  return out;
}

// One sample of each figure of `item` (a disk or a NIC) into its family.
template <typename T, std::size_t N>
void sampleAll(std::vector<MetricFamily>& families, const std::array<Figure<T>, N>& figures, const Labels& labels,
               const T& item) {
  for (std::size_t i = 0; i < N; ++i) sample(families[i], labels, static_cast<double>(item.*figures[i].value));
}

Labels with(Labels labels, const char* name, std::string value) {
  labels[name] = std::move(value);
  return labels;
}

}  // namespace

struct VmMetrics::Impl {
  Impl(EventLoop& l, Metrics& m, std::string n, StatsOptions o, StatsSource s, GuestStatsSource g,
       std::function<const engine::ClusterState*()> st, std::function<void(const std::string&)> lg)
      : loop(l),
        node(std::move(n)),
        options(std::move(o)),
        source(std::move(s)),
        guests(std::move(g)),
        state(std::move(st)),
        log(std::move(lg)),
        worker(l),
        collections(counterFamily(m, "amf_stats_collections_total",
                                  "Collections of the VMs' statistics, by outcome (ok, error, timeout)")),
        skipped(counterFamily(m, "amf_stats_skipped_total",
                              "Collection ticks skipped because the previous collection was still outstanding")
                    .Add({})),
        duration(histogramFamily(m, "amf_stats_collection_duration_seconds",
                                 "Time from asking for the VMs' statistics to their series being published")
                     .Add({}, kCollectionBuckets)),
        interval(gaugeFamily(m, "amf_stats_interval_seconds", "How often the VMs' statistics are collected").Add({})),
        heartbeatInterval(histogramFamily(m, "amf_vm_heartbeat_interval_seconds",
                                          "Time between two heartbeats of the VM's agent as amfd received them "
                                          "(its spread is the channel's jitter)")),
        snapshot(std::make_shared<Snapshot>()) {
    ok = &collections.Add({{"outcome", "ok"}});
    failed = &collections.Add({{"outcome", "error"}});
    timedOut = &collections.Add({{"outcome", "timeout"}});
    interval.Set(seconds(options.interval));
    m.impl().add(snapshot);
  }

  struct Vm {
    Labels labels;  // domain, su, sg, node
    std::optional<int> pid;
    std::map<int, ThreadSwitches> threads;  // at the last collection
    std::uint64_t voluntary = 0, involuntary = 0;
    std::optional<vmm::VmStats> lastComplete;
    std::optional<TimePoint> lastBeat;
    prometheus::Histogram* beats = nullptr;
  };

  void tick();
  void received(std::uint64_t generation, Result<std::vector<vmm::VmStats>> result);
  void publish(const std::vector<vmm::VmStats>& stats, const std::vector<QemuThreads>& qemus);
  void finish();
  // Logs a failed collection, once until another problem or a success comes.
  void problem(const std::string& what) {
    if (what != lastProblem && log) log("VM statistics: " + what);
    lastProblem = what;
  }
  std::optional<Labels> labelsOf(const std::string& vm) const;
  void countSwitches(Vm& vm, const QemuThreads& qemu);
  void forget(std::map<std::string, Vm>::iterator it);

  EventLoop& loop;
  std::string node;
  StatsOptions options;
  StatsSource source;
  GuestStatsSource guests;
  std::function<const engine::ClusterState*()> state;
  std::function<void(const std::string&)> log;
  Worker worker;  // the /proc reads
  prometheus::Family<prometheus::Counter>& collections;
  prometheus::Counter& skipped;
  prometheus::Histogram& duration;
  prometheus::Gauge& interval;
  prometheus::Family<prometheus::Histogram>& heartbeatInterval;
  prometheus::Counter* ok = nullptr;
  prometheus::Counter* failed = nullptr;
  prometheus::Counter* timedOut = nullptr;
  std::shared_ptr<Snapshot> snapshot;

  std::map<std::string, Vm> vms;
  std::optional<TimerId> tickTimer, timeoutTimer;
  bool inFlight = false;
  std::uint64_t generation = 0;  // of the collection in flight; a late answer carries an older one
  TimePoint startedAt{0};
  std::uint64_t completed = 0;
  std::string lastProblem;  // of the last collection; empty: it succeeded
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
};

void VmMetrics::Impl::tick() {
  tickTimer = loop.after(options.interval, [this] { tick(); });
  if (inFlight) {
    skipped.Increment();
    return;
  }
  inFlight = true;
  const std::uint64_t mine = ++generation;
  startedAt = loop.now();
  timeoutTimer = loop.after(options.timeout, [this, mine] {
    timeoutTimer.reset();
    if (!inFlight || mine != generation) return;
    timedOut->Increment();
    problem("no answer within " + std::to_string(options.timeout.count()) + " ms; abandoned");
    finish();
  });
  source([this, mine, alive = std::weak_ptr<bool>(alive)](Result<std::vector<vmm::VmStats>> result) {
    if (alive.expired() || !inFlight || mine != generation) return;  // late: abandoned or destroyed
    received(mine, std::move(result));
  });
}

void VmMetrics::Impl::received(std::uint64_t mine, Result<std::vector<vmm::VmStats>> result) {
  if (!result.ok()) {
    failed->Increment();
    problem(result.error().message);
    return finish();
  }
  auto stats = std::make_shared<std::vector<vmm::VmStats>>(std::move(result).value());
  auto qemus = std::make_shared<std::vector<QemuThreads>>(stats->size());
  worker.run(
      // Worker thread: reads only; what it fills is read on the loop after it returns.
      [stats, qemus, pidDir = options.qemuPidDir, proc = options.proc] {
        for (std::size_t i = 0; i < stats->size(); ++i) {
          QemuThreads& qemu = (*qemus)[i];
          qemu.pid = readPidFile(pidDir + "/" + (*stats)[i].vm + ".pid");
          if (qemu.pid) qemu.threads = readThreadSwitches(proc, *qemu.pid);
        }
      },
      [this, mine, stats, qemus] {
        if (!inFlight || mine != generation) return;
        publish(*stats, *qemus);
        ok->Increment();
        if (!lastProblem.empty() && log) log("VM statistics: collected again");
        lastProblem.clear();
        ++completed;
        duration.Observe(seconds(loop.now() - startedAt));
        finish();
      });
}

void VmMetrics::Impl::finish() {
  inFlight = false;
  if (timeoutTimer) loop.cancel(*timeoutTimer);
  timeoutTimer.reset();
}

std::optional<Labels> VmMetrics::Impl::labelsOf(const std::string& vm) const {
  const engine::ClusterState* current = state();
  if (current == nullptr) return std::nullopt;
  auto runtime = current->vms.find(vm);
  if (runtime == current->vms.end()) return std::nullopt;
  auto su = current->sus.find(runtime->second.su);
  return Labels{{"domain", vm},
                {"su", runtime->second.su},
                {"sg", su == current->sus.end() ? "" : su->second.sg},
                {"node", node}};
}

void VmMetrics::Impl::countSwitches(Vm& vm, const QemuThreads& qemu) {
  if (!qemu.pid) return;
  if (vm.pid != qemu.pid) {
    // A new QEMU (the VM restarted): its counts start from what its threads have now.
    vm.pid = qemu.pid;
    vm.voluntary = vm.involuntary = 0;
    vm.threads.clear();
  }
  // Threads that ended since the last collection keep what was counted of them; a thread seen for
  // the first time brings all its switches; a thread id reused by a new thread restarts lower.
  for (const auto& [tid, now] : qemu.threads) {
    auto before = vm.threads.find(tid);
    const ThreadSwitches old = before == vm.threads.end() ? ThreadSwitches{} : before->second;
    vm.voluntary += now.voluntary >= old.voluntary ? now.voluntary - old.voluntary : now.voluntary;
    vm.involuntary += now.involuntary >= old.involuntary ? now.involuntary - old.involuntary : now.involuntary;
  }
  vm.threads = qemu.threads;
}

void VmMetrics::Impl::forget(std::map<std::string, Vm>::iterator it) {
  if (it->second.beats != nullptr) heartbeatInterval.Remove(it->second.beats);
  vms.erase(it);
}

void VmMetrics::Impl::publish(const std::vector<vmm::VmStats>& stats, const std::vector<QemuThreads>& qemus) {
  const TimePoint now = loop.now();
  MetricFamily running = gauge("amf_vm_running", "1 when the VM's guest executes, 0 when it is paused");
  MetricFamily stale = gauge("amf_vm_stats_stale",
                             "1 when the VM's QEMU did not answer the last collection in time: its CPU, memory and "
                             "disk figures are from an earlier one");
  MetricFamily cpu = counter("amf_vm_cpu_seconds_total", "CPU time of the VM: its vCPUs and QEMU's own threads");
  MetricFamily memoryCurrent =
      gauge("amf_vm_memory_current_bytes", "The guest's memory as the balloon leaves it (balloon.current)");
  MetricFamily memoryMaximum =
      gauge("amf_vm_memory_maximum_bytes", "The most memory the guest may have (balloon.maximum)");
  MetricFamily memoryBalloon =
      gauge("amf_vm_memory_balloon_bytes", "Memory the balloon has taken back from the guest (maximum - current)");
  MetricFamily memoryResident = gauge("amf_vm_memory_resident_bytes", "QEMU's resident set (balloon.rss)");
  MetricFamily memoryUsable = gauge("amf_vm_memory_usable_bytes",
                                    "Memory the guest can still use, as its balloon driver reports it (0 without)");
  MetricFamily switches = counter("amf_vm_context_switches_total",
                                  "Context switches of the VM's QEMU threads (voluntary: the thread waited; "
                                  "involuntary: the scheduler preempted it)");
  MetricFamily threads = gauge("amf_vm_qemu_threads", "Threads of the VM's QEMU");
  MetricFamily heartbeatAge =
      gauge("amf_vm_heartbeat_age_seconds", "Time since the VM's agent's last heartbeat, at the collection");
  MetricFamily heartbeats = counter("amf_vm_heartbeats_total", "Heartbeats of the VM's agent since it was watched");
  MetricFamily missed = counter("amf_vm_heartbeats_missed_total",
                                "Heartbeats the agent numbered but amfd never received (sequence gaps)");
  MetricFamily agentConnected = gauge("amf_vm_agent_connected", "1 while amfd is connected to the VM's agent channel");
  MetricFamily agentRestarts = counter("amf_vm_agent_restarts_total", "Restarts of the VM's agent amfd noticed");
  MetricFamily hostVms = gauge("amf_host_vms", "The cluster's VMs active on this host, running or paused");
  std::vector<MetricFamily> disks = familiesOf(kDiskFigures);
  std::vector<MetricFamily> nics = familiesOf(kNicFigures);

  double runningCount = 0, pausedCount = 0;
  std::set<std::string> seen;
  for (std::size_t i = 0; i < stats.size(); ++i) {
    const vmm::VmStats& s = stats[i];
    std::optional<Labels> labels = labelsOf(s.vm);
    if (!labels) continue;  // not one of the cluster's VMs
    seen.insert(s.vm);
    Vm& vm = vms[s.vm];
    vm.labels = *labels;
    if (s.complete) vm.lastComplete = s;
    const vmm::VmStats& q = s.complete || !vm.lastComplete ? s : *vm.lastComplete;
    (s.running ? runningCount : pausedCount) += 1;
    sample(running, *labels, s.running ? 1 : 0);
    sample(stale, *labels, s.complete ? 0 : 1);
    if (s.complete || vm.lastComplete) {
      sample(cpu, *labels, static_cast<double>(q.cpuTimeNs) / 1e9);
      sample(memoryCurrent, *labels, static_cast<double>(q.memoryKiB) * kKiB);
      sample(memoryMaximum, *labels, static_cast<double>(q.memoryMaxKiB) * kKiB);
      sample(memoryBalloon, *labels,
             q.memoryMaxKiB > q.memoryKiB ? static_cast<double>(q.memoryMaxKiB - q.memoryKiB) * kKiB : 0);
      sample(memoryResident, *labels, static_cast<double>(q.memoryRssKiB) * kKiB);
      sample(memoryUsable, *labels, static_cast<double>(q.memoryUsableKiB) * kKiB);
      for (const auto& disk : q.disks) sampleAll(disks, kDiskFigures, with(*labels, "device", disk.name), disk);
    }
    for (const auto& nic : s.nics) sampleAll(nics, kNicFigures, with(*labels, "interface", nic.name), nic);
    countSwitches(vm, qemus[i]);
    if (vm.pid) {
      sample(switches, with(*labels, "kind", "voluntary"), static_cast<double>(vm.voluntary));
      sample(switches, with(*labels, "kind", "involuntary"), static_cast<double>(vm.involuntary));
      sample(threads, *labels, static_cast<double>(qemus[i].threads.size()));
    }
    if (std::optional<vmm::GuestStats> guest = guests ? guests(s.vm) : std::nullopt) {
      if (guest->lastHeartbeat) sample(heartbeatAge, *labels, seconds(now - *guest->lastHeartbeat));
      sample(heartbeats, *labels, static_cast<double>(guest->heartbeats));
      sample(missed, *labels, static_cast<double>(guest->missedHeartbeats));
      sample(agentConnected, *labels, guest->connected ? 1 : 0);
      sample(agentRestarts, *labels, static_cast<double>(guest->agentRestarts));
    }
  }
  sample(hostVms, {{"node", node}, {"state", "running"}}, runningCount);
  sample(hostVms, {{"node", node}, {"state", "paused"}}, pausedCount);
  // VMs gone from this host (stopped, moved away) and no longer watched: their series go.
  for (auto it = vms.begin(); it != vms.end();) {
    const bool watched = guests && guests(it->first).has_value();
    if (seen.contains(it->first) || watched) {
      ++it;
    } else {
      auto gone = it++;
      forget(gone);
    }
  }
  std::vector<MetricFamily> out;
  moveInto(out, {&running, &stale, &cpu, &memoryCurrent, &memoryMaximum, &memoryBalloon, &memoryResident, &memoryUsable,
                 &switches, &threads, &heartbeatAge, &heartbeats, &missed, &agentConnected, &agentRestarts, &hostVms});
  for (auto* group : {&disks, &nics}) std::move(group->begin(), group->end(), std::back_inserter(out));
  snapshot->publish(std::move(out));
}

VmMetrics::VmMetrics(EventLoop& loop, Metrics& metrics, std::string node, StatsOptions options, StatsSource stats,
                     GuestStatsSource guests, std::function<const engine::ClusterState*()> state,
                     std::function<void(const std::string&)> log)
    : impl_(std::make_unique<Impl>(loop, metrics, std::move(node), std::move(options), std::move(stats),
                                   std::move(guests), std::move(state), std::move(log))) {}

VmMetrics::~VmMetrics() {
  *impl_->alive = false;
  if (impl_->tickTimer) impl_->loop.cancel(*impl_->tickTimer);
  if (impl_->timeoutTimer) impl_->loop.cancel(*impl_->timeoutTimer);
}

void VmMetrics::start() {
  if (impl_->tickTimer || impl_->options.interval <= Duration(0)) return;
  impl_->tick();
}

void VmMetrics::onHeartbeat(const std::string& vm, std::uint64_t /*seq*/, bool /*healthy*/) {
  const TimePoint now = impl_->loop.now();
  auto it = impl_->vms.find(vm);
  if (it == impl_->vms.end()) {
    std::optional<Labels> labels = impl_->labelsOf(vm);
    if (!labels) return;
    it = impl_->vms.emplace(vm, Impl::Vm{}).first;
    it->second.labels = *labels;
  }
  Impl::Vm& state = it->second;
  if (state.beats == nullptr) state.beats = &impl_->heartbeatInterval.Add(state.labels, kHeartbeatBuckets);
  if (state.lastBeat) state.beats->Observe(seconds(now - *state.lastBeat));
  state.lastBeat = now;
}

void VmMetrics::onHello(const std::string& vm, const std::string& /*agentVersion*/) {
  // A new connection of the agent: the next heartbeat's interval would span the reconnection.
  if (auto it = impl_->vms.find(vm); it != impl_->vms.end()) it->second.lastBeat.reset();
}

std::uint64_t VmMetrics::completed() const { return impl_->completed; }

}  // namespace kvm_amf::monitor
