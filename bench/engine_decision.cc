// bench_engine_decision: how long the director's engine takes to decide on a host failure in a
// large cluster.
//
// 6 hosts, 250 2N service groups of 2 units (500 units, each one small VM, one SI per group),
// built in memory and checked by the real loader. The state is driven to steady state with the
// real engine and apply functions (every unit instantiated, every SI active and standby,
// acknowledged). Then host node6 leaves the view (about 1/6 of the units ran there) and two
// decisions are timed, each on a fresh copy of the steady state:
//   failure:  engine::decide with node6 gone: marks it lost and starts fencing it;
//   recovery: after FenceDone{ok}, engine::decide: starts every affected unit elsewhere and
//             promotes the standbys of the SIs that were active there.
// Printed: median, p99 and max in microseconds, and the number of actions of each.
//
// Usage: bench_engine_decision [REPETITIONS]   (default 200)
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_support.h"
#include "kvm_amf/amf/engine/apply.h"
#include "kvm_amf/amf/engine/engine.h"
#include "kvm_amf/common/overloaded.h"

namespace kvm_amf::bench {
namespace {

using engine::ClusterState;
using engine::View;

constexpr int kHosts = 6;
constexpr int kGroups = 250;
constexpr const char* kFailedHost = "node6";

model::Configuration configuration() {
  model::Configuration config;
  config.cluster = agentFencedCluster("bench", kHosts);
  int vmIndex = 1;
  for (int g = 0; g < kGroups; ++g) {
    char name[16];
    std::snprintf(name, sizeof name, "g%03d", g);
    model::ServiceGroupSpec sg;
    sg.name = name;
    sg.redundancy.model = model::RedundancyModel::k2N;
    for (int u = 1; u <= 2; ++u) {
      model::ServiceUnitSpec unit;
      unit.name = sg.name + "-u" + std::to_string(u);
      // Units are placed in name order, round robin over the hosts; alternating which unit is
      // preferred active puts actives and standbys on every host.
      unit.rank = g % 2 == 0 ? u : 3 - u;
      unit.vms.push_back(smallVm(unit.name + "-vm", vmIndex++));
      sg.units.push_back(unit);
    }
    model::ServiceInstanceSpec si;
    si.name = sg.name + "-si";
    si.rank = 1;
    sg.serviceInstances.push_back(si);
    config.serviceGroups.push_back(sg);
  }
  return config;
}

// What the node managers would report once the decision's actions are carried out: every start
// succeeds, every stop is done, every guest acknowledges its HA state.
void carryOut(ClusterState& state, const engine::Decision& decision) {
  for (const auto& action : decision.actions) {
    std::visit(Overloaded{
                   [&](const engine::StartSu& a) {
                     for (const auto& vm : state.suSpec(a.su).vms) {
                       engine::applyReport(state, engine::VmStarted{vm.name, a.node});
                     }
                   },
                   [&](const engine::RestartSu& a) {
                     for (const auto& vm : state.suSpec(a.su).vms) {
                       engine::applyReport(state, engine::VmStarted{vm.name, state.sus.at(a.su).node});
                     }
                   },
                   [&](const engine::RestartVm& a) {
                     engine::applyReport(state, engine::VmStarted{a.vm, state.vms.at(a.vm).node});
                   },
                   [&](const engine::StopSu& a) {
                     for (const auto& vm : state.suSpec(a.su).vms) {
                       engine::applyReport(state, engine::VmStopped{vm.name, state.vms.at(vm.name).node});
                     }
                   },
                   [&](const engine::SetHa& a) {
                     engine::applyReport(state, engine::HaAcked{a.su, a.si, a.ha});
                   },
                   [](const auto&) {},
               },
               action);
  }
}

// Decides, applies and carries out until the engine has nothing more to do. Returns the number of
// decisions; exits if the engine does not settle.
int settle(ClusterState& state, const View& view, TimePoint& now) {
  for (int decisions = 0; decisions < 10'000; ++decisions) {
    engine::EngineStep step = engine::decide(state, view, now);
    if (step.actions.empty()) return decisions;
    const engine::Decision decision{view.self, now, std::move(step.actions)};
    engine::applyDecision(state, decision);
    carryOut(state, decision);
    now += Duration(1);
  }
  std::fprintf(stderr, "the engine did not settle within 10000 decisions\n");
  std::exit(1);
}

// Every SI is held active, acknowledged by its guests.
bool allServed(const ClusterState& state) {
  for (const auto& [name, si] : state.sis) {
    bool active = false;
    for (const auto& a : si.assignments) active = active || (a.ha == model::HaState::kActive && a.acked);
    if (!active) return false;
  }
  return true;
}

// One timed call: wall and CPU microseconds.
struct Timing {
  std::vector<double> wallUs;
  std::vector<double> cpuUs;
};

template <class F>
auto timed(Timing& timing, F&& call) {
  const double wall = wallSeconds();
  const double cpu = cpuSeconds();
  auto result = call();
  timing.cpuUs.push_back((cpuSeconds() - cpu) * 1e6);
  timing.wallUs.push_back((wallSeconds() - wall) * 1e6);
  return result;
}

void printRow(const char* name, std::size_t actions, const Timing& t) {
  std::printf("%-10s %8zu %12.0f %12.0f %12.0f %14.0f\n", name, actions, quantile(t.wallUs, 0.5),
              quantile(t.wallUs, 0.99), quantile(t.wallUs, 1.0), quantile(t.cpuUs, 0.5));
}

int run(int argc, char** argv) {
  const int repetitions = argc > 1 ? std::atoi(argv[1]) : 200;
  if (repetitions <= 0) {
    std::fprintf(stderr, "usage: bench_engine_decision [REPETITIONS]\n");
    return 64;
  }
  const auto config = validated(configuration());

  View full{.self = 1, .group = {}, .hosts = {}, .quorate = true, .clusterSize = kHosts};
  for (int id = 1; id <= kHosts; ++id) {
    full.group.insert(id);
    full.hosts.insert(id);
  }
  ClusterState steady = engine::initialState(config, 1);
  for (const auto& node : config->cluster->nodes) engine::applyReport(steady, engine::AgentUp{node.name, {}});
  TimePoint now{1000};
  const int decisionsToSteady = settle(steady, full, now);
  int affected = 0;
  int instantiated = 0;
  for (const auto& [name, su] : steady.sus) {
    if (su.node == kFailedHost) ++affected;
    if (engine::suPresence(steady, su) == model::PresenceState::kInstantiated) ++instantiated;
  }
  if (!allServed(steady) || instantiated != static_cast<int>(steady.sus.size())) {
    std::fprintf(stderr, "steady state not reached: %d of %zu units instantiated\n", instantiated, steady.sus.size());
    return 1;
  }

  View failed = full;
  failed.group.erase(kHosts);
  failed.hosts.erase(kHosts);
  const TimePoint failAt = now + Duration(10000);
  const TimePoint fencedAt = failAt + Duration(1000);

  Timing failureTiming;
  Timing recoveryTiming;
  std::size_t failureActions = 0;
  std::size_t recoveryActions = 0;
  for (int r = 0; r < repetitions; ++r) {
    ClusterState state = steady;
    engine::EngineStep failure = timed(failureTiming, [&] { return engine::decide(state, failed, failAt); });
    failureActions = failure.actions.size();
    engine::applyDecision(state, {failed.self, failAt, std::move(failure.actions)});
    engine::applyReport(state, engine::FenceDone{kFailedHost, true, "powered off", fencedAt});

    engine::EngineStep recovery = timed(recoveryTiming, [&] { return engine::decide(state, failed, fencedAt); });
    recoveryActions = recovery.actions.size();

    if (r == 0) {
      // Once: the recovery is complete, not just fast.
      const engine::Decision decision{failed.self, fencedAt, std::move(recovery.actions)};
      engine::applyDecision(state, decision);
      carryOut(state, decision);
      TimePoint later = fencedAt + Duration(1);
      settle(state, failed, later);
      int placedElsewhere = 0;
      for (const auto& [name, su] : state.sus) {
        if (!su.node.empty() && su.node != kFailedHost) ++placedElsewhere;
      }
      if (!allServed(state) || placedElsewhere != static_cast<int>(state.sus.size())) {
        std::fprintf(stderr, "the recovery did not restore every unit and SI\n");
        return 1;
      }
    }
  }

  std::printf("bench_engine_decision: %d hosts, %zu service groups (2N), %zu units, %zu SIs\n", kHosts,
              config->serviceGroups.size(), steady.sus.size(), steady.sis.size());
  std::printf("steady state after %d decisions; %s ran %d units; %d repetitions\n\n", decisionsToSteady, kFailedHost,
              affected, repetitions);
  std::printf("%-10s %8s %12s %12s %12s %14s\n", "decision", "actions", "median us", "p99 us", "max us",
              "median cpu us");
  printRow("failure", failureActions, failureTiming);
  printRow("recovery", recoveryActions, recoveryTiming);
  std::printf("\naim: each decision under 10000 us\n");
  return 0;
}

}  // namespace
}  // namespace kvm_amf::bench

int main(int argc, char** argv) { return kvm_amf::bench::run(argc, argv); }
