// The replicated runtime state of a cluster: the configuration plus every AMF entity's states,
// placements and assignments. Every node manager holds an identical copy: it changes only by
// applying the group's totally ordered messages (apply.h), never by local observation.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvm_amf/amf/model/admin_command.h"
#include "kvm_amf/amf/model/config.h"
#include "kvm_amf/amf/model/states.h"
#include "kvm_amf/amf/model/words.h"
#include "kvm_amf/common/time.h"

namespace kvm_amf::engine {

using model::AdminState;
using model::HaState;
using model::OperState;
using model::PresenceState;
using model::ReadinessState;

// What the cluster knows of a host.
enum class NodeStatus {
  kDown,      // known not running anything of ours: never joined, or fenced
  kUp,        // its node manager is in the group
  kAmfdDown,  // its node manager left the group but its host is still a member (grace period)
  kLost,      // its host left the membership (or the grace ran out): its VMs may still run
  kFencing,   // a fence agent is running against it
};

// Failures counted within a probation window that starts at the first one.
struct Counter {
  int count = 0;
  TimePoint since{0};
  bool operator==(const Counter&) const = default;
};

struct NodeRuntime {
  std::string name;
  int id = 0;
  AdminState admin = AdminState::kUnlocked;
  OperState oper = OperState::kEnabled;
  NodeStatus status = NodeStatus::kDown;
  TimePoint since{0};     // when `status` last changed (decision time)
  int fencer = 0;         // kFencing: the node id running the fence agent
  int fenceAttempts = 0;  // failed attempts since the node was lost
  TimePoint lastFenceEnd{0};
  Counter suFailovers;      // node-level escalation
  std::string alarm;        // a problem an operator must see (fence failing); empty: none
  bool agentReady = false;  // its node manager reported in (AgentUp) since it last left
  bool operator==(const NodeRuntime&) const = default;
};

enum class FailureKind { kCrash, kWatchdog, kHang, kIoError, kUnhealthy };

// An operator's hold on one VM (`vm shutdown`, `vm destroy`, `vm suspend`): it stays stopped, and
// the engine never starts it, until `vm start`.
enum class VmHold {
  kNone,
  kStopped,    // shut down or destroyed
  kSuspended,  // stopped with its memory in a managed save on the host `savedOn`
};
model::WordTable<VmHold> enumWords(VmHold);  // "none", "stopped", "suspended"

struct VmRuntime {
  std::string name;
  std::string su;
  PresenceState presence = PresenceState::kUninstantiated;
  std::string node;                    // where it runs or is being started or stopped
  Counter restarts;                    // VM (component) restarts, unit-level escalation
  std::optional<FailureKind> failure;  // reported and not yet handled by a decision
  // `vm pause`: frozen where it runs until `vm resume` (its heartbeats are not watched meanwhile).
  // Cleared when the VM stops or starts for any reason.
  bool paused = false;
  VmHold hold = VmHold::kNone;
  // The host whose managed save of this VM may be restored: set by `vm suspend`, cleared once the
  // VM runs again anywhere (a save found on any other host, or after that, is stale). Empty: none.
  std::string savedOn;
  bool operator==(const VmRuntime&) const = default;
};

struct SuRuntime {
  std::string name;
  std::string sg;
  int rank = 0;
  AdminState admin = AdminState::kUnlocked;
  OperState oper = OperState::kEnabled;
  std::string node;       // the host its VMs run on; empty: not placed
  Counter restarts;       // SU restarts, unit-level escalation
  Counter failovers;      // SU failovers, bounds automatic repair
  std::string avoidNode;  // the host it last failed on: placed elsewhere if possible
  int startFailures = 0;  // consecutive failed instantiations
  bool instantiationFailed = false;
  bool operator==(const SuRuntime&) const = default;
};

struct Assignment {
  std::string su;
  HaState ha = HaState::kStandby;
  bool acked = false;  // the unit's guest agents confirmed this HA state
  bool operator==(const Assignment&) const = default;
};

struct SiRuntime {
  std::string name;
  std::string sg;
  int rank = 0;
  AdminState admin = AdminState::kUnlocked;
  std::vector<Assignment> assignments;
  std::string preferredActive;  // si-swap: the unit that should become active; empty: none
  bool operator==(const SiRuntime&) const = default;
};

struct SgRuntime {
  std::string name;
  AdminState admin = AdminState::kUnlocked;
  bool adjust = false;  // sg-adjust requested: move assignments to the preferred units once
  bool operator==(const SgRuntime&) const = default;
};

// An operator's command waiting for the director's answer (replicated, so a new director answers it).
struct PendingAdmin {
  std::uint64_t id = 0;
  int from = 0;
  model::AdminCommand command;
  bool operator==(const PendingAdmin&) const = default;
};

// An operator's configuration change waiting for the director's answer (replicated, so a new
// director answers it): the whole configuration wanted, merged by node manager `from` onto
// configuration generation `baseGeneration`.
struct PendingConfigChange {
  std::uint64_t id = 0;
  int from = 0;
  std::uint64_t baseGeneration = 0;
  std::shared_ptr<const model::Configuration> config;
  bool operator==(const PendingConfigChange& other) const;  // configurations compared by value
};

// Where each name's specification is in a configuration, and what each service group holds.
// Derived from the configuration alone; shared by every copy of a state.
struct SpecIndex {
  std::map<std::string, const model::ServiceGroupSpec*> sgs;
  std::map<std::string, const model::ServiceUnitSpec*> sus;
  std::map<std::string, const model::VmSpec*> vms;
  std::map<std::string, std::vector<std::string>> unitsOf;      // by service group
  std::map<std::string, std::vector<std::string>> instancesOf;  // by service group
};

struct ClusterState {
  std::shared_ptr<const model::Configuration> config;
  std::uint64_t generation = 0;  // configuration generation
  std::uint64_t decisions = 0;   // decisions applied: how fresh this state is
  std::uint64_t applied = 0;     // reports and decisions applied: freshness among equal decisions
  std::map<std::string, NodeRuntime> nodes;
  std::map<std::string, SgRuntime> sgs;
  std::map<std::string, SuRuntime> sus;
  std::map<std::string, SiRuntime> sis;
  std::map<std::string, VmRuntime> vms;
  std::vector<PendingAdmin> pendingAdmin;
  std::vector<PendingConfigChange> pendingConfig;

  bool operator==(const ClusterState& other) const;

  // REQUIRES: the name exists in the configuration.
  const model::ServiceGroupSpec& sgSpec(const std::string& sg) const;
  const model::ServiceUnitSpec& suSpec(const std::string& su) const;
  const model::VmSpec& vmSpec(const std::string& vm) const;
  const model::ClusterSpec& cluster() const { return *config->cluster; }

  const NodeRuntime* nodeById(int id) const;
  const NodeRuntime* node(const std::string& name) const;
  // The index of `config` (built on first use after the configuration changed).
  const SpecIndex& index() const;

 private:
  mutable std::shared_ptr<const SpecIndex> index_;
  // The configuration index_ was built from. Held, not just its address: a configuration freed
  // after a change could have its address reused by a later one, which would pass for indexed.
  mutable std::shared_ptr<const model::Configuration> indexed_;
};

// Both null, the same configuration, or equal ones.
bool sameConfiguration(const std::shared_ptr<const model::Configuration>& a,
                       const std::shared_ptr<const model::Configuration>& b);

// The state of a configuration nobody has acted on yet: every node down, nothing placed.
// REQUIRES: config has a Cluster.
ClusterState initialState(std::shared_ptr<const model::Configuration> config, std::uint64_t generation);

// Derived states (SA Forum AMF): functions of the state, never stored.
PresenceState suPresence(const ClusterState& state, const SuRuntime& su);
ReadinessState suReadiness(const ClusterState& state, const SuRuntime& su);
// True when the unit's VMs are certainly not running anywhere (nothing to clean up).
bool suCertainlyDown(const ClusterState& state, const SuRuntime& su);
OperState effectiveSuOper(const ClusterState& state, const SuRuntime& su);
// True when an operator paused one of the unit's VMs or holds one stopped (VM operations): the unit
// is out of service, but not failed, and nothing recovers it.
bool suHeldByOperator(const ClusterState& state, const SuRuntime& su);
// The operator's state of a VM for people: "paused", "stopped", "suspended", or "" for none.
std::string vmOperatorWord(const VmRuntime& vm);

}  // namespace kvm_amf::engine
