#include "kvm_amf/amf/engine/cluster_state.h"

namespace kvm_amf::engine {
namespace {

constexpr std::pair<VmHold, std::string_view> kVmHolds[] = {
    {VmHold::kNone, "none"}, {VmHold::kStopped, "stopped"}, {VmHold::kSuspended, "suspended"}};

// A VM the operator holds stopped and that is stopped: not part of its unit's presence.
bool heldAndStopped(const VmRuntime& vm) {
  return vm.hold != VmHold::kNone && vm.presence == PresenceState::kUninstantiated;
}

}  // namespace

model::WordTable<VmHold> enumWords(VmHold) { return kVmHolds; }

bool sameConfiguration(const std::shared_ptr<const model::Configuration>& a,
                       const std::shared_ptr<const model::Configuration>& b) {
  return a == b || (a && b && *a == *b);
}

bool PendingConfigChange::operator==(const PendingConfigChange& other) const {
  return id == other.id && from == other.from && baseGeneration == other.baseGeneration &&
         sameConfiguration(config, other.config);
}

bool ClusterState::operator==(const ClusterState& other) const {
  return sameConfiguration(config, other.config) && generation == other.generation && decisions == other.decisions &&
         applied == other.applied && nodes == other.nodes && sgs == other.sgs && sus == other.sus && sis == other.sis &&
         vms == other.vms && pendingAdmin == other.pendingAdmin && pendingConfig == other.pendingConfig;
}

const SpecIndex& ClusterState::index() const {
  if (!index_ || indexed_ != config) {
    auto index = std::make_shared<SpecIndex>();
    for (const auto& sg : config->serviceGroups) {
      index->sgs[sg.name] = &sg;
      index->unitsOf[sg.name];  // present even when empty
      index->instancesOf[sg.name];
      for (const auto& unit : sg.units) {
        index->sus[unit.name] = &unit;
        index->unitsOf[sg.name].push_back(unit.name);
        for (const auto& vm : unit.vms) index->vms[vm.name] = &vm;
      }
      for (const auto& si : sg.serviceInstances) index->instancesOf[sg.name].push_back(si.name);
    }
    index_ = std::move(index);
    indexed_ = config;
  }
  return *index_;
}

const model::ServiceGroupSpec& ClusterState::sgSpec(const std::string& sg) const { return *index().sgs.at(sg); }

const model::ServiceUnitSpec& ClusterState::suSpec(const std::string& su) const { return *index().sus.at(su); }

const model::VmSpec& ClusterState::vmSpec(const std::string& vm) const { return *index().vms.at(vm); }

const NodeRuntime* ClusterState::nodeById(int id) const {
  for (const auto& [name, node] : nodes) {
    if (node.id == id) return &node;
  }
  return nullptr;
}

const NodeRuntime* ClusterState::node(const std::string& name) const {
  auto it = nodes.find(name);
  return it == nodes.end() ? nullptr : &it->second;
}

ClusterState initialState(std::shared_ptr<const model::Configuration> config, std::uint64_t generation) {
  ClusterState state;
  state.generation = generation;
  for (const auto& spec : config->cluster->nodes) {
    NodeRuntime node;
    node.name = spec.name;
    node.id = spec.id;
    state.nodes.emplace(spec.name, node);
  }
  for (const auto& sg : config->serviceGroups) {
    state.sgs.emplace(sg.name, SgRuntime{.name = sg.name});
    for (const auto& unit : sg.units) {
      SuRuntime su;
      su.name = unit.name;
      su.sg = sg.name;
      su.rank = unit.rank;
      state.sus.emplace(unit.name, su);
      for (const auto& vm : unit.vms) {
        VmRuntime runtime;
        runtime.name = vm.name;
        runtime.su = unit.name;
        state.vms.emplace(vm.name, runtime);
      }
    }
    for (const auto& si : sg.serviceInstances) {
      SiRuntime runtime;
      runtime.name = si.name;
      runtime.sg = sg.name;
      runtime.rank = si.rank;
      state.sis.emplace(si.name, runtime);
    }
  }
  state.config = std::move(config);
  return state;
}

PresenceState suPresence(const ClusterState& state, const SuRuntime& su) {
  if (su.instantiationFailed) return PresenceState::kInstantiationFailed;
  bool allUninstantiated = true;
  bool allInstantiated = true;
  bool terminating = false;
  bool restarting = false;
  bool terminationFailed = false;
  for (const auto& spec : state.suSpec(su.name).vms) {
    // A VM an operator stopped is left out: the unit is what runs of it (and out of service).
    if (heldAndStopped(state.vms.at(spec.name))) continue;
    const PresenceState p = state.vms.at(spec.name).presence;
    allUninstantiated = allUninstantiated && p == PresenceState::kUninstantiated;
    allInstantiated = allInstantiated && p == PresenceState::kInstantiated;
    terminating = terminating || p == PresenceState::kTerminating;
    restarting = restarting || p == PresenceState::kRestarting;
    terminationFailed = terminationFailed || p == PresenceState::kTerminationFailed;
  }
  if (terminationFailed) return PresenceState::kTerminationFailed;
  if (allUninstantiated) return PresenceState::kUninstantiated;
  if (allInstantiated) return PresenceState::kInstantiated;
  if (terminating) return PresenceState::kTerminating;
  if (restarting) return PresenceState::kRestarting;
  return PresenceState::kInstantiating;
}

OperState effectiveSuOper(const ClusterState&, const SuRuntime& su) { return su.oper; }

ReadinessState suReadiness(const ClusterState& state, const SuRuntime& su) {
  if (su.oper != OperState::kEnabled || suPresence(state, su) != PresenceState::kInstantiated || su.node.empty()) {
    return ReadinessState::kOutOfService;
  }
  const NodeRuntime& node = state.nodes.at(su.node);
  if (node.status != NodeStatus::kUp || node.oper != OperState::kEnabled) return ReadinessState::kOutOfService;
  for (const auto& vm : state.suSpec(su.name).vms) {
    if (state.vms.at(vm.name).failure) return ReadinessState::kOutOfService;
  }
  if (suHeldByOperator(state, su)) return ReadinessState::kOutOfService;
  const AdminState sgAdmin = state.sgs.at(su.sg).admin;
  auto locked = [](AdminState a) { return a == AdminState::kLocked || a == AdminState::kLockedInstantiation; };
  if (locked(su.admin) || locked(sgAdmin) || locked(node.admin)) return ReadinessState::kOutOfService;
  if (su.admin == AdminState::kShuttingDown || sgAdmin == AdminState::kShuttingDown ||
      node.admin == AdminState::kShuttingDown) {
    return ReadinessState::kStopping;
  }
  return ReadinessState::kInService;
}

bool suCertainlyDown(const ClusterState& state, const SuRuntime& su) {
  for (const auto& spec : state.suSpec(su.name).vms) {
    const VmRuntime& vm = state.vms.at(spec.name);
    if (vm.presence == PresenceState::kUninstantiated) continue;
    if (!vm.node.empty() && state.nodes.at(vm.node).status == NodeStatus::kDown) continue;
    return false;
  }
  return true;
}

bool suHeldByOperator(const ClusterState& state, const SuRuntime& su) {
  for (const auto& spec : state.suSpec(su.name).vms) {
    const VmRuntime& vm = state.vms.at(spec.name);
    if (vm.paused || vm.hold != VmHold::kNone) return true;
  }
  return false;
}

std::string vmOperatorWord(const VmRuntime& vm) {
  if (vm.hold != VmHold::kNone) return std::string(model::toWord(vm.hold));
  return vm.paused ? "paused" : "";
}

}  // namespace kvm_amf::engine
