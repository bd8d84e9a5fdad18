#include "kvm_amf/sim/sim_cli.h"

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <ostream>

#include "kvm_amf/amf/config/loader.h"
#include "kvm_amf/amf/config/scenario_loader.h"
#include "kvm_amf/amf/model/admin_command.h"
#include "kvm_amf/amf/model/units.h"
#include "kvm_amf/sim/fuzz.h"
#include "kvm_amf/sim/world.h"

namespace kvm_amf::sim {
namespace {

constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kUsage = 64;
constexpr int kDataError = 65;

int run(const std::string& path, std::optional<std::uint64_t> seed, const std::string& format, std::ostream& out,
        std::ostream& err) {
  config::ScenarioLoadResult loaded = config::loadScenarioFile(path);
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) err << e.str() << "\n";
    err << loaded.errors.size() << (loaded.errors.size() == 1 ? " error" : " errors") << "\n";
    return kDataError;
  }
  if (seed) loaded.scenario.seed = *seed;
  auto config = std::make_shared<const model::Configuration>(std::move(loaded.config));
  RunResult result = runScenario(config, loaded.scenario);
  if (format == "json") {
    out << result.report.dump(2) << "\n";
  } else {
    out << reportText(result.report);
  }
  return result.violations.empty() && result.unmet.empty() ? kOk : kFailed;
}

// The scenario as amf-lab runs it for real: every time in milliseconds, faults as their canonical
// words plus their parts, admin steps as amf-admin's words.
nlohmann::ordered_json planOf(const model::Scenario& scenario) {
  using nlohmann::ordered_json;
  ordered_json steps = ordered_json::array();
  for (const auto& step : scenario.steps) {
    ordered_json out = {{"atMs", step.at.count()}, {"text", step.text}};
    if (const auto* fault = std::get_if<model::Fault>(&step.action)) {
      const std::string words = config::formatFault(*fault);
      out["fault"] = {{"kind", words.substr(0, words.find(' '))},
                      {"node", fault->node},
                      {"vm", fault->vm},
                      {"groups", fault->groups},
                      {"op", std::string(config::faultOpWord(fault->op))},
                      {"count", fault->count},
                      {"periodMs", fault->period.count()},
                      {"percent", fault->percent},
                      {"delayMs", fault->delay.count()},
                      {"file", fault->file}};
    } else {
      out["admin"] = model::formatAdminCommand(std::get<model::AdminCommand>(step.action));
    }
    steps.push_back(std::move(out));
  }
  ordered_json maxOutage = ordered_json::object();
  for (const auto& [si, bound] : scenario.expect.maxOutage) maxOutage[si] = bound.count();
  const auto& t = scenario.timing;
  return {{"config", scenario.config},
          {"seed", scenario.seed},
          {"untilMs", scenario.until.count()},
          {"timing",
           {{"vmStartMs", t.vmStart.count()},
            {"vmStopMs", t.vmStop.count()},
            {"migrateMs", t.migrate.count()},
            {"fenceMs", t.fence.count()},
            {"bootMs", t.boot.count()}}},
          {"steps", steps},
          {"expect", {{"final", scenario.expect.final}, {"maxOutageMs", maxOutage}}}};
}

int plan(const std::string& path, std::ostream& out, std::ostream& err) {
  config::ScenarioLoadResult loaded = config::loadScenarioFile(path);
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) err << e.str() << "\n";
    err << loaded.errors.size() << (loaded.errors.size() == 1 ? " error" : " errors") << "\n";
    return kDataError;
  }
  out << planOf(loaded.scenario).dump(2) << "\n";
  return kOk;
}

int fuzz(const std::vector<std::string>& files, std::uint64_t seeds, std::uint64_t firstSeed, int faults,
         const std::string& duration, const std::string& keep, std::ostream& out, std::ostream& err,
         const std::function<double()>& wallSeconds) {
  config::LoadResult loaded = config::loadConfigurationFiles(files);
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) err << e.str() << "\n";
    return kDataError;
  }
  if (!loaded.config.cluster) {
    err << "amf-sim fuzz: the configuration needs a Cluster document\n";
    return kDataError;
  }
  FuzzOptions options;
  options.faults = faults;
  auto parsed = model::parseDuration(duration);
  if (!parsed || *parsed < options.settle + Duration(60000)) {
    err << "amf-sim fuzz: --duration must be a duration of at least "
        << model::formatDuration(options.settle + Duration(60000)) << "\n";
    return kUsage;
  }
  options.duration = *parsed;
  std::vector<std::string> absolute;
  for (const auto& f : files) absolute.push_back(std::filesystem::absolute(f).string());
  auto config = std::make_shared<const model::Configuration>(std::move(loaded.config));
  const double start = wallSeconds();
  nlohmann::ordered_json violations = nlohmann::ordered_json::array();
  double simulated = 0;
  for (std::uint64_t seed = firstSeed; seed < firstSeed + seeds; ++seed) {
    model::Scenario scenario = randomScenario(*config, seed, options);
    RunResult result = runScenario(config, scenario, RunOptions{.requireRecovery = true});
    simulated += result.simulatedSeconds;
    for (const auto& v : result.violations) {
      violations.push_back({{"seed", seed}, {"invariant", v.invariant}, {"tMs", v.at.count()}, {"detail", v.detail}});
    }
    if (!result.violations.empty() && !keep.empty()) {
      std::filesystem::create_directories(keep);
      std::ofstream(std::filesystem::path(keep) / ("seed-" + std::to_string(seed) + ".yaml"))
          << scenarioYaml(scenario, absolute);
    }
  }
  nlohmann::ordered_json report = {{"runs", seeds},
                                   {"violations", violations},
                                   {"simulatedSeconds", simulated},
                                   {"wallSeconds", wallSeconds() - start}};
  out << report.dump(2) << "\n";
  return violations.empty() ? kOk : kFailed;
}

}  // namespace

int runSimCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
              const std::function<double()>& wallSeconds) {
  CLI::App app{"amf-sim: the kvm-amf control logic in simulated time", "amf-sim"};
  app.require_subcommand(1, 1);
  std::string format = "text";

  std::string scenarioPath;
  std::optional<std::uint64_t> seed;
  CLI::App* runCommand = app.add_subcommand("run", "run a scenario file");
  runCommand->add_option("scenario", scenarioPath, "scenario YAML")->required();
  runCommand->add_option("--seed", seed, "override the scenario's seed");
  runCommand->add_option("-o,--output", format, "output format")->check(CLI::IsMember({"json", "text"}));

  std::string planPath;
  CLI::App* planCommand =
      app.add_subcommand("plan", "print a scenario as amf-lab runs it (JSON): its config, times and steps");
  planCommand->add_option("scenario", planPath, "scenario YAML")->required();

  std::vector<std::string> files;
  std::uint64_t seeds = 100;
  std::uint64_t firstSeed = 1;
  int faults = 20;
  std::string duration = "10m";
  std::string keep;
  std::string fuzzFormat = "json";
  CLI::App* fuzzCommand = app.add_subcommand("fuzz", "run random fault schedules and check the invariants");
  fuzzCommand->add_option("-f,--file", files, "configuration YAML files")->required()->expected(1, -1);
  fuzzCommand->add_option("--seeds", seeds, "how many schedules")->check(CLI::Range(1, 10'000'000));
  fuzzCommand->add_option("--first-seed", firstSeed, "the first seed");
  fuzzCommand->add_option("--faults", faults, "faults per schedule")->check(CLI::Range(0, 10'000));
  fuzzCommand->add_option("--duration", duration, "simulated time per schedule (e.g. 10m)");
  fuzzCommand->add_option("--keep", keep, "write each violating schedule to DIR/seed-N.yaml");
  fuzzCommand->add_option("-o,--output", fuzzFormat, "output format")->check(CLI::IsMember({"json"}));

  std::vector<std::string> storage = {"amf-sim"};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<const char*> argv;
  for (const auto& a : storage) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {
      app.exit(e, out, err);
      return kOk;
    }
    err << "amf-sim: " << e.what() << "\nRun 'amf-sim --help' for usage.\n";
    return kUsage;
  }
  if (runCommand->parsed()) return run(scenarioPath, seed, format, out, err);
  if (planCommand->parsed()) return plan(planPath, out, err);
  return fuzz(files, seeds, firstSeed, faults, duration, keep, out, err, wallSeconds);
}

}  // namespace kvm_amf::sim
