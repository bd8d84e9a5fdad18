// Operators' configuration changes (`amf-admin apply`, `diff`, `delete`) as the node manager that
// receives them carries them out: the documents given are merged onto the running configuration
// (config/merge.h), validated, compared with it and checked against the runtime state here
// (engine/reconfiguration.h) for a fast, clear refusal; then sent through the stream, where the
// director checks them again at their place and installs them as the next generation. A change the
// director refuses because another one got in first is merged again onto the new configuration
// and sent again, a bounded number of times, unless the operator asked for a given generation.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kvm_amf/amf/config/loader.h"
#include "kvm_amf/amf/config/merge.h"
#include "kvm_amf/amf/engine/cluster_state.h"
#include "kvm_amf/amf/node/node_manager.h"

namespace kvm_amf::node {

// How many times a change is sent when the director keeps finding the configuration moved on.
inline constexpr int kConfigChangeAttempts = 5;

struct ConfigRequest {
  std::vector<config::Source> files;     // documents to apply: each replaces its kind and name, or is added
  std::string removeServiceGroup;        // or, with no files: the service group to remove
  bool dryRun = false;                   // plan and check only; nothing is sent
  std::uint64_t expectedGeneration = 0;  // non-zero: refuse unless the configuration is at this generation
};

enum class ConfigOutcome {
  kApplied,      // installed (or, planned or with dryRun: would be installed)
  kUnchanged,    // the documents are what runs already: nothing to do
  kInvalid,      // the merged documents do not validate: `errors`
  kRefused,      // not now: `problems`
  kUnavailable,  // this node manager has no synchronised state, or no quorum: `problems`
};

struct ConfigResult {
  ConfigOutcome outcome = ConfigOutcome::kRefused;
  std::uint64_t generation = 0;                 // the configuration's generation after the request
  std::vector<config::DocumentChange> changes;  // what was changed, or would be
  config::Diagnostics errors;                   // kInvalid: every error, FILE:LINE:COLUMN
  std::vector<std::string> problems;            // kRefused, kUnavailable: why, one per object
};

struct ConfigPlan {
  ConfigResult result;                                 // kApplied here means "would be applied"
  std::shared_ptr<const model::Configuration> merged;  // with kApplied: the configuration to send
};

// What `request` would do to `state` (pure): merges it onto the state's configuration and judges
// it, in this order: kInvalid (the merged documents, every error), kRefused (removing a service
// group the configuration does not have), kUnchanged, kRefused (expectedGeneration is not the
// state's; checkReconfiguration's problems), else kApplied with the merged configuration. The
// result's generation is the state's. REQUIRES: state.config has a Cluster.
ConfigPlan planConfigChange(const engine::ClusterState& state, const ConfigRequest& request);

// Carries `request` out through `manager` and calls `done` once with the outcome: kUnavailable
// without a synchronised state or without quorum (a dry run too: nothing would be accepted, and
// this host's copy may be behind); a plan that is not kApplied,
// or any plan with dryRun, as planned; else the director's answer (kApplied with the new
// generation, or kRefused). A stale answer without expectedGeneration plans and sends again, up
// to `attempts` times in all. `done` is never called if the manager leaves the group or is
// destroyed before the answer. REQUIRES: called on the manager's loop; manager outlives the call.
void applyConfigChange(NodeManager& manager, ConfigRequest request, std::function<void(ConfigResult)> done,
                       int attempts = kConfigChangeAttempts);

}  // namespace kvm_amf::node
