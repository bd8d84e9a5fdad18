// bench_sim_speed: how much faster than real time amf-sim runs a realistic cluster.
//
// A 5-host cluster (token 300ms, agent fencing) with 50 service groups (2N, N+M 2+1, N-Way-Active
// 3 and No-Redundancy in turn; 125 units, each one small VM), built in memory and checked by the
// real loader. For each seed, amf-sim's random fault schedule (the one `amf-sim fuzz` runs) goes
// through sim::runScenario; printed: simulated and wall seconds, simulated seconds per wall second,
// and scheduler events per wall second, per seed and in total.
//
// Usage: bench_sim_speed [SEEDS [FAULTS [MINUTES]]]   (defaults 5, 20, 10)
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_support.h"
#include "kvm_amf/sim/fuzz.h"
#include "kvm_amf/sim/world.h"

namespace kvm_amf::bench {
namespace {

constexpr int kHosts = 5;
constexpr int kGroups = 50;

model::ServiceGroupSpec group(int index, int& vmIndex) {
  char name[16];
  std::snprintf(name, sizeof name, "g%02d", index);
  model::ServiceGroupSpec sg;
  sg.name = name;
  int units = 2;
  int sis = 1;
  switch (index % 4) {
    case 0:
      sg.redundancy.model = model::RedundancyModel::k2N;
      break;
    case 1:
      sg.redundancy.model = model::RedundancyModel::kNPlusM;
      sg.redundancy.activeUnits = 2;
      sg.redundancy.standbyUnits = 1;
      units = 3;
      sis = 2;
      break;
    case 2:
      sg.redundancy.model = model::RedundancyModel::kNWayActive;
      sg.redundancy.activeUnits = 3;
      units = 3;
      break;
    default:
      sg.redundancy.model = model::RedundancyModel::kNoRedundancy;
      sis = 2;
      break;
  }
  model::WatchdogSpec watchdog;
  watchdog.timeout = std::chrono::seconds(5);
  sg.health.watchdog = watchdog;
  model::HeartbeatSpec heartbeat;
  heartbeat.interval = std::chrono::milliseconds(200);
  heartbeat.timeout = std::chrono::seconds(1);
  sg.health.heartbeat = heartbeat;
  for (int u = 1; u <= units; ++u) {
    model::ServiceUnitSpec unit;
    unit.name = sg.name + "-u" + std::to_string(u);
    unit.rank = u;
    unit.vms.push_back(smallVm(unit.name + "-vm", vmIndex++));
    sg.units.push_back(unit);
  }
  for (int s = 1; s <= sis; ++s) {
    model::ServiceInstanceSpec si;
    si.name = sg.name + "-si" + std::to_string(s);
    si.rank = s;
    sg.serviceInstances.push_back(si);
  }
  return sg;
}

model::Configuration configuration() {
  model::Configuration config;
  config.cluster = agentFencedCluster("bench", kHosts);
  int vmIndex = 1;
  for (int g = 0; g < kGroups; ++g) config.serviceGroups.push_back(group(g, vmIndex));
  return config;
}

int argument(int argc, char** argv, int index, int fallback) {
  if (argc <= index) return fallback;
  const int value = std::atoi(argv[index]);
  if (value <= 0) {
    std::fprintf(stderr, "usage: bench_sim_speed [SEEDS [FAULTS [MINUTES]]] (positive integers)\n");
    std::exit(64);
  }
  return value;
}

int run(int argc, char** argv) {
  const int seeds = argument(argc, argv, 1, 5);
  sim::FuzzOptions options;
  options.faults = argument(argc, argv, 2, 20);
  options.duration = std::chrono::minutes(argument(argc, argv, 3, 10));
  if (options.duration < options.settle + std::chrono::minutes(1))
    options.duration = options.settle + std::chrono::minutes(1);

  const auto config = validated(configuration());
  std::size_t units = 0;
  std::size_t sis = 0;
  for (const auto& sg : config->serviceGroups) {
    units += sg.units.size();
    sis += sg.serviceInstances.size();
  }
  std::printf("bench_sim_speed: %d hosts, %zu service groups, %zu units (one VM each), %zu SIs\n", kHosts,
              config->serviceGroups.size(), units, sis);
  std::printf("%d seeds, %d faults each, %lld simulated s per run\n\n", seeds, options.faults,
              static_cast<long long>(options.duration.count() / 1000));
  std::printf("%6s %12s %10s %14s %10s %13s %10s %14s %10s\n", "seed", "simulated s", "wall s", "sim s / wall s",
              "cpu s", "sim s / cpu s", "events", "events / wall s", "violations");

  double simulated = 0;
  double wall = 0;
  double cpu = 0;
  std::uint64_t events = 0;
  std::vector<double> speeds;
  for (int seed = 1; seed <= seeds; ++seed) {
    const model::Scenario scenario = sim::randomScenario(*config, static_cast<std::uint64_t>(seed), options);
    const double start = wallSeconds();
    const double startCpu = cpuSeconds();
    const sim::RunResult result = sim::runScenario(config, scenario, {.requireRecovery = false});
    const double seconds = wallSeconds() - start;
    const double cpuUsed = cpuSeconds() - startCpu;
    simulated += result.simulatedSeconds;
    wall += seconds;
    cpu += cpuUsed;
    events += result.events;
    speeds.push_back(result.simulatedSeconds / seconds);
    std::printf("%6d %12.0f %10.3f %14.0f %10.3f %13.0f %10llu %14.0f %10zu\n", seed, result.simulatedSeconds, seconds,
                result.simulatedSeconds / seconds, cpuUsed, result.simulatedSeconds / cpuUsed,
                static_cast<unsigned long long>(result.events), static_cast<double>(result.events) / seconds,
                result.violations.size());
  }
  std::printf("%6s %12.0f %10.3f %14.0f %10.3f %13.0f %10llu %14.0f\n", "total", simulated, wall, simulated / wall, cpu,
              simulated / cpu, static_cast<unsigned long long>(events), static_cast<double>(events) / wall);
  std::printf("\nsimulated s per wall s: median %.0f, slowest seed %.0f (aim: over 1000)\n", quantile(speeds, 0.5),
              quantile(speeds, 0.0));
  return 0;
}

}  // namespace
}  // namespace kvm_amf::bench

int main(int argc, char** argv) { return kvm_amf::bench::run(argc, argv); }
