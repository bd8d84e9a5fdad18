// amf-vmctl: the libvirt adapter and the guest channel of one host, driven line by line. The
// real-VM tests and benchmarks run it on a lab libvirt host (scripts/lab/libvirt-host.sh exec).
//
//   amf-vmctl --config FILE... [--uri URI] --agent-dir DIR [--kvm] [--first-heartbeat-ms MS]
//             [--call-timeout-ms MS]
//
// Commands on standard input, one a line; VMs are named as in the configuration:
//   start VM | destroy VM | shutdown VM GRACE_MS | pause VM | resume VM | suspend VM | restore VM
//   reboot VM GRACE_MS | reset VM | list | stats | fds | guest VM | watch VM | unwatch VM
//   assign VM SI active|standby|quiesced [KEY=VALUE...] | unassign VM SI
//   migrate VM DEST_URI MIGRATION_URI|- DEST_AGENT_DIR|- [MAX_DOWNTIME_MS BANDWIDTH_MIBPS TIMEOUT_MS]
//   quit
// Standard output: one JSON object a line, each with "t" (the loop's real time, ms):
//   {"reply": COMMAND, "vm": VM, "ok": bool, "error": TEXT, "ms": DURATION, ...}  a command's outcome
//   {"ev": "vm", "vm": VM, "kind": "crashed"|"watchdog"|"io-error"}               hypervisor events
//   {"ev": "hung"|"unhealthy"|"heartbeat"|"hello"|"rebooted"|"announced"|"progress", "vm": VM, ...}
// `start`, `restore`, `resume`, `reboot` and `reset` (re)start the watch of the VM's heartbeat when
// its service group has one (with the first heartbeat's grace); `destroy`, `shutdown`, `suspend`
// and `pause` end it, and so does `reboot` until the guest has restarted. End of input is `quit`.
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kvm_amf/amf/config/loader.h"
#include "kvm_amf/common/event_loop.h"
#include "kvm_amf/vmm/libvirt_hypervisor.h"
#include "kvm_amf/vmm/socket_guest_channel.h"

namespace kvm_amf {
namespace {

using nlohmann::json;

struct VmConfig {
  model::VmSpec spec;
  std::optional<model::WatchdogSpec> watchdog;
  std::optional<model::HeartbeatSpec> heartbeat;
};

class Controller : public vmm::HypervisorListener,
                   public vmm::GuestListener,
                   public vmm::GuestObserver,
                   public vmm::LibvirtObserver {
 public:
  Controller(EventLoop& loop, std::map<std::string, VmConfig> vms, vmm::LibvirtHypervisor& hypervisor,
             vmm::SocketGuestChannel& guests)
      : loop_(loop), vms_(std::move(vms)), hypervisor_(hypervisor), guests_(guests) {}

  void emit(json line) {
    line["t"] = loop_.now().count();
    const std::string text = line.dump() + "\n";
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  }

  void onVmEvent(const std::string& vm, vmm::VmEvent event) override {
    const char* kind = event == vmm::VmEvent::kCrashed    ? "crashed"
                       : event == vmm::VmEvent::kWatchdog ? "watchdog"
                                                          : "io-error";
    emit({{"ev", "vm"}, {"vm", vm}, {"kind", kind}});
  }
  void onGuestHung(const std::string& vm) override { emit({{"ev", "hung"}, {"vm", vm}}); }
  void onGuestUnhealthy(const std::string& vm) override { emit({{"ev", "unhealthy"}, {"vm", vm}}); }
  void onHeartbeat(const std::string& vm, std::uint64_t seq, bool healthy) override {
    emit({{"ev", "heartbeat"}, {"vm", vm}, {"seq", seq}, {"healthy", healthy}});
  }
  void onHello(const std::string& vm, const std::string& agentVersion) override {
    emit({{"ev", "hello"}, {"vm", vm}, {"agent", agentVersion}});
  }
  void onRebooted(const std::string& vm) override { emit({{"ev", "rebooted"}, {"vm", vm}}); }
  void onAnnounced(const std::string& vm, const Status& status) override {
    emit({{"ev", "announced"}, {"vm", vm}, {"ok", status.ok()}, {"error", status.ok() ? "" : status.error().message}});
  }

  // One command line; false for `quit`.
  bool command(const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> words;
    for (std::string word; in >> word;) words.push_back(word);
    if (words.empty()) return true;
    const std::string& verb = words[0];
    const std::string vm = words.size() > 1 ? words[1] : "";
    auto replyTo = [this, verb, vm, started = loop_.now()](json extra = json::object()) {
      return [this, verb, vm, started, extra](Status status) {
        json reply = extra;
        reply["reply"] = verb;
        reply["vm"] = vm;
        reply["ok"] = status.ok();
        reply["error"] = status.ok() ? "" : status.error().message;
        reply["ms"] = (loop_.now() - started).count();
        emit(reply);
      };
    };
    // Answers the command with an error; true, to return from command().
    auto fail = [&](const std::string& why) {
      replyTo()(Status(Error{why}));
      return true;
    };
    auto needVm = [&](std::size_t arguments) {
      if (words.size() != arguments + 1) {
        fail("'" + verb + "' takes " + std::to_string(arguments) + " argument(s)");
        return false;
      }
      if (!vms_.contains(vm)) {
        fail("no VM '" + vm + "' in the configuration");
        return false;
      }
      return true;
    };
    if (verb == "quit") return false;
    if (verb == "start") {
      if (!needVm(1)) return true;
      const VmConfig& config = vms_.at(vm);
      hypervisor_.start(config.spec, config.watchdog, watchAfter(vm, replyTo()));
    } else if (verb == "destroy") {
      if (!needVm(1)) return true;
      guests_.unwatch(vm);
      hypervisor_.destroy(vm, replyTo());
    } else if (verb == "shutdown") {
      if (!needVm(2)) return true;
      guests_.unwatch(vm);
      hypervisor_.shutdown(vm, Duration(std::stoll(words[2])), replyTo());
    } else if (verb == "pause") {
      if (!needVm(1)) return true;
      guests_.unwatch(vm);  // a paused guest sends nothing, deliberately
      hypervisor_.pause(vm, replyTo());
    } else if (verb == "resume") {
      if (needVm(1)) hypervisor_.resume(vm, watchAfter(vm, replyTo()));
    } else if (verb == "suspend") {
      if (!needVm(1)) return true;
      guests_.unwatch(vm);
      hypervisor_.suspend(vm, Duration(60'000), replyTo());
    } else if (verb == "restore") {
      if (!needVm(1)) return true;
      hypervisor_.restore(vm, Duration(60'000), watchAfter(vm, replyTo()));
    } else if (verb == "reboot") {
      if (!needVm(2)) return true;
      guests_.unwatch(vm);
      hypervisor_.reboot(vm, Duration(std::stoll(words[2])), watchAfter(vm, replyTo()));
    } else if (verb == "reset") {
      if (needVm(1)) hypervisor_.reset(vm, watchAfter(vm, replyTo()));
    } else if (verb == "watch") {
      if (!needVm(1)) return true;
      if (!vms_.at(vm).heartbeat) return fail("the service group of '" + vm + "' has no heartbeat");
      guests_.watch(vm, *vms_.at(vm).heartbeat);
      replyTo()(Status::success());
    } else if (verb == "unwatch") {
      if (!needVm(1)) return true;
      guests_.unwatch(vm);
      replyTo()(Status::success());
    } else if (verb == "list") {
      hypervisor_.listRunning([this, done = replyTo()](Result<std::vector<std::string>> running) {
        if (!running.ok()) return done(running.error());
        emit({{"reply", "list-vms"}, {"vms", running.value()}});
        done(Status::success());
      });
    } else if (verb == "stats") {
      hypervisor_.stats([this, done = replyTo()](Result<std::vector<vmm::VmStats>> stats) {
        if (!stats.ok()) return done(stats.error());
        json all = json::array();
        for (const auto& s : stats.value()) {
          json disks = json::array();
          for (const auto& d : s.disks) {
            disks.push_back({{"name", d.name},
                             {"readBytes", d.readBytes},
                             {"writeBytes", d.writeBytes},
                             {"readRequests", d.readRequests},
                             {"writeRequests", d.writeRequests},
                             {"errors", d.errors}});
          }
          json nics = json::array();
          for (const auto& n : s.nics) {
            nics.push_back({{"name", n.name},
                            {"rxBytes", n.rxBytes},
                            {"txBytes", n.txBytes},
                            {"rxPackets", n.rxPackets},
                            {"txPackets", n.txPackets},
                            {"rxDrops", n.rxDrops},
                            {"txDrops", n.txDrops}});
          }
          all.push_back({{"vm", s.vm},
                         {"running", s.running},
                         {"cpuTimeNs", s.cpuTimeNs},
                         {"memoryKiB", s.memoryKiB},
                         {"memoryRssKiB", s.memoryRssKiB},
                         {"disks", disks},
                         {"nics", nics}});
        }
        emit({{"reply", "stats-vms"}, {"vms", all}});
        done(Status::success());
      });
    } else if (verb == "fds") {
      std::size_t count = 0;
      for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++count;
      replyTo({{"fds", count - 1}})(Status::success());  // less the iterator's own
    } else if (verb == "guest") {
      if (!needVm(1)) return true;
      const auto stats = guests_.stats(vm);
      if (!stats) return fail("the channel knows nothing of '" + vm + "'");
      replyTo({{"connected", stats->connected},
               {"hellos", stats->hellos},
               {"heartbeats", stats->heartbeats},
               {"lastSeq", stats->lastSeq},
               {"missedHeartbeats", stats->missedHeartbeats},
               {"agentRestarts", stats->agentRestarts},
               {"hangs", stats->hangs},
               {"badLines", stats->badLines},
               {"oversizedLines", stats->oversizedLines},
               {"unexpectedAcks", stats->unexpectedAcks},
               {"acks", stats->acks}})(Status::success());
    } else if (verb == "assign") {
      if (words.size() < 4 || !vms_.contains(vm)) return fail("usage: assign VM SI active|standby|quiesced [K=V...]");
      const std::map<std::string, model::HaState> states = {{"active", model::HaState::kActive},
                                                            {"standby", model::HaState::kStandby},
                                                            {"quiesced", model::HaState::kQuiesced}};
      if (!states.contains(words[3])) return fail("no HA state '" + words[3] + "'");
      std::map<std::string, std::string> attributes;
      for (std::size_t i = 4; i < words.size(); ++i) {
        const auto eq = words[i].find('=');
        if (eq == std::string::npos || eq == 0) return fail("attribute '" + words[i] + "' is not KEY=VALUE");
        attributes[words[i].substr(0, eq)] = words[i].substr(eq + 1);
      }
      guests_.assign(vm, words[2], states.at(words[3]), attributes, replyTo({{"si", words[2]}}));
    } else if (verb == "unassign") {
      if (words.size() != 3 || !vms_.contains(vm)) return fail("usage: unassign VM SI");
      guests_.unassign(vm, words[2], replyTo({{"si", words[2]}}));
    } else if (verb == "migrate") {
      if (words.size() != 5 && words.size() != 8) {
        return fail("usage: migrate VM DEST_URI MIGRATION_URI|- DEST_AGENT_DIR|- [DOWNTIME_MS MIBPS TIMEOUT_MS]");
      }
      if (!vms_.contains(vm)) return fail("no VM '" + vm + "' in the configuration");
      vmm::MigrationOptions options;
      options.destinationUri = words[2];
      if (words[3] != "-") options.migrationUri = words[3];
      if (words[4] != "-") options.destinationAgentSocketDir = words[4];
      if (words.size() == 8) {
        options.maxDowntime = Duration(std::stoll(words[5]));
        options.bandwidthMiBps = std::stoull(words[6]);
        options.timeout = Duration(std::stoll(words[7]));
      }
      hypervisor_.migrate(
          vm, options,
          [this, vm](const vmm::MigrationProgress& p) {
            emit({{"ev", "progress"},
                  {"vm", vm},
                  {"elapsedMs", p.elapsed.count()},
                  {"dataTotal", p.dataTotal},
                  {"dataProcessed", p.dataProcessed},
                  {"dataRemaining", p.dataRemaining},
                  {"iteration", p.memoryIteration}});
          },
          [this, vm, done = replyTo()](Result<vmm::MigrationOutcome> outcome) {
            if (!outcome.ok()) return done(outcome.error());
            guests_.unwatch(vm);  // it runs on the other host now
            emit({{"reply", "migrate-outcome"},
                  {"vm", vm},
                  {"totalMs", outcome.value().total.count()},
                  {"downtimeMs", outcome.value().downtime.count()},
                  {"dataTransferred", outcome.value().dataTransferred}});
            done(Status::success());
          });
    } else {
      fail("unknown command '" + verb + "'");
    }
    return true;
  }

 private:
  // `done`, after (re)starting the watch of the VM's heartbeat on success: the guest (re)boots or
  // resumes, with the first heartbeat's grace.
  vmm::Done watchAfter(const std::string& vm, vmm::Done done) {
    return [this, vm, done = std::move(done)](Status status) {
      if (status.ok() && vms_.at(vm).heartbeat) guests_.watch(vm, *vms_.at(vm).heartbeat);
      done(status);
    };
  }

  EventLoop& loop_;
  std::map<std::string, VmConfig> vms_;
  vmm::LibvirtHypervisor& hypervisor_;
  vmm::SocketGuestChannel& guests_;
};

int run(int argc, char** argv) {
  CLI::App app{"the libvirt adapter and guest channel of one host, driven from standard input (for tests)"};
  std::vector<std::string> configs;
  std::string uri = "qemu:///system";
  std::string agentDir;
  bool kvm = false;
  long firstHeartbeatMs = 120'000;
  long callTimeoutMs = 10'000;
  app.add_option("--config", configs, "configuration files")->required();
  app.add_option("--uri", uri, "libvirt URI");
  app.add_option("--agent-dir", agentDir, "the directory of the VMs' agent sockets")->required();
  app.add_flag("--kvm", kvm, "domain type kvm (default: qemu, TCG)");
  app.add_option("--first-heartbeat-ms", firstHeartbeatMs, "grace for a guest's first heartbeat");
  app.add_option("--call-timeout-ms", callTimeoutMs, "per libvirt call");
  CLI11_PARSE(app, argc, argv);

  config::LoadResult loaded = config::loadConfigurationFiles(configs);
  if (!loaded.ok()) {
    for (const auto& error : loaded.errors) std::fprintf(stderr, "%s\n", error.message.c_str());
    return 2;
  }
  std::map<std::string, VmConfig> vms;
  for (const auto& sg : loaded.config.serviceGroups) {
    for (const auto& unit : sg.units) {
      for (const auto& vm : unit.vms) vms[vm.name] = {vm, sg.health.watchdog, sg.health.heartbeat};
    }
  }

  auto created = EventLoop::create();
  if (!created.ok()) {
    std::fprintf(stderr, "amf-vmctl: %s\n", created.error().message.c_str());
    return 1;
  }
  EventLoop& loop = *created.value();
  vmm::LibvirtOptions options;
  options.uri = uri;
  options.domain.kvm = kvm;
  options.domain.agentSocketDir = agentDir;
  options.callTimeout = Duration(callTimeoutMs);
  auto connected = vmm::LibvirtHypervisor::connect(loop, options);
  if (!connected.ok()) {
    std::fprintf(stderr, "amf-vmctl: %s\n", connected.error().message.c_str());
    return 1;
  }
  vmm::LibvirtHypervisor& hypervisor = *connected.value();
  vmm::SocketGuestChannelOptions channelOptions;
  channelOptions.socketDir = agentDir;
  channelOptions.firstHeartbeatTimeout = Duration(firstHeartbeatMs);
  channelOptions.logger = [](const std::string& vm, const std::string& line) {
    std::fprintf(stderr, "amf-vmctl: guest %s: %s\n", vm.c_str(), line.c_str());
  };
  vmm::SocketGuestChannel guests(loop, channelOptions);

  Controller controller(loop, std::move(vms), hypervisor, guests);
  hypervisor.setListener(&controller);
  hypervisor.setObserver(&controller);
  guests.setListener(&controller);
  guests.setObserver(&controller);

  ::fcntl(STDIN_FILENO, F_SETFL, ::fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
  std::string input;
  Status watched = loop.watch(STDIN_FILENO, [&] {
    std::array<char, 4096> buffer{};
    for (;;) {
      const ssize_t n = ::read(STDIN_FILENO, buffer.data(), buffer.size());
      if (n > 0) {
        input.append(buffer.data(), static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      loop.unwatch(STDIN_FILENO);  // end of input
      loop.stop();
      return;
    }
    for (std::size_t eol; (eol = input.find('\n')) != std::string::npos;) {
      const std::string line = input.substr(0, eol);
      input.erase(0, eol + 1);
      if (!controller.command(line)) {
        loop.unwatch(STDIN_FILENO);
        loop.stop();
        return;
      }
    }
  });
  if (!watched.ok()) {
    std::fprintf(stderr, "amf-vmctl: %s\n", watched.error().message.c_str());
    return 1;
  }
  controller.emit({{"ev", "ready"}});
  loop.run();
  return 0;
}

}  // namespace
}  // namespace kvm_amf

int main(int argc, char** argv) { return kvm_amf::run(argc, argv); }
