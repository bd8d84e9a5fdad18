#include "kvm_amf/daemon/amfd.h"

#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <optional>

#include "kvm_amf/amf/config/loader.h"
#include "kvm_amf/amf/node/disk_state_store.h"
#include "kvm_amf/amf/node/node_manager.h"
#include "kvm_amf/ckpt/checkpoint_service.h"
#include "kvm_amf/ckpt/disk_checkpoint_log.h"
#include "kvm_amf/cluster/command_fence_agent.h"
#include "kvm_amf/cluster/corosync_group.h"
#include "kvm_amf/daemon/admin_service.h"
#include "kvm_amf/daemon/checkpoint_requests.h"
#include "kvm_amf/daemon/guest_checkpoints.h"
#include "kvm_amf/monitor/metrics.h"
#include "kvm_amf/monitor/process_metrics.h"
#include "kvm_amf/monitor/state_metrics.h"
#include "kvm_amf/monitor/vm_metrics.h"
#include "kvm_amf/vmm/socket_guest_channel.h"

namespace kvm_amf::daemon {

namespace {

void logToStderr(const std::string& line) { std::fprintf(stderr, "amfd: %s\n", line.c_str()); }

// The node manager has one observer: this passes what it sees to several, in order.
class Observers : public node::NodeObserver {
 public:
  explicit Observers(std::vector<node::NodeObserver*> observers) : observers_(std::move(observers)) {}
  void onView(const engine::View& view) override {
    for (auto* o : observers_) o->onView(view);
  }
  void onApplied(const engine::Envelope& message, const engine::ClusterState& state) override {
    for (auto* o : observers_) o->onApplied(message, state);
  }
  void onSynced(const engine::ClusterState& state) override {
    for (auto* o : observers_) o->onSynced(state);
  }

 private:
  std::vector<node::NodeObserver*> observers_;
};

// The kind of an admin request, for amf_admin_request_duration_seconds.
const std::vector<std::string> kRequestKinds = {"query", "command", "apply", "diff", "delete"};
std::string requestKind(const admin::proto::Request& request) {
  if (request.has_command()) return "command";
  if (request.has_apply()) return "apply";
  if (request.has_diff()) return "diff";
  if (request.has_delete_()) return "delete";
  return "query";
}

// Times each request from its arrival to its answer. The answer may come after this handler is
// gone (the server is closed first): it then touches only the clock and the metrics, which outlive
// every request.
class TimedAdminHandler : public admin::AdminHandler {
 public:
  TimedAdminHandler(Scheduler& scheduler, admin::AdminHandler& inner, monitor::ProcessMetrics& metrics)
      : scheduler_(scheduler), inner_(inner), metrics_(metrics) {}
  void onRequest(const admin::proto::Request& request, const admin::Peer& peer,
                 std::function<void(admin::proto::Reply)> reply) override {
    inner_.onRequest(request, peer,
                     [scheduler = &scheduler_, metrics = &metrics_, kind = requestKind(request),
                      start = scheduler_.now(), reply = std::move(reply)](admin::proto::Reply answer) {
                       metrics->observeAdminRequest(kind, scheduler->now() - start);
                       reply(std::move(answer));
                     });
  }

 private:
  Scheduler& scheduler_;
  admin::AdminHandler& inner_;
  monitor::ProcessMetrics& metrics_;
};

}  // namespace

namespace {

constexpr Duration kMetricsRetry = Duration(10'000);

// Serves the metrics at `address`. While it cannot be bound (another process holds it, or an amfd
// that just stopped) amfd runs on without the endpoint and tries again every 10 s: metrics must not
// keep a host's VMs from being managed. Loop thread.
void serveMetrics(Amfd::Parts& parts, const std::string& address, const std::function<void(const std::string&)>& log,
                  bool retrying);

}  // namespace

// Declared in the order they are built; destroyed in reverse: the admin API closes first, the
// node manager and the checkpoint service leave their groups before their parts go, the
// collectors go before what they read.
struct Amfd::Parts {
  explicit Parts(EventLoop& l) : loop(l) {}
  ~Parts() {
    if (metricsRetry != 0) loop.cancel(metricsRetry);
  }
  Parts(const Parts&) = delete;
  Parts& operator=(const Parts&) = delete;

  EventLoop& loop;
  TimerId metricsRetry = 0;  // set while the metrics address cannot be bound
  std::unique_ptr<cluster::CorosyncGroup> group;
  std::unique_ptr<cluster::CorosyncGroup> checkpointGroup;  // kvm-amf-ckpt
  std::unique_ptr<cluster::CommandFenceAgent> fence;
  std::unique_ptr<vmm::LibvirtHypervisor> hypervisor;
  std::unique_ptr<vmm::SocketGuestChannel> guests;
  std::unique_ptr<node::DiskStateStore> store;
  std::unique_ptr<ckpt::DiskCheckpointLog> checkpointDisk;
  std::unique_ptr<ckpt::CheckpointService> checkpoints;
  std::unique_ptr<CheckpointRequests> checkpointRequests;
  std::unique_ptr<GuestCheckpointAccess> guestCheckpoints;
  std::unique_ptr<monitor::Metrics> metrics;
  std::unique_ptr<monitor::ProcessMetrics> process;
  std::unique_ptr<monitor::Notifier> notifier;
  std::unique_ptr<monitor::StateMetrics> stateMetrics;
  std::unique_ptr<monitor::VmMetrics> vmMetrics;
  std::unique_ptr<AdminService> service;
  std::unique_ptr<Observers> observers;
  std::unique_ptr<node::NodeManager> manager;
  std::unique_ptr<TimedAdminHandler> timed;
  std::unique_ptr<admin::AdminServer> server;
};

namespace {

void serveMetrics(Amfd::Parts& parts, const std::string& address, const std::function<void(const std::string&)>& log,
                  bool retrying) {
  parts.metricsRetry = 0;
  Status serving = parts.metrics->serve(address);
  if (serving.ok()) {
    if (retrying) log("metrics served at http://" + address + "/metrics");
    return;
  }
  if (!retrying) log(serving.error().message + "; trying again every 10 s");
  parts.metricsRetry =
      parts.loop.after(kMetricsRetry, [&parts, address, log] { serveMetrics(parts, address, log, true); });
}

// The service group of VM `vm` in `config`, if any.
std::optional<std::string> groupOfVm(const model::Configuration& config, const std::string& vm) {
  for (const auto& sg : config.serviceGroups) {
    for (const auto& unit : sg.units) {
      for (const auto& spec : unit.vms) {
        if (spec.name == vm) return sg.name;
      }
    }
  }
  return std::nullopt;
}

}  // namespace

std::unique_ptr<Amfd> Amfd::start(EventLoop& loop, const AmfdOptions& options, StartError& error) {
  const std::function<void(const std::string&)> logLine = options.log ? options.log : logToStderr;
  auto fail = [&error](StartError::Kind kind, std::string message) -> std::unique_ptr<Amfd> {
    error = StartError{kind, std::move(message)};
    return nullptr;
  };
  config::LoadResult loaded = config::loadConfigurationFiles(options.configFiles);
  if (!loaded.ok()) {
    std::string all;
    for (const auto& e : loaded.errors) all += (all.empty() ? "" : "\n") + e.str();
    return fail(StartError::Kind::kConfiguration, all);
  }
  if (!loaded.config.cluster)
    return fail(StartError::Kind::kConfiguration, "the configuration has no Cluster document");
  auto configuration = std::make_shared<const model::Configuration>(std::move(loaded.config));
  bool known = false;
  for (const auto& n : configuration->cluster->nodes) known = known || n.name == options.node;
  if (!known) return fail(StartError::Kind::kConfiguration, "the Cluster document has no node '" + options.node + "'");

  std::error_code ec;
  std::filesystem::create_directories(options.stateDir, ec);
  if (ec) return fail(StartError::Kind::kUnavailable, "state directory " + options.stateDir + ": " + ec.message());
  std::filesystem::create_directories(options.libvirt.domain.agentSocketDir, ec);
  if (ec) {
    return fail(StartError::Kind::kUnavailable,
                "agent socket directory " + options.libvirt.domain.agentSocketDir + ": " + ec.message());
  }
  const std::string checkpointDir = options.stateDir + "/ckpt";
  std::filesystem::create_directories(checkpointDir, ec);
  if (ec) return fail(StartError::Kind::kUnavailable, "checkpoint directory " + checkpointDir + ": " + ec.message());
  const std::string statePath = options.stateDir + "/state";
  std::optional<engine::ClusterState> initial;
  Result<std::optional<engine::ClusterState>> stored = node::DiskStateStore::load(statePath);
  if (!stored.ok()) {
    logLine("refusing the stored state, taking it from the peers: " + stored.error().message);
  } else if (stored.value()) {
    initial = std::move(*stored.value());
  } else {
    initial = engine::initialState(configuration, 1);
  }

  auto parts = std::make_unique<Parts>(loop);
  Result<std::unique_ptr<cluster::CorosyncGroup>> group = cluster::CorosyncGroup::connect(loop);
  if (!group.ok()) return fail(StartError::Kind::kUnavailable, group.error().message);
  parts->group = std::move(group.value());
  if (auto named = parts->group->nodeNames().find(parts->group->localNodeId());
      named != parts->group->nodeNames().end() && named->second != options.node) {
    return fail(StartError::Kind::kConfiguration, "Corosync calls this host " + named->second + " (node id " +
                                                      std::to_string(parts->group->localNodeId()) + "), not " +
                                                      options.node);
  }
  cluster::CorosyncGroupOptions checkpointGroupOptions;
  checkpointGroupOptions.groupName = "kvm-amf-ckpt";
  Result<std::unique_ptr<cluster::CorosyncGroup>> checkpointGroup =
      cluster::CorosyncGroup::connect(loop, checkpointGroupOptions);
  if (!checkpointGroup.ok()) return fail(StartError::Kind::kUnavailable, checkpointGroup.error().message);
  parts->checkpointGroup = std::move(checkpointGroup.value());
  parts->fence = std::make_unique<cluster::CommandFenceAgent>(loop);
  Result<std::unique_ptr<vmm::LibvirtHypervisor>> hypervisor = vmm::LibvirtHypervisor::connect(loop, options.libvirt);
  if (!hypervisor.ok()) return fail(StartError::Kind::kUnavailable, hypervisor.error().message);
  parts->hypervisor = std::move(hypervisor.value());
  vmm::SocketGuestChannelOptions channel;
  channel.socketDir = options.libvirt.domain.agentSocketDir;
  channel.firstHeartbeatTimeout = options.firstHeartbeatTimeout;
  channel.logger = [logLine](const std::string& vm, const std::string& line) { logLine("guest " + vm + ": " + line); };
  parts->guests = std::make_unique<vmm::SocketGuestChannel>(loop, std::move(channel));
  parts->store = std::make_unique<node::DiskStateStore>(loop, statePath);
  // The checkpoint service: its own group, its files in STATE_DIR/ckpt (docs/checkpoints.md).
  std::string warning;
  Result<std::optional<ckpt::CheckpointStore>> storedCheckpoints =
      ckpt::DiskCheckpointLog::load(checkpointDir, {}, &warning);
  if (!warning.empty()) logLine(warning);
  if (!storedCheckpoints.ok()) {
    logLine("refusing the stored checkpoints, taking them from the peers: " + storedCheckpoints.error().message);
  }
  parts->checkpointDisk = std::make_unique<ckpt::DiskCheckpointLog>(loop, checkpointDir);
  ckpt::CheckpointServiceOptions checkpointOptions;
  checkpointOptions.logger = [logLine](const std::string& line) { logLine("checkpoints: " + line); };
  const bool checkpointsLoaded = storedCheckpoints.ok();
  parts->checkpoints = std::make_unique<ckpt::CheckpointService>(
      ckpt::CheckpointServiceDeps{&loop, parts->checkpointGroup.get(), parts->checkpointDisk.get()},
      std::move(checkpointOptions), checkpointsLoaded ? std::move(storedCheckpoints).value() : std::nullopt,
      checkpointsLoaded);
  parts->checkpointRequests = std::make_unique<CheckpointRequests>(options.node, *parts->checkpoints);

  // Metrics (docs/monitoring.md): read the node manager's state through `Parts`, which holds it
  // once built and outlives every collector.
  Parts* built = parts.get();
  auto replicated = [built]() -> const engine::ClusterState* {
    return built->manager ? built->manager->state() : nullptr;
  };
  parts->metrics = std::make_unique<monitor::Metrics>();
  parts->process = std::make_unique<monitor::ProcessMetrics>(
      loop, *parts->metrics, monitor::ProcessOptions{.version = options.version, .adminRequests = kRequestKinds});
  parts->notifier = std::make_unique<monitor::Notifier>(loop, parts->metrics.get(), options.notify);
  parts->stateMetrics = std::make_unique<monitor::StateMetrics>(
      loop, *parts->metrics, options.node, replicated, [built](const std::string& vm) -> std::optional<TimePoint> {
        std::optional<vmm::GuestStats> stats = built->guests->stats(vm);
        return stats ? stats->lastHeartbeat : std::nullopt;
      });
  monitor::StatsOptions statsOptions;
  statsOptions.interval = options.statsInterval;
  statsOptions.qemuPidDir = options.qemuPidDir;
  parts->vmMetrics = std::make_unique<monitor::VmMetrics>(
      loop, *parts->metrics, options.node, statsOptions,
      [built](std::function<void(Result<std::vector<vmm::VmStats>>)> done) {
        built->hypervisor->stats(std::move(done));
      },
      [built](const std::string& vm) { return built->guests->stats(vm); }, replicated, logLine);
  parts->guests->setObserver(parts->vmMetrics.get());

  parts->service = std::make_unique<AdminService>(options.node, logLine);
  // Notifications go out from the amfd that directs (every amfd publishes the same events).
  parts->service->setEventSink([built, &loop, node = options.node](const PublishedEvent& event) {
    if (event.classes.empty() || !built->manager) return;
    const engine::View& view = built->manager->view();
    if (engine::directorOf(view) != view.self) return;
    const nlohmann::json payload = {{"type", event.type}, {"classes", event.classes},     {"text", event.text},
                                    {"node", node},       {"timeMs", loop.now().count()}, {"data", event.data}};
    built->notifier->notify(event.type, event.classes,
                            payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  });
  parts->observers =
      std::make_unique<Observers>(std::vector<node::NodeObserver*>{parts->service.get(), parts->stateMetrics.get()});
  node::NodeManagerDeps deps{&loop,
                             parts->group.get(),
                             parts->fence.get(),
                             parts->hypervisor.get(),
                             parts->guests.get(),
                             parts->store.get(),
                             parts->observers.get(),
                             options.vmLimits};
  parts->manager = std::make_unique<node::NodeManager>(options.node, deps, std::move(initial));
  if (!options.metricsAddress.empty()) serveMetrics(*parts, options.metricsAddress, logLine, false);
  parts->process->start();
  parts->vmMetrics->start();
  admin::AdminServerOptions adminOptions = options.admin;
  if (!adminOptions.logger) adminOptions.logger = logLine;
  parts->timed = std::make_unique<TimedAdminHandler>(loop, *parts->service, *parts->process);
  Result<std::unique_ptr<admin::AdminServer>> server = admin::AdminServer::create(loop, adminOptions, *parts->timed);
  if (!server.ok()) return fail(StartError::Kind::kUnavailable, server.error().message);
  parts->server = std::move(server.value());
  parts->service->attach(parts->manager.get(), parts->server.get());
  parts->service->attachCheckpoints(parts->checkpointRequests.get());
  // Guests name their checkpoints within their VM's service group, as the replicated
  // configuration has it now (or, before this host is synchronised, as it started).
  node::NodeManager* manager = parts->manager.get();
  parts->guestCheckpoints =
      std::make_unique<GuestCheckpointAccess>(*parts->checkpoints, [manager, configuration](const std::string& vm) {
        const engine::ClusterState* state = manager->state();
        return groupOfVm(state ? *state->config : *configuration, vm);
      });
  parts->guests->setCheckpoints(parts->guestCheckpoints.get());
  if (Status joined = parts->checkpoints->start(); !joined.ok()) {
    return fail(StartError::Kind::kUnavailable, "the checkpoint group: " + joined.error().message);
  }
  if (Status joined = parts->manager->start(); !joined.ok()) {
    return fail(StartError::Kind::kUnavailable, joined.error().message);
  }
  logLine("node " + options.node + " started; admin API at " + adminOptions.ipcPath + "; metrics " +
          (options.metricsAddress.empty() ? std::string("off") : "at http://" + options.metricsAddress + "/metrics"));
  return std::unique_ptr<Amfd>(new Amfd(std::move(parts)));
}

Amfd::Amfd(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

Amfd::~Amfd() {
  parts_->server.reset();  // no more requests
  parts_->guests->setCheckpoints(nullptr);
  parts_->manager->stop();
  parts_->checkpoints->stop();
  parts_->guests->setObserver(nullptr);
}

}  // namespace kvm_amf::daemon
