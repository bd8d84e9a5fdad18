// amf-testnode: a node manager on the real Corosync group, with the real event loop, state store
// and fence command, and simulated VMs (vmm-adapter/sim) in place of libvirt. The Corosync tests
// and benchmarks run one per lab host; it writes what it sees to a journal (JSON lines) and a
// status file, and takes commands from a FIFO.
//
//   amf-testnode --name NODE --config FILE... --dir DIR [--vm-start MS] [--vm-dir DIR]
//
// DIR/state     the state store
// DIR/journal   one JSON object a line: view, synced, decision, report, reply, vm, state-refused
// DIR/status    the current view and state (JSON), rewritten every 100 ms
// DIR/control   FIFO; lines: "admin WORDS", "burst N WORDS" (N commands at once), "stream N WORDS"
//               (N commands one after the other, each sent when the previous one is answered),
//               "bench-expect N" (count N benchmark decisions, then journal "bench" with the rate),
//               "bench N SIZE" (the director multicasts N decisions of about SIZE bytes at once),
//               "quit"
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "file_host.h"
#include "kvm_amf/amf/config/loader.h"
#include "kvm_amf/amf/engine/codec.h"
#include "kvm_amf/amf/engine/engine.h"
#include "kvm_amf/amf/node/disk_state_store.h"
#include "kvm_amf/amf/node/node_manager.h"
#include "kvm_amf/cluster/command_fence_agent.h"
#include "kvm_amf/cluster/corosync_group.h"
#include "kvm_amf/common/event_loop.h"
#include "kvm_amf/common/overloaded.h"
#include "kvm_amf/vmm/sim_host.h"
#include "lab_node.h"

namespace kvm_amf {
namespace {

using nlohmann::json;

// Benchmark decisions answer admin requests nobody sent: ids from here on.
constexpr std::uint64_t kBenchId = std::uint64_t{1} << 60;

class Journal : public node::NodeObserver, public vmm::SimTruthObserver {
 public:
  Journal(Scheduler& clock, const std::string& path) : lines_(clock, path) {}

  void write(json line) { lines_.write(std::move(line)); }

  void onView(const engine::View& view) override {
    write({{"ev", "view"},
           {"members", view.group},
           {"hosts", view.hosts},
           {"quorate", view.quorate},
           {"director", engine::directorOf(view)}});
  }
  // Counts benchmark decisions; journals "bench" once `expected` have been applied.
  void expectBench(long expected) {
    benchExpected_ = expected;
    benchCount_ = 0;
  }

  void onApplied(const engine::Envelope& message, const engine::ClusterState& state) override {
    std::visit(
        Overloaded{
            [&](const engine::Decision& d) {
              const auto* reply = d.actions.empty() ? nullptr : std::get_if<engine::AdminReply>(&d.actions[0]);
              if (reply && reply->id >= kBenchId) {
                countBench();
                return;
              }
              json actions = json::array();
              for (const auto& action : d.actions) actions.push_back(engine::describe(action));
              write({{"ev", "decision"}, {"seq", state.decisions}, {"director", d.director}, {"actions", actions}});
            },
            [&](const engine::Report& r) {
              write({{"ev", "report"}, {"what", engine::describe(r)}});
            },
            [](const auto&) {},
        },
        message);
  }
  void onSynced(const engine::ClusterState& state) override {
    write({{"ev", "synced"},
           {"generation", state.generation},
           {"decisions", state.decisions},
           {"applied", state.applied}});
  }
  void onVmRunning(const std::string& vm, const std::string&, bool running) override {
    write({{"ev", "vm"}, {"vm", vm}, {"running", running}});
  }
  void onGuestHa(const std::string&, const std::string&, const std::string&, std::optional<model::HaState>) override {}
  void onGuestHung(const std::string&, const std::string&, bool) override {}

 private:
  void countBench() {
    const auto now = std::chrono::steady_clock::now();
    if (benchCount_++ == 0) benchFirst_ = now;
    if (benchCount_ != benchExpected_) return;
    const double seconds = std::chrono::duration<double>(now - benchFirst_).count();
    write({{"ev", "bench"},
           {"count", benchCount_},
           {"seconds", seconds},
           {"per_second", seconds > 0 ? static_cast<double>(benchCount_ - 1) / seconds : 0.0}});
  }

  testing::JsonJournal lines_;
  long benchExpected_ = 0;
  long benchCount_ = 0;
  std::chrono::steady_clock::time_point benchFirst_;
};

json statusOf(const node::NodeManager& manager, const cluster::CorosyncGroup& group,
              const node::DiskStateStore& store) {
  const engine::View& view = manager.view();
  json status{{"name", manager.name()},
              {"nodeId", view.self},
              {"connected", group.connected()},
              {"synced", manager.synced()},
              {"members", view.group},
              {"hosts", view.hosts},
              {"quorate", view.quorate},
              {"director", engine::directorOf(view)},
              {"malformed", manager.malformedMessages()},
              {"queued", group.queued()},
              {"storeSaves", store.saves()},
              {"storeFailures", store.failures()},
              {"storeError", store.lastError()}};
  if (const engine::ClusterState* state = manager.state()) {
    status["generation"] = state->generation;
    status["decisions"] = state->decisions;
    json nodes = json::object();
    for (const auto& [name, n] : state->nodes) {
      nodes[name] = {
          {"status", engine::nodeStatusWord(n.status)}, {"alarm", n.alarm}, {"fenceAttempts", n.fenceAttempts}};
    }
    status["nodes"] = nodes;
    json sus = json::object();
    for (const auto& [name, su] : state->sus) sus[name] = su.node;
    status["sus"] = sus;
    json sis = json::object();
    for (const auto& [name, si] : state->sis) {
      json holders = json::object();
      for (const auto& a : si.assignments) holders[a.su] = a.ha == model::HaState::kActive ? "active" : "standby";
      sis[name] = holders;
    }
    status["sis"] = sis;
  }
  return status;
}

int run(int argc, char** argv) {
  CLI::App app{"a node manager on the real Corosync group with simulated VMs (for tests)"};
  std::string name;
  std::vector<std::string> configs;
  std::string dir;
  int vmStartMs = 300;
  app.add_option("--name", name)->required();
  app.add_option("--config", configs)->required();
  app.add_option("--dir", dir)->required();
  app.add_option("--vm-start", vmStartMs);
  std::string vmDir;
  app.add_option("--vm-dir", vmDir, "keep VMs as files here (they survive this process)");
  CLI11_PARSE(app, argc, argv);

  Result<std::unique_ptr<EventLoop>> created = EventLoop::create();
  if (!created.ok()) {
    std::fprintf(stderr, "%s\n", created.error().message.c_str());
    return 1;
  }
  EventLoop& loop = *created.value();

  config::LoadResult loaded = config::loadConfigurationFiles(configs);
  if (!loaded.ok()) {
    for (const auto& error : loaded.errors) std::fprintf(stderr, "%s\n", error.str().c_str());
    return 65;
  }
  auto configuration = std::make_shared<const model::Configuration>(std::move(loaded.config));

  Journal journal(loop, dir + "/journal");
  std::optional<engine::ClusterState> initial;
  Result<std::optional<engine::ClusterState>> stored = node::DiskStateStore::load(dir + "/state");
  if (!stored.ok()) {
    std::fprintf(stderr, "amf-testnode: refusing the stored state: %s\n", stored.error().message.c_str());
    journal.write({{"ev", "state-refused"}, {"error", stored.error().message}});
  } else if (stored.value()) {
    initial = std::move(*stored.value());
    json sus = json::object();
    for (const auto& [su, runtime] : initial->sus) sus[su] = runtime.node;
    journal.write(
        {{"ev", "state-loaded"}, {"generation", initial->generation}, {"decisions", initial->decisions}, {"sus", sus}});
  } else {
    initial = engine::initialState(configuration, 1);
  }

  std::unique_ptr<cluster::CorosyncGroup> group;
  for (int attempt = 0;; ++attempt) {
    Result<std::unique_ptr<cluster::CorosyncGroup>> connected = cluster::CorosyncGroup::connect(loop);
    if (connected.ok()) {
      group = std::move(connected.value());
      break;
    }
    if (attempt == 300) {
      std::fprintf(stderr, "amf-testnode: %s\n", connected.error().message.c_str());
      return 69;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }

  // VMs: files in --vm-dir (they outlive this process, as libvirt's do), or simulated in memory.
  std::unique_ptr<vmm::SimHost> simHost;
  std::unique_ptr<testing::FileHost> fileHost;
  vmm::Hypervisor* hypervisor = nullptr;
  vmm::GuestChannel* guests = nullptr;
  if (vmDir.empty()) {
    simHost = std::make_unique<vmm::SimHost>(
        name, loop, vmm::SimHostTiming{Duration(vmStartMs), Duration(100), Duration(5)}, journal,
        [](std::uint64_t bound) { return bound ? static_cast<std::uint64_t>(std::rand()) % bound : 0; });
    hypervisor = simHost.get();
    guests = simHost.get();
  } else {
    fileHost = std::make_unique<testing::FileHost>(vmDir, loop, Duration(vmStartMs),
                                                   [&journal](const std::string& vm, bool running) {
                                                     journal.write({{"ev", "vm"}, {"vm", vm}, {"running", running}});
                                                   });
    hypervisor = fileHost.get();
    guests = fileHost.get();
  }
  // Corosync knows this host by its node id; the configuration must call it by the same name.
  if (auto named = group->nodeNames().find(group->localNodeId());
      named != group->nodeNames().end() && named->second != name) {
    std::fprintf(stderr, "amf-testnode: Corosync calls this host %s (node id %d), not %s\n", named->second.c_str(),
                 group->localNodeId(), name.c_str());
    return 64;
  }
  cluster::CommandFenceAgent fence(loop);
  node::DiskStateStore store(loop, dir + "/state");
  node::NodeManagerDeps deps{&loop, group.get(), &fence, hypervisor, guests, &store, &journal};
  node::NodeManager manager(name, deps, std::move(initial));
  if (Status status = manager.start(); !status.ok()) {
    std::fprintf(stderr, "amf-testnode: %s\n", status.error().message.c_str());
    return 69;
  }

  // Sends `words`; once answered, sends it again `more` times.
  std::function<void(const std::string&, int)> submit = [&](const std::string& words, int more) {
    Result<model::AdminCommand> command = model::parseAdminCommand(words);
    if (!command.ok()) {
      journal.write({{"ev", "reply"}, {"cmd", words}, {"ok", false}, {"msg", command.error().message}});
      return;
    }
    manager.submit(command.value(), [&journal, &submit, words, more](bool ok, std::string message) {
      journal.write({{"ev", "reply"}, {"cmd", words}, {"ok", ok}, {"msg", message}});
      if (more > 0) submit(words, more - 1);
    });
  };

  auto onLine = [&](const std::string& line) {
    if (line == "quit") {
      manager.stop();
      loop.stop();
    } else if (line.rfind("bench-expect ", 0) == 0) {
      journal.expectBench(std::atol(line.substr(13).c_str()));
    } else if (line.rfind("bench ", 0) == 0) {
      long count = 0;
      std::size_t size = 0;
      if (std::sscanf(line.c_str(), "bench %ld %zu", &count, &size) != 2 || !manager.isDirector()) return;
      for (long i = 0; i < count; ++i) {
        engine::Decision decision{manager.view().self,
                                  loop.now(),
                                  {engine::AdminReply{kBenchId + static_cast<std::uint64_t>(i), manager.view().self,
                                                      true, std::string(size, 'x')}}};
        (void)group->multicast(engine::encode(engine::Envelope(std::move(decision))));
      }
    } else if (line.rfind("admin ", 0) == 0) {
      submit(line.substr(6), 0);
    } else if (line.rfind("burst ", 0) == 0 || line.rfind("stream ", 0) == 0) {
      const std::size_t first = line.find(' ');
      const std::size_t space = line.find(' ', first + 1);
      const int count = std::atoi(line.substr(first + 1, space - first - 1).c_str());
      if (space == std::string::npos || count <= 0) return;
      if (line[0] == 'b') {
        for (int i = 0; i < count; ++i) submit(line.substr(space + 1), 0);
      } else {
        submit(line.substr(space + 1), count - 1);
      }
    }
  };
  testing::LabNodeInput input(loop, dir + "/control", onLine, [&] {
    manager.stop();
    loop.stop();
  });

  std::function<void()> writeStatus = [&] {
    testing::writeAtomically(dir + "/status", statusOf(manager, *group, store).dump() + "\n");
    loop.after(Duration(100), writeStatus);
  };
  writeStatus();

  loop.run();
  testing::writeAtomically(dir + "/status", statusOf(manager, *group, store).dump() + "\n");
  return 0;
}

}  // namespace
}  // namespace kvm_amf

int main(int argc, char** argv) { return kvm_amf::run(argc, argv); }
