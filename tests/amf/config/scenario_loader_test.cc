#include "kvm_amf/amf/config/scenario_loader.h"

#include <gtest/gtest.h>

#include <string>
#include <variant>
#include <vector>

namespace kvm_amf::config {
namespace {

using namespace std::chrono_literals;
using model::AdminCommand;
using model::AdminTarget;
using model::AdminVerb;
using model::Fault;

// The scenario test data: cluster.yaml (node1..node3, node group `all`), sg-web.yaml (2N group
// `web`: units web-a and web-b with VMs web-a-vm and web-b-vm, SI web-si), bad-cluster.yaml (an
// unknown key at 6:40) and valid.yaml.
const std::string kDataDir = std::string(KVM_AMF_SOURCE_DIR) + "/tests/amf/config/data/scenarios";
const std::string kConfigLine = "config: [cluster.yaml, sg-web.yaml]\n";

ScenarioLoadResult load(const std::string& text) { return loadScenario({"s.yaml", text}, kDataDir); }

std::string errorLines(const ScenarioLoadResult& r) {
  std::string out;
  for (const auto& e : r.errors) out += e.str() + "\n";
  return out;
}

// The errors as "LINE:COLUMN: message", all in s.yaml, for exact comparison.
std::vector<std::string> scenarioErrors(const ScenarioLoadResult& r) {
  std::vector<std::string> out;
  for (const auto& e : r.errors) {
    EXPECT_EQ(e.where.file, "s.yaml") << e.str();
    out.push_back(std::to_string(e.where.line) + ":" + std::to_string(e.where.column) + ": " + e.message);
  }
  return out;
}

using Lines = std::vector<std::string>;

const Fault& faultOf(const model::ScenarioStep& step) { return std::get<Fault>(step.action); }
const AdminCommand& adminOf(const model::ScenarioStep& step) { return std::get<AdminCommand>(step.action); }

TEST(ScenarioLoader, LoadsEveryFieldOfAValidScenario) {
  ScenarioLoadResult r = loadScenarioFile(kDataDir + "/valid.yaml");
  ASSERT_TRUE(r.ok()) << errorLines(r);
  const model::Scenario& s = r.scenario;
  EXPECT_EQ(s.config, (std::vector<std::string>{kDataDir + "/cluster.yaml", kDataDir + "/sg-web.yaml"}));
  EXPECT_EQ(s.seed, 18446744073709551615ULL);
  EXPECT_EQ(s.timing.vmStart, 3s);
  EXPECT_EQ(s.timing.vmStop, 250ms);
  EXPECT_EQ(s.timing.migrate, 1500ms);
  EXPECT_EQ(s.timing.fence, 2s);
  EXPECT_EQ(s.timing.guestAck, 10ms);
  EXPECT_EQ(s.timing.message, 2ms);
  EXPECT_EQ(s.until, 120s);

  // Sorted by time, equal times in file order; each step's canonical words.
  std::vector<std::string> texts;
  std::vector<model::Duration> times;
  for (const auto& step : s.steps) {
    texts.push_back(step.text);
    times.push_back(step.at);
  }
  EXPECT_EQ(texts, (std::vector<std::string>{
                       "node-crash node1",
                       "partition node2|node3",
                       "heal",
                       "node-start node1",
                       "vm-crash web-a-vm",
                       "guest-hang web-b-vm",
                       "amfd-crash node2",
                       "amfd-start node2",
                       "io-error web-a-vm",
                       "op-fail node3 migrate 2",
                       "op-fail node1 start 1",
                       "lock su/web-a",
                       "si-swap si/web-si",
                       "sg-adjust sg/web",
                       "lock-in ng/all",
                       "vm reboot vm/web-b-vm",
                       "repaired node/node1",
                       "migrate su/web-b --to node/node3 --max-downtime 200ms --timeout 30s",
                   }));
  EXPECT_EQ(times, (std::vector<model::Duration>{10s, 10s, 15s, 20s, 21s, 22s, 23s, 24s, 25s, 26s, 27s, 30s, 31s, 32s,
                                                 33s, 34s, 35s, 40s}));

  Fault crash;
  crash.kind = Fault::Kind::kNodeCrash;
  crash.node = "node1";
  EXPECT_EQ(faultOf(s.steps[0]), crash);
  Fault partition;
  partition.kind = Fault::Kind::kPartition;
  partition.groups = {{"node2"}, {"node3"}};
  EXPECT_EQ(faultOf(s.steps[1]), partition);
  EXPECT_EQ(faultOf(s.steps[2]).kind, Fault::Kind::kHeal);
  Fault hang;
  hang.kind = Fault::Kind::kGuestHang;
  hang.vm = "web-b-vm";
  EXPECT_EQ(faultOf(s.steps[5]), hang);
  Fault opFail;
  opFail.kind = Fault::Kind::kOpFail;
  opFail.node = "node3";
  opFail.op = Fault::Op::kMigrate;
  opFail.count = 2;
  EXPECT_EQ(faultOf(s.steps[9]), opFail);
  EXPECT_EQ(faultOf(s.steps[10]).op, Fault::Op::kStart);
  EXPECT_EQ(faultOf(s.steps[10]).count, 1);

  AdminCommand swap;
  swap.verb = AdminVerb::kSiSwap;
  swap.target = {AdminTarget::Kind::kServiceInstance, "web-si"};
  EXPECT_EQ(adminOf(s.steps[12]), swap);
  AdminCommand migrate;
  migrate.verb = AdminVerb::kMigrate;
  migrate.target = {AdminTarget::Kind::kServiceUnit, "web-b"};
  migrate.to = AdminTarget{AdminTarget::Kind::kNode, "node3"};
  migrate.maxDowntime = 200ms;
  migrate.timeout = 30s;
  EXPECT_EQ(adminOf(s.steps[17]), migrate);

  using StateMap = std::map<std::string, std::string>;
  EXPECT_EQ(s.expect.final, (std::map<std::string, StateMap>{
                                {"su/web-a", {{"presence", "instantiated"}, {"node", "node2"}}},
                                {"si/web-si", {{"active", "web-b"}, {"standby", "web-a"}}},
                                {"node/node1", {{"member", "true"}}},
                            }));
  EXPECT_EQ(s.expect.maxOutage, (std::map<std::string, model::Duration>{{"web-si", 1800ms}}));

  ASSERT_TRUE(r.config.cluster);
  EXPECT_EQ(r.config.cluster->nodes.size(), 3u);
  ASSERT_EQ(r.config.serviceGroups.size(), 1u);
  EXPECT_EQ(r.config.serviceGroups[0].name, "web");
}

TEST(ScenarioLoader, AbsentKeysTakeTheirDefaults) {
  ScenarioLoadResult r = load(kConfigLine + "steps:\nexpect:\n");
  ASSERT_TRUE(r.ok()) << errorLines(r);
  model::Scenario expected;
  expected.config = {kDataDir + "/cluster.yaml", kDataDir + "/sg-web.yaml"};
  EXPECT_EQ(r.scenario, expected);
  EXPECT_EQ(r.scenario.seed, 1u);
  EXPECT_EQ(r.scenario.until, 60s);
  EXPECT_EQ(r.scenario.timing.vmStart, 2s);
  EXPECT_EQ(r.scenario.timing.message, 1ms);
}

TEST(ScenarioLoader, AbsoluteConfigPathsAreKept) {
  ScenarioLoadResult r = loadScenario({"s.yaml", "config: [" + kDataDir + "/cluster.yaml]\n"}, "/nonexistent");
  ASSERT_TRUE(r.ok()) << errorLines(r);
  EXPECT_EQ(r.scenario.config, std::vector<std::string>{kDataDir + "/cluster.yaml"});
}

TEST(ScenarioLoader, UnknownKeysAreErrors) {
  ScenarioLoadResult r = load(kConfigLine +
                              "sead: 7\n"
                              "timing: {vmStart: 1s, vmBoot: 2s}\n"
                              "steps:\n"
                              "  - at: 1s\n"
                              "    fault: {heal: true}\n"
                              "    note: first\n"
                              "expect: {final: {}, maxOutages: {}}\n");
  EXPECT_EQ(scenarioErrors(r), (Lines{
                                   "2:1: unknown key 'sead'",
                                   "3:23: unknown key 'vmBoot'",
                                   "7:5: unknown key 'note'",
                                   "8:21: unknown key 'maxOutages'",
                               }));
}

TEST(ScenarioLoader, BadDurations) {
  ScenarioLoadResult r = load(kConfigLine +
                              "until: 2 minutes\n"
                              "timing: {fence: -1s}\n"
                              "steps:\n"
                              "  - {at: soon, fault: {heal: true}}\n");
  const std::string rule = "is not a duration: a number with a unit ms, s, m or h (e.g. 300ms, 5s, 10m)";
  EXPECT_EQ(scenarioErrors(r), (Lines{
                                   "2:8: until: '2 minutes' " + rule,
                                   "3:17: fence: '-1s' " + rule,
                                   "5:10: at: 'soon' " + rule,
                               }));

  ScenarioLoadResult zero = load(kConfigLine + "until: 0ms\n");
  EXPECT_EQ(scenarioErrors(zero), (Lines{"2:8: until: must be between 1ms and 720h, not 0ms"}));
}

TEST(ScenarioLoader, StepsAfterUntilAreErrors) {
  ScenarioLoadResult r = load(kConfigLine +
                              "until: 10s\n"
                              "steps:\n"
                              "  - at: 11s\n"
                              "    fault: {heal: true}\n"
                              "  - at: 10s\n"
                              "    fault: {heal: true}\n");
  EXPECT_EQ(scenarioErrors(r), (Lines{"4:9: at: 11s is after until (10s); the step would never run"}));
}

TEST(ScenarioLoader, UnknownFault) {
  ScenarioLoadResult r = load(kConfigLine +
                              "steps:\n"
                              "  - at: 1s\n"
                              "    fault: {frob: node1}\n"
                              "  - at: 2s\n"
                              "    fault: {}\n");
  const std::string kinds =
      "node-crash, node-start, vm-crash, guest-hang, partition, heal, amfd-crash, amfd-start, io-error, op-fail, "
      "guest-resume, vm-crash-loop, amfd-hang, amfd-resume, libvirt-restart, corosync-crash, corosync-start, "
      "link-flap, packet-loss, state-disk-full, state-disk-free, apply or hostile-frames";
  EXPECT_EQ(scenarioErrors(r), (Lines{
                                   "4:13: unknown fault 'frob'; expected one of " + kinds,
                                   "6:12: expected one fault: " + kinds,
                               }));
}

TEST(ScenarioLoader, OneFaultOrAdminPerStep) {
  ScenarioLoadResult r = load(kConfigLine +
                              "steps:\n"
                              "  - at: 1s\n"
                              "    fault: {node-crash: node1, vm-crash: web-a-vm}\n"
                              "  - at: 2s\n"
                              "    fault: {heal: true}\n"
                              "    admin: lock su/web-a\n"
                              "  - at: 3s\n"
                              "  - {fault: {heal: true}}\n");
  EXPECT_EQ(scenarioErrors(r), (Lines{
                                   "4:32: a step has exactly one fault; found node-crash and vm-crash",
                                   "7:5: a step has either a fault or an admin command, not both",
                                   "8:5: a step needs a fault or an admin command",
                                   "9:5: missing required key 'at'",
                               }));
}

TEST(ScenarioLoader, NamesMustExistInTheConfiguration) {
  ScenarioLoadResult r = load(kConfigLine +
                              "steps:\n"
                              "  - at: 1s\n"
                              "    fault: {node-crash: node9}\n"
                              "  - at: 2s\n"
                              "    fault: {io-error: db-vm}\n"
                              "  - at: 3s\n"
                              "    fault:\n"
                              "      op-fail: {node: node7, op: stop}\n"
                              "  - at: 4s\n"
                              "    admin: lock su/db-a\n"
                              "  - at: 5s\n"
                              "    admin: migrate su/web-a --to node/node4\n"
                              "  - at: 6s\n"
                              "    admin: sg-adjust sg/db\n"
                              "  - at: 7s\n"
                              "    admin: unlock ng/edge\n"
                              "  - at: 8s\n"
                              "    admin: si-swap si/db-si\n"
                              "  - at: 9s\n"
                              "    admin: restart vm/db-vm\n"
                              "  - at: 10s\n"
                              "    fault: {partition: [[node1], [node8]]}\n");
  EXPECT_EQ(scenarioErrors(r), (Lines{
                                   "4:25: node-crash: node 'node9' is not in the configuration",
                                   "6:23: io-error: VM 'db-vm' is not in the configuration",
                                   "9:23: op-fail: node 'node7' is not in the configuration",
                                   "11:12: admin: service unit 'db-a' is not in the configuration",
                                   "13:12: admin: node 'node4' is not in the configuration",
                                   "15:12: admin: service group 'db' is not in the configuration",
                                   "17:12: admin: node group 'edge' is not in the configuration",
                                   "19:12: admin: service instance 'db-si' is not in the configuration",
                                   "21:12: admin: VM 'db-vm' is not in the configuration",
                                   "23:35: partition: node 'node8' is not in the configuration",
                               }));
}

TEST(ScenarioLoader, AdminCommandWithTheWrongTargetKind) {
  ScenarioLoadResult r = load(kConfigLine +
                              "steps:\n"
                              "  - at: 1s\n"
                              "    admin: si-swap su/web-a\n"
                              "  - at: 2s\n"
                              "    admin: \"vm start su/web-a\"\n"
                              "  - at: 3s\n"
                              "    admin: frob su/web-a\n");
  EXPECT_EQ(scenarioErrors(r), (Lines{
                                   "4:12: admin: si-swap applies to si/NAME, not su/web-a",
                                   "6:12: admin: vm start applies to vm/NAME, not su/web-a",
                                   "8:12: admin: unknown verb 'frob'; expected one of lock, unlock, lock-in, "
                                   "unlock-in, shutdown, restart, repaired, si-swap, sg-adjust, vm or migrate",
                               }));
}

TEST(ScenarioLoader, ExpectationsNameKnownTargets) {
  ScenarioLoadResult r = load(kConfigLine +
                              "expect:\n"
                              "  maxOutage: {web-si: 2s, db-si: 1s}\n"
                              "  final:\n"
                              "    su/db-a: {presence: instantiated}\n"
                              "    unit/web-a: {presence: instantiated}\n"
                              "    si/web-si: {active: web-a}\n");
  EXPECT_EQ(scenarioErrors(r),
            (Lines{
                "3:27: expect.maxOutage: service instance 'db-si' is not in the configuration",
                "5:5: expect.final: service unit 'db-a' is not in the configuration",
                "6:5: expect.final: unknown target kind 'unit' in 'unit/web-a'; expected node, ng, sg, su, si or vm",
            }));
}

TEST(ScenarioLoader, MissingConfigFileIsReportedAtItsEntry) {
  ScenarioLoadResult r = load(
      "config: [cluster.yaml, sg-web.yaml, missing.yaml]\n"
      "steps:\n"
      "  - at: 1s\n"
      "    fault: {node-crash: node9}\n");
  // Names are not checked against a configuration that did not load.
  EXPECT_EQ(scenarioErrors(r), (Lines{"1:37: config: 'missing.yaml' (" + kDataDir + "/missing.yaml) cannot be read"}));
}

TEST(ScenarioLoader, PartitionSides) {
  ScenarioLoadResult r = load(kConfigLine +
                              "steps:\n"
                              "  - at: 1s\n"
                              "    fault: {partition: [[node1, node2], [node2, node3]]}\n"
                              "  - at: 2s\n"
                              "    fault: {partition: [[node1]]}\n"
                              "  - at: 3s\n"
                              "    fault: {partition: [[node1], []]}\n"
                              "  - at: 4s\n"
                              "    fault: {partition: [node1, node2]}\n");
  EXPECT_EQ(scenarioErrors(r), (Lines{
                                   "4:42: partition: node 'node2' is named twice; the sides must not overlap",
                                   "6:24: partition: needs at least two sides, found 1",
                                   "8:34: partition: a side must name at least one node",
                                   "10:25: partition: a side must be a list of node names, found 'node1'",
                                   "10:32: partition: a side must be a list of node names, found 'node2'",
                               }));
}

TEST(ScenarioLoader, FaultValues) {
  ScenarioLoadResult r = load(kConfigLine +
                              "steps:\n"
                              "  - at: 1s\n"
                              "    fault: {heal: false}\n"
                              "  - at: 2s\n"
                              "    fault: {op-fail: {node: node1, op: reboot, count: 0}}\n"
                              "  - at: 3s\n"
                              "    fault: {node-crash: Node_1}\n"
                              "  - at: 4s\n"
                              "    fault: {op-fail: {op: stop}}\n");
  EXPECT_EQ(scenarioErrors(r),
            (Lines{
                "4:19: heal: must be true (heal: true ends the partition)",
                "6:40: op: must be one of start, stop, migrate or fence, not 'reboot'",
                "6:55: count: must be between 1 and 1000, not 0",
                "8:25: node-crash: 'Node_1' is not a valid name (1-63 lower-case letters, digits and '-', starting "
                "and ending with a letter or digit)",
                "10:22: missing required key 'node'",
            }));

  ScenarioLoadResult empty = load(kConfigLine + "steps:\n  - at: 1s\n    fault: {vm-crash: }\n");
  ASSERT_EQ(empty.errors.size(), 1u) << errorLines(empty);
  EXPECT_EQ(empty.errors[0].message, "vm-crash: expected a VM name");
}

TEST(ScenarioLoader, TheLabsFaults) {
  ScenarioLoadResult r = load(kConfigLine +
                              "steps:\n"
                              "  - at: 1s\n"
                              "    fault: {guest-resume: web-a-vm}\n"
                              "  - at: 2s\n"
                              "    fault: {vm-crash-loop: {vm: web-b-vm, count: 4}}\n"
                              "  - at: 3s\n"
                              "    fault: {vm-crash-loop: {vm: web-b-vm}}\n"
                              "  - at: 4s\n"
                              "    fault: {link-flap: {node: node2, count: 2, period: 500ms}}\n"
                              "  - at: 5s\n"
                              "    fault: {packet-loss: {node: node3, percent: 7}}\n"
                              "  - at: 6s\n"
                              "    fault: {apply: sg-web.yaml}\n"
                              "  - at: 7s\n"
                              "    fault: {corosync-crash: node1}\n"
                              "  - at: 8s\n"
                              "    fault: {amfd-hang: node2}\n"
                              "  - at: 9s\n"
                              "    fault: {packet-loss: {node: node3, delay: 60ms}}\n");
  ASSERT_TRUE(r.ok()) << errorLines(r);
  const auto& steps = r.scenario.steps;
  ASSERT_EQ(steps.size(), 9u);
  EXPECT_EQ(faultOf(steps[0]).kind, Fault::Kind::kGuestResume);
  EXPECT_EQ(faultOf(steps[1]).count, 4);
  EXPECT_EQ(faultOf(steps[2]).count, 3);  // the default
  EXPECT_EQ(faultOf(steps[3]).period, 500ms);
  EXPECT_EQ(faultOf(steps[4]).percent, 7);
  EXPECT_EQ(faultOf(steps[4]).delay, 0ms);
  EXPECT_EQ(faultOf(steps[8]).percent, 0);  // the default
  EXPECT_EQ(faultOf(steps[8]).delay, 60ms);
  EXPECT_EQ(faultOf(steps[5]).file, kDataDir + "/sg-web.yaml");
  std::vector<std::string> texts;
  for (const auto& step : steps) texts.push_back(step.text);
  EXPECT_EQ(texts, (Lines{"guest-resume web-a-vm", "vm-crash-loop web-b-vm 4", "vm-crash-loop web-b-vm 3",
                          "link-flap node2 2 500ms", "packet-loss node3 7%", "apply sg-web.yaml",
                          "corosync-crash node1", "amfd-hang node2", "packet-loss node3 0% +60ms"}));
  // Written out and read back, every fault is the same.
  for (const auto& step : steps) {
    ScenarioLoadResult again =
        load(kConfigLine + "steps:\n  - at: 1s\n    fault: {" + faultYaml(faultOf(step)) + "}\n");
    ASSERT_TRUE(again.ok()) << faultYaml(faultOf(step)) << "\n" << errorLines(again);
    EXPECT_EQ(faultOf(again.scenario.steps[0]), faultOf(step)) << faultYaml(faultOf(step));
  }
}

TEST(ScenarioLoader, TheLabsFaultValues) {
  ScenarioLoadResult r = load(kConfigLine +
                              "steps:\n"
                              "  - at: 1s\n"
                              "    fault: {packet-loss: {node: node1, percent: 101}}\n"
                              "  - at: 2s\n"
                              "    fault: {apply: nowhere.yaml}\n"
                              "  - at: 3s\n"
                              "    fault: {link-flap: {node: node9, period: 10ms}}\n"
                              "  - at: 4s\n"
                              "    fault: {vm-crash-loop: {vm: web-a-vm, count: 0}}\n"
                              "  - at: 5s\n"
                              "    fault: {packet-loss: {node: node1, delay: 11s}}\n");
  EXPECT_EQ(scenarioErrors(r), (Lines{
                                   "4:49: percent: must be between 0 and 100, not 101",
                                   "6:20: apply: no file nowhere.yaml",
                                   "8:31: link-flap: node 'node9' is not in the configuration",
                                   "8:46: period: must be between 100ms and 1h, not 10ms",
                                   "10:50: count: must be between 1 and 100, not 0",
                                   "12:47: delay: must be between 0ms and 10s, not 11s",
                               }))
      << errorLines(r);
}

TEST(ScenarioLoader, Seed) {
  EXPECT_EQ(load(kConfigLine + "seed: 0\n").scenario.seed, 0u);
  EXPECT_EQ(scenarioErrors(load(kConfigLine + "seed: -1\n")),
            (Lines{"2:7: seed: must be between 0 and 18446744073709551615, not -1"}));
  EXPECT_EQ(scenarioErrors(load(kConfigLine + "seed: 18446744073709551616\n")),
            (Lines{"2:7: seed: must be between 0 and 18446744073709551615, not 18446744073709551616"}));
  EXPECT_EQ(scenarioErrors(load(kConfigLine + "seed: seven\n")),
            (Lines{"2:7: seed: expected an integer, found 'seven'"}));
}

TEST(ScenarioLoader, ConfigList) {
  EXPECT_EQ(scenarioErrors(load("steps: []\n")), (Lines{"1:1: missing required key 'config'"}));
  EXPECT_EQ(scenarioErrors(load("config: cluster.yaml\n")),
            (Lines{"1:9: config: expected a list, found 'cluster.yaml'"}));
  EXPECT_EQ(scenarioErrors(load("config: []\n")), (Lines{"1:9: config: needs at least one configuration file"}));
  EXPECT_EQ(scenarioErrors(load("config: [cluster.yaml, cluster.yaml]\n")),
            (Lines{"1:24: config: 'cluster.yaml' is listed twice"}));
  EXPECT_EQ(scenarioErrors(load("config: [sg-web.yaml]\n")),
            (Lines{"1:9: config: the files declare no Cluster document; a scenario needs one among its config files"}));
}

TEST(ScenarioLoader, ConfigurationErrorsFollowTheScenariosInFileOrder) {
  ScenarioLoadResult r = load("config: [bad-cluster.yaml]\nsead: 7\n");
  ASSERT_EQ(r.errors.size(), 2u) << errorLines(r);
  EXPECT_EQ(r.errors[0], (Diagnostic{{"s.yaml", 2, 1}, "unknown key 'sead'"}));
  EXPECT_EQ(r.errors[1], (Diagnostic{{kDataDir + "/bad-cluster.yaml", 6, 40}, "unknown key 'colour'"}));
}

TEST(ScenarioLoader, MalformedFiles) {
  EXPECT_EQ(scenarioErrors(load("- a\n- b\n")), (Lines{"1:1: expected a map, found a list"}));
  EXPECT_EQ(scenarioErrors(load("")), (Lines{"1:1: empty scenario; expected a map with config and steps"}));
  EXPECT_EQ(scenarioErrors(load(kConfigLine + "---\nseed: 2\n")),
            (Lines{"3:1: a scenario file holds one document; this is another"}));
  ScenarioLoadResult broken = load("config: [cluster.yaml\n");
  ASSERT_EQ(broken.errors.size(), 1u) << errorLines(broken);
  EXPECT_EQ(broken.errors[0].where.file, "s.yaml");
  EXPECT_GT(broken.errors[0].where.line, 0);

  ScenarioLoadResult missing = loadScenarioFile(kDataDir + "/no-such-scenario.yaml");
  ASSERT_EQ(missing.errors.size(), 1u);
  EXPECT_EQ(missing.errors[0], (Diagnostic{{kDataDir + "/no-such-scenario.yaml", 0, 0}, "cannot be read"}));
}

}  // namespace
}  // namespace kvm_amf::config
