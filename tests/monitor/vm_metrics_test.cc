// VmMetrics: the VMs' statistics with their labels, the QEMU threads' context switches from a
// /proc the test writes, what the guest channel saw, and a source that never answers (the loop
// goes on, ticks are skipped, the collection is abandoned and a late answer dropped).
#include "kvm_amf/monitor/vm_metrics.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cluster_fixture.h"
#include "exposition.h"
#include "testing/run_until.h"
#include "testing/temp_dir.h"

namespace kvm_amf::monitor {
namespace {

using testing::valueOf;

class VmMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto created = EventLoop::create();
    ASSERT_TRUE(created.ok());
    loop = std::move(created).value();
    state = testing::clusterState();
    testing::serve(state);
    options.qemuPidDir = (dir / "run").string();
    options.proc = (dir / "proc").string();
    options.interval = Duration(20);
    std::filesystem::create_directories(options.qemuPidDir);
  }

  // QEMU `pid` of `vm` with `threads` (tid -> voluntary, involuntary) in the test's /proc.
  void qemu(const std::string& vm, int pid, const std::map<int, std::pair<int, int>>& threads) {
    std::ofstream(options.qemuPidDir + "/" + vm + ".pid") << pid << "\n";
    const std::filesystem::path task = dir / "proc" / std::to_string(pid) / "task";
    std::filesystem::remove_all(task);
    for (const auto& [tid, switches] : threads) {
      std::filesystem::create_directories(task / std::to_string(tid));
      std::ofstream(task / std::to_string(tid) / "status")
          << "Name:\tqemu\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t" << switches.first
          << "\nnonvoluntary_ctxt_switches:\t" << switches.second << "\n";
    }
  }

  std::unique_ptr<VmMetrics> collector(StatsSource source, GuestStatsSource guests = {}) {
    return std::make_unique<VmMetrics>(*loop, metrics, "n1", options, std::move(source), std::move(guests),
                                       [this] { return &state; });
  }

  // Collects once more and returns the text.
  std::string collectOnce(VmMetrics& vms) {
    const std::uint64_t before = vms.completed();
    EXPECT_TRUE(kvm_amf::testing::runUntil(
        *loop, [&] { return vms.completed() > before; }, Duration(5'000)));
    return metrics.text();
  }

  kvm_amf::testing::TempDir dir{"monitor-vm"};
  std::unique_ptr<EventLoop> loop;
  engine::ClusterState state;
  StatsOptions options;
  Metrics metrics;
};

vmm::VmStats figures(const std::string& vm, std::uint64_t cpuNs) {
  vmm::VmStats s;
  s.vm = vm;
  s.running = true;
  s.cpuTimeNs = cpuNs;
  s.memoryKiB = 200 * 1024;
  s.memoryMaxKiB = 256 * 1024;
  s.memoryRssKiB = 100 * 1024;
  s.disks.push_back({.name = "vda",
                     .readBytes = 4096,
                     .writeBytes = 512,
                     .readRequests = 3,
                     .writeRequests = 1,
                     .allocation = 1 << 20,
                     .capacity = 64 << 20,
                     .physical = 2 << 20});
  s.nics.push_back({.name = "vnet0", .rxBytes = 1000, .txBytes = 2000, .rxPackets = 10, .txPackets = 20});
  return s;
}

TEST_F(VmMetricsTest, PublishesTheClustersVmsWithTheirLabels) {
  qemu("mme-a-vm", 4242, {{4242, {10, 1}}, {4243, {20, 2}}});
  std::vector<vmm::VmStats> answer = {figures("mme-a-vm", 2'500'000'000), figures("stranger", 1)};
  auto vms = collector([&](auto done) { done(answer); });
  vms->start();
  const std::string text = collectOnce(*vms);
  const testing::LabelSet a = {{"domain", "mme-a-vm"}, {"su", "mme-a"}, {"sg", "mme"}, {"node", "n1"}};
  EXPECT_EQ(valueOf(text, "amf_vm_cpu_seconds_total", a), 2.5);
  EXPECT_EQ(valueOf(text, "amf_vm_running", a), 1);
  EXPECT_EQ(valueOf(text, "amf_vm_memory_current_bytes", a), 200.0 * 1024 * 1024);
  EXPECT_EQ(valueOf(text, "amf_vm_memory_maximum_bytes", a), 256.0 * 1024 * 1024);
  EXPECT_EQ(valueOf(text, "amf_vm_memory_balloon_bytes", a), 56.0 * 1024 * 1024);
  EXPECT_EQ(valueOf(text, "amf_vm_memory_resident_bytes", a), 100.0 * 1024 * 1024);
  EXPECT_EQ(valueOf(text, "amf_vm_block_read_bytes_total", {{"domain", "mme-a-vm"}, {"device", "vda"}}), 4096);
  EXPECT_EQ(valueOf(text, "amf_vm_block_allocation_bytes", {{"domain", "mme-a-vm"}, {"device", "vda"}}), 1 << 20);
  EXPECT_EQ(valueOf(text, "amf_vm_block_capacity_bytes", {{"device", "vda"}}), 64 << 20);
  EXPECT_EQ(valueOf(text, "amf_vm_network_transmit_bytes_total", {{"interface", "vnet0"}}), 2000);
  EXPECT_EQ(valueOf(text, "amf_vm_context_switches_total", {{"domain", "mme-a-vm"}, {"kind", "voluntary"}}), 30);
  EXPECT_EQ(valueOf(text, "amf_vm_context_switches_total", {{"domain", "mme-a-vm"}, {"kind", "involuntary"}}), 3);
  EXPECT_EQ(valueOf(text, "amf_vm_qemu_threads", a), 2);
  EXPECT_EQ(valueOf(text, "amf_host_vms", {{"node", "n1"}, {"state", "running"}}), 1);
  EXPECT_FALSE(valueOf(text, "amf_vm_cpu_seconds_total", {{"domain", "stranger"}}));  // not the cluster's
  EXPECT_EQ(valueOf(text, "amf_stats_collections_total", {{"outcome", "ok"}}).value_or(0) >= 1, true);
  EXPECT_EQ(valueOf(text, "amf_stats_interval_seconds"), 0.02);
}

TEST_F(VmMetricsTest, ContextSwitchesStayMonotonicWhenThreadsEndAndRestartWithANewQemu) {
  qemu("mme-a-vm", 4242, {{4242, {10, 1}}, {4243, {20, 2}}});
  std::vector<vmm::VmStats> answer = {figures("mme-a-vm", 1)};
  auto vms = collector([&](auto done) { done(answer); });
  vms->start();
  const testing::LabelSet voluntary = {{"domain", "mme-a-vm"}, {"kind", "voluntary"}};
  EXPECT_EQ(valueOf(collectOnce(*vms), "amf_vm_context_switches_total", voluntary), 30);
  // Thread 4243 ended after 5 more, 4242 switched 5 more, a new thread 4244 brings its 7.
  qemu("mme-a-vm", 4242, {{4242, {15, 1}}, {4244, {7, 0}}});
  EXPECT_EQ(valueOf(collectOnce(*vms), "amf_vm_context_switches_total", voluntary), 30 + 5 + 7);
  // The VM restarted: a new QEMU, counted from what its threads have.
  qemu("mme-a-vm", 5000, {{5000, {3, 0}}});
  EXPECT_EQ(valueOf(collectOnce(*vms), "amf_vm_context_switches_total", voluntary), 3);
}

TEST_F(VmMetricsTest, AVmWhoseQemuDidNotAnswerKeepsItsLastFiguresAndIsMarkedStale) {
  std::vector<vmm::VmStats> answer = {figures("mme-a-vm", 4'000'000'000)};
  auto vms = collector([&](auto done) { done(answer); });
  vms->start();
  const testing::LabelSet a = {{"domain", "mme-a-vm"}};
  std::string text = collectOnce(*vms);
  EXPECT_EQ(valueOf(text, "amf_vm_stats_stale", a), 0);
  answer[0] = vmm::VmStats{};
  answer[0].vm = "mme-a-vm";
  answer[0].running = true;
  answer[0].complete = false;
  text = collectOnce(*vms);
  EXPECT_EQ(valueOf(text, "amf_vm_cpu_seconds_total", a), 4);  // not 0: the last complete figure
  EXPECT_EQ(valueOf(text, "amf_vm_stats_stale", a), 1);
  EXPECT_EQ(valueOf(text, "amf_vm_block_read_bytes_total", a), 4096);
}

TEST_F(VmMetricsTest, AVmGoneFromTheHostLosesItsSeries) {
  std::vector<vmm::VmStats> answer = {figures("mme-a-vm", 1), figures("mme-b-vm", 1)};
  auto vms = collector([&](auto done) { done(answer); });
  vms->start();
  EXPECT_TRUE(valueOf(collectOnce(*vms), "amf_vm_cpu_seconds_total", {{"domain", "mme-b-vm"}}));
  answer.pop_back();
  const std::string text = collectOnce(*vms);
  EXPECT_FALSE(valueOf(text, "amf_vm_cpu_seconds_total", {{"domain", "mme-b-vm"}}));
  EXPECT_TRUE(valueOf(text, "amf_vm_cpu_seconds_total", {{"domain", "mme-a-vm"}}));
}

TEST_F(VmMetricsTest, AnErrorIsCounted) {
  auto vms = collector([](auto done) { done(Error{"libvirt is away"}); });
  vms->start();
  EXPECT_TRUE(kvm_amf::testing::runUntil(
      *loop,
      [&] {
        return valueOf(metrics.text(), "amf_stats_collections_total", {{"outcome", "error"}}).value_or(0) >= 2;
      },
      Duration(5'000)));
}

TEST_F(VmMetricsTest, StatisticsThatNeverReturnDoNotBlockTheLoop) {
  options.interval = Duration(20);
  options.timeout = Duration(150);
  std::vector<std::function<void(Result<std::vector<vmm::VmStats>>)>> asked;
  auto vms = collector([&](auto done) { asked.push_back(std::move(done)); });
  vms->start();
  // The loop keeps running its timers while the collection hangs.
  int beats = 0;
  std::function<void()> beat = [&] {
    ++beats;
    loop->after(Duration(5), beat);
  };
  loop->after(Duration(5), beat);
  loop->runFor(Duration(500));
  EXPECT_GE(beats, 40);
  const std::string text = metrics.text();
  EXPECT_GE(valueOf(text, "amf_stats_skipped_total").value_or(0), 3);
  EXPECT_GE(valueOf(text, "amf_stats_collections_total", {{"outcome", "timeout"}}).value_or(0), 1);
  EXPECT_GE(asked.size(), 2u);  // a new collection after the abandoned one
  // The abandoned collection's late answer is dropped.
  asked.front()(std::vector<vmm::VmStats>{figures("mme-a-vm", 1)});
  loop->runFor(Duration(50));
  EXPECT_EQ(vms->completed(), 0u);
  EXPECT_FALSE(valueOf(metrics.text(), "amf_vm_cpu_seconds_total"));
}

TEST_F(VmMetricsTest, HeartbeatsAreTimedAndTheChannelsFiguresExported) {
  vmm::GuestStats guest;
  guest.connected = true;
  guest.heartbeats = 42;
  guest.missedHeartbeats = 2;
  std::vector<vmm::VmStats> answer = {figures("mme-a-vm", 1)};
  auto vms = collector([&](auto done) { done(answer); },
                       [&](const std::string& vm) -> std::optional<vmm::GuestStats> {
                         if (vm != "mme-a-vm") return std::nullopt;
                         return guest;
                       });
  vms->onHeartbeat("mme-a-vm", 1, true);
  loop->runFor(Duration(60));
  vms->onHeartbeat("mme-a-vm", 2, true);
  guest.lastHeartbeat = loop->now();
  vms->start();
  const std::string text = collectOnce(*vms);
  const testing::LabelSet a = {{"domain", "mme-a-vm"}, {"su", "mme-a"}, {"sg", "mme"}};
  EXPECT_EQ(valueOf(text, "amf_vm_heartbeat_interval_seconds_count", a), 1);
  EXPECT_GE(valueOf(text, "amf_vm_heartbeat_interval_seconds_sum", a).value_or(0), 0.05);
  EXPECT_EQ(valueOf(text, "amf_vm_heartbeats_total", a), 42);
  EXPECT_EQ(valueOf(text, "amf_vm_heartbeats_missed_total", a), 2);
  EXPECT_EQ(valueOf(text, "amf_vm_agent_connected", a), 1);
  EXPECT_LT(valueOf(text, "amf_vm_heartbeat_age_seconds", a).value_or(99), 5);
  // A new connection: the gap across it is not a heartbeat interval.
  vms->onHello("mme-a-vm", "1.0");
  vms->onHeartbeat("mme-a-vm", 1, true);
  EXPECT_EQ(valueOf(metrics.text(), "amf_vm_heartbeat_interval_seconds_count", a), 1);
}

TEST_F(VmMetricsTest, AnIntervalOfZeroCollectsNothing) {
  options.interval = Duration(0);
  int asked = 0;
  auto vms = collector([&](auto done) {
    ++asked;
    done(std::vector<vmm::VmStats>{});
  });
  vms->start();
  loop->runFor(Duration(50));
  EXPECT_EQ(asked, 0);
}

}  // namespace
}  // namespace kvm_amf::monitor
