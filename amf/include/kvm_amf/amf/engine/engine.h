// The availability engine: the director's policy. Pure: from the replicated state, the group's
// view and the director's clock it returns the actions to multicast; it never does I/O.
//
// Level-triggered: each call looks at the whole state and returns what is needed now, so a new
// director (or a repeated call) continues where the last decision left off. One call covers, in
// order: host liveness and fencing (nothing on a lost host is recovered before it is fenced or
// certainly self-fenced), operators' commands and configuration changes (reconfiguration.h), VM
// failures and the escalation ladder (VM restart, SU restart, SU failover, node failover), unit
// instantiation and repair, and SI assignments by the group's redundancy model (quiesce before
// moving; never a second active for an SI while the first may still run).
#pragma once

#include <optional>
#include <set>
#include <vector>

#include "kvm_amf/amf/engine/cluster_state.h"
#include "kvm_amf/amf/engine/messages.h"

namespace kvm_amf::engine {

// What one node manager knows of the group right now (identical on every member of a view).
struct View {
  int self = 0;                 // this node manager's node id
  std::set<int> group;          // node ids whose node manager is in the group
  std::set<int> hosts;          // node ids whose host is in the Corosync membership
  bool quorate = false;         // this host's partition has quorum
  std::size_t clusterSize = 0;  // configured nodes
  bool twoNode = false;         // votequorum two_node: one of two suffices
};

// The director: the lowest node id whose node manager is in the group, when the hosts are quorate
// and the group holds a majority of the cluster's node managers; 0: none. The second condition
// keeps decisions from stale states: every decision is made by a majority of node managers, so
// any later majority contains one that applied the last decision, and state transfer picks it.
int directorOf(const View& view);

struct EngineStep {
  std::vector<Action> actions;
  std::optional<TimePoint> wakeAt;  // decide again by then even if nothing is delivered
};

// REQUIRES: view.quorate, view.self == directorOf(view), state.config has a Cluster.
EngineStep decide(const ClusterState& state, const View& view, TimePoint now);

}  // namespace kvm_amf::engine
