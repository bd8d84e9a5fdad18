#include "kvm_amf/amf/config/loader.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "config_test_util.h"
#include "kvm_amf/amf/config/serialize.h"

namespace kvm_amf::config {
namespace {

using namespace std::chrono_literals;
using testing::errorLines;
using testing::hasError;
using testing::kCluster;
using testing::loadText;

std::vector<std::string> exampleFiles() {
  const char* root = KVM_AMF_SOURCE_DIR;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(root) / "examples")) {
    if (entry.path().extension() == ".yaml") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(Loader, ExamplesAreValidAndTyped) {
  auto files = exampleFiles();
  ASSERT_GE(files.size(), 5u);
  LoadResult r = loadConfigurationFiles(files);
  ASSERT_TRUE(r.ok()) << errorLines(r);
  ASSERT_TRUE(r.config.cluster);
  const auto& cluster = *r.config.cluster;
  EXPECT_EQ(cluster.name, "lab");
  ASSERT_EQ(cluster.nodes.size(), 3u);
  EXPECT_EQ(cluster.nodes[2].id, 3);  // default: position in the list
  EXPECT_EQ(cluster.nodes[0].libvirtUri, "qemu:///system");
  EXPECT_EQ(cluster.nodes[0].capacity.memory, 8ULL << 30);
  EXPECT_EQ(cluster.membership.token, 300ms);
  EXPECT_TRUE(cluster.membership.crypto);  // default: knet encryption on
  EXPECT_EQ(cluster.fencing.mode, model::FencingMode::kAgent);
  EXPECT_EQ(cluster.fencing.agent.timeout, 5s);

  std::map<std::string, const model::ServiceGroupSpec*> sgs;
  for (const auto& sg : r.config.serviceGroups) sgs[sg.name] = &sg;
  ASSERT_EQ(sgs.size(), 4u);
  const auto& mme = *sgs.at("mme");
  EXPECT_EQ(mme.redundancy.model, model::RedundancyModel::k2N);
  EXPECT_EQ(mme.serviceInstances.at(0).attributes.at("serviceIp"), "10.90.0.100/24");
  EXPECT_EQ(mme.health.heartbeat->timeout, 1s);
  EXPECT_EQ(mme.units.at(1).vms.at(0).nics.at(0).vlan, 100);
  EXPECT_EQ(mme.units.at(1).rank, 2);
  const auto& sgw = *sgs.at("sgw");
  EXPECT_EQ(sgw.redundancy.activeUnits, 2);
  EXPECT_EQ(sgw.redundancy.standbyUnits, 1);
  EXPECT_EQ(sgw.dependsOn, std::vector<std::string>{"mme"});
  EXPECT_FALSE(sgw.health.watchdog);
  const auto& oam = *sgs.at("oam");
  EXPECT_EQ(oam.redundancy.model, model::RedundancyModel::kNoRedundancy);
  const auto& vm = oam.units.at(0).vms.at(0);
  EXPECT_EQ(vm.maxMemory, 1ULL << 30);
  EXPECT_EQ(vm.boot.firmware, model::Firmware::kUefi);
  EXPECT_EQ(vm.disks.at(1).bus, model::DiskBus::kSata);
  EXPECT_EQ(vm.cpu.pinning, (std::vector<std::string>{"0", "1"}));
}

TEST(Loader, CanonicalDocumentsLoadBackToTheSameModel) {
  LoadResult r = loadConfigurationFiles(exampleFiles());
  ASSERT_TRUE(r.ok()) << errorLines(r);
  const std::string yaml = toYaml(toDocuments(r.config));
  LoadResult again = loadText(yaml, "canonical.yaml");
  ASSERT_TRUE(again.ok()) << errorLines(again) << yaml;
  EXPECT_EQ(again.config, r.config);
}

TEST(Loader, MembershipCryptoCanBeTurnedOffAndSurvivesTheCanonicalForm) {
  LoadResult r = loadText(std::string(kCluster) + "  membership: {token: 1s, crypto: false}\n");
  ASSERT_TRUE(r.ok()) << errorLines(r);
  EXPECT_EQ(r.config.cluster->membership.token, 1s);
  EXPECT_FALSE(r.config.cluster->membership.crypto);
  const std::string yaml = toYaml(toDocuments(r.config));
  EXPECT_NE(yaml.find("crypto: false"), std::string::npos) << yaml;
  LoadResult again = loadText(yaml, "canonical.yaml");
  ASSERT_TRUE(again.ok()) << errorLines(again) << yaml;
  EXPECT_EQ(again.config, r.config);

  LoadResult bad = loadText(std::string(kCluster) + "  membership: {crypto: maybe}\n");
  EXPECT_TRUE(hasError(bad, 12, 24, "expected true or false")) << errorLines(bad);
}

TEST(Loader, ReportsEveryErrorWithItsLineAndColumn) {
  const std::string text = R"(apiVersion: kvm-amf/v1
kind: Cluster
metadata:
  name: c
spec:
  nodes:
    - name: n1
      address: 10.0.0.1
      colour: blue
    - name: n2
      address: 10.0.0.2
      id: many
  membership:
    token: 3 seconds
    twoNode: yes
  fencing:
    mode: stonith
  escalation:
    suFailoverMax: 100000
)";
  LoadResult r = loadText(text);
  EXPECT_EQ(r.errors.size(), 6u) << errorLines(r);
  EXPECT_TRUE(hasError(r, 9, 7, "unknown key 'colour'")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 12, 11, "expected an integer, found 'many'")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 14, 12, "'3 seconds' is not a duration")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 15, 14, "expected true or false")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 17, 11, "must be one of agent, self or none, not 'stonith'")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 19, 20, "must be between 0 and 1000")) << errorLines(r);
  for (const auto& e : r.errors) EXPECT_EQ(e.where.file, "test.yaml");
  EXPECT_EQ(r.errors[0].str().substr(0, 16), "test.yaml:9:7: u");
}

TEST(Loader, ErrorsComeInFileOrderAcrossFiles) {
  LoadResult r = loadConfiguration({{"b.yaml", "kind: ServiceGroup\n"}, {"a.yaml", "apiVersion: 2\n"}});
  ASSERT_GE(r.errors.size(), 2u) << errorLines(r);
  EXPECT_EQ(r.errors.front().where.file, "b.yaml");
  EXPECT_EQ(r.errors.back().where.file, "a.yaml");
}

TEST(Loader, SyntaxErrorsNameTheirPlace) {
  LoadResult r = loadText("apiVersion: kvm-amf/v1\nkind: [Cluster\nmetadata: {}\n");
  ASSERT_EQ(r.errors.size(), 1u) << errorLines(r);
  EXPECT_EQ(r.errors[0].where.line, 3);
  EXPECT_NE(r.errors[0].message.find("YAML syntax"), std::string::npos);
}

TEST(Loader, RejectsWrongDocumentHeaders) {
  LoadResult r = loadText("apiVersion: kvm-amf/v2\nkind: Pod\nmetadata: {name: Bad_Name}\nspec: {}\n");
  EXPECT_TRUE(hasError(r, 1, 13, "must be kvm-amf/v1")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 2, 7, "must be Cluster or ServiceGroup")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 3, 18, "is not a valid name")) << errorLines(r);
  EXPECT_EQ(r.errors.size(), 3u) << errorLines(r);
}

TEST(Loader, ReportsMissingKeysAtTheirMapping) {
  LoadResult r =
      loadText("apiVersion: kvm-amf/v1\nkind: Cluster\nmetadata: {name: c}\nspec:\n  nodes:\n    - name: n1\n");
  EXPECT_TRUE(hasError(r, 6, 7, "missing required key 'address'")) << errorLines(r);
  LoadResult noSpec = loadText("apiVersion: kvm-amf/v1\nkind: Cluster\nmetadata: {name: c}\n");
  EXPECT_TRUE(hasError(noSpec, 1, 1, "missing required key 'spec'")) << errorLines(noSpec);
}

TEST(Loader, RejectsDuplicateKeysAndNonScalarKeys) {
  LoadResult r = loadText(std::string(kCluster) + "  nodes: []\n");
  EXPECT_TRUE(hasError(r, 12, 3, "duplicate key 'nodes'")) << errorLines(r);
  LoadResult r2 = loadText("? [a, b]\n: 1\n");
  EXPECT_TRUE(hasError(r2, 1, 3, "a key must be a plain word")) << errorLines(r2);
}

TEST(Loader, WrongTypesAreNamed) {
  LoadResult r = loadText(std::string(kCluster) + "  membership: [300ms]\n  fencing: {mode: {a: b}}\n");
  EXPECT_TRUE(hasError(r, 12, 15, "expected a map, found a list")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 13, 19, "mode: expected one of agent, self or none, found a map")) << errorLines(r);
}

TEST(Loader, FillsDefaultsTheOperatorLeftOut) {
  LoadResult r = loadText(std::string(kCluster) +
                          testing::serviceGroup("s", "N+M",
                                                "[" + testing::unit("u1", 1) + ", " + testing::unit("u2", 2) + ", " +
                                                    testing::unit("u3", 3) + "]",
                                                "[{name: s1}, {name: s2}]"));
  ASSERT_TRUE(r.ok()) << errorLines(r);
  const auto& c = *r.config.cluster;
  EXPECT_EQ(c.membership.amfdRestartGrace, 10s);
  EXPECT_TRUE(c.membership.crypto);
  EXPECT_EQ(c.fencing.mode, model::FencingMode::kSelf);
  EXPECT_EQ(c.escalation.suFailoverMax, 2);
  const auto& sg = r.config.serviceGroups.at(0);
  EXPECT_EQ(sg.redundancy.activeUnits, 2);  // N+M default: all but one unit active
  EXPECT_EQ(sg.redundancy.standbyUnits, 1);
  EXPECT_EQ(sg.redundancy.maxActiveSIsPerUnit, 1);
  EXPECT_EQ(sg.redundancy.maxStandbySIsPerUnit, 2);
  EXPECT_EQ(sg.recovery.vmRestartMax, 2);
  EXPECT_EQ(sg.recovery.defaultAction, model::RecoveryAction::kRestart);
  EXPECT_EQ(sg.migration.maxDowntime, 300ms);
  EXPECT_TRUE(sg.autoRepair);
  const auto& vm = sg.units.at(0).vms.at(0);
  EXPECT_EQ(vm.vcpus, 1);
  EXPECT_EQ(vm.console.type, model::ConsoleType::kPty);
  EXPECT_EQ(vm.nics.at(0).model, "virtio");
  EXPECT_EQ(sg.serviceInstances.at(1).rank, 2);
}

TEST(Loader, AcceptsServiceGroupsWithoutACluster) {
  LoadResult r =
      loadText(testing::serviceGroup("s", "2N", "[" + testing::unit("u1", 1) + ", " + testing::unit("u2", 2) + "]",
                                     "[{name: s1}]", "  nodeGroup: somewhere\n"));
  EXPECT_TRUE(r.ok()) << errorLines(r);  // node groups are checked against a Cluster when one is given
  EXPECT_FALSE(r.config.cluster);
}

TEST(Loader, UnreadableFilesAreReported) {
  LoadResult r = loadConfigurationFiles({"/nonexistent/x.yaml"});
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].str(), "/nonexistent/x.yaml: cannot be read");
}

}  // namespace
}  // namespace kvm_amf::config
