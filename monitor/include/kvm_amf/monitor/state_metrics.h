// The cluster as metrics, from the replicated state that every amfd holds: AMF states as one 0/1
// series per state, placements, capacities, membership; and the failure path: how long failures
// took to be acted on, how long SIs went without an active unit, how many recovery actions the
// director took (docs/monitoring.md).
//
// Who records what, so that summing a figure over every amfd counts each event once:
// - state series: every synchronised amfd exports the same (its copy of the replicated state);
//   `amf_director` says which amfd directs, dashboards read the director's.
// - failure detection of a VM (crash, watchdog, hang, I/O error, unhealthy): the amfd of the
//   VM's host, from the moment it learned of the failure (for a hang: the guest's last
//   heartbeat) to the director's decision acting on it, as applied on that host.
// - failure detection of a host or an amfd, SI outages, recovery actions, fencing outcomes: the
//   amfd that directs when the span ends or the decision is applied. Every amfd tracks the spans
//   (from its own view changes and applied messages), so a new director continues them.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "kvm_amf/amf/engine/engine.h"
#include "kvm_amf/amf/node/node_manager.h"
#include "kvm_amf/common/scheduler.h"
#include "kvm_amf/monitor/metrics.h"

namespace kvm_amf::monitor {

class StateMetrics : public node::NodeObserver {
 public:
  // `node`: this host's name. `state`: the node manager's replicated state now (nullptr while
  // not synchronised). `lastHeartbeat` (optional): when the guest channel last heard the VM's
  // agent (loop time), the cause of a hang. REQUIRES: loop thread; all outlive this.
  StateMetrics(Scheduler& scheduler, Metrics& metrics, std::string node,
               std::function<const engine::ClusterState*()> state,
               std::function<std::optional<TimePoint>(const std::string& vm)> lastHeartbeat = {});
  ~StateMetrics() override;
  StateMetrics(const StateMetrics&) = delete;
  StateMetrics& operator=(const StateMetrics&) = delete;

  void onView(const engine::View& view) override;
  void onApplied(const engine::Envelope& message, const engine::ClusterState& state) override;
  void onSynced(const engine::ClusterState& state) override;

  // A live migration's downtime, as the adapter measured it (the migration's outcome).
  void observeMigration(Duration downtime);

  // Rebuilds the state series now (they are otherwise rebuilt once per loop turn after a change).
  void refresh();

 private:
  struct Spans;
  void changed();
  void trackOutages(const engine::ClusterState& state);
  bool directing() const;

  Scheduler& scheduler_;
  std::string node_;
  std::function<const engine::ClusterState*()> state_;
  std::function<std::optional<TimePoint>(const std::string&)> lastHeartbeat_;
  engine::View view_;
  bool haveView_ = false;
  std::optional<TimerId> refresh_;
  std::unique_ptr<Spans> spans_;
};

}  // namespace kvm_amf::monitor
