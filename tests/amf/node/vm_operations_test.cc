// The VM operations carried out by the node managers' local agents: three complete node managers
// on simulated membership and simulated hosts (vmm/sim_host.h), on simulated time. The hosts'
// hypervisor and guest-channel calls are recorded on their way to the simulated host.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "amf/config/config_test_util.h"
#include "kvm_amf/amf/node/node_manager.h"
#include "kvm_amf/cluster/sim_network.h"
#include "kvm_amf/sim/sim_scheduler.h"
#include "kvm_amf/vmm/sim_host.h"

namespace kvm_amf::node {
namespace {

using namespace std::chrono_literals;
using config::testing::kCluster;
using config::testing::serviceGroup;
using config::testing::unit;
using model::HaState;
using model::PresenceState;

std::shared_ptr<const model::Configuration> configuration() {
  config::LoadResult loaded = config::loadConfiguration(
      {{"test.yaml", std::string(kCluster) +
                         serviceGroup("web", "2N", "[" + unit("web-a", 1) + ", " + unit("web-b", 2) + "]",
                                      "[{name: web-si}]", "  health: {heartbeat: {interval: 200ms, timeout: 1s}}\n")}});
  EXPECT_TRUE(loaded.ok()) << config::testing::errorLines(loaded);
  return std::make_shared<const model::Configuration>(std::move(loaded.config));
}

// The calls one host's node manager makes, in order ("reboot web-a-vm", "watch web-a-vm", ...), passed
// on to its simulated host.
class Recorder : public vmm::Hypervisor, public vmm::GuestChannel {
 public:
  explicit Recorder(vmm::SimHost& sim) : sim_(sim) {}
  std::vector<std::string> calls;

  void setListener(vmm::HypervisorListener* listener) override { sim_.setListener(listener); }
  void start(const model::VmSpec& spec, const std::optional<model::WatchdogSpec>& watchdog, vmm::Done done) override {
    calls.push_back("start " + spec.name);
    sim_.start(spec, watchdog, std::move(done));
  }
  void destroy(const std::string& vm, vmm::Done done) override {
    calls.push_back("destroy " + vm);
    sim_.destroy(vm, std::move(done));
  }
  void listRunning(std::function<void(Result<std::vector<std::string>>)> done) override {
    sim_.listRunning(std::move(done));
  }
  void shutdown(const std::string& vm, Duration grace, vmm::Done done) override {
    calls.push_back("shutdown " + vm + " " + std::to_string(grace.count()));
    sim_.shutdown(vm, grace, std::move(done));
  }
  void pause(const std::string& vm, vmm::Done done) override {
    calls.push_back("pause " + vm);
    sim_.pause(vm, std::move(done));
  }
  void resume(const std::string& vm, vmm::Done done) override {
    calls.push_back("resume " + vm);
    sim_.resume(vm, std::move(done));
  }
  void suspend(const std::string& vm, Duration timeout, vmm::Done done) override {
    calls.push_back("suspend " + vm);
    sim_.suspend(vm, timeout, std::move(done));
  }
  void restore(const std::string& vm, Duration timeout, vmm::Done done) override {
    calls.push_back("restore " + vm);
    sim_.restore(vm, timeout, std::move(done));
  }
  void reboot(const std::string& vm, Duration grace, vmm::Done done) override {
    calls.push_back("reboot " + vm + " " + std::to_string(grace.count()));
    sim_.reboot(vm, grace, std::move(done));
  }
  void reset(const std::string& vm, vmm::Done done) override {
    calls.push_back("reset " + vm);
    sim_.reset(vm, std::move(done));
  }

  void setListener(vmm::GuestListener* listener) override { sim_.setListener(listener); }
  void watch(const std::string& vm, const model::HeartbeatSpec& heartbeat) override {
    calls.push_back("watch " + vm);
    sim_.watch(vm, heartbeat);
  }
  void unwatch(const std::string& vm) override {
    calls.push_back("unwatch " + vm);
    sim_.unwatch(vm);
  }
  void assign(const std::string& vm, const std::string& si, HaState ha,
              const std::map<std::string, std::string>& attributes, vmm::Done done) override {
    calls.push_back("assign " + vm + " " + std::string(model::toWord(ha)));
    sim_.assign(vm, si, ha, attributes, std::move(done));
  }
  void unassign(const std::string& vm, const std::string& si, vmm::Done done) override {
    sim_.unassign(vm, si, std::move(done));
  }

  // The calls about `vm` from `from` on (an index into `calls`).
  std::vector<std::string> about(const std::string& vm, std::size_t from = 0) const {
    std::vector<std::string> out;
    for (std::size_t i = from; i < calls.size(); ++i) {
      if (calls[i].find(" " + vm) != std::string::npos) out.push_back(calls[i]);
    }
    return out;
  }

 private:
  vmm::SimHost& sim_;
};

// What runs: every time a VM stopped, and the guests that stopped serving (hung or paused).
class Truth : public vmm::SimTruthObserver {
 public:
  std::vector<std::string> stopped;
  std::map<std::string, bool> notServing;
  std::map<std::string, std::optional<HaState>> ha;  // by VM, for the one SI

  void onVmRunning(const std::string& vm, const std::string&, bool running) override {
    if (!running) stopped.push_back(vm);
  }
  void onGuestHa(const std::string& vm, const std::string&, const std::string&, std::optional<HaState> state) override {
    ha[vm] = state;
  }
  void onGuestHung(const std::string& vm, const std::string&, bool hung) override { notServing[vm] = hung; }
};

class VmOperationsTest : public ::testing::Test {
 protected:
  struct Host {
    int id = 0;
    std::unique_ptr<vmm::SimHost> sim;
    std::unique_ptr<Recorder> recorder;
    std::unique_ptr<cluster::SimFenceAgent> fence;
    std::unique_ptr<cluster::GroupChannel> channel;
    std::unique_ptr<NodeManager> manager;
    std::optional<engine::ClusterState> disk;
  };

  void SetUp() override {
    for (const auto& node : config_->cluster->nodes) {
      Host& host = hosts_[node.name];
      host.id = node.id;
      host.sim = std::make_unique<vmm::SimHost>(node.name, scheduler_, vmm::SimHostTiming{}, truth_,
                                                [](std::uint64_t) { return std::uint64_t{0}; });
      host.recorder = std::make_unique<Recorder>(*host.sim);
      host.fence = std::make_unique<cluster::SimFenceAgent>(scheduler_, 1s, [](const std::string&) { return true; });
      host.disk = engine::initialState(config_, 1);
      startAmfd(node.name);
    }
    run(15s);
    ASSERT_EQ(state().sus.at("web-a").node, "n1");
    ASSERT_EQ(state().sus.at("web-b").node, "n2");
    ASSERT_EQ(state().sis.at("web-si").assignments,
              (std::vector<engine::Assignment>{{"web-a", HaState::kActive, true}, {"web-b", HaState::kStandby, true}}));
  }

  void startAmfd(const std::string& name) {
    Host& host = hosts_.at(name);
    host.channel = network_.channel(host.id);
    NodeManagerDeps deps{&scheduler_, host.channel.get(), host.fence.get(), host.recorder.get(), host.recorder.get()};
    deps.vmLimits.shutdownGrace = 7s;
    deps.vmLimits.rebootGrace = 9s;
    host.manager = std::make_unique<NodeManager>(name, deps, host.disk);
    ASSERT_TRUE(host.manager->start().ok());
  }

  // The node manager dies (its state kept, as on disk); its host and VMs run on.
  void crashAmfd(const std::string& name) {
    Host& host = hosts_.at(name);
    if (host.manager->state()) host.disk = *host.manager->state();
    host.manager.reset();
    host.channel.reset();
  }

  void run(Duration d) { scheduler_.runUntil(scheduler_.now() + d); }

  // The state of n1's node manager (n1 directs).
  const engine::ClusterState& state() {
    const engine::ClusterState* s = hosts_.at("n1").manager->state();
    EXPECT_NE(s, nullptr);
    static const engine::ClusterState kNone;
    return s ? *s : kNone;
  }

  // The operator's command through n3's node manager; its answer once decided.
  std::pair<bool, std::string> command(const std::string& words) {
    auto parsed = model::parseAdminCommand(words);
    EXPECT_TRUE(parsed) << words;
    std::optional<std::pair<bool, std::string>> answer;
    hosts_.at("n3").manager->submit(parsed.value(),
                                    [&answer](bool ok, std::string message) { answer.emplace(ok, message); });
    run(100ms);
    EXPECT_TRUE(answer) << words << ": no answer";
    return answer.value_or(std::pair<bool, std::string>{false, "no answer"});
  }

  Recorder& calls(const std::string& node) { return *hosts_.at(node).recorder; }
  vmm::SimHost& sim(const std::string& node) { return *hosts_.at(node).sim; }

  static std::size_t count(const std::vector<std::string>& v, const std::string& x) {
    return static_cast<std::size_t>(std::count(v.begin(), v.end(), x));
  }

  std::shared_ptr<const model::Configuration> config_ = configuration();
  sim::SimScheduler scheduler_;
  cluster::SimNetwork network_{scheduler_, {1, 2, 3}, false, cluster::SimNetworkTiming{}};
  Truth truth_;
  std::map<std::string, Host> hosts_;
};

TEST_F(VmOperationsTest, RebootOfTheActiveVmRebootsTheGuestInPlaceAndWatchesItAnew) {
  const std::size_t from = calls("n1").calls.size();
  const auto [ok, message] = command("vm reboot vm/web-a-vm");
  ASSERT_TRUE(ok) << message;
  run(10s);
  // Not watched while it reboots (its heartbeats stop: not a hang), watched again once it runs, then
  // told its HA state again. QEMU ran throughout: never stopped, never started.
  EXPECT_EQ(calls("n1").about("web-a-vm", from),
            (std::vector<std::string>{"unwatch web-a-vm", "reboot web-a-vm 9000", "watch web-a-vm",
                                      "assign web-a-vm active"}));
  EXPECT_TRUE(truth_.stopped.empty());
  EXPECT_EQ(truth_.ha["web-a-vm"], HaState::kActive);
  EXPECT_EQ(state().sis.at("web-si").assignments,
            (std::vector<engine::Assignment>{{"web-a", HaState::kActive, true}, {"web-b", HaState::kStandby, true}}));
  EXPECT_EQ(state().vms.at("web-a-vm").presence, PresenceState::kInstantiated);
  EXPECT_EQ(state().vms.at("web-a-vm").restarts.count, 0);
  EXPECT_EQ(state().sus.at("web-a").restarts.count, 0);
  EXPECT_FALSE(state().vms.at("web-a-vm").failure);
}

TEST_F(VmOperationsTest, ResetOfTheStandbyResetsTheGuestInPlace) {
  const std::size_t from = calls("n2").calls.size();
  ASSERT_TRUE(command("vm reset vm/web-b-vm").first);
  run(10s);
  EXPECT_EQ(
      calls("n2").about("web-b-vm", from),
      (std::vector<std::string>{"unwatch web-b-vm", "reset web-b-vm", "watch web-b-vm", "assign web-b-vm standby"}));
  EXPECT_TRUE(truth_.stopped.empty());
  EXPECT_EQ(state().sis.at("web-si").assignments.size(), 2u);
  EXPECT_EQ(state().vms.at("web-b-vm").restarts.count, 0);
}

TEST_F(VmOperationsTest, PauseFreezesTheVmUnwatchedAndResumeWatchesItAgain) {
  const std::size_t from = calls("n2").calls.size();
  ASSERT_TRUE(command("vm pause vm/web-b-vm").first);
  run(30s);
  EXPECT_TRUE(sim("n2").paused("web-b-vm"));
  EXPECT_TRUE(truth_.notServing["web-b-vm"]);
  EXPECT_TRUE(state().vms.at("web-b-vm").paused);
  EXPECT_FALSE(state().vms.at("web-b-vm").failure);
  EXPECT_EQ(state().sis.at("web-si").assignments.size(), 2u);

  ASSERT_TRUE(command("vm resume vm/web-b-vm").first);
  run(5s);
  EXPECT_EQ(calls("n2").about("web-b-vm", from),
            (std::vector<std::string>{"unwatch web-b-vm", "pause web-b-vm", "resume web-b-vm", "watch web-b-vm"}));
  EXPECT_FALSE(sim("n2").paused("web-b-vm"));
  EXPECT_FALSE(truth_.notServing["web-b-vm"]);
  EXPECT_FALSE(state().vms.at("web-b-vm").paused);
  EXPECT_TRUE(truth_.stopped.empty());
}

TEST_F(VmOperationsTest, ShutdownStopsTheVmGracefullyAndItStaysStoppedUntilStart) {
  const std::size_t from = calls("n2").calls.size();
  ASSERT_TRUE(command("vm shutdown vm/web-b-vm").first);
  run(30s);
  EXPECT_EQ(calls("n2").about("web-b-vm", from),
            (std::vector<std::string>{"unwatch web-b-vm", "shutdown web-b-vm 7000"}));
  EXPECT_FALSE(sim("n2").running("web-b-vm"));
  EXPECT_EQ(state().vms.at("web-b-vm").hold, engine::VmHold::kStopped);
  EXPECT_EQ(state().vms.at("web-b-vm").presence, PresenceState::kUninstantiated);
  EXPECT_EQ(state().sis.at("web-si").assignments, (std::vector<engine::Assignment>{{"web-a", HaState::kActive, true}}));
  for (const char* node : {"n1", "n3"}) EXPECT_TRUE(calls(node).about("web-b-vm").empty()) << node;

  ASSERT_TRUE(command("vm start vm/web-b-vm").first);
  run(5s);
  EXPECT_TRUE(sim("n2").running("web-b-vm"));
  EXPECT_EQ(count(calls("n2").about("web-b-vm", from), "start web-b-vm"), 1u);
  EXPECT_EQ(state().sis.at("web-si").assignments.size(), 2u);
  EXPECT_EQ(state().sus.at("web-b").failovers.count, 0);
  EXPECT_EQ(state().vms.at("web-b-vm").restarts.count, 0);
}

TEST_F(VmOperationsTest, SuspendLeavesAManagedSaveThatStartRestores) {
  const std::size_t from = calls("n2").calls.size();
  ASSERT_TRUE(command("vm suspend vm/web-b-vm").first);
  run(5s);
  EXPECT_TRUE(sim("n2").hasManagedSave("web-b-vm"));
  EXPECT_FALSE(sim("n2").running("web-b-vm"));
  EXPECT_EQ(state().vms.at("web-b-vm").hold, engine::VmHold::kSuspended);
  EXPECT_EQ(state().vms.at("web-b-vm").savedOn, "n2");

  const auto [ok, message] = command("vm start vm/web-b-vm");
  ASSERT_TRUE(ok);
  EXPECT_EQ(message, "vm/web-b-vm starting with su/web-b (restored from its managed save if placed on n2)");
  run(5s);
  EXPECT_EQ(calls("n2").about("web-b-vm", from),
            (std::vector<std::string>{"unwatch web-b-vm", "suspend web-b-vm", "restore web-b-vm", "watch web-b-vm",
                                      "assign web-b-vm standby"}));
  EXPECT_FALSE(sim("n2").hasManagedSave("web-b-vm"));
  EXPECT_TRUE(sim("n2").running("web-b-vm"));
  EXPECT_EQ(state().vms.at("web-b-vm").savedOn, "");
  EXPECT_EQ(state().sis.at("web-si").assignments.size(), 2u);
}

TEST_F(VmOperationsTest, DestroyOfASuspendedVmDiscardsItsSaveAndStartBootsAfresh) {
  ASSERT_TRUE(command("vm suspend vm/web-b-vm").first);
  run(5s);
  ASSERT_TRUE(sim("n2").hasManagedSave("web-b-vm"));
  ASSERT_TRUE(command("vm destroy vm/web-b-vm").first);
  run(5s);
  EXPECT_FALSE(sim("n2").hasManagedSave("web-b-vm"));
  EXPECT_EQ(state().vms.at("web-b-vm").hold, engine::VmHold::kStopped);

  const std::size_t from = calls("n2").calls.size();
  ASSERT_TRUE(command("vm start vm/web-b-vm").first);
  run(5s);
  EXPECT_EQ(count(calls("n2").about("web-b-vm", from), "start web-b-vm"), 1u);
  EXPECT_EQ(count(calls("n2").about("web-b-vm", from), "restore web-b-vm"), 0u);
  EXPECT_TRUE(sim("n2").running("web-b-vm"));
}

// The node manager of the VM's host dies while the managed save is being written: the save
// completes on its own, and the node manager that comes back reports the VM stopped, without
// destroying it (which would discard the save).
TEST_F(VmOperationsTest, ASuspendThatEndsWhileTheNodeManagerIsDownKeepsItsSave) {
  ASSERT_TRUE(command("vm suspend vm/web-b-vm").first);
  run(100ms);
  ASSERT_TRUE(sim("n2").running("web-b-vm"));  // the save takes vmStop
  crashAmfd("n2");
  run(2s);
  ASSERT_TRUE(sim("n2").hasManagedSave("web-b-vm"));
  const std::size_t from = calls("n2").calls.size();
  startAmfd("n2");
  run(5s);
  EXPECT_TRUE(calls("n2").about("web-b-vm", from).empty());
  EXPECT_TRUE(sim("n2").hasManagedSave("web-b-vm"));
  EXPECT_EQ(state().vms.at("web-b-vm").presence, PresenceState::kUninstantiated);
  EXPECT_EQ(state().vms.at("web-b-vm").hold, engine::VmHold::kSuspended);
  EXPECT_EQ(state().nodes.at("n2").status, engine::NodeStatus::kUp);
}

// A paused VM's node manager restarts: it reattaches without watching the paused guest's
// heartbeats (it would find it hung).
TEST_F(VmOperationsTest, ARestartedNodeManagerDoesNotWatchAPausedGuest) {
  ASSERT_TRUE(command("vm pause vm/web-b-vm").first);
  run(1s);
  crashAmfd("n2");
  run(1s);
  const std::size_t from = calls("n2").calls.size();
  startAmfd("n2");
  run(30s);
  EXPECT_EQ(count(calls("n2").about("web-b-vm", from), "watch web-b-vm"), 0u);
  EXPECT_TRUE(sim("n2").paused("web-b-vm"));
  EXPECT_TRUE(state().vms.at("web-b-vm").paused);
  EXPECT_FALSE(state().vms.at("web-b-vm").failure);
}

// A pause and a resume decided while the VM's node manager is down are carried out once it is
// back (it reports in and finds the state asking for them).
TEST_F(VmOperationsTest, APauseOrResumeDecidedWhileTheNodeManagerIsDownIsCarriedOutWhenItIsBack) {
  crashAmfd("n2");
  run(1s);
  ASSERT_TRUE(command("vm pause vm/web-b-vm").first);
  run(1s);
  EXPECT_FALSE(sim("n2").paused("web-b-vm"));
  startAmfd("n2");
  run(5s);
  EXPECT_TRUE(sim("n2").paused("web-b-vm"));

  crashAmfd("n2");
  run(1s);
  ASSERT_TRUE(command("vm resume vm/web-b-vm").first);
  run(1s);
  EXPECT_TRUE(sim("n2").paused("web-b-vm"));
  const std::size_t from = calls("n2").calls.size();
  startAmfd("n2");
  run(5s);
  EXPECT_FALSE(sim("n2").paused("web-b-vm"));
  EXPECT_EQ(count(calls("n2").about("web-b-vm", from), "watch web-b-vm"), 1u);
  EXPECT_FALSE(state().vms.at("web-b-vm").failure);
  EXPECT_EQ(state().sis.at("web-si").assignments.size(), 2u);
}

}  // namespace
}  // namespace kvm_amf::node
