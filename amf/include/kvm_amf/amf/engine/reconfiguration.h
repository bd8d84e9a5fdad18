// Configuration changes of a running cluster: which are safe now, and how a new configuration
// takes over the runtime state. Pure. The node manager that receives an operator's change checks it
// (a fast, clear refusal); the director checks it again against the state at its place in the
// stream (the authoritative answer, since the state may have moved) before it installs it with a
// SetConfiguration action.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvm_amf/amf/engine/cluster_state.h"
#include "kvm_amf/amf/model/config.h"

namespace kvm_amf::engine {

// Why `next` cannot replace the running configuration of `state` now; empty: it can. Each problem
// names its object and says what the operator can do. Refused:
// - a Cluster whose hosts differ: one added, removed or renamed, or a changed id or address
//   (Corosync's nodelist must change with it, which needs every Corosync restarted);
// - removing a service unit, or moving it to another service group, unless it is uninstantiated:
//   no VM of it placed or running and no assignment (lock, then lock-in, the unit or its group);
// - adding a VM to, or removing one from, a unit that is not uninstantiated, or moving a VM between
//   units unless both are;
// - removing a service instance, or moving it to another group, while it has assignments (lock it);
// - changing a service group's redundancy model while any of its SIs has assignments (lock it);
// - a configuration without a Cluster.
// Everything else is accepted: a VM's specification takes effect at its next start, placement
// rules (nodes, node groups, capacity) at the next placement, recovery and health settings at once.
// REQUIRES: state.config has a Cluster.
std::vector<std::string> checkReconfiguration(const ClusterState& state, const model::Configuration& next);

// Makes `config` the state's configuration, as generation `generation`: nodes, SGs, SUs, SIs and VMs
// that remain keep their runtime (with their group, unit and rank taken from `config`), new ones
// start as initialState makes them, removed ones go; assignments to units that are gone or now in
// another group than their SI go too. Counters, pending requests and the generation's history are
// kept. REQUIRES: config has a Cluster.
void installConfiguration(ClusterState& state, std::shared_ptr<const model::Configuration> config,
                          std::uint64_t generation);

}  // namespace kvm_amf::engine
