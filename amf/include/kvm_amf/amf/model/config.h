// The configuration model: what operators declare in YAML (`Cluster` and `ServiceGroup` documents),
// as typed values with every default filled in. Loaded and validated by amf/config; read by the engine.
// Plain values: no behaviour, no I/O. Field names follow the YAML keys (docs/configuration.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kvm_amf::model {

using Duration = std::chrono::milliseconds;
using Bytes = std::uint64_t;

inline constexpr std::string_view kApiVersion = "kvm-amf/v1";

// ---------------------------------------------------------------------------------------------
// Cluster

struct NodeCapacity {
  int vcpus = 0;     // 0: not declared (no capacity check)
  Bytes memory = 0;  // 0: not declared
  bool operator==(const NodeCapacity&) const = default;
};

struct NodeSpec {
  std::string name;
  int id = 0;              // Corosync node id; default: position in the list, from 1
  std::string address;     // the host's cluster (Corosync ring0) address
  std::string libvirtUri;  // default "qemu:///system"
  NodeCapacity capacity;
  bool operator==(const NodeSpec&) const = default;
};

struct NodeGroupSpec {
  std::string name;
  std::vector<std::string> nodes;
  bool operator==(const NodeGroupSpec&) const = default;
};

struct MembershipSpec {
  Duration token{300};               // Corosync totem token timeout
  Duration consensus{0};             // 0: 1.2 x token, as Corosync derives it
  Duration amfdRestartGrace{10000};  // a node manager that died may come back within this without effect
  bool twoNode = false;              // votequorum two_node
  bool waitForAll = false;           // votequorum wait_for_all
  bool crypto = true;                // Corosync knet encryption and authentication with the cluster's authkey
  bool operator==(const MembershipSpec&) const = default;
};

enum class FencingMode { kAgent, kSelf, kNone };

struct FenceAgentSpec {
  std::string command;  // run by the director with {node} substituted
  Duration timeout{10000};
  Duration retryInterval{1000};  // a failed attempt raises an alarm and is retried after this, without end
  bool operator==(const FenceAgentSpec&) const = default;
};

struct SelfFencingSpec {
  Duration timeout{2000};  // a host without quorum stops its own VMs within this bound
  Duration margin{500};    // the quorate side waits timeout + margin before recovering
  bool operator==(const SelfFencingSpec&) const = default;
};

struct FencingSpec {
  FencingMode mode = FencingMode::kSelf;
  FenceAgentSpec agent;
  SelfFencingSpec self;
  bool operator==(const FencingSpec&) const = default;
};

// Node-level escalation (SA Forum AMF 3.12.2): SU failovers on one node within the probation
// window beyond `suFailoverMax` escalate to a node failover.
struct NodeEscalationSpec {
  int suFailoverMax = 2;
  Duration suFailoverProbation{600000};
  bool operator==(const NodeEscalationSpec&) const = default;
};

struct ClusterSpec {
  std::string name;
  std::map<std::string, std::string> labels;
  std::vector<NodeSpec> nodes;
  std::vector<NodeGroupSpec> nodeGroups;
  MembershipSpec membership;
  FencingSpec fencing;
  NodeEscalationSpec escalation;
  bool operator==(const ClusterSpec&) const = default;
};

// ---------------------------------------------------------------------------------------------
// Virtual machines (SCOPE VMDEF1-9)

enum class Firmware { kBios, kUefi };

// Exactly one boot method (VMDEF4): a kernel, a disk, or the network.
struct BootSpec {
  Firmware firmware = Firmware::kBios;
  std::string kernel;  // direct kernel boot: path on the host
  std::string initrd;
  std::string cmdline;   // arbitrary parameters handed to the guest (VMDEF3)
  std::string disk;      // boot from the disk with this target (e.g. "vda")
  bool network = false;  // PXE boot from the first NIC
  bool operator==(const BootSpec&) const = default;
};

enum class RealtimePolicy { kFifo, kRr };

struct RealtimeSpec {
  RealtimePolicy policy = RealtimePolicy::kFifo;
  int priority = 1;  // 1..99
  bool operator==(const RealtimeSpec&) const = default;
};

struct CpuTopology {
  int sockets = 0;  // 0: not declared
  int cores = 0;
  int threads = 0;
  bool operator==(const CpuTopology&) const = default;
};

struct CpuSpec {
  std::vector<std::string> pinning;  // per vCPU, a host CPU set ("2", "4-5,7"); empty: unpinned
  std::string emulatorPinning;       // host CPU set for QEMU's own threads
  std::optional<RealtimeSpec> realtime;
  CpuTopology topology;
  bool operator==(const CpuSpec&) const = default;
};

struct MemoryBackingSpec {
  Bytes hugepages = 0;  // page size; 0: normal pages (VMDEF7)
  bool locked = false;  // memory locked in host RAM, never swapped (VMDEF8)
  bool operator==(const MemoryBackingSpec&) const = default;
};

enum class DiskFormat { kQcow2, kRaw };
enum class DiskBus { kVirtio, kSata, kScsi };
enum class DiskCache { kNone, kWriteback, kWritethrough, kDirectsync, kUnsafe };

struct DiskSpec {
  std::string source;  // image path on storage every allowed host sees
  DiskFormat format = DiskFormat::kQcow2;
  std::string target;  // guest device name ("vda")
  DiskBus bus = DiskBus::kVirtio;
  DiskCache cache = DiskCache::kNone;
  bool readonly = false;
  bool shared = false;  // may be attached to several VMs at once
  bool operator==(const DiskSpec&) const = default;
};

struct NicSpec {
  std::string mac;     // canonical lower-case "52:54:00:12:34:56"
  std::string bridge;  // host bridge the NIC joins
  int vlan = 0;        // 802.1Q tag, 1..4094; 0: untagged
  std::string ip;      // "10.0.0.5/24": the guest's address, kept on every host
  std::string gateway;
  std::string model = "virtio";
  bool operator==(const NicSpec&) const = default;
};

// An SR-IOV virtual function passed through as a network interface (SCOPE I/O virtualization).
struct HostdevSpec {
  std::string pci;  // host PCI address "0000:03:10.2"
  std::string mac;  // optional: programmed into the VF
  int vlan = 0;
  bool operator==(const HostdevSpec&) const = default;
};

enum class ConsoleType { kPty, kFile, kNone };

struct ConsoleSpec {
  ConsoleType type = ConsoleType::kPty;
  std::string path;  // for kFile: where the serial console is logged
  bool operator==(const ConsoleSpec&) const = default;
};

struct VmSpec {
  std::string name;   // libvirt domain name; unique in the cluster
  int bootOrder = 0;  // start order inside the unit: lower first (VMDEF1)
  int vcpus = 1;
  Bytes memory = 0;     // guaranteed memory (VMDEF6)
  Bytes maxMemory = 0;  // > memory: dynamic memory through the balloon (VMDEF9); 0: static
  BootSpec boot;
  CpuSpec cpu;
  MemoryBackingSpec memoryBacking;
  std::vector<DiskSpec> disks;
  std::vector<NicSpec> nics;
  std::vector<HostdevSpec> hostdevs;
  ConsoleSpec console;
  bool operator==(const VmSpec&) const = default;
};

// ---------------------------------------------------------------------------------------------
// Service groups

enum class RedundancyModel { k2N, kNPlusM, kNWay, kNWayActive, kNoRedundancy };

struct RedundancySpec {
  RedundancyModel model = RedundancyModel::k2N;
  // The model's counts; 0 where the model has none. Defaults are filled per model by the loader.
  int activeUnits = 0;           // N+M: N; N-Way-Active: active assignments per SI
  int standbyUnits = 0;          // N+M: M; N-Way: standby assignments per SI
  int maxActiveSIsPerUnit = 0;   // N+M, N-Way, N-Way-Active
  int maxStandbySIsPerUnit = 0;  // N+M, N-Way
  bool operator==(const RedundancySpec&) const = default;
};

enum class RecoveryAction { kRestart, kFailover };

// Unit-level escalation (SA Forum AMF 3.12.2): VM (component) restarts, then SU restarts, then
// SU failover, each counted within its probation window.
struct RecoverySpec {
  int vmRestartMax = 2;
  Duration vmRestartProbation{60000};
  int suRestartMax = 1;
  Duration suRestartProbation{60000};
  RecoveryAction defaultAction = RecoveryAction::kRestart;
  bool operator==(const RecoverySpec&) const = default;
};

enum class WatchdogModel { kI6300esb, kIb700, kDiag288 };
enum class WatchdogAction { kReset, kPoweroff, kPause, kNone, kDump, kInjectNmi };

struct WatchdogSpec {
  WatchdogModel model = WatchdogModel::kI6300esb;
  WatchdogAction action = WatchdogAction::kPoweroff;
  Duration timeout{5000};  // the guest feeder's timeout
  bool operator==(const WatchdogSpec&) const = default;
};

struct HeartbeatSpec {
  Duration interval{500};
  Duration timeout{2000};  // no heartbeat for this long: the guest is hung
  bool operator==(const HeartbeatSpec&) const = default;
};

struct HealthSpec {
  std::optional<WatchdogSpec> watchdog;    // absent: no watchdog device
  std::optional<HeartbeatSpec> heartbeat;  // absent: the guest agent is not monitored
  bool operator==(const HealthSpec&) const = default;
};

struct SnapshotSpec {
  Duration interval{0};  // 0: no periodic snapshots
  int keep = 3;
  bool operator==(const SnapshotSpec&) const = default;
};

struct MigrationSpec {
  Duration maxDowntime{300};
  Duration timeout{60000};
  int maxParallel = 1;
  bool operator==(const MigrationSpec&) const = default;
};

struct ServiceUnitSpec {
  std::string name;
  int rank = 0;                    // lower is preferred; default: position in the list, from 1
  std::vector<std::string> nodes;  // hosts this unit may run on; empty: the SG's node group
  std::vector<VmSpec> vms;         // the unit's components
  bool operator==(const ServiceUnitSpec&) const = default;
};

struct ServiceInstanceSpec {
  std::string name;
  int rank = 0;
  std::map<std::string, std::string> attributes;  // handed to the guest with each assignment
  bool operator==(const ServiceInstanceSpec&) const = default;
};

struct ServiceGroupSpec {
  std::string name;
  std::map<std::string, std::string> labels;
  RedundancySpec redundancy;
  std::string nodeGroup;  // empty: every node of the cluster
  bool failback = false;
  bool autoRepair = true;
  std::vector<std::string> dependsOn;
  RecoverySpec recovery;
  HealthSpec health;
  SnapshotSpec snapshots;
  MigrationSpec migration;
  std::vector<ServiceUnitSpec> units;
  std::vector<ServiceInstanceSpec> serviceInstances;
  bool operator==(const ServiceGroupSpec&) const = default;
};

// Everything a set of documents declares. A complete configuration has exactly one Cluster.
struct Configuration {
  std::optional<ClusterSpec> cluster;
  std::vector<ServiceGroupSpec> serviceGroups;
  bool operator==(const Configuration&) const = default;
};

}  // namespace kvm_amf::model
