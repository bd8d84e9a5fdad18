// Configuration changes in the engine: what checkReconfiguration refuses, how SetConfiguration
// takes over the runtime state, and how the director answers pending changes (engine/reconfiguration.h).
#include "kvm_amf/amf/engine/reconfiguration.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "amf/config/config_test_util.h"
#include "kvm_amf/amf/engine/apply.h"
#include "kvm_amf/amf/engine/engine.h"

namespace kvm_amf::engine {
namespace {

using namespace std::chrono_literals;
using config::testing::kCluster;
using config::testing::serviceGroup;
using config::testing::unit;
using ConfigurationPtr = std::shared_ptr<const model::Configuration>;

// The documents of the running configuration: a 2N pair serving web-si, and an idle db group.
std::string web() {
  return serviceGroup("web", "2N", "[" + unit("web-a", 1) + ", " + unit("web-b", 2) + "]", "[{name: web-si}]");
}
std::string db() { return serviceGroup("db", "N-Way-Active", "[" + unit("db-1", 3) + "]", "[{name: db-si}]"); }

ConfigurationPtr configOf(const std::string& yaml) {
  config::LoadResult loaded = config::loadConfiguration({{"test.yaml", yaml}});
  EXPECT_TRUE(loaded.ok()) << config::testing::errorLines(loaded);
  return std::make_shared<const model::Configuration>(std::move(loaded.config));
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The problem naming `object`; fails the test when there is none.
std::string problemAbout(const std::vector<std::string>& problems, const std::string& object) {
  for (const auto& problem : problems) {
    if (contains(problem, object)) return problem;
  }
  ADD_FAILURE() << "no problem names " << object;
  return "";
}

std::string all(const std::vector<std::string>& problems) {
  std::string out;
  for (const auto& problem : problems) out += problem + "\n";
  return out;
}

// Every host up, web-a active on n1 and web-b standby on n2, db never started.
ClusterState runningState() {
  ClusterState s = initialState(configOf(std::string(kCluster) + web() + db()), 1);
  for (auto& [name, node] : s.nodes) {
    node.status = NodeStatus::kUp;
    node.agentReady = true;
  }
  auto place = [&](const std::string& su, const std::string& node) {
    s.sus.at(su).node = node;
    s.vms.at(su + "-vm").node = node;
    s.vms.at(su + "-vm").presence = PresenceState::kInstantiated;
  };
  place("web-a", "n1");
  place("web-b", "n2");
  s.sus.at("web-a").restarts = {1, 5000ms};
  s.sis.at("web-si").assignments = {{"web-a", HaState::kActive, true}, {"web-b", HaState::kStandby, true}};
  s.sus.at("db-1").admin = AdminState::kLockedInstantiation;
  return s;
}

// The state after `s` was locked for instantiation and stopped: nothing of web runs.
ClusterState webStopped(ClusterState s) {
  for (const char* su : {"web-a", "web-b"}) {
    s.sus.at(su).node.clear();
    s.sus.at(su).admin = AdminState::kLockedInstantiation;
    s.vms.at(std::string(su) + "-vm").node.clear();
    s.vms.at(std::string(su) + "-vm").presence = PresenceState::kUninstantiated;
  }
  s.sis.at("web-si").assignments.clear();
  return s;
}

View viewOf(int self) {
  View view;
  view.self = self;
  view.group = {1, 2, 3};
  view.hosts = {1, 2, 3};
  view.quorate = true;
  view.clusterSize = 3;
  return view;
}

// ---- SetConfiguration -------------------------------------------------------------------------

TEST(SetConfiguration, AddsAServiceGroupAndKeepsTheRuntimeOfTheOthers) {
  ClusterState s = runningState();
  const ClusterState before = s;
  const ConfigurationPtr next =
      configOf(std::string(kCluster) + web() + db() +
               serviceGroup("cache", "No-Redundancy", "[" + unit("cache-1", 4) + "]", "[{name: cache-si, rank: 2}]"));
  applyAction(s, SetConfiguration{next, 2}, 10s);

  EXPECT_EQ(s.generation, 2u);
  EXPECT_EQ(s.config, next);
  EXPECT_EQ(s.sgs.at("cache").admin, AdminState::kUnlocked);
  EXPECT_EQ(s.sus.at("cache-1").sg, "cache");
  EXPECT_EQ(s.sus.at("cache-1").node, "");
  EXPECT_EQ(s.vms.at("cache-1-vm").su, "cache-1");
  EXPECT_EQ(s.vms.at("cache-1-vm").presence, PresenceState::kUninstantiated);
  EXPECT_EQ(s.sis.at("cache-si").sg, "cache");
  EXPECT_EQ(s.sis.at("cache-si").rank, 2);
  for (const char* su : {"web-a", "web-b", "db-1"}) EXPECT_EQ(s.sus.at(su), before.sus.at(su)) << su;
  for (const char* si : {"web-si", "db-si"}) EXPECT_EQ(s.sis.at(si), before.sis.at(si)) << si;
  EXPECT_EQ(s.nodes, before.nodes);
  EXPECT_EQ(s.sgSpec("cache").name, "cache");  // the index follows the new configuration
  EXPECT_EQ(s.decisions, before.decisions);
}

TEST(SetConfiguration, ChangesAServiceGroupKeepingWhatRuns) {
  ClusterState s = runningState();
  const ClusterState before = s;
  // web-a ranked after web-b, a third unit, the VM of web-a with more memory (for its next start).
  const std::string changed =
      serviceGroup("web", "2N",
                   "[{name: web-a, rank: 3, vms: [{name: web-a-vm, memory: 256Mi, boot: {kernel: /k}, nics: [{mac: "
                   "\"52:54:00:00:00:01\", bridge: br0}]}]}, " +
                       unit("web-b", 2) + ", " + unit("web-c", 5) + "]",
                   "[{name: web-si, attributes: {ip: 10.0.0.9/24}}]");
  const ConfigurationPtr next = configOf(std::string(kCluster) + changed + db());
  EXPECT_EQ(checkReconfiguration(s, *next), std::vector<std::string>{});
  applyAction(s, SetConfiguration{next, 2}, 10s);

  EXPECT_EQ(s.sus.at("web-a").rank, 3);
  EXPECT_EQ(s.sus.at("web-a").node, "n1");
  EXPECT_EQ(s.sus.at("web-a").restarts, before.sus.at("web-a").restarts);
  EXPECT_EQ(s.vms.at("web-a-vm"), before.vms.at("web-a-vm"));
  EXPECT_EQ(s.vmSpec("web-a-vm").memory, 256u << 20);
  EXPECT_EQ(s.sus.at("web-c").sg, "web");
  EXPECT_EQ(s.sus.at("web-c").rank, 3);
  EXPECT_EQ(s.sis.at("web-si").assignments, before.sis.at("web-si").assignments);
  EXPECT_EQ(s.index().unitsOf.at("web"), (std::vector<std::string>{"web-a", "web-b", "web-c"}));
}

TEST(SetConfiguration, RemovesAServiceGroupWithEverythingInIt) {
  ClusterState s = runningState();
  applyAction(s, SetConfiguration{configOf(std::string(kCluster) + web()), 2}, 10s);
  EXPECT_FALSE(s.sgs.contains("db"));
  EXPECT_FALSE(s.sus.contains("db-1"));
  EXPECT_FALSE(s.vms.contains("db-1-vm"));
  EXPECT_FALSE(s.sis.contains("db-si"));
  EXPECT_TRUE(s.sus.contains("web-a"));
  EXPECT_FALSE(s.index().sgs.contains("db"));
}

TEST(SetConfiguration, OfAnotherThanTheNextGenerationChangesNothing) {
  ClusterState s = runningState();
  const ClusterState before = s;
  const ConfigurationPtr next = configOf(std::string(kCluster) + web());
  applyAction(s, SetConfiguration{next, 1}, 10s);  // already installed (a repeated decision)
  applyAction(s, SetConfiguration{next, 3}, 10s);  // not decided against this configuration
  EXPECT_TRUE(s == before);
}

TEST(SetConfiguration, DropsAssignmentsOfUnitsThatLeftTheirInstancesGroup) {
  ClusterState s = webStopped(runningState());
  s.sis.at("web-si").assignments = {{"web-b", HaState::kStandby, false}};  // not yet removed
  s.sis.at("web-si").preferredActive = "web-b";
  // web-b moves to db (it is uninstantiated: allowed); web gets web-c instead.
  const ConfigurationPtr next = configOf(
      std::string(kCluster) +
      serviceGroup("web", "2N", "[" + unit("web-a", 1) + ", " + unit("web-c", 5) + "]", "[{name: web-si}]") +
      serviceGroup("db", "N-Way-Active", "[" + unit("db-1", 3) + ", " + unit("web-b", 2) + "]", "[{name: db-si}]"));
  applyAction(s, SetConfiguration{next, 2}, 10s);
  EXPECT_EQ(s.sus.at("web-b").sg, "db");
  EXPECT_TRUE(s.sis.at("web-si").assignments.empty());
  EXPECT_EQ(s.sis.at("web-si").preferredActive, "");
}

// ---- checkReconfiguration -----------------------------------------------------------------------

TEST(CheckReconfiguration, AcceptsTheSameConfigurationAndNewGroups) {
  const ClusterState s = runningState();
  EXPECT_EQ(checkReconfiguration(s, *s.config), std::vector<std::string>{});
  const ConfigurationPtr more =
      configOf(std::string(kCluster) + web() + db() +
               serviceGroup("cache", "2N", "[" + unit("c-1", 4) + ", " + unit("c-2", 5) + "]", "[{name: cache-si}]"));
  EXPECT_EQ(checkReconfiguration(s, *more), std::vector<std::string>{});
}

TEST(CheckReconfiguration, RefusesRemovingAnInstantiatedUnit) {
  const ConfigurationPtr next = configOf(
      std::string(kCluster) +
      serviceGroup("web", "2N", "[" + unit("web-a", 1) + ", " + unit("web-c", 5) + "]", "[{name: web-si}]") + db());
  const std::vector<std::string> problems = checkReconfiguration(runningState(), *next);
  ASSERT_EQ(problems.size(), 1u) << all(problems);
  EXPECT_EQ(problems[0],
            "su/web-b is instantiated on n2, so it cannot be removed; lock su/web-b (or sg/web), then lock-in it, "
            "and apply again once it is uninstantiated");
  EXPECT_EQ(checkReconfiguration(webStopped(runningState()), *next), std::vector<std::string>{});
}

TEST(CheckReconfiguration, RefusesRemovingAUnitThatStillHoldsAnAssignment) {
  ClusterState s = webStopped(runningState());
  s.sis.at("web-si").assignments = {{"web-b", HaState::kStandby, true}};
  const ConfigurationPtr next = configOf(
      std::string(kCluster) +
      serviceGroup("web", "2N", "[" + unit("web-a", 1) + ", " + unit("web-c", 5) + "]", "[{name: web-si}]") + db());
  EXPECT_TRUE(contains(problemAbout(checkReconfiguration(s, *next), "su/web-b"), "holds si/web-si standby"));
}

TEST(CheckReconfiguration, RefusesMovingAnInstantiatedUnitToAnotherGroup) {
  const ConfigurationPtr next = configOf(
      std::string(kCluster) +
      serviceGroup("web", "2N", "[" + unit("web-a", 1) + ", " + unit("web-c", 5) + "]", "[{name: web-si}]") +
      serviceGroup("db", "N-Way-Active", "[" + unit("db-1", 3) + ", " + unit("web-b", 2) + "]", "[{name: db-si}]"));
  const std::vector<std::string> problems = checkReconfiguration(runningState(), *next);
  ASSERT_EQ(problems.size(), 1u) << all(problems);
  EXPECT_TRUE(contains(problems[0],
                       "su/web-b is instantiated on n2, so it cannot move from sg/web to sg/db; lock "
                       "su/web-b (or sg/web), then lock-in it"))
      << problems[0];
}

TEST(CheckReconfiguration, RefusesAddingOrRemovingAVmOfARunningUnit) {
  const std::string secondVm = "{name: web-a-vm2, memory: 128Mi, boot: {kernel: /k}}";
  const ConfigurationPtr added =
      configOf(std::string(kCluster) +
               serviceGroup("web", "2N",
                            "[{name: web-a, vms: [{name: web-a-vm, memory: 128Mi, boot: {kernel: /k}, nics: [{mac: "
                            "\"52:54:00:00:00:01\", bridge: br0}]}, " +
                                secondVm + "]}, " + unit("web-b", 2) + "]",
                            "[{name: web-si}]") +
               db());
  const ClusterState s = runningState();
  EXPECT_EQ(problemAbout(checkReconfiguration(s, *added), "vm/web-a-vm2"),
            "su/web-a is instantiated on n1, so vm/web-a-vm2 cannot be added to it; lock su/web-a (or sg/web), then "
            "lock-in it, and apply again once it is uninstantiated");

  ClusterState two = initialState(added, 1);
  two.sus.at("web-a").node = "n1";
  for (const char* vm : {"web-a-vm", "web-a-vm2"}) {
    two.vms.at(vm).node = "n1";
    two.vms.at(vm).presence = PresenceState::kInstantiated;
  }
  EXPECT_TRUE(contains(problemAbout(checkReconfiguration(two, *s.config), "vm/web-a-vm2"),
                       "su/web-a is instantiated on n1, so vm/web-a-vm2 cannot be removed from it"));
}

TEST(CheckReconfiguration, RefusesMovingAVmBetweenUnitsUnlessBothAreUninstantiated) {
  // web-b's VM goes to web-a, and web-b gets a new one.
  const ConfigurationPtr next = configOf(
      std::string(kCluster) +
      serviceGroup("web", "2N",
                   "[{name: web-a, vms: [{name: web-a-vm, memory: 128Mi, boot: {kernel: /k}}, {name: web-b-vm, "
                   "memory: 128Mi, boot: {kernel: /k}}]}, {name: web-b, vms: [{name: web-b-new, memory: 128Mi, "
                   "boot: {kernel: /k}}]}]",
                   "[{name: web-si}]") +
      db());
  const std::string problem = problemAbout(checkReconfiguration(runningState(), *next), "vm/web-b-vm");
  EXPECT_TRUE(contains(problem, "so vm/web-b-vm cannot move from su/web-b to su/web-a")) << problem;
  EXPECT_EQ(checkReconfiguration(webStopped(runningState()), *next), std::vector<std::string>{});
}

TEST(CheckReconfiguration, RefusesRemovingAnAssignedServiceInstance) {
  const ConfigurationPtr next = configOf(
      std::string(kCluster) +
      serviceGroup("web", "2N", "[" + unit("web-a", 1) + ", " + unit("web-b", 2) + "]", "[{name: web-si-2}]") + db());
  const std::vector<std::string> problems = checkReconfiguration(runningState(), *next);
  ASSERT_EQ(problems.size(), 1u) << all(problems);
  EXPECT_EQ(problems[0],
            "si/web-si has assignments (su/web-a active, su/web-b standby), so it cannot be removed; lock si/web-si "
            "and apply again once they are gone");
  ClusterState locked = runningState();
  locked.sis.at("web-si").assignments.clear();
  EXPECT_EQ(checkReconfiguration(locked, *next), std::vector<std::string>{});
}

TEST(CheckReconfiguration, RefusesMovingAnAssignedServiceInstanceToAnotherGroup) {
  const ConfigurationPtr next =
      configOf(std::string(kCluster) +
               serviceGroup("web", "2N", "[" + unit("web-a", 1) + ", " + unit("web-b", 2) + "]", "[{name: web-si-2}]") +
               serviceGroup("db", "N-Way-Active", "[" + unit("db-1", 3) + "]", "[{name: db-si}, {name: web-si}]"));
  EXPECT_TRUE(contains(problemAbout(checkReconfiguration(runningState(), *next), "si/web-si"),
                       "so it cannot move from sg/web to sg/db; lock si/web-si"));
}

TEST(CheckReconfiguration, RefusesChangingTheModelOfAGroupWithAssignments) {
  const ConfigurationPtr next = configOf(
      std::string(kCluster) +
      serviceGroup("web", "N-Way", "[" + unit("web-a", 1) + ", " + unit("web-b", 2) + "]", "[{name: web-si}]") +
      serviceGroup("db", "No-Redundancy", "[" + unit("db-1", 3) + "]", "[{name: db-si}]"));
  const std::vector<std::string> problems = checkReconfiguration(runningState(), *next);
  ASSERT_EQ(problems.size(), 1u) << all(problems);  // db has no assignment: its model may change
  EXPECT_EQ(problems[0],
            "sg/web: si/web-si has assignments, so its redundancy model cannot change from 2N to N-Way; lock sg/web "
            "and apply again once they are gone");
}

TEST(CheckReconfiguration, RefusesEveryChangeOfTheHosts) {
  const ClusterState s = runningState();
  auto problemsWith = [&](const std::string& nodes) {
    std::string cluster = kCluster;
    const std::string original =
        "    - {name: n1, address: 10.0.0.1}\n    - {name: n2, address: 10.0.0.2}\n    - {name: n3, address: "
        "10.0.0.3}\n";
    cluster.replace(cluster.find(original), original.size(), nodes);
    return checkReconfiguration(s, *configOf(cluster + web() + db()));
  };
  const std::string n12 = "    - {name: n1, address: 10.0.0.1}\n    - {name: n2, address: 10.0.0.2}\n";
  std::vector<std::string> added =
      problemsWith(n12 + "    - {name: n3, address: 10.0.0.3}\n    - {name: n4, address: 10.0.0.4}\n");
  ASSERT_EQ(added.size(), 1u) << all(added);
  EXPECT_TRUE(contains(added[0], "node/n4 would be added: the hosts are Corosync's nodelist")) << added[0];

  std::vector<std::string> renamed = problemsWith(n12 + "    - {name: n9, id: 3, address: 10.0.0.3}\n");
  EXPECT_TRUE(contains(problemAbout(renamed, "node/n9"), "would be added"));
  EXPECT_TRUE(contains(problemAbout(renamed, "node/n3"), "would be removed"));

  EXPECT_TRUE(contains(problemAbout(problemsWith(n12 + "    - {name: n3, id: 7, address: 10.0.0.3}\n"), "node/n3"),
                       "its id would change from 3 to 7"));
  EXPECT_TRUE(contains(problemAbout(problemsWith(n12 + "    - {name: n3, address: 10.0.0.33}\n"), "node/n3"),
                       "its address would change from 10.0.0.3 to 10.0.0.33"));

  // Other cluster settings may change.
  std::string cluster = std::string(kCluster) + "  escalation: {suFailoverMax: 5}\n";
  EXPECT_EQ(checkReconfiguration(s, *configOf(cluster + web() + db())), std::vector<std::string>{});
}

TEST(CheckReconfiguration, NamesEveryObjectOfARunningGroupThatWouldGo) {
  const std::vector<std::string> problems =
      checkReconfiguration(runningState(), *configOf(std::string(kCluster) + db()));
  EXPECT_EQ(problems.size(), 3u) << all(problems);
  problemAbout(problems, "su/web-a is instantiated");
  problemAbout(problems, "su/web-b is instantiated");
  problemAbout(problems, "si/web-si has assignments");
}

// ---- The director ----------------------------------------------------------------------------------

template <typename A>
std::vector<A> actionsOf(const EngineStep& step) {
  std::vector<A> found;
  for (const auto& action : step.actions) {
    if (const auto* a = std::get_if<A>(&action)) found.push_back(*a);
  }
  return found;
}

ConfigurationPtr withCache() {
  return configOf(std::string(kCluster) + web() + db() +
                  serviceGroup("cache", "No-Redundancy", "[" + unit("cache-1", 4) + "]", "[{name: cache-si}]"));
}

TEST(DecideConfiguration, InstallsAPendingChangeAndAnswersIt) {
  ClusterState s = runningState();
  applyReport(s, ConfigChange{5, 2, 1, withCache()});
  ASSERT_EQ(s.pendingConfig.size(), 1u);

  const EngineStep step = decide(s, viewOf(1), 20s);
  const auto installs = actionsOf<SetConfiguration>(step);
  ASSERT_EQ(installs.size(), 1u);
  EXPECT_EQ(installs[0].generation, 2u);
  EXPECT_TRUE(*installs[0].config == *withCache());
  const auto replies = actionsOf<ConfigReply>(step);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0], (ConfigReply{5, 2, true, false, 2, {}}));
  // The new group's unit is placed in the same decision.
  bool started = false;
  for (const auto& start : actionsOf<StartSu>(step)) started = started || start.su == "cache-1";
  EXPECT_TRUE(started);

  applyDecision(s, Decision{1, 20s, step.actions});
  EXPECT_EQ(s.generation, 2u);
  EXPECT_TRUE(s.pendingConfig.empty());
  EXPECT_EQ(s.sus.at("cache-1").node, "n3");
}

TEST(DecideConfiguration, RefusesAChangeMergedOntoAnotherGenerationAsStale) {
  ClusterState s = runningState();
  s.generation = 4;
  applyReport(s, ConfigChange{5, 2, 3, withCache()});
  const EngineStep step = decide(s, viewOf(1), 20s);
  EXPECT_TRUE(actionsOf<SetConfiguration>(step).empty());
  ASSERT_EQ(actionsOf<ConfigReply>(step).size(), 1u);
  EXPECT_EQ(actionsOf<ConfigReply>(step)[0],
            (ConfigReply{5, 2, false, true, 4, {"the configuration is at generation 4, not 3"}}));
}

TEST(DecideConfiguration, OfTwoChangesOntoOneGenerationInstallsTheFirstAndRefusesTheSecondAsStale) {
  ClusterState s = runningState();
  applyReport(s, ConfigChange{1, 3, 1, withCache()});
  applyReport(s, ConfigChange{1, 2, 1, configOf(std::string(kCluster) + web())});
  const EngineStep step = decide(s, viewOf(1), 20s);
  ASSERT_EQ(actionsOf<SetConfiguration>(step).size(), 1u);
  EXPECT_TRUE(*actionsOf<SetConfiguration>(step)[0].config == *withCache());
  const auto replies = actionsOf<ConfigReply>(step);
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_TRUE(replies[0].ok);
  EXPECT_EQ(replies[0].from, 3);
  EXPECT_FALSE(replies[1].ok);
  EXPECT_TRUE(replies[1].stale);
  EXPECT_EQ(replies[1].from, 2);
  EXPECT_EQ(replies[1].generation, 2u);
}

TEST(DecideConfiguration, RefusesAnUnsafeChangeWithItsProblems) {
  ClusterState s = runningState();
  const ConfigurationPtr next = configOf(std::string(kCluster) + db());
  applyReport(s, ConfigChange{8, 2, 1, next});
  const EngineStep step = decide(s, viewOf(1), 20s);
  EXPECT_TRUE(actionsOf<SetConfiguration>(step).empty());
  ASSERT_EQ(actionsOf<ConfigReply>(step).size(), 1u);
  const ConfigReply reply = actionsOf<ConfigReply>(step)[0];
  EXPECT_FALSE(reply.ok);
  EXPECT_FALSE(reply.stale);
  EXPECT_EQ(reply.generation, 1u);
  EXPECT_EQ(reply.problems, checkReconfiguration(s, *next));
}

TEST(DecideConfiguration, APendingChangeIsAnsweredByANewDirector) {
  // The change reached every member, then its director (n1) left before deciding on it.
  ClusterState s = runningState();
  applyReport(s, ConfigChange{5, 3, 1, withCache()});
  View view = viewOf(2);
  view.group = {2, 3};
  view.hosts = {2, 3};
  ASSERT_EQ(directorOf(view), 2);
  const EngineStep step = decide(s, view, 20s);
  ASSERT_EQ(actionsOf<ConfigReply>(step).size(), 1u);
  EXPECT_TRUE(actionsOf<ConfigReply>(step)[0].ok);
  applyDecision(s, Decision{2, 20s, step.actions});
  EXPECT_EQ(s.generation, 2u);
  EXPECT_TRUE(s.sgs.contains("cache"));
  EXPECT_TRUE(s.pendingConfig.empty());
  // Answered once: the next decision has nothing more to say about it.
  EXPECT_TRUE(actionsOf<ConfigReply>(decide(s, view, 21s)).empty());
}

}  // namespace
}  // namespace kvm_amf::engine
