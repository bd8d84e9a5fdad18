// The cluster at a glance, as amf-admin shows it (`status`, `get`): a JSON document built from
// one node manager's replicated state and its view. Pure; the same state and view give the
// same document. The keys are documented in docs/cli.md.
#pragma once

#include <nlohmann/json.hpp>

#include "kvm_amf/amf/engine/cluster_state.h"
#include "kvm_amf/amf/engine/engine.h"

namespace kvm_amf::engine {

// {"quorate", "director", "generation", "decisions", "nodes": [...], "sgs": [...], "sus": [...],
//  "sis": [...], "vms": [...], "problems": [...]}; problems first in importance: SIs without an
// active assignment, hosts lost or fencing (with their alarm), disabled units and hosts, failed
// instantiations, VMs with an unhandled failure.
nlohmann::json statusDocument(const ClusterState& state, const View& view);

}  // namespace kvm_amf::engine
