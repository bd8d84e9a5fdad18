// The messages of the replicated stream. Node managers multicast reports (facts they observed)
// and the director multicasts decisions (actions); every member applies both, in the group's
// total order, to its copy of the ClusterState (apply.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "kvm_amf/amf/engine/cluster_state.h"
#include "kvm_amf/amf/model/admin_command.h"

namespace kvm_amf::engine {

// ---- Reports: from the node manager of `node` -----------------------------------------------

struct VmStarted {  // the VM runs on node (after StartSu, RestartVm or RestartSu)
  std::string vm, node;
  bool operator==(const VmStarted&) const = default;
};
struct VmStartFailed {
  std::string vm, node, reason;
  bool operator==(const VmStartFailed&) const = default;
};
struct VmStopped {  // a stop the cluster asked for is done: the VM no longer runs on node
  std::string vm, node;
  bool operator==(const VmStopped&) const = default;
};
struct VmStopFailed {  // the VM could not be stopped (its host must be fenced)
  std::string vm, node, reason;
  bool operator==(const VmStopFailed&) const = default;
};
struct VmFailed {  // the VM failed on its own: crash, watchdog, hang, I/O error, bad health
  std::string vm, node;
  FailureKind kind = FailureKind::kCrash;
  bool operator==(const VmFailed&) const = default;
};
struct HaAcked {  // every VM of su confirmed HA state ha for si
  std::string su, si;
  HaState ha = HaState::kStandby;
  bool operator==(const HaAcked&) const = default;
};
struct AgentUp {  // node's node manager (re)joined; these of the cluster's VMs run there now
  std::string node;
  std::vector<std::string> runningVms;
  bool operator==(const AgentUp&) const = default;
};
struct FenceDone {  // the fence agent run against node ended
  std::string node;
  bool ok = false;
  std::string message;
  TimePoint at{0};  // when it ended, by the fencer's clock (spaces out retries)
  bool operator==(const FenceDone&) const = default;
};
struct AdminRequest {  // an operator's command, received by node manager `from`
  std::uint64_t id = 0;
  int from = 0;
  model::AdminCommand command;
  bool operator==(const AdminRequest&) const = default;
};
struct ConfigChange {  // an operator's configuration change, merged by node manager `from`
  std::uint64_t id = 0;
  int from = 0;
  std::uint64_t baseGeneration = 0;                    // the generation `config` was merged onto
  std::shared_ptr<const model::Configuration> config;  // the whole configuration wanted
  bool operator==(const ConfigChange& other) const;    // configurations compared by value
};

// ---- Actions: decided by the director --------------------------------------------------------

struct SetNodeStatus {
  std::string node;
  NodeStatus status = NodeStatus::kUp;
  std::string reason;
  bool operator==(const SetNodeStatus&) const = default;
};
struct StartFence {  // node `fencer` runs the fence agent against node
  std::string node;
  int fencer = 0;
  bool operator==(const StartFence&) const = default;
};
struct StartSu {  // instantiate su's VMs on node, in boot order
  std::string su, node;
  bool operator==(const StartSu&) const = default;
};
struct StopSu {  // terminate su's VMs (also the cleanup of a failed unit)
  std::string su;
  bool operator==(const StopSu&) const = default;
};
// How a VM restarts in place.
enum class RestartMethod {
  kRecreate,  // destroyed and started again (recovery, `restart vm/NAME`)
  kReboot,    // the guest is asked to reboot, and reset if it does not (`vm reboot`)
  kReset,     // the reset button (`vm reset`)
};
model::WordTable<RestartMethod> enumWords(RestartMethod);  // "recreate", "reboot", "reset"

struct RestartVm {  // restart one VM in place; `counted`: an escalation step
  std::string vm;
  bool counted = true;
  RestartMethod method = RestartMethod::kRecreate;
  bool operator==(const RestartVm&) const = default;
};
struct RestartSu {
  std::string su;
  bool counted = true;
  bool operator==(const RestartSu&) const = default;
};
struct FailoverSu {  // su leaves service (oper disabled) and is cleaned up; its SIs move
  std::string su;
  bool nodeLevel = false;  // part of a node failover
  bool operator==(const FailoverSu&) const = default;
};
struct SetNodeOper {  // node failover disables a node; `repaired node/NAME` enables it
  std::string node;
  OperState oper = OperState::kEnabled;
  bool operator==(const SetNodeOper&) const = default;
};
struct DestroyVm {  // a copy of vm that must not run on node (found there after a reattach)
  std::string vm, node;
  bool operator==(const DestroyVm&) const = default;
};
struct RepairSu {  // su may be instantiated again (automatic repair, or `repaired`)
  std::string su;
  bool operator==(const RepairSu&) const = default;
};
struct SetHa {  // assign si to su in HA state ha (new, or a change of state)
  std::string su, si;
  HaState ha = HaState::kStandby;
  bool operator==(const SetHa&) const = default;
};
struct RemoveAssignment {
  std::string su, si;
  bool operator==(const RemoveAssignment&) const = default;
};
struct SetAdmin {  // an entity's administrative state
  model::AdminTarget target;
  AdminState admin = AdminState::kUnlocked;
  bool operator==(const SetAdmin&) const = default;
};
struct SetPreferredActive {  // si-swap: the unit that should hold si active ("" clears)
  std::string si, su;
  bool operator==(const SetPreferredActive&) const = default;
};
struct SetSgAdjust {
  std::string sg;
  bool adjust = false;
  bool operator==(const SetSgAdjust&) const = default;
};
// How an operator stops one VM.
enum class VmStopMethod {
  kShutdown,  // the guest is asked to power off, and destroyed after the hypervisor's grace
  kDestroy,   // powered off at once (of a suspended VM: its managed save is discarded)
  kSuspend,   // stopped with its memory in a managed save on its host
};
model::WordTable<VmStopMethod> enumWords(VmStopMethod);  // "shutdown", "destroy", "suspend"

// VM operations (`vm shutdown|destroy|suspend|start|pause|resume`), carried out by the local agent
// of `node`. None is a failure or counts as one.
struct StopVm {  // the VM is held stopped (suspended with kSuspend) until StartVm
  std::string vm;
  std::string node;  // where it runs, or holds the managed save a destroy discards; empty: nothing to do there
  VmStopMethod method = VmStopMethod::kDestroy;
  bool operator==(const StopVm&) const = default;
};
struct StartVm {  // the hold ends; with a node, the VM starts there in place (its unit runs there)
  std::string vm;
  std::string node;  // empty: the engine places and starts the unit as usual
  bool operator==(const StartVm&) const = default;
};
struct SetVmPaused {  // pause (freeze) or resume the VM where it runs
  std::string vm, node;
  bool paused = false;
  bool operator==(const SetVmPaused&) const = default;
};

struct AdminReply {  // the outcome of AdminRequest id received by node manager `from`
  std::uint64_t id = 0;
  int from = 0;
  bool ok = false;
  std::string message;
  bool operator==(const AdminReply&) const = default;
};
// Installs `config` as configuration `generation` (the current one + 1): entities that remain keep
// their runtime, new ones start as in initialState, removed ones go (reconfiguration.h).
struct SetConfiguration {
  std::shared_ptr<const model::Configuration> config;
  std::uint64_t generation = 0;
  bool operator==(const SetConfiguration& other) const;  // configurations compared by value
};
struct ConfigReply {  // the outcome of ConfigChange id received by node manager `from`
  std::uint64_t id = 0;
  int from = 0;
  bool ok = false;
  // Refused only because the configuration is no longer at the change's base generation (another
  // change got in first): merging the same documents again onto the new one may succeed.
  bool stale = false;
  std::uint64_t generation = 0;       // the configuration's generation once this answer is applied
  std::vector<std::string> problems;  // refused: why, each naming its object
  bool operator==(const ConfigReply&) const = default;
};

using Action = std::variant<SetNodeStatus, StartFence, StartSu, StopSu, RestartVm, RestartSu, FailoverSu, SetNodeOper,
                            DestroyVm, RepairSu, SetHa, RemoveAssignment, SetAdmin, SetPreferredActive, SetSgAdjust,
                            AdminReply, SetConfiguration, ConfigReply, StopVm, StartVm, SetVmPaused>;

// One step of the director: its actions, stamped with the director's clock.
struct Decision {
  int director = 0;
  TimePoint at{0};
  std::vector<Action> actions;
  bool operator==(const Decision&) const = default;
};

using Report = std::variant<VmStarted, VmStartFailed, VmStopped, VmStopFailed, VmFailed, HaAcked, AgentUp, FenceDone,
                            AdminRequest, ConfigChange>;

// ---- State transfer: after a view change that adds members --------------------------------------

// Every member offers its state; the best offer (a state, then the newest configuration
// generation, then the most decisions, then the most messages applied, then the lowest node id)
// is sent to all as a snapshot. Offers and snapshots belong to a round: members need not see the
// same views, so a round is named by a number, and every member joins the highest it hears of.
struct StateOffer {
  int node = 0;
  bool hasState = false;
  std::uint64_t generation = 0;
  std::uint64_t decisions = 0;
  std::uint64_t applied = 0;
  std::uint64_t round = 0;
  bool operator==(const StateOffer&) const = default;
};
struct StateSnapshot {
  int node = 0;
  ClusterState state;  // with its configuration
  std::uint64_t round = 0;
  bool operator==(const StateSnapshot&) const = default;
};

// Everything a node manager multicasts.
using Envelope = std::variant<Report, Decision, StateOffer, StateSnapshot>;

// A short human form of an action or report, for event logs: "start-su mme-a node1".
std::string describe(const Action& action);
std::string describe(const Report& report);
std::string nodeStatusWord(NodeStatus status);  // "up", "amfd-down", "lost", "fencing", "down"
std::string failureWord(FailureKind kind);      // "crash", "watchdog", "hang", "io-error", "unhealthy"

}  // namespace kvm_amf::engine
