// StateMetrics: the replicated state as 0/1 series, and the failure path (detection, outages,
// recovery actions, fencing, migrations), each recorded by the amfd docs/monitoring.md names.
#include "kvm_amf/monitor/state_metrics.h"

#include <gtest/gtest.h>

#include "cluster_fixture.h"
#include "exposition.h"
#include "kvm_amf/amf/engine/apply.h"
#include "kvm_amf/amf/engine/messages.h"

namespace kvm_amf::monitor {
namespace {

using engine::Decision;
using engine::Envelope;
using engine::NodeStatus;
using engine::Report;
using model::HaState;
using testing::clusterState;
using testing::decision;
using testing::fullView;
using testing::ManualScheduler;
using testing::valueOf;

// One amfd's metrics over a state the test changes: `apply` applies a message to the state as the
// node manager would and tells the observer.
struct Amfd {
  Amfd(engine::ClusterState& s, std::string node, int id, std::map<std::string, TimePoint>* beats = nullptr)
      : state(s),
        metrics(std::make_unique<Metrics>()),
        observer(
            scheduler, *metrics, std::move(node), [this] { return &state; },
            [beats](const std::string& vm) -> std::optional<TimePoint> {
              if (beats == nullptr || !beats->contains(vm)) return std::nullopt;
              return beats->at(vm);
            }) {
    observer.onView(fullView(id));
  }

  void apply(const Report& report) {
    engine::applyReport(state, report);
    observer.onApplied(Envelope(report), state);
  }
  void apply(const Decision& d) {
    engine::applyDecision(state, d);
    observer.onApplied(Envelope(d), state);
  }
  double value(const std::string& name, const testing::LabelSet& labels = {}) {
    observer.refresh();
    return valueOf(metrics->text(), name, labels).value_or(-1);
  }

  engine::ClusterState& state;
  ManualScheduler scheduler;
  std::unique_ptr<Metrics> metrics;
  StateMetrics observer;
};

TEST(StateMetrics, StatesAreOneSeriesPerStateAndMoveWithTheState) {
  engine::ClusterState state = clusterState();
  Amfd amfd(state, "n1", 1);
  EXPECT_EQ(amfd.value("amf_synced"), 1);
  EXPECT_EQ(amfd.value("amf_director"), 1);
  EXPECT_EQ(amfd.value("amf_su_presence_state", {{"su", "mme-a"}, {"sg", "mme"}, {"state", "uninstantiated"}}), 1);
  EXPECT_EQ(amfd.value("amf_su_presence_state", {{"su", "mme-a"}, {"state", "instantiated"}}), 0);
  EXPECT_EQ(amfd.value("amf_node_status", {{"node", "n1"}, {"status", "down"}}), 1);

  amfd.apply(decision(1, {engine::SetNodeStatus{"n1", NodeStatus::kUp, ""}, engine::StartSu{"mme-a", "n1"}}));
  EXPECT_EQ(amfd.value("amf_node_status", {{"node", "n1"}, {"status", "up"}}), 1);
  EXPECT_EQ(amfd.value("amf_node_status", {{"node", "n1"}, {"status", "down"}}), 0);
  EXPECT_EQ(amfd.value("amf_su_presence_state", {{"su", "mme-a"}, {"state", "instantiating"}}), 1);
  EXPECT_EQ(amfd.value("amf_su_node", {{"su", "mme-a"}, {"node", "n1"}}), 1);
  EXPECT_EQ(amfd.value("amf_node_placed_vcpus", {{"node", "n1"}}), 2);
  EXPECT_EQ(amfd.value("amf_node_placed_memory_bytes", {{"node", "n1"}}), 256.0 * 1024 * 1024);
  EXPECT_EQ(amfd.value("amf_node_capacity_vcpus", {{"node", "n1"}}), 4);

  amfd.apply(Report(engine::VmStarted{"mme-a-vm", "n1"}));
  EXPECT_EQ(amfd.value("amf_su_presence_state", {{"su", "mme-a"}, {"state", "instantiated"}}), 1);
  EXPECT_EQ(amfd.value("amf_su_presence_state", {{"su", "mme-a"}, {"state", "instantiating"}}), 0);
  EXPECT_EQ(amfd.value("amf_vm_presence_state", {{"domain", "mme-a-vm"}, {"state", "instantiated"}}), 1);
  EXPECT_EQ(amfd.value("amf_su_readiness_state", {{"su", "mme-a"}, {"state", "in-service"}}), 1);
  EXPECT_EQ(amfd.value("amf_si_served", {{"si", "mme-si"}}), 0);

  amfd.apply(decision(1, {engine::SetHa{"mme-a", "mme-si", HaState::kActive}}));
  EXPECT_EQ(amfd.value("amf_su_ha_state", {{"su", "mme-a"}, {"si", "mme-si"}, {"state", "active"}}), 1);
  EXPECT_EQ(amfd.value("amf_su_ha_state", {{"su", "mme-a"}, {"si", "mme-si"}, {"state", "standby"}}), 0);
  EXPECT_EQ(amfd.value("amf_su_ha_acknowledged", {{"su", "mme-a"}, {"si", "mme-si"}}), 0);
  amfd.apply(Report(engine::HaAcked{"mme-a", "mme-si", HaState::kActive}));
  EXPECT_EQ(amfd.value("amf_su_ha_acknowledged", {{"su", "mme-a"}, {"si", "mme-si"}}), 1);
  EXPECT_EQ(amfd.value("amf_si_served", {{"si", "mme-si"}, {"sg", "mme"}}), 1);
  EXPECT_EQ(amfd.value("amf_si_assignments", {{"si", "mme-si"}, {"ha", "active"}}), 1);

  amfd.apply(
      decision(1, {engine::SetAdmin{{model::AdminTarget::Kind::kServiceUnit, "mme-b"}, model::AdminState::kLocked}}));
  EXPECT_EQ(amfd.value("amf_su_admin_state", {{"su", "mme-b"}, {"state", "locked"}}), 1);
  EXPECT_EQ(amfd.value("amf_su_admin_state", {{"su", "mme-b"}, {"state", "unlocked"}}), 0);

  // The assignment removed: its series go.
  amfd.apply(decision(1, {engine::RemoveAssignment{"mme-a", "mme-si"}}));
  EXPECT_EQ(amfd.value("amf_su_ha_state", {{"su", "mme-a"}, {"si", "mme-si"}}), -1);
}

TEST(StateMetrics, NotSynchronisedExportsOnlyTheView) {
  ManualScheduler scheduler;
  Metrics metrics;
  StateMetrics observer(scheduler, metrics, "n1", [] { return nullptr; });
  engine::View view = fullView(2);
  view.hosts = {2};
  view.quorate = false;
  observer.onView(view);
  observer.refresh();
  const std::string text = metrics.text();
  EXPECT_EQ(valueOf(text, "amf_synced"), 0);
  EXPECT_EQ(valueOf(text, "amf_cluster_quorate"), 0);
  EXPECT_EQ(valueOf(text, "amf_cluster_hosts"), 1);
  EXPECT_FALSE(valueOf(text, "amf_su_presence_state"));
}

TEST(StateMetrics, RecoveryActionsAndFencingAreCountedByTheDirectorOnly) {
  engine::ClusterState state = clusterState();
  engine::ClusterState copy = state;
  Amfd director(state, "n1", 1);
  Amfd other(copy, "n2", 2);
  const Decision d = decision(1, {engine::RestartVm{"mme-a-vm", true}, engine::FailoverSu{"mme-b", false},
                                  engine::StartFence{"n3", 1}, engine::SetNodeOper{"n3", model::OperState::kDisabled}});
  director.apply(d);
  other.apply(d);
  for (const char* kind : {"restart-vm", "failover-su", "fence", "node-failover"}) {
    EXPECT_EQ(director.value("amf_recovery_actions_total", {{"kind", kind}}), 1) << kind;
    EXPECT_EQ(other.value("amf_recovery_actions_total", {{"kind", kind}}), 0) << kind;
  }
  EXPECT_EQ(director.value("amf_recovery_actions_total", {{"kind", "restart-su"}}), 0);
  director.apply(Report(engine::FenceDone{"n3", true, "fenced", TimePoint(0)}));
  other.apply(Report(engine::FenceDone{"n3", true, "fenced", TimePoint(0)}));
  EXPECT_EQ(director.value("amf_fence_operations_total", {{"outcome", "ok"}}), 1);
  EXPECT_EQ(director.value("amf_fence_operations_total", {{"outcome", "failed"}}), 0);
  EXPECT_EQ(other.value("amf_fence_operations_total", {{"outcome", "ok"}}), 0);
}

TEST(StateMetrics, VmFailureDetectionIsRecordedOnTheVmsHost) {
  engine::ClusterState state = clusterState();
  testing::serve(state);
  engine::ClusterState copy = state;
  std::map<std::string, TimePoint> beats;
  Amfd host(state, "n1", 1, &beats);  // mme-a-vm runs on n1
  Amfd other(copy, "n2", 2);
  auto both = [&](auto message, TimePoint at) {
    host.scheduler.set(at);
    other.scheduler.set(at);
    host.apply(message);
    other.apply(message);
  };
  both(Report(engine::VmFailed{"mme-a-vm", "n1", engine::FailureKind::kCrash}), TimePoint(10'000));
  EXPECT_EQ(host.value("amf_failure_detection_seconds_count", {{"kind", "crash"}}), 0);  // not acted on yet
  both(decision(1, {engine::FailoverSu{"mme-a", false}}), TimePoint(10'150));
  EXPECT_EQ(host.value("amf_failure_detection_seconds_count", {{"kind", "crash"}}), 1);
  EXPECT_DOUBLE_EQ(host.value("amf_failure_detection_seconds_sum", {{"kind", "crash"}}), 0.15);
  EXPECT_EQ(other.value("amf_failure_detection_seconds_count", {{"kind", "crash"}}), 0);

  // A hang counts from the guest's last heartbeat.
  beats["mme-b-vm"] = TimePoint(19'000);
  Amfd hostB(copy, "n2", 2, &beats);
  hostB.scheduler.set(TimePoint(20'000));
  hostB.apply(Report(engine::VmFailed{"mme-b-vm", "n2", engine::FailureKind::kHang}));
  hostB.scheduler.set(TimePoint(20'100));
  hostB.apply(decision(1, {engine::RestartSu{"mme-b", true}}));
  EXPECT_EQ(hostB.value("amf_failure_detection_seconds_count", {{"kind", "hang"}}), 1);
  EXPECT_DOUBLE_EQ(hostB.value("amf_failure_detection_seconds_sum", {{"kind", "hang"}}), 1.1);
}

TEST(StateMetrics, HostLossDetectionIsRecordedByTheDirectorFromTheViewChange) {
  engine::ClusterState state = clusterState();
  testing::serve(state);
  engine::ClusterState copy = state;
  Amfd director(state, "n1", 1);
  Amfd other(copy, "n2", 2);
  for (Amfd* amfd : {&director, &other}) {
    engine::View view = fullView(amfd == &director ? 1 : 2);
    view.hosts = {1, 2};
    view.group = {1, 2};
    amfd->scheduler.set(TimePoint(5'000));
    amfd->observer.onView(view);
    amfd->scheduler.set(TimePoint(5'004));
    amfd->apply(decision(1, {engine::SetNodeStatus{"n3", NodeStatus::kLost, "left the membership"}}));
  }
  EXPECT_EQ(director.value("amf_failure_detection_seconds_count", {{"kind", "host-lost"}}), 1);
  EXPECT_DOUBLE_EQ(director.value("amf_failure_detection_seconds_sum", {{"kind", "host-lost"}}), 0.004);
  EXPECT_EQ(other.value("amf_failure_detection_seconds_count", {{"kind", "host-lost"}}), 0);
  EXPECT_EQ(director.value("amf_node_in_membership", {{"node", "n3"}}), 0);
  EXPECT_EQ(director.value("amf_node_status", {{"node", "n3"}, {"status", "lost"}}), 1);
  EXPECT_EQ(director.value("amf_cluster_hosts"), 2);
}

TEST(StateMetrics, SiOutageRunsFromTheActivesFailureToTheNewActivesAcknowledgement) {
  engine::ClusterState state = clusterState();
  testing::serve(state);
  Amfd director(state, "n1", 1);
  auto at = [&](TimePoint t) { director.scheduler.set(t); };
  at(TimePoint(1'000));
  director.apply(Report(engine::VmFailed{"mme-a-vm", "n1", engine::FailureKind::kCrash}));
  EXPECT_EQ(director.value("amf_si_served", {{"si", "mme-si"}}), 0);
  at(TimePoint(1'100));
  director.apply(decision(1, {engine::FailoverSu{"mme-a", false}, engine::RemoveAssignment{"mme-a", "mme-si"},
                              engine::SetHa{"mme-b", "mme-si", HaState::kActive}}));
  at(TimePoint(1'400));
  EXPECT_EQ(director.value("amf_si_outage_seconds_count", {{"si", "mme-si"}, {"sg", "mme"}}), 0);
  director.apply(Report(engine::HaAcked{"mme-b", "mme-si", HaState::kActive}));
  EXPECT_EQ(director.value("amf_si_outage_seconds_count", {{"si", "mme-si"}}), 1);
  EXPECT_DOUBLE_EQ(director.value("amf_si_outage_seconds_sum", {{"si", "mme-si"}}), 0.4);
  EXPECT_EQ(director.value("amf_si_served", {{"si", "mme-si"}}), 1);
}

TEST(StateMetrics, AHostLeavingTheViewStartsTheOutageAndALockedSiHasNone) {
  engine::ClusterState state = clusterState();
  testing::serve(state);
  Amfd director(state, "n2", 2);  // n1 (the active's host) leaves: n2 directs
  engine::View view = fullView(2);
  view.hosts = {2, 3};
  view.group = {2, 3};
  director.scheduler.set(TimePoint(2'000));
  director.observer.onView(view);
  EXPECT_EQ(director.value("amf_si_served", {{"si", "mme-si"}}), 0);
  director.scheduler.set(TimePoint(2'700));
  director.apply(decision(
      2, {engine::SetNodeStatus{"n1", NodeStatus::kDown, ""}, engine::SetHa{"mme-b", "mme-si", HaState::kActive}}));
  director.scheduler.set(TimePoint(2'900));
  director.apply(Report(engine::HaAcked{"mme-b", "mme-si", HaState::kActive}));
  EXPECT_DOUBLE_EQ(director.value("amf_si_outage_seconds_sum", {{"si", "mme-si"}}), 0.9);

  // Locked on purpose: the SI has no active and that is no outage.
  director.apply(
      decision(2, {engine::SetAdmin{{model::AdminTarget::Kind::kServiceInstance, "mme-si"}, model::AdminState::kLocked},
                   engine::RemoveAssignment{"mme-b", "mme-si"}}));
  director.scheduler.set(TimePoint(9'000));
  director.apply(decision(
      2, {engine::SetAdmin{{model::AdminTarget::Kind::kServiceInstance, "mme-si"}, model::AdminState::kUnlocked},
          engine::SetHa{"mme-b", "mme-si", HaState::kActive}}));
  director.apply(Report(engine::HaAcked{"mme-b", "mme-si", HaState::kActive}));
  EXPECT_EQ(director.value("amf_si_outage_seconds_count", {{"si", "mme-si"}}), 1);
}

TEST(StateMetrics, MigrationDowntimeExistsWithoutObservations) {
  engine::ClusterState state = clusterState();
  Amfd amfd(state, "n1", 1);
  EXPECT_EQ(amfd.value("amf_migration_downtime_seconds_count"), 0);
  amfd.observer.observeMigration(Duration(120));
  EXPECT_EQ(amfd.value("amf_migration_downtime_seconds_count"), 1);
  EXPECT_DOUBLE_EQ(amfd.value("amf_migration_downtime_seconds_sum"), 0.12);
  // Every kind's series exists before its first observation.
  for (const char* kind : {"crash", "watchdog", "hang", "io-error", "unhealthy", "host-lost", "amfd-down"}) {
    EXPECT_EQ(amfd.value("amf_failure_detection_seconds_count", {{"kind", kind}}), 0) << kind;
  }
}

TEST(StateMetrics, SeriesAreRebuiltOncePerLoopTurnAfterChanges) {
  engine::ClusterState state = clusterState();
  Amfd amfd(state, "n1", 1);
  amfd.observer.refresh();
  engine::applyDecision(state, decision(1, {engine::SetNodeStatus{"n2", NodeStatus::kUp, ""}}));
  amfd.observer.onApplied(Envelope(decision(1, {engine::SetNodeStatus{"n2", NodeStatus::kUp, ""}})), state);
  // Not rebuilt inside the callback: on the next turn.
  EXPECT_EQ(valueOf(amfd.metrics->text(), "amf_node_status", {{"node", "n2"}, {"status", "up"}}), 0);
  amfd.scheduler.runDue();
  EXPECT_EQ(valueOf(amfd.metrics->text(), "amf_node_status", {{"node", "n2"}, {"status", "up"}}), 1);
}

}  // namespace
}  // namespace kvm_amf::monitor
