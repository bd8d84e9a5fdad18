// amfd: the kvm-amf node manager of one host (docs/amfd.md). Options on the command line, or in
// a file (--conf FILE, `key = value` lines with the long option names).
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kvm_amf/amf/model/units.h"
#include "kvm_amf/daemon/amfd.h"

namespace {

int run(int argc, char** argv) {
  CLI::App app{"amfd: the kvm-amf node manager of one host"};
  app.set_config("--conf", "", "a file of options (key = value, the long option names)");
  kvm_amf::daemon::AmfdOptions options;
  options.admin.ipcPath = "/run/kvm-amf/admin.sock";
  options.admin.eventsPath = "/run/kvm-amf/events.sock";
  options.libvirt.domain.agentSocketDir = "/run/kvm-amf/agents";
  long firstHeartbeatS = 120;
  long corosyncWaitS = 30;
  long shutdownGraceS = 60;
  long rebootGraceS = 60;
  std::string metrics = options.metricsAddress;
  std::string statsInterval = "15s";
  std::string notifyTimeout = "5s";
  std::vector<std::string> webhooks;
  std::vector<std::string> commands;
  app.add_option("--node", options.node, "this host's name in the Cluster document")->required();
  app.add_option("--config", options.configFiles, "the cluster's YAML files")->required();
  app.add_option("--state-dir", options.stateDir, "where the replicated state is kept")->capture_default_str();
  app.add_option("--admin-socket", options.admin.ipcPath, "the admin API's socket")->capture_default_str();
  app.add_option("--admin-group", options.admin.group, "a group allowed to use the admin API besides root");
  app.add_option("--events-socket", options.admin.eventsPath, "the event stream's socket")->capture_default_str();
  app.add_option("--admin-tcp", options.admin.tcpEndpoint, "tcp://ADDR:PORT for remote administration (CURVE)");
  app.add_option("--curve-secret-key", options.admin.curveSecretKey, "the server's CURVE secret key (Z85)");
  app.add_option("--curve-client-key", options.admin.curveClientKeys, "a client's CURVE public key (Z85)");
  app.add_option("--libvirt-uri", options.libvirt.uri, "libvirt's URI")->capture_default_str();
  app.add_option("--agent-dir", options.libvirt.domain.agentSocketDir, "the guest agents' sockets")
      ->capture_default_str();
  app.add_flag("--kvm", options.libvirt.domain.kvm, "domain type kvm (default: qemu, TCG)");
  app.add_option("--first-heartbeat", firstHeartbeatS, "seconds a guest may take to its first heartbeat")
      ->capture_default_str();
  app.add_option("--corosync-wait", corosyncWaitS, "seconds to wait for Corosync at start")->capture_default_str();
  app.add_option("--vm-shutdown-grace", shutdownGraceS, "seconds a guest may take to power off on vm shutdown")
      ->capture_default_str();
  app.add_option("--vm-reboot-grace", rebootGraceS, "seconds a guest may take to reboot on vm reboot before a reset")
      ->capture_default_str();
  app.add_option("--metrics", metrics, "the metrics endpoint, ADDR:PORT, or off")
      ->capture_default_str()
      ->envname("AMFD_METRICS");
  app.add_option("--stats-interval", statsInterval, "how often the VMs' statistics are collected (0: never)")
      ->capture_default_str()
      ->envname("AMFD_STATS_INTERVAL");
  app.add_option("--qemu-pid-dir", options.qemuPidDir, "libvirt's QEMU pid files (for the QEMU threads' figures)")
      ->capture_default_str();
  app.add_option("--notify", webhooks, "CLASS=http://HOST[:PORT]/PATH: POST each event of CLASS (or all) there");
  app.add_option("--notify-command", commands, "CLASS=COMMAND: run COMMAND with each event of CLASS on stdin");
  app.add_option("--notify-timeout", notifyTimeout, "how long one notification may take")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  options.metricsAddress = metrics == "off" ? "" : metrics;
  for (auto [text, target] :
       {std::pair{&statsInterval, &options.statsInterval}, std::pair{&notifyTimeout, &options.notify.timeout}}) {
    const std::optional<kvm_amf::Duration> parsed =
        *text == "0" ? kvm_amf::Duration(0) : kvm_amf::model::parseDuration(*text);
    if (!parsed) {
      std::fprintf(stderr, "amfd: '%s' is not a duration (300ms, 15s, 1m)\n", text->c_str());
      return 64;
    }
    *target = *parsed;
  }
  for (auto [specs, command] : {std::pair{&webhooks, false}, std::pair{&commands, true}}) {
    for (const auto& spec : *specs) {
      kvm_amf::Result<kvm_amf::monitor::NotifyTarget> target = kvm_amf::monitor::parseNotifyTarget(spec, command);
      if (!target.ok()) {
        std::fprintf(stderr, "amfd: %s %s\n", command ? "--notify-command" : "--notify",
                     target.error().message.c_str());
        return 64;
      }
      options.notify.targets.push_back(std::move(target).value());
    }
  }
  options.version = KVM_AMF_VERSION;
  // Log lines start with the time (UTC, milliseconds), as journals and log collectors expect.
  options.log = [](const std::string& line) {
    const auto now = std::chrono::system_clock::now();
    const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
    std::fprintf(stderr, "%s.%03lldZ amfd: %s\n", stamp, static_cast<long long>(ms), line.c_str());
  };
  options.firstHeartbeatTimeout = std::chrono::seconds(firstHeartbeatS);
  options.vmLimits.shutdownGrace = std::chrono::seconds(shutdownGraceS);
  options.vmLimits.rebootGrace = std::chrono::seconds(rebootGraceS);

  // SIGTERM and SIGINT end amfd cleanly (the VMs keep running); read on the loop.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto created = kvm_amf::EventLoop::create();
  if (!created.ok()) {
    std::fprintf(stderr, "amfd: %s\n", created.error().message.c_str());
    return 1;
  }
  kvm_amf::EventLoop& loop = *created.value();
  std::unique_ptr<kvm_amf::daemon::Amfd> amfd;
  kvm_amf::daemon::StartError error{kvm_amf::daemon::StartError::Kind::kUnavailable, ""};
  // Corosync may still be starting: services missing are tried again for --corosync-wait.
  for (long attempt = 0;; ++attempt) {
    amfd = kvm_amf::daemon::Amfd::start(loop, options, error);
    if (amfd || error.kind == kvm_amf::daemon::StartError::Kind::kConfiguration) break;
    if (attempt >= corosyncWaitS * 10) break;
    if (attempt == 0) std::fprintf(stderr, "amfd: %s; waiting\n", error.message.c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!amfd) {
    std::fprintf(stderr, "amfd: %s\n", error.message.c_str());
    return error.kind == kvm_amf::daemon::StartError::Kind::kConfiguration ? 65 : 69;
  }
  const int signalFd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
  (void)loop.watch(signalFd, [&] {
    signalfd_siginfo info{};
    while (read(signalFd, &info, sizeof info) == sizeof info) {
      std::fprintf(stderr, "amfd: signal %u, stopping (VMs keep running)\n", info.ssi_signo);
      loop.stop();
    }
  });
  loop.run();
  loop.unwatch(signalFd);
  close(signalFd);
  amfd.reset();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
