#include "kvm_amf/amf/node/config_change.h"

#include <algorithm>
#include <utility>

#include "kvm_amf/amf/engine/reconfiguration.h"

namespace kvm_amf::node {
namespace {

ConfigResult refused(std::uint64_t generation, std::vector<std::string> problems) {
  ConfigResult result;
  result.outcome = ConfigOutcome::kRefused;
  result.generation = generation;
  result.problems = std::move(problems);
  return result;
}

std::string generationMoved(std::uint64_t current, std::uint64_t expected) {
  return "the configuration is at generation " + std::to_string(current) + ", not " + std::to_string(expected) +
         "; diff again";
}

}  // namespace

ConfigPlan planConfigChange(const engine::ClusterState& state, const ConfigRequest& request) {
  ConfigPlan plan;
  plan.result.generation = state.generation;
  const model::Configuration& running = *state.config;
  std::vector<config::DocumentKey> removed;
  if (!request.removeServiceGroup.empty()) {
    const bool known = std::any_of(running.serviceGroups.begin(), running.serviceGroups.end(),
                                   [&](const auto& sg) { return sg.name == request.removeServiceGroup; });
    if (!known) {
      plan.result = refused(state.generation, {"no sg/" + request.removeServiceGroup + " in the configuration"});
      return plan;
    }
    removed.push_back({"ServiceGroup", request.removeServiceGroup});
  }
  config::LoadResult merged = config::loadOnto(running, request.files, removed);
  if (!merged.ok()) {
    plan.result.outcome = ConfigOutcome::kInvalid;
    plan.result.errors = std::move(merged.errors);
    return plan;
  }
  plan.result.changes = config::compareConfigurations(running, merged.config);
  if (plan.result.changes.empty()) {
    plan.result.outcome = ConfigOutcome::kUnchanged;
    return plan;
  }
  if (request.expectedGeneration != 0 && request.expectedGeneration != state.generation) {
    plan.result.outcome = ConfigOutcome::kRefused;
    plan.result.problems = {generationMoved(state.generation, request.expectedGeneration)};
    return plan;
  }
  plan.result.problems = engine::checkReconfiguration(state, merged.config);
  if (!plan.result.problems.empty()) {
    plan.result.outcome = ConfigOutcome::kRefused;
    return plan;
  }
  plan.result.outcome = ConfigOutcome::kApplied;
  plan.merged = std::make_shared<const model::Configuration>(std::move(merged.config));
  return plan;
}

void applyConfigChange(NodeManager& manager, ConfigRequest request, std::function<void(ConfigResult)> done,
                       int attempts) {
  const engine::ClusterState* state = manager.state();
  if (state == nullptr || !manager.view().quorate) {
    ConfigResult result;
    result.outcome = ConfigOutcome::kUnavailable;
    result.problems = {"amfd on " + manager.name() +
                       (state == nullptr ? " is not synchronised with the cluster yet (no quorate group)"
                                         : " has no quorate cluster to send the change to")};
    return done(std::move(result));
  }
  ConfigPlan plan = planConfigChange(*state, request);
  if (plan.result.outcome != ConfigOutcome::kApplied || request.dryRun) return done(std::move(plan.result));

  const std::uint64_t base = state->generation;
  auto answered = [&manager, request = std::move(request), done = std::move(done), attempts,
                   changes = std::move(plan.result.changes), base](const engine::ConfigReply& reply) mutable {
    if (reply.ok) {
      ConfigResult result;
      result.outcome = ConfigOutcome::kApplied;
      result.generation = reply.generation;
      result.changes = std::move(changes);
      return done(std::move(result));
    }
    if (!reply.stale) return done(refused(reply.generation, reply.problems));
    if (request.expectedGeneration != 0) {
      return done(refused(reply.generation, {generationMoved(reply.generation, request.expectedGeneration)}));
    }
    if (attempts <= 1) {
      return done(refused(reply.generation,
                          {"the configuration kept changing (generation " + std::to_string(base) + " to " +
                           std::to_string(reply.generation) + ") while this change was sent; apply it again"}));
    }
    applyConfigChange(manager, std::move(request), std::move(done), attempts - 1);
  };
  manager.submitConfiguration(std::move(plan.merged), base, std::move(answered));
}

}  // namespace kvm_amf::node
