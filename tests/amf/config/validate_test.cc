// Checks on the configuration as a whole: each rule rejects what it must, at the right place.
#include <gtest/gtest.h>

#include "config_test_util.h"

namespace kvm_amf::config {
namespace {

using testing::errorLines;
using testing::hasError;
using testing::kCluster;
using testing::loadText;
using testing::serviceGroup;
using testing::unit;

std::string twoUnits(const std::string& extraVm = "") {
  return "[" + unit("a", 1, extraVm) + ", " + unit("b", 2) + "]";
}

// The cluster, then one service group; the group's document starts on line 12.
LoadResult withGroup(const std::string& model, const std::string& units, const std::string& sis,
                     const std::string& extra = "") {
  return loadText(std::string(kCluster) + serviceGroup("s", model, units, sis, extra));
}

TEST(Validate, AcceptsAMinimalValidGroup) {
  LoadResult r = withGroup("2N", twoUnits(), "[{name: si}]");
  EXPECT_TRUE(r.ok()) << errorLines(r);
}

TEST(Validate, ClusterNamesIdsAndAddressesAreUnique) {
  LoadResult r = loadText(R"(apiVersion: kvm-amf/v1
kind: Cluster
metadata: {name: c}
spec:
  nodes:
    - {name: n1, address: 10.0.0.1}
    - {name: n1, address: 10.0.0.1, id: 1}
    - {name: n3, address: 10.0.0.300}
  nodeGroups:
    - {name: g, nodes: [n1, n9, n1]}
    - {name: g, nodes: []}
)");
  EXPECT_TRUE(hasError(r, 7, 14, "duplicate node name 'n1' (first at test.yaml:6:14)")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 7, 41, "duplicate node id '1'")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 7, 27, "duplicate node address '10.0.0.1'")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 8, 27, "'10.0.0.300' is not an IPv4 or IPv6 address")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 10, 29, "no node named 'n9' in the cluster")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 10, 33, "duplicate node in group 'n1'")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 11, 14, "duplicate node group name 'g'")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 11, 24, "a node group needs at least one node")) << errorLines(r);
}

TEST(Validate, MembershipAndFencingSettingsAreConsistent) {
  LoadResult r = loadText(std::string(kCluster) +
                          "  membership: {token: 1s, consensus: 500ms, twoNode: true}\n"
                          "  fencing: {mode: agent, self: {timeout: 5s}}\n");
  EXPECT_TRUE(hasError(r, 12, 38, "must be longer than the token")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 12, 54, "twoNode needs exactly 2 nodes, the cluster has 3")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 13, 19, "mode agent needs fencing.agent.command")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 13, 32, "fencing.self is used only with mode: self")) << errorLines(r);
}

TEST(Validate, OnlyOneClusterDocument) {
  LoadResult r = loadText(std::string(kCluster) + "---\n" + kCluster);
  EXPECT_TRUE(hasError(r, 14, 7, "a configuration has one Cluster document; another one is at test.yaml:2:7"))
      << errorLines(r);
}

TEST(Validate, ReferencesMustExist) {
  LoadResult r = withGroup("2N",
                           "[" + unit("a", 1) +
                               ", {name: b, nodes: [n3, n7], vms: [{name: b-vm, memory: "
                               "128Mi, boot: {kernel: /k}}]}]",
                           "[{name: si}]", "  nodeGroup: g12\n  dependsOn: [other, s]\n");
  EXPECT_TRUE(hasError(r, "no service group named 'other'")) << errorLines(r);
  EXPECT_TRUE(hasError(r, "a service group cannot depend on itself")) << errorLines(r);
  EXPECT_TRUE(hasError(r, "node 'n3' is not in the service group's node group 'g12'")) << errorLines(r);
  EXPECT_TRUE(hasError(r, "no node named 'n7' in the cluster")) << errorLines(r);
  LoadResult r2 = withGroup("2N", twoUnits(), "[{name: si}]", "  nodeGroup: nowhere\n");
  EXPECT_TRUE(hasError(r2, 18, 14, "no node group named 'nowhere' in the cluster")) << errorLines(r2);
}

TEST(Validate, DependencyCyclesAreFound) {
  std::string text =
      std::string(kCluster) + serviceGroup("x", "2N", twoUnits(), "[{name: sx}]", "  dependsOn: [y]\n") +
      serviceGroup("y", "No-Redundancy", "[" + unit("c", 3) + "]", "[{name: sy}]", "  dependsOn: [z]\n") +
      serviceGroup("z", "No-Redundancy", "[" + unit("d", 4) + "]", "[{name: sz}]", "  dependsOn: [x]\n");
  LoadResult r = loadText(text);
  ASSERT_EQ(r.errors.size(), 1u) << errorLines(r);
  EXPECT_NE(r.errors[0].message.find("dependsOn forms a cycle: x -> y -> z -> x"), std::string::npos) << errorLines(r);
}

TEST(Validate, NamesAreUniqueAcrossServiceGroups) {
  std::string text = std::string(kCluster) + serviceGroup("x", "2N", twoUnits(), "[{name: si}]") +
                     serviceGroup("x", "No-Redundancy", "[" + unit("a", 3) + "]", "[{name: si}]");
  LoadResult r = loadText(text);
  EXPECT_TRUE(hasError(r, "duplicate service group name 'x'")) << errorLines(r);
  EXPECT_TRUE(hasError(r, "duplicate service unit name 'a'")) << errorLines(r);
  EXPECT_TRUE(hasError(r, "duplicate VM name 'a-vm'")) << errorLines(r);
  EXPECT_TRUE(hasError(r, "duplicate service instance name 'si'")) << errorLines(r);
}

TEST(Validate, MacAndIpAddressesAreUniqueAndWellFormed) {
  std::string units = "[" + unit("a", 1) + ", " + unit("b", 1) + ", " +
                      "{name: c, vms: [{name: c-vm, memory: 128Mi, boot: {kernel: /k}, nics: ["
                      "{mac: '01:00:5e:00:00:01', bridge: br0, ip: 10.1.0.1/24}, "
                      "{mac: '52:54:00:00:00:09', bridge: br0, ip: 10.1.0.1/16}, "
                      "{mac: '52:54:00:zz:00:09', bridge: a-bridge-name-too-long, ip: 10.1.0.2, gateway: x, model: "
                      "ne2k}]}]}]";
  LoadResult r = withGroup("N-Way-Active", units, "[{name: si}]");
  EXPECT_TRUE(hasError(r, "duplicate MAC address '52:54:00:00:00:01'")) << errorLines(r);
  EXPECT_TRUE(hasError(r, "'01:00:5e:00:00:01' is not a unicast MAC address")) << errorLines(r);
  EXPECT_TRUE(hasError(r, "duplicate IP address '10.1.0.1'")) << errorLines(r);
  EXPECT_TRUE(hasError(r, "'52:54:00:zz:00:09' is not a MAC address")) << errorLines(r);
  EXPECT_TRUE(hasError(r, "is not a bridge name")) << errorLines(r);
  EXPECT_TRUE(hasError(r, "'10.1.0.2' is not an address with a prefix length")) << errorLines(r);
  EXPECT_TRUE(hasError(r, "'x' is not an IP address")) << errorLines(r);
  EXPECT_TRUE(hasError(r, "must be one of virtio, e1000, e1000e or rtl8139, not 'ne2k'")) << errorLines(r);
}

TEST(Validate, RedundancyCountsMustBeSatisfiable) {
  EXPECT_TRUE(
      hasError(withGroup("2N", "[" + unit("a", 1) + "]", "[{name: si}]"), "2N needs at least 2 service units, has 1"));
  auto nm = [](const std::string& counts, int unitCount, int sis) {
    std::string units = "[";
    for (int i = 1; i <= unitCount; ++i) units += (i > 1 ? ", " : "") + unit("u" + std::to_string(i), i);
    std::string siList = "[";
    for (int i = 1; i <= sis; ++i) siList += (i > 1 ? ", " : "") + std::string("{name: si") + std::to_string(i) + "}";
    return loadText(std::string(kCluster) +
                    "---\napiVersion: kvm-amf/v1\nkind: ServiceGroup\nmetadata: {name: s}\n"
                    "spec:\n  redundancy: {model: N+M, " +
                    counts + "}\n  units: " + units + "]\n  serviceInstances: " + siList + "]\n");
  };
  EXPECT_TRUE(nm("activeUnits: 2, standbyUnits: 1", 3, 2).ok());
  EXPECT_TRUE(hasError(nm("activeUnits: 3, standbyUnits: 1", 3, 2),
                       "N+M with 3 active and 1 standby units needs at least 4 service units, has 3"));
  EXPECT_TRUE(hasError(nm("activeUnits: 2, standbyUnits: 1", 3, 3), "cannot hold the group's 3"));
  EXPECT_TRUE(hasError(nm("activeUnits: 2, standbyUnits: 1, maxActiveSIsPerUnit: 2, maxStandbySIsPerUnit: 1", 3, 3),
                       "cannot protect the group's 3"));

  auto nwayActive = [](const std::string& counts) {
    return loadText(std::string(kCluster) +
                    "---\napiVersion: kvm-amf/v1\nkind: ServiceGroup\nmetadata: {name: s}\nspec:\n"
                    "  redundancy: {model: N-Way-Active, " +
                    counts + "}\n  units: " + twoUnits() + "\n  serviceInstances: [{name: si}]\n");
  };
  EXPECT_TRUE(nwayActive("activeUnits: 2").ok());
  EXPECT_TRUE(hasError(nwayActive("activeUnits: 3"),
                       "N-Way-Active with 3 active assignments per service instance needs at least 3"));
  EXPECT_TRUE(
      hasError(nwayActive("activeUnits: 2, standbyUnits: 1"), "standbyUnits is not used by the N-Way-Active model"));
  EXPECT_TRUE(hasError(withGroup("No-Redundancy", "[" + unit("a", 1) + "]", "[{name: s1}, {name: s2}]"),
                       "2 service instances need 2 service units, the group has 1"));
  EXPECT_TRUE(hasError(withGroup("N-Way", "[" + unit("a", 1) + "]", "[{name: s1}]"),
                       "N-Way with 1 standby assignment(s) per service instance needs at least 2 service units"));
  EXPECT_TRUE(hasError(withGroup("2N", "[]", "[]"), "a service group needs at least one service unit"));
  EXPECT_TRUE(hasError(withGroup("2N", "[]", "[]"), "a service group needs at least one service instance"));
}

TEST(Validate, VmBootNeedsExactlyOneMethod) {
  auto vm = [](const std::string& body) {
    return withGroup("No-Redundancy", "[{name: a, vms: [{name: a-vm, memory: 128Mi, " + body + "}]}]", "[{name: si}]");
  };
  EXPECT_TRUE(hasError(vm("boot: {kernel: /k, network: true}"), "choose exactly one boot method"));
  EXPECT_TRUE(hasError(vm("boot: {}"), "choose exactly one boot method"));
  EXPECT_TRUE(hasError(vm("boot: {kernel: k}"), "must be an absolute path"));
  EXPECT_TRUE(hasError(vm("boot: {disk: vdb}, disks: [{source: /d.qcow2, target: vda}]"),
                       "the VM has no disk with target 'vdb'"));
  EXPECT_TRUE(hasError(vm("boot: {disk: vda, initrd: /i}, disks: [{source: /d.qcow2, target: vda}]"),
                       "initrd is used only with kernel"));
  EXPECT_TRUE(hasError(vm("boot: {network: true}"), "network boot needs at least one NIC"));
}

TEST(Validate, VmCpuAndMemorySettingsAreConsistent) {
  auto vm = [](const std::string& body) {
    return withGroup("No-Redundancy", "[{name: a, vms: [{name: a-vm, boot: {kernel: /k}, " + body + "}]}]",
                     "[{name: si}]");
  };
  EXPECT_TRUE(hasError(vm("vcpus: 2, memory: 128Mi, cpu: {pinning: ['1']}"), "has 1 entries for 2 vCPUs"));
  EXPECT_TRUE(hasError(vm("vcpus: 1, memory: 128Mi, cpu: {pinning: ['3-1']}"), "'3-1' is not a host CPU set"));
  EXPECT_TRUE(vm("vcpus: 2, memory: 128Mi, cpu: {pinning: ['1', '2-3,5'], emulatorPinning: '0'}").ok());
  EXPECT_TRUE(hasError(vm("memory: 128Mi, cpu: {realtime: {priority: 50}}"), "realtime vCPUs need cpu.pinning"));
  EXPECT_TRUE(hasError(vm("vcpus: 4, memory: 128Mi, cpu: {topology: {sockets: 1, cores: 2, threads: 1}}"),
                       "sockets x cores x threads = 2, but the VM has 4 vCPUs"));
  EXPECT_TRUE(hasError(vm("memory: 128Mi, maxMemory: 64Mi"), "must be at least memory (128Mi)"));
  EXPECT_TRUE(hasError(vm("memory: 8Mi"), "must be at least 16Mi"));
  EXPECT_TRUE(hasError(vm("memory: 128Mi, maxMemory: 256Mi, memoryBacking: {locked: true}"),
                       "cannot be used with memoryBacking.locked"));
  EXPECT_TRUE(hasError(vm("memory: 128Mi, memoryBacking: {hugepages: 4Ki}"), "huge page size must be 2Mi or 1Gi"));
  EXPECT_TRUE(hasError(vm("memory: 129Mi, memoryBacking: {hugepages: 2Mi}"), "whole number of huge pages"));
  EXPECT_TRUE(vm("memory: 1Gi, memoryBacking: {hugepages: 1Gi, locked: true}, cpu: {pinning: ['1'], realtime: "
                 "{policy: rr, priority: 10}}")
                  .ok());
}

TEST(Validate, DisksHostdevsAndConsole) {
  auto vm = [](const std::string& body) {
    return withGroup("No-Redundancy",
                     "[{name: a, vms: [{name: a-vm, memory: 128Mi, boot: {kernel: /k}, " + body + "}]}]",
                     "[{name: si}]");
  };
  EXPECT_TRUE(hasError(vm("disks: [{source: /a, target: sda}]"), "'sda' is not a virtio disk name"));
  EXPECT_TRUE(
      hasError(vm("disks: [{source: /a, target: vda}, {source: /b, target: vda}]"), "duplicate disk target 'vda'"));
  EXPECT_TRUE(hasError(vm("disks: [{source: rel.qcow2, target: vda}]"), "must be an absolute path"));
  EXPECT_TRUE(
      hasError(vm("disks: [{source: /a, target: vda}, {source: /a, target: vdb}]"), "image '/a' is also used at"));
  EXPECT_TRUE(vm("disks: [{source: /a, target: vda, shared: true}, {source: /a, target: vdb, readonly: true}]").ok());
  EXPECT_TRUE(hasError(vm("hostdevs: [{pci: '0000:03:10'}]"), "is not a PCI address"));
  EXPECT_TRUE(hasError(vm("hostdevs: [{pci: '0000:03:10.2'}, {pci: '0000:03:10.2'}]"), "duplicate PCI device"));
  EXPECT_TRUE(vm("hostdevs: [{pci: '0000:03:10.2', mac: '52:54:00:aa:bb:cc', vlan: 12}]").ok());
  EXPECT_TRUE(hasError(vm("console: {type: file}"), "a file console needs an absolute path"));
  EXPECT_TRUE(hasError(vm("console: {type: pty, path: /x}"), "path is used only with type: file"));
}

TEST(Validate, HeartbeatTimeoutExceedsInterval) {
  LoadResult r = withGroup("2N", twoUnits(), "[{name: si}]", "  health: {heartbeat: {interval: 1s, timeout: 1s}}\n");
  EXPECT_TRUE(hasError(r, "must be longer than the heartbeat interval (1s)")) << errorLines(r);
}

TEST(Validate, UnitsMustFitOnAHostTheyMayRunOn) {
  std::string cluster = R"(apiVersion: kvm-amf/v1
kind: Cluster
metadata: {name: c}
spec:
  nodes:
    - {name: n1, address: 10.0.0.1, capacity: {vcpus: 2, memory: 1Gi}}
    - {name: n2, address: 10.0.0.2, capacity: {vcpus: 2, memory: 1Gi}}
)";
  LoadResult r = loadText(cluster + serviceGroup("s", "No-Redundancy",
                                                 "[{name: a, vms: [{name: a-vm, vcpus: 4, memory: 128Mi, boot: "
                                                 "{kernel: /k}}]}]",
                                                 "[{name: si}]"));
  EXPECT_TRUE(hasError(r, "the unit's VMs (4 vCPUs, 128Mi) fit on none of the hosts it may run on")) << errorLines(r);
}

}  // namespace
}  // namespace kvm_amf::config
