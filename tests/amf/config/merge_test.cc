// Declarative changes to a running configuration (config/merge.h): documents replace those of
// the same kind and name, the rest stays, and every problem points at a file or at the running
// configuration.
#include "kvm_amf/amf/config/merge.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config_test_util.h"

namespace kvm_amf::config {
namespace {

using testing::errorLines;
using testing::kCluster;
using testing::serviceGroup;
using testing::unit;

std::string web(const std::string& units) { return serviceGroup("web", "2N", units, "[{name: web-si}]"); }
std::string webPair() { return web("[" + unit("web-a", 1) + ", " + unit("web-b", 2) + "]"); }
std::string db() {
  return serviceGroup("db", "N-Way-Active", "[" + unit("db-1", 3) + "]", "[{name: db-si}]", "  nodeGroup: g12\n");
}

model::Configuration running() {
  LoadResult loaded = loadConfiguration({{"cluster.yaml", kCluster}, {"sgs.yaml", webPair() + db()}});
  EXPECT_TRUE(loaded.ok()) << errorLines(loaded);
  return loaded.config;
}

std::vector<std::string> groupNames(const model::Configuration& config) {
  std::vector<std::string> names;
  for (const auto& sg : config.serviceGroups) names.push_back(sg.name);
  return names;
}

bool hasErrorIn(const LoadResult& r, const std::string& file, const std::string& text) {
  for (const auto& e : r.errors) {
    if (e.where.file == file && e.where.line > 0 && e.message.find(text) != std::string::npos) return true;
  }
  return false;
}

std::string allErrors(const LoadResult& r) {
  std::string out;
  for (const auto& e : r.errors) out += e.str() + "\n";
  return out;
}

TEST(DocumentKeys, AreTheKindsAndNamesOfTheDocumentsThatTellThem) {
  const std::vector<Source> sources = {
      {"a.yaml", "kind: ServiceGroup\nmetadata: {name: web}\n---\nkind: Cluster\nmetadata:\n  name: lab\n"},
      {"b.yaml", "kind: ServiceGroup\n---\nmetadata: {name: x}\n---\n- a list\n---\nkind: [x]\nmetadata: {name: y}\n"},
      {"c.yaml", "kind: ServiceGroup\nmetadata: {name: [unclosed\n"},
  };
  EXPECT_EQ(documentKeys(sources), (std::vector<DocumentKey>{{"ServiceGroup", "web"}, {"Cluster", "lab"}}));
}

TEST(LoadOnto, ADocumentReplacesTheOneOfItsKindAndNameAndTheOthersStay) {
  const std::string bigger = web("[" + unit("web-a", 1) + ", " + unit("web-b", 2) + ", " + unit("web-c", 5) + "]");
  LoadResult merged = loadOnto(running(), {{"web.yaml", bigger}});
  ASSERT_TRUE(merged.ok()) << allErrors(merged);
  EXPECT_EQ(groupNames(merged.config), (std::vector<std::string>{"web", "db"}));  // running's order
  EXPECT_EQ(merged.config.serviceGroups[0].units.size(), 3u);
  EXPECT_EQ(merged.config.serviceGroups[1], running().serviceGroups[1]);
  EXPECT_EQ(merged.config.cluster, running().cluster);
}

TEST(LoadOnto, NewGroupsFollowTheRunningOnesInTheOrderGiven) {
  const std::string cache = serviceGroup("cache", "No-Redundancy", "[" + unit("c-1", 6) + "]", "[{name: c-si}]");
  const std::string oam = serviceGroup("oam", "No-Redundancy", "[" + unit("o-1", 7) + "]", "[{name: o-si}]");
  LoadResult merged = loadOnto(running(), {{"new.yaml", oam + cache}, {"web.yaml", webPair()}});
  ASSERT_TRUE(merged.ok()) << allErrors(merged);
  EXPECT_EQ(groupNames(merged.config), (std::vector<std::string>{"web", "db", "oam", "cache"}));
}

TEST(LoadOnto, TheSameDocumentsGiveTheSameConfiguration) {
  LoadResult merged = loadOnto(running(), {{"all.yaml", std::string(kCluster) + "---\n" + db() + webPair()}});
  ASSERT_TRUE(merged.ok()) << allErrors(merged);
  EXPECT_EQ(merged.config, running());
}

TEST(LoadOnto, AClusterDocumentReplacesTheRunningOneWhateverItsName) {
  std::string renamed = kCluster;
  renamed.replace(renamed.find("name: c\n"), 8, "name: lab\n");
  renamed += "  escalation: {suFailoverMax: 7}\n";
  LoadResult merged = loadOnto(running(), {{"cluster.yaml", renamed}});
  ASSERT_TRUE(merged.ok()) << allErrors(merged);
  EXPECT_EQ(merged.config.cluster->name, "lab");
  EXPECT_EQ(merged.config.cluster->escalation.suFailoverMax, 7);
  EXPECT_EQ(merged.config.serviceGroups, running().serviceGroups);
}

TEST(LoadOnto, RemovesTheDocumentsAskedFor) {
  LoadResult merged = loadOnto(running(), {}, {{"ServiceGroup", "db"}});
  ASSERT_TRUE(merged.ok()) << allErrors(merged);
  EXPECT_EQ(groupNames(merged.config), (std::vector<std::string>{"web"}));
}

TEST(LoadOnto, ReportsErrorsInTheFilesAtTheirLinesAndColumns) {
  const std::string text =
      "apiVersion: kvm-amf/v1\nkind: ServiceGroup\nmetadata: {name: cache}\nspec:\n"
      "  failback: maybe\n  redundancy: {model: No-Redundancy}\n  units: [" +
      unit("c-1", 6) + "]\n  serviceInstances: [{name: c-si}]\n";
  LoadResult merged = loadOnto(running(), {{"cache.yaml", text}});
  ASSERT_FALSE(merged.ok());
  ASSERT_EQ(merged.errors.size(), 1u) << allErrors(merged);
  EXPECT_EQ(merged.errors[0].where, (Location{"cache.yaml", 5, 13}));

  LoadResult broken = loadOnto(running(), {{"broken.yaml", "kind: ServiceGroup\nmetadata: {name: [x\n"}});
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.errors[0].where.file, "broken.yaml");
  EXPECT_GT(broken.errors[0].where.line, 0);
}

TEST(LoadOnto, ReportsWhatTheChangeBreaksInTheRunningConfigurationThere) {
  // The new Cluster drops the node group db runs on; web's new unit takes db's unit's name.
  std::string cluster = kCluster;
  cluster.erase(cluster.find("  nodeGroups:"));
  const std::string clash = serviceGroup("web", "2N", "[" + unit("web-a", 1) + ", " + unit("db-1", 8) + "]",
                                         "[{name: web-si}]", "  failback: maybe\n");
  LoadResult merged = loadOnto(running(), {{"cluster.yaml", cluster}, {"web.yaml", clash}});
  ASSERT_FALSE(merged.ok());
  EXPECT_TRUE(hasErrorIn(merged, std::string(kRunningConfigurationName), "no node group named 'g12'"))
      << allErrors(merged);
  EXPECT_TRUE(hasErrorIn(merged, std::string(kRunningConfigurationName),
                         "duplicate service unit name 'db-1' (first at web.yaml:"))
      << allErrors(merged);
  EXPECT_TRUE(hasErrorIn(merged, "web.yaml", "failback")) << allErrors(merged);
  EXPECT_EQ(merged.errors.front().where.file, "web.yaml") << "the operator's files come first";
}

TEST(LoadOnto, RemovingAGroupOthersDependOnIsAnError) {
  const std::string dependent =
      serviceGroup("app", "No-Redundancy", "[" + unit("app-1", 9) + "]", "[{name: app-si}]", "  dependsOn: [db]\n");
  LoadResult withApp = loadOnto(running(), {{"app.yaml", dependent}});
  ASSERT_TRUE(withApp.ok()) << allErrors(withApp);
  LoadResult merged = loadOnto(withApp.config, {}, {{"ServiceGroup", "db"}});
  ASSERT_FALSE(merged.ok());
  EXPECT_TRUE(hasErrorIn(merged, std::string(kRunningConfigurationName), "no service group named 'db'"))
      << allErrors(merged);
}

TEST(CompareConfigurations, ListsTheClusterThenGroupsByNameWithTheirYaml) {
  const model::Configuration before = running();
  EXPECT_TRUE(compareConfigurations(before, before).empty());

  std::string cluster = std::string(kCluster) + "  escalation: {suFailoverMax: 7}\n";
  const std::string cache = serviceGroup("cache", "No-Redundancy", "[" + unit("c-1", 6) + "]", "[{name: c-si}]");
  LoadResult after =
      loadConfiguration({{"all.yaml", cluster + cache + web("[" + unit("web-a", 1) + ", " + unit("web-c", 5) + "]")}});
  ASSERT_TRUE(after.ok()) << allErrors(after);

  const std::vector<DocumentChange> changes = compareConfigurations(before, after.config);
  ASSERT_EQ(changes.size(), 4u);
  EXPECT_EQ(changes[0].object(), "cluster/c");
  EXPECT_EQ(changes[0].changeWord(), "changed");
  EXPECT_NE(changes[0].before.find("suFailoverMax: 2\n"), std::string::npos) << changes[0].before;
  EXPECT_NE(changes[0].after.find("suFailoverMax: 7\n"), std::string::npos) << changes[0].after;
  EXPECT_TRUE(changes[0].after.starts_with("apiVersion: kvm-amf/v1\nkind: Cluster\n")) << changes[0].after;
  EXPECT_EQ(changes[1].object(), "sg/cache");
  EXPECT_EQ(changes[1].change, DocumentChange::Kind::kAdded);
  EXPECT_EQ(changes[1].before, "");
  EXPECT_EQ(changes[2].object(), "sg/db");
  EXPECT_EQ(changes[2].change, DocumentChange::Kind::kRemoved);
  EXPECT_EQ(changes[2].after, "");
  EXPECT_EQ(changes[3].object(), "sg/web");
  EXPECT_EQ(changes[3].change, DocumentChange::Kind::kChanged);
  EXPECT_NE(changes[3].after.find("web-c"), std::string::npos);
  EXPECT_EQ(summarize(changes), "cluster/c changed, sg/cache added, sg/db removed, sg/web changed");
  EXPECT_EQ(summarize({}), "");
}

}  // namespace
}  // namespace kvm_amf::config
