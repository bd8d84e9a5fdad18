// Configuration changes carried out by node managers over the simulated group (node/config_change.h):
// three complete node managers on simulated membership and hypervisors, on simulated time.
#include "kvm_amf/amf/node/config_change.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "amf/config/config_test_util.h"
#include "kvm_amf/cluster/sim_network.h"
#include "kvm_amf/sim/sim_scheduler.h"
#include "kvm_amf/vmm/sim_host.h"

namespace kvm_amf::node {
namespace {

using namespace std::chrono_literals;
using config::testing::kCluster;
using config::testing::serviceGroup;
using config::testing::unit;
using ConfigurationPtr = std::shared_ptr<const model::Configuration>;

std::string web() {
  return serviceGroup("web", "2N", "[" + unit("web-a", 1) + ", " + unit("web-b", 2) + "]", "[{name: web-si}]");
}
std::string cache() {
  return serviceGroup("cache", "No-Redundancy", "[" + unit("cache-1", 3) + "]", "[{name: cache-si}]");
}
std::string oam() { return serviceGroup("oam", "No-Redundancy", "[" + unit("oam-1", 4) + "]", "[{name: oam-si}]"); }

ConfigurationPtr initialConfiguration() {
  config::LoadResult loaded = config::loadConfiguration({{"cluster.yaml", kCluster}, {"web.yaml", web()}});
  EXPECT_TRUE(loaded.ok()) << config::testing::errorLines(loaded);
  return std::make_shared<const model::Configuration>(std::move(loaded.config));
}

class NoTruth : public vmm::SimTruthObserver {
 public:
  void onVmRunning(const std::string&, const std::string&, bool) override {}
  void onGuestHa(const std::string&, const std::string&, const std::string&, std::optional<model::HaState>) override {}
  void onGuestHung(const std::string&, const std::string&, bool) override {}
};

// The cluster of kCluster (n1, n2, n3) running `web`, each host with its node manager.
class ConfigChangeTest : public ::testing::Test {
 protected:
  struct Host {
    int id = 0;
    std::unique_ptr<vmm::SimHost> sim;
    std::unique_ptr<cluster::SimFenceAgent> fence;
    std::unique_ptr<cluster::GroupChannel> channel;
    std::unique_ptr<NodeManager> manager;
  };

  void SetUp() override {
    for (const auto& node : config_->cluster->nodes) {
      Host& host = hosts_[node.name];
      host.id = node.id;
      host.sim = std::make_unique<vmm::SimHost>(node.name, scheduler_, vmm::SimHostTiming{}, truth_,
                                                [](std::uint64_t) { return std::uint64_t{0}; });
      host.fence = std::make_unique<cluster::SimFenceAgent>(scheduler_, 1s, [](const std::string&) { return true; });
      start(node.name);
    }
    run(15s);
    ASSERT_EQ(state("n1").sis.at("web-si").assignments.size(), 2u) << "web is not in service";
  }

  // Starts the node manager of `name` with the configuration's initial state, as a new amfd would.
  void start(const std::string& name) {
    Host& host = hosts_.at(name);
    host.channel = network_.channel(host.id);
    NodeManagerDeps deps{&scheduler_, host.channel.get(), host.fence.get(), host.sim.get(), host.sim.get()};
    host.manager = std::make_unique<NodeManager>(name, deps, engine::initialState(config_, 1));
    ASSERT_TRUE(host.manager->start().ok());
  }

  void run(Duration d) { scheduler_.runUntil(scheduler_.now() + d); }

  NodeManager& manager(const std::string& name) { return *hosts_.at(name).manager; }
  const engine::ClusterState& state(const std::string& name) {
    const engine::ClusterState* s = manager(name).state();
    EXPECT_NE(s, nullptr) << name << " is not synchronised";
    static const engine::ClusterState kNone;
    return s ? *s : kNone;
  }

  // Applies `yaml` through the node manager of `node`; the result lands in `result`.
  void apply(const std::string& node, const std::string& yaml, std::optional<ConfigResult>& result,
             std::uint64_t expected = 0) {
    ConfigRequest request;
    request.files = {{node + ".yaml", yaml}};
    request.expectedGeneration = expected;
    applyConfigChange(manager(node), request, [&result](ConfigResult r) { result = std::move(r); });
  }

  // Carries `request` out through the node manager of `node`, lets `wait` pass, and gives the
  // result (none: not answered yet).
  std::optional<ConfigResult> carry(const std::string& node, const ConfigRequest& request, Duration wait = 0s) {
    std::optional<ConfigResult> result;
    applyConfigChange(manager(node), request, [&result](ConfigResult r) { result = std::move(r); });
    run(wait);
    return result;
  }

  // Applies `yaml` through the node manager of `node` and waits for the answer.
  ConfigResult applied(const std::string& node, const std::string& yaml) {
    ConfigRequest request;
    request.files = {{node + ".yaml", yaml}};
    std::optional<ConfigResult> result = carry(node, request, 15s);
    EXPECT_TRUE(result) << "no answer";
    return result.value_or(ConfigResult{});
  }

  std::vector<std::string> groups(const std::string& node) {
    std::vector<std::string> names;
    for (const auto& sg : state(node).config->serviceGroups) names.push_back(sg.name);
    return names;
  }

  ConfigurationPtr config_ = initialConfiguration();
  sim::SimScheduler scheduler_;
  cluster::SimNetwork network_{scheduler_, {1, 2, 3}, false, cluster::SimNetworkTiming{}};
  NoTruth truth_;
  std::map<std::string, Host> hosts_;
};

TEST_F(ConfigChangeTest, AChangeIsInstalledEverywhereAndTakesEffect) {
  const std::optional<ConfigResult> result = applied("n2", cache());
  EXPECT_EQ(result->outcome, ConfigOutcome::kApplied) << (result->problems.empty() ? "" : result->problems[0]);
  EXPECT_EQ(result->generation, 2u);
  ASSERT_EQ(result->changes.size(), 1u);
  EXPECT_EQ(result->changes[0].object(), "sg/cache");
  for (const char* node : {"n1", "n2", "n3"}) {
    EXPECT_EQ(state(node).generation, 2u) << node;
    EXPECT_EQ(groups(node), (std::vector<std::string>{"web", "cache"})) << node;
    EXPECT_EQ(manager(node).malformedMessages(), 0u) << node;
  }
  EXPECT_EQ(engine::suPresence(state("n1"), state("n1").sus.at("cache-1")), model::PresenceState::kInstantiated);
  EXPECT_EQ(state("n1").sis.at("cache-si").assignments.size(), 1u);
  EXPECT_TRUE(state("n1").pendingConfig.empty());
}

TEST_F(ConfigChangeTest, TwoConcurrentChangesFromTwoNodeManagersAreBothApplied) {
  std::optional<ConfigResult> fromN2;
  std::optional<ConfigResult> fromN3;
  apply("n2", cache(), fromN2);
  apply("n3", oam(), fromN3);  // merged onto the same generation as n2's
  run(15s);
  ASSERT_TRUE(fromN2);
  ASSERT_TRUE(fromN3);
  EXPECT_EQ(fromN2->outcome, ConfigOutcome::kApplied);
  EXPECT_EQ(fromN3->outcome, ConfigOutcome::kApplied);
  // One went in first; the other was merged again onto its result.
  EXPECT_EQ(std::min(fromN2->generation, fromN3->generation), 2u);
  EXPECT_EQ(std::max(fromN2->generation, fromN3->generation), 3u);
  for (const char* node : {"n1", "n2", "n3"}) {
    EXPECT_EQ(state(node).generation, 3u) << node;
    const std::vector<std::string> names = groups(node);
    EXPECT_EQ(names.size(), 3u) << node;
    EXPECT_NE(std::find(names.begin(), names.end(), "cache"), names.end()) << node;
    EXPECT_NE(std::find(names.begin(), names.end(), "oam"), names.end()) << node;
  }
}

TEST_F(ConfigChangeTest, WithTheSameExpectedGenerationExactlyOneOfTwoChangesWins) {
  std::optional<ConfigResult> fromN2;
  std::optional<ConfigResult> fromN3;
  apply("n2", cache(), fromN2, 1);
  apply("n3", oam(), fromN3, 1);
  run(15s);
  ASSERT_TRUE(fromN2);
  ASSERT_TRUE(fromN3);
  const ConfigResult& won = fromN2->outcome == ConfigOutcome::kApplied ? *fromN2 : *fromN3;
  const ConfigResult& lost = fromN2->outcome == ConfigOutcome::kApplied ? *fromN3 : *fromN2;
  EXPECT_EQ(won.outcome, ConfigOutcome::kApplied);
  EXPECT_EQ(won.generation, 2u);
  EXPECT_EQ(lost.outcome, ConfigOutcome::kRefused);
  EXPECT_EQ(lost.problems, std::vector<std::string>{"the configuration is at generation 2, not 1; diff again"});
  for (const char* node : {"n1", "n2", "n3"}) {
    EXPECT_EQ(state(node).generation, 2u) << node;
    EXPECT_EQ(groups(node).size(), 2u) << node;
  }
}

TEST_F(ConfigChangeTest, AnUnsafeChangeIsRefusedAtOnceAndNothingIsSent) {
  ConfigRequest request;
  request.removeServiceGroup = "web";
  const std::optional<ConfigResult> result = carry("n2", request);
  ASSERT_TRUE(result) << "answered without asking the director";
  EXPECT_EQ(result->outcome, ConfigOutcome::kRefused);
  EXPECT_EQ(result->problems.size(), 3u);  // web-a, web-b, web-si
  EXPECT_EQ(result->generation, 1u);
  const std::uint64_t applied = state("n2").applied;
  run(1s);
  EXPECT_EQ(state("n2").applied, applied) << "something was sent";
}

TEST_F(ConfigChangeTest, InvalidDocumentsDryRunsAndUnchangedDocumentsSendNothing) {
  ConfigRequest request;
  request.files = {{"bad.yaml", "apiVersion: kvm-amf/v1\nkind: ServiceGroup\nmetadata: {name: x}\nspec: {units: 3}\n"}};
  std::optional<ConfigResult> result = carry("n1", request);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, ConfigOutcome::kInvalid);
  ASSERT_FALSE(result->errors.empty());
  EXPECT_EQ(result->errors[0].where.file, "bad.yaml");
  EXPECT_EQ(result->errors[0].where.line, 4);

  request.files = {{"cache.yaml", cache()}};
  request.dryRun = true;
  result = carry("n1", request);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, ConfigOutcome::kApplied);
  EXPECT_EQ(result->generation, 1u);
  EXPECT_EQ(config::summarize(result->changes), "sg/cache added");

  request.files = {{"web.yaml", web()}};
  request.dryRun = false;
  result = carry("n1", request);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, ConfigOutcome::kUnchanged);

  const std::uint64_t applied = state("n1").applied;
  run(1s);
  EXPECT_EQ(state("n1").applied, applied);
  EXPECT_EQ(state("n1").generation, 1u);
}

TEST_F(ConfigChangeTest, AServiceGroupIsDeletedOnceLockedForInstantiation) {
  ASSERT_EQ(applied("n1", cache()).outcome, ConfigOutcome::kApplied);

  ConfigRequest request;
  request.removeServiceGroup = "cache";
  std::optional<ConfigResult> result = carry("n3", request);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, ConfigOutcome::kRefused);
  ASSERT_EQ(result->problems.size(), 2u);
  EXPECT_NE(result->problems[0].find("su/cache-1 is instantiated on"), std::string::npos) << result->problems[0];

  for (const char* words : {"lock sg/cache", "lock-in sg/cache"}) {
    std::optional<bool> ok;
    manager("n3").submit(model::parseAdminCommand(words).value(), [&ok](bool done, std::string) { ok = done; });
    run(5s);
    ASSERT_EQ(ok, true) << words;
  }
  result = carry("n3", request, 5s);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->outcome, ConfigOutcome::kApplied) << (result->problems.empty() ? "" : result->problems[0]);
  EXPECT_EQ(result->generation, 3u);
  EXPECT_EQ(config::summarize(result->changes), "sg/cache removed");
  EXPECT_EQ(groups("n1"), std::vector<std::string>{"web"});
  EXPECT_FALSE(state("n2").sus.contains("cache-1"));

  // Deleting it again finds nothing to delete.
  result = carry("n3", request);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->problems, std::vector<std::string>{"no sg/cache in the configuration"});
}

TEST_F(ConfigChangeTest, ANodeManagerThatStartsAgainAfterAChangeTakesTheNewConfiguration) {
  ASSERT_EQ(applied("n2", cache()).outcome, ConfigOutcome::kApplied);

  hosts_.at("n3").manager.reset();  // amfd stops; it comes back with the initial configuration
  hosts_.at("n3").channel.reset();
  run(2s);
  start("n3");
  run(5s);
  EXPECT_EQ(state("n3").generation, 2u);
  EXPECT_EQ(groups("n3"), (std::vector<std::string>{"web", "cache"}));
  EXPECT_EQ(manager("n3").malformedMessages(), 0u);

  // And it carries the next change like any other member.
  EXPECT_EQ(applied("n3", oam()).outcome, ConfigOutcome::kApplied);
  EXPECT_EQ(state("n1").generation, 3u);
}

}  // namespace
}  // namespace kvm_amf::node
