// A small cluster for the monitor's tests: three hosts, a 2N group `mme` (units mme-a, mme-b, one
// VM each) with one SI, its replicated state and a view, and a scheduler whose time the test sets.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>

#include "kvm_amf/amf/config/loader.h"
#include "kvm_amf/amf/engine/apply.h"
#include "kvm_amf/amf/engine/cluster_state.h"
#include "kvm_amf/amf/engine/engine.h"
#include "kvm_amf/common/scheduler.h"

namespace kvm_amf::monitor::testing {

inline const char* kClusterYaml = R"(apiVersion: kvm-amf/v1
kind: Cluster
metadata: {name: c}
spec:
  nodes:
    - {name: n1, address: 10.0.0.1, capacity: {vcpus: 4, memory: 4Gi}}
    - {name: n2, address: 10.0.0.2}
    - {name: n3, address: 10.0.0.3}
  nodeGroups:
    - {name: all, nodes: [n1, n2, n3]}
  fencing: {mode: none}
---
apiVersion: kvm-amf/v1
kind: ServiceGroup
metadata: {name: mme}
spec:
  redundancy: {model: 2N}
  nodeGroup: all
  health:
    heartbeat: {interval: 200ms, timeout: 1s}
  units:
    - name: mme-a
      vms:
        - {name: mme-a-vm, vcpus: 2, memory: 256Mi, boot: {kernel: /k}}
    - name: mme-b
      vms:
        - {name: mme-b-vm, vcpus: 1, memory: 128Mi, boot: {kernel: /k}}
  serviceInstances:
    - name: mme-si
)";

// Time as the test sets it; timers run when the test calls runDue().
class ManualScheduler : public Scheduler {
 public:
  TimePoint now() const override { return now_; }
  TimerId at(TimePoint when, std::function<void()> fn) override {
    timers_[++next_] = {when, std::move(fn)};
    return next_;
  }
  void cancel(TimerId id) override { timers_.erase(id); }
  void set(TimePoint t) { now_ = t; }
  void runDue() {
    for (auto it = timers_.begin(); it != timers_.end();) {
      if (it->second.first > now_) {
        ++it;
        continue;
      }
      auto fn = std::move(it->second.second);
      it = timers_.erase(it);
      fn();
    }
  }

 private:
  TimePoint now_{0};
  TimerId next_ = 0;
  std::map<TimerId, std::pair<TimePoint, std::function<void()>>> timers_;
};

inline engine::ClusterState clusterState() {
  config::LoadResult loaded = config::loadConfiguration({{"cluster.yaml", kClusterYaml}});
  EXPECT_TRUE(loaded.ok());
  return engine::initialState(std::make_shared<const model::Configuration>(std::move(loaded.config)), 1);
}

// The view of node `self` with every host and amfd in, quorate.
inline engine::View fullView(int self) {
  engine::View view;
  view.self = self;
  view.group = {1, 2, 3};
  view.hosts = {1, 2, 3};
  view.quorate = true;
  view.clusterSize = 3;
  return view;
}

inline engine::Decision decision(int director, std::vector<engine::Action> actions, TimePoint at = TimePoint(0)) {
  return engine::Decision{director, at, std::move(actions)};
}

// Every host up, mme-a placed on n1 and mme-b on n2, both VMs running, mme-si active on mme-a and
// standby on mme-b, both acknowledged.
inline void serve(engine::ClusterState& state) {
  using namespace engine;
  applyDecision(
      state, decision(1, {SetNodeStatus{"n1", NodeStatus::kUp, ""}, SetNodeStatus{"n2", NodeStatus::kUp, ""},
                          SetNodeStatus{"n3", NodeStatus::kUp, ""}, StartSu{"mme-a", "n1"}, StartSu{"mme-b", "n2"}}));
  applyReport(state, Report(VmStarted{"mme-a-vm", "n1"}));
  applyReport(state, Report(VmStarted{"mme-b-vm", "n2"}));
  applyDecision(state,
                decision(1, {SetHa{"mme-a", "mme-si", HaState::kActive}, SetHa{"mme-b", "mme-si", HaState::kStandby}}));
  applyReport(state, Report(HaAcked{"mme-a", "mme-si", HaState::kActive}));
  applyReport(state, Report(HaAcked{"mme-b", "mme-si", HaState::kStandby}));
}

}  // namespace kvm_amf::monitor::testing
