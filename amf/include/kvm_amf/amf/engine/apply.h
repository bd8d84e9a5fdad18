// Applying the replicated stream to the state. Deterministic: the same state and message give the
// same result on every node manager. Guards make stale or duplicate messages no-ops (a report
// about a VM that has since moved, an action whose premise no longer holds).
#pragma once

#include "kvm_amf/amf/engine/cluster_state.h"
#include "kvm_amf/amf/engine/messages.h"

namespace kvm_amf::engine {

void applyReport(ClusterState& state, const Report& report);

// Applies every action in order and counts the decision.
void applyDecision(ClusterState& state, const Decision& decision);

// One action at decision time `at` (the engine uses this on its scratch copy while deciding).
void applyAction(ClusterState& state, const Action& action, TimePoint at);

// A failure counter within its probation window: the count after adding one failure at `at`.
Counter countFailure(Counter counter, TimePoint at, Duration probation);
// The failures counted within the window as of `at` (0 once the window has passed).
int failuresWithin(const Counter& counter, TimePoint at, Duration probation);

}  // namespace kvm_amf::engine
