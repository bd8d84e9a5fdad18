// A fault scenario: configuration, simulated timings, and timed steps (faults and admin
// operations), with optional expectations. Run by `amf-sim run` in simulated time and by
// `amf-lab run` for real; the format is the user-facing contract of docs/simulation.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "kvm_amf/amf/model/admin_command.h"
#include "kvm_amf/amf/model/config.h"

namespace kvm_amf::model {

// How long simulated operations take. Absent keys keep these defaults.
struct ScenarioTiming {
  Duration vmStart{2000};  // hypervisor start until the guest agent's first heartbeat
  Duration vmStop{500};    // graceful stop or destroy
  Duration migrate{1000};  // live migration
  Duration fence{1000};    // fence agent run
  Duration boot{20000};    // a fenced host is power-cycled: back (Corosync, then amfd) after this
  Duration guestAck{5};    // guest agent: HA state assignment until acknowledged
  Duration message{1};     // group multicast delivery latency
  bool operator==(const ScenarioTiming&) const = default;
};

struct Fault {
  enum class Kind {
    kNodeCrash,  // node-crash: NODE       every process of the host dies; the host leaves
    kNodeStart,  // node-start: NODE       the host boots and its amfd joins
    kVmCrash,    // vm-crash: VM           QEMU dies; the hypervisor reports it
    kGuestHang,  // guest-hang: VM         heartbeat and watchdog stop; the VM still runs
    kPartition,  // partition: [[N...], [N...]]
    kHeal,       // heal: true
    kAmfdCrash,  // amfd-crash: NODE       the node manager dies; Corosync and VMs stay
    kAmfdStart,  // amfd-start: NODE
    kIoError,    // io-error: VM           a disk under the VM fails
    kOpFail,     // op-fail: {node: NODE, op: start|stop|migrate, count: N}
    // Faults of the real lab (amf-lab run); amf-sim carries out those it can model and records
    // the others as not simulated (docs/simulation.md).
    kGuestResume,     // guest-resume: VM       a hung VM runs again (its QEMU resumed)
    kVmCrashLoop,     // vm-crash-loop: {vm: VM, count: N}   the VM dies right after each of its next N starts
    kAmfdHang,        // amfd-hang: NODE        the node manager stops (SIGSTOP), its process stays
    kAmfdResume,      // amfd-resume: NODE
    kLibvirtRestart,  // libvirt-restart: NODE  the hypervisor daemon restarts under running VMs
    kCorosyncCrash,   // corosync-crash: NODE   the host's Corosync dies; the host leaves the membership
    kCorosyncStart,   // corosync-start: NODE
    kLinkFlap,        // link-flap: {node: NODE, count: N, period: D}   the cluster link goes down and up N times
    kPacketLoss,      // packet-loss: {node: NODE, percent: P, delay: D}  P% of the host's cluster traffic is
                      // lost, the rest delayed by D each way (both 0, their defaults, end it)
    kStateDiskFull,   // state-disk-full: NODE  the disk under amfd's state fills up
    kStateDiskFree,   // state-disk-free: NODE
    kApply,           // apply: FILE            amf-admin apply -f FILE (a path relative to the scenario)
    kHostileFrames,   // hostile-frames: NODE   malformed admin API frames sent to the host's amfd
  };
  enum class Op { kStart, kStop, kMigrate, kFence };  // kFence: fence runs against `node` fail

  Kind kind = Kind::kVmCrash;
  std::string node;                              // node-crash, node-start, amfd-*, op-fail
  std::string vm;                                // vm-crash, guest-hang, io-error
  std::vector<std::vector<std::string>> groups;  // partition: the sides, each a list of nodes
  Op op = Op::kStart;                            // op-fail
  int count = 1;                                 // op-fail, vm-crash-loop, link-flap
  Duration period{0};                            // link-flap: one down and up cycle
  int percent = 0;                               // packet-loss
  Duration delay{0};                             // packet-loss
  std::string file;                              // apply: the path, resolved against the scenario's folder
  bool operator==(const Fault&) const = default;
};

struct ScenarioStep {
  Duration at{0};
  std::variant<Fault, AdminCommand> action;
  std::string text;  // the step as written, for the report ("node-crash node1", "lock su/mme-a")
  bool operator==(const ScenarioStep&) const = default;
};

// What the run must show; checked by amf-sim (exit 1 when not met). Every run also requires
// that no invariant was violated.
struct ScenarioExpectation {
  // Final state words per target ("su/mme-a" -> {"presence": "instantiated", "node": "node2"},
  // "si/mme-si" -> {"active": "mme-b", "standby": "mme-a"}, "node/node1" -> {"member": "false"}).
  std::map<std::string, std::map<std::string, std::string>> final;
  // Longest allowed outage per SI ("mme-si" -> 1800ms); an SI absent here is not bounded.
  std::map<std::string, Duration> maxOutage;
  bool operator==(const ScenarioExpectation&) const = default;
};

struct Scenario {
  std::vector<std::string> config;  // configuration files, resolved against the scenario's folder
  std::uint64_t seed = 1;
  ScenarioTiming timing;
  Duration until{60000};
  std::vector<ScenarioStep> steps;  // sorted by `at` (stable for equal times)
  ScenarioExpectation expect;
  bool operator==(const Scenario&) const = default;
};

}  // namespace kvm_amf::model
