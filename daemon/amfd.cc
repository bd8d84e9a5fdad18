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
#include "kvm_amf/vmm/socket_guest_channel.h"

namespace kvm_amf::daemon {

// Declared in the order they are built; destroyed in reverse: the admin API closes first, the
// node manager and the checkpoint service leave their groups before their parts go.
struct Amfd::Parts {
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
  std::unique_ptr<AdminService> service;
  std::unique_ptr<node::NodeManager> manager;
  std::unique_ptr<admin::AdminServer> server;
};

namespace {

void logToStderr(const std::string& line) { std::fprintf(stderr, "amfd: %s\n", line.c_str()); }

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

  auto parts = std::make_unique<Parts>();
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

  parts->service = std::make_unique<AdminService>(options.node, logLine);
  node::NodeManagerDeps deps{&loop,
                             parts->group.get(),
                             parts->fence.get(),
                             parts->hypervisor.get(),
                             parts->guests.get(),
                             parts->store.get(),
                             parts->service.get(),
                             options.vmLimits};
  parts->manager = std::make_unique<node::NodeManager>(options.node, deps, std::move(initial));
  admin::AdminServerOptions adminOptions = options.admin;
  if (!adminOptions.logger) adminOptions.logger = logLine;
  Result<std::unique_ptr<admin::AdminServer>> server = admin::AdminServer::create(loop, adminOptions, *parts->service);
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
  logLine("node " + options.node + " started; admin API at " + adminOptions.ipcPath);
  return std::unique_ptr<Amfd>(new Amfd(std::move(parts)));
}

Amfd::Amfd(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

Amfd::~Amfd() {
  parts_->server.reset();  // no more requests
  parts_->guests->setCheckpoints(nullptr);
  parts_->manager->stop();
  parts_->checkpoints->stop();
}

}  // namespace kvm_amf::daemon
