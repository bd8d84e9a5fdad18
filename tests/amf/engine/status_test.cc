// The status document amf-admin shows (engine/status.h): built from a real state.
#include "kvm_amf/amf/engine/status.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "kvm_amf/amf/config/loader.h"

namespace kvm_amf::engine {
namespace {

using nlohmann::json;

ClusterState exampleState() {
  std::vector<std::string> paths;
  for (const char* file : {"cluster.yaml", "sg-mme.yaml", "sg-lb.yaml", "sg-oam.yaml", "sg-sgw.yaml"}) {
    paths.push_back(std::string(KVM_AMF_SOURCE_DIR "/examples/") + file);
  }
  config::LoadResult loaded = config::loadConfigurationFiles(paths);
  EXPECT_TRUE(loaded.ok());
  return initialState(std::make_shared<const model::Configuration>(std::move(loaded.config)), 1);
}

const json& named(const json& list, const std::string& name) {
  for (const auto& entry : list) {
    if (entry["name"] == name) return entry;
  }
  static const json kNone;
  ADD_FAILURE() << "no " << name;
  return kNone;
}

// The view of node manager `self` of the example's three hosts, with `members` in the group and the
// membership.
View viewOf(int self, std::set<int> members, bool quorate) {
  View view;
  view.self = self;
  view.group = members;
  view.hosts = std::move(members);
  view.quorate = quorate;
  view.clusterSize = 3;
  return view;
}

TEST(StatusDocumentTest, ShowsPlacementsAssignmentsAndTheView) {
  ClusterState s = exampleState();
  s.nodes.at("node1").status = NodeStatus::kUp;
  s.nodes.at("node2").status = NodeStatus::kUp;
  s.nodes.at("node3").status = NodeStatus::kLost;
  s.nodes.at("node3").alarm = "fence agent failed: exit 1";
  s.sus.at("mme-a").node = "node1";
  s.vms.at("mme-a-vm").node = "node1";
  s.vms.at("mme-a-vm").presence = PresenceState::kInstantiated;
  s.sis.at("mme-si").assignments = {{"mme-a", HaState::kActive, true}, {"mme-b", HaState::kStandby, false}};
  const json doc = statusDocument(s, viewOf(1, {1, 2}, true));
  EXPECT_EQ(doc["quorate"], true);
  EXPECT_EQ(doc["director"], "node1");
  EXPECT_EQ(named(doc["nodes"], "node3")["status"], "lost");
  EXPECT_EQ(named(doc["nodes"], "node3")["member"], false);
  EXPECT_EQ(named(doc["nodes"], "node2")["amfd"], true);
  const json& mmeA = named(doc["sus"], "mme-a");
  EXPECT_EQ(mmeA["node"], "node1");
  EXPECT_EQ(mmeA["sg"], "mme");
  EXPECT_EQ(mmeA["ha"]["mme-si"], "active");
  EXPECT_EQ(mmeA["presence"], "instantiated");
  EXPECT_TRUE(named(doc["sus"], "mme-b")["node"].is_null());
  const json& si = named(doc["sis"], "mme-si");
  ASSERT_EQ(si["assignments"].size(), 2u);
  EXPECT_EQ(si["assignments"][1]["acked"], false);
  EXPECT_EQ(named(doc["sgs"], "mme")["model"], "2N");
  EXPECT_EQ(named(doc["vms"], "mme-a-vm")["node"], "node1");

  // Problems: the lost host with its alarm; every SI without an acknowledged active, not mme-si.
  const std::vector<std::string> problems = doc["problems"].get<std::vector<std::string>>();
  auto has = [&](const std::string& text) {
    return std::find(problems.begin(), problems.end(), text) != problems.end();
  };
  EXPECT_TRUE(has("node/node3 is lost: fence agent failed: exit 1"));
  EXPECT_FALSE(has("si/mme-si is not served: no active assignment"));
  for (const auto& [name, other] : s.sis) {
    if (name != "mme-si") {
      EXPECT_TRUE(has("si/" + name + " is not served: no active assignment")) << name;
    }
  }
}

TEST(StatusDocumentTest, ShowsTheOperatorsStateOfEachVmAndHeldVmsOfUnlockedUnitsAsProblems) {
  ClusterState s = exampleState();
  s.vms.at("mme-a-vm").node = "node1";
  s.vms.at("mme-a-vm").presence = PresenceState::kInstantiated;
  s.vms.at("mme-a-vm").paused = true;
  s.vms.at("mme-b-vm").hold = VmHold::kStopped;
  s.vms.at("sgw-1-vm").hold = VmHold::kSuspended;
  s.vms.at("sgw-1-vm").savedOn = "node2";
  s.sus.at("sgw-1").admin = AdminState::kLocked;  // out of service anyway: not a problem
  const json doc = statusDocument(s, viewOf(1, {1}, true));
  EXPECT_EQ(named(doc["vms"], "mme-a-vm")["admin"], "paused");
  EXPECT_EQ(named(doc["vms"], "mme-b-vm")["admin"], "stopped");
  EXPECT_EQ(named(doc["vms"], "sgw-1-vm")["admin"], "suspended");
  EXPECT_TRUE(named(doc["vms"], "sgw-2-vm")["admin"].is_null());
  EXPECT_EQ(named(doc["sus"], "mme-a")["readiness"], "out-of-service");

  const std::vector<std::string> problems = doc["problems"].get<std::vector<std::string>>();
  auto has = [&](const std::string& text) {
    return std::find(problems.begin(), problems.end(), text) != problems.end();
  };
  EXPECT_TRUE(has("vm/mme-a-vm is paused by an operator: su/mme-a is out of service (vm resume vm/mme-a-vm)"));
  EXPECT_TRUE(has("vm/mme-b-vm is stopped by an operator: su/mme-b is out of service (vm start vm/mme-b-vm)"));
  for (const auto& problem : problems) EXPECT_EQ(problem.find("sgw-1-vm"), std::string::npos) << problem;
}

TEST(StatusDocumentTest, NoDirectorWithoutQuorum) {
  const ClusterState s = exampleState();
  const json doc = statusDocument(s, viewOf(2, {2}, false));
  EXPECT_EQ(doc["quorate"], false);
  EXPECT_TRUE(doc["director"].is_null());
  // The first problem says the rest may be stale.
  ASSERT_FALSE(doc["problems"].empty());
  EXPECT_EQ(doc["problems"][0],
            "this host's partition has no quorum; the state below is its last known one, and nothing is decided here");
}

TEST(StatusDocumentTest, AQuorateViewWithoutAMajorityOfNodeManagersHasNoDirectorEither) {
  const ClusterState s = exampleState();
  View view;
  view.self = 2;
  view.group = {2};
  view.hosts = {1, 2, 3};
  view.quorate = true;
  view.clusterSize = 3;
  const json doc = statusDocument(s, view);
  EXPECT_TRUE(doc["director"].is_null());
  ASSERT_FALSE(doc["problems"].empty());
  EXPECT_EQ(doc["problems"][0],
            "no director: this host's group has no majority of the node managers; the state below is its last known "
            "one, and nothing is decided here");
}

TEST(StatusDocumentTest, TheConfigDigestFollowsTheConfigurationAlone) {
  ClusterState a = exampleState();
  ClusterState b = exampleState();  // the same documents, loaded again
  View view;
  view.self = 1;
  view.group = {1, 2, 3};
  view.hosts = {1, 2, 3};
  view.quorate = true;
  view.clusterSize = 3;
  b.decisions = 99;  // runtime differences do not count
  const std::string digest = statusDocument(a, view)["configDigest"];
  EXPECT_EQ(digest.size(), 8u);
  EXPECT_EQ(statusDocument(b, view)["configDigest"], digest);
  auto changed = std::make_shared<model::Configuration>(*a.config);
  changed->serviceGroups.front().recovery.vmRestartMax += 1;
  a.config = changed;
  EXPECT_NE(statusDocument(a, view)["configDigest"], digest);
}

TEST(StatusDocumentTest, WithADirectorNoSuchProblem) {
  const ClusterState s = exampleState();
  View view;
  view.self = 1;
  view.group = {1, 2};
  view.hosts = {1, 2};
  view.quorate = true;
  view.clusterSize = 3;
  const auto doc = statusDocument(s, view);
  for (const auto& p : doc["problems"]) {
    EXPECT_EQ(p.get<std::string>().find("nothing is decided here"), std::string::npos) << p;
  }
}

}  // namespace
}  // namespace kvm_amf::engine
