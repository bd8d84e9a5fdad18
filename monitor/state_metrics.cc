#include "kvm_amf/monitor/state_metrics.h"

#include <array>

#include "kvm_amf/amf/engine/messages.h"
#include "kvm_amf/amf/model/words.h"
#include "kvm_amf/common/overloaded.h"
#include "registry.h"

namespace kvm_amf::monitor {

namespace {

using engine::ClusterState;
using engine::NodeStatus;

// The kinds of amf_failure_detection_seconds: a VM's (engine::failureWord), then a host's.
constexpr std::array<const char*, 7> kFailureKinds = {"crash",     "watchdog",  "hang",     "io-error",
                                                      "unhealthy", "host-lost", "amfd-down"};
// The kinds of amf_recovery_actions_total.
constexpr std::array<const char*, 7> kRecoveryKinds = {"restart-vm", "restart-su", "failover-su", "node-failover",
                                                       "fence",      "repair-su",  "destroy-vm"};
constexpr std::array<NodeStatus, 5> kNodeStatuses = {NodeStatus::kUp, NodeStatus::kAmfdDown, NodeStatus::kLost,
                                                     NodeStatus::kFencing, NodeStatus::kDown};

const prometheus::Histogram::BucketBoundaries kDetectionBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75,
                                                                   1,     1.5,  2,     3,    5,   10,   30};
const prometheus::Histogram::BucketBoundaries kOutageBuckets = {0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1,  1.5,
                                                                2,    3,   5,   10,  30,  60,   300};
const prometheus::Histogram::BucketBoundaries kDowntimeBuckets = {0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5};

// The recovery kind of a director's action; nullptr for an action that is not a recovery.
const char* recoveryKind(const engine::Action& action) {
  return std::visit(Overloaded{
                        [](const engine::RestartVm&) -> const char* { return "restart-vm"; },
                        [](const engine::RestartSu&) -> const char* { return "restart-su"; },
                        [](const engine::FailoverSu&) -> const char* { return "failover-su"; },
                        [](const engine::SetNodeOper& a) -> const char* {
                          return a.oper == model::OperState::kDisabled ? "node-failover" : nullptr;
                        },
                        [](const engine::StartFence&) -> const char* { return "fence"; },
                        [](const engine::RepairSu&) -> const char* { return "repair-su"; },
                        [](const engine::DestroyVm&) -> const char* { return "destroy-vm"; },
                        [](const auto&) -> const char* { return nullptr; },
                    },
                    action);
}

// The SI has an active assignment its guests acknowledged, on a unit whose VMs all run without a
// failure reported, on a host that is up and (when the view is known) in the membership.
bool served(const ClusterState& state, const engine::SiRuntime& si, const engine::View* view) {
  for (const auto& a : si.assignments) {
    if (a.ha != model::HaState::kActive || !a.acked) continue;
    auto su = state.sus.find(a.su);
    if (su == state.sus.end() || su->second.node.empty()) continue;
    const engine::NodeRuntime* node = state.node(su->second.node);
    if (node == nullptr || node->status != NodeStatus::kUp) continue;
    if (view != nullptr && !view->hosts.contains(node->id)) continue;
    if (engine::suPresence(state, su->second) != model::PresenceState::kInstantiated) continue;
    bool failed = false;
    for (const auto& vm : state.suSpec(a.su).vms) {
      auto runtime = state.vms.find(vm.name);
      failed = failed || runtime == state.vms.end() || runtime->second.failure.has_value();
    }
    if (!failed) return true;
  }
  return false;
}

// One 0/1 sample per word of the enumeration E, 1 for `value`.
template <typename E>
void states(MetricFamily& family, const Labels& labels, E value) {
  for (const auto& [candidate, word] : model::enumWords(E{})) {
    Labels withState = labels;
    withState["state"] = std::string(word);
    sample(family, std::move(withState), candidate == value ? 1 : 0);
  }
}

MetricFamily gauge(const char* name, const char* help) { return family(name, help, MetricType::Gauge); }

}  // namespace

struct StateMetrics::Spans {
  explicit Spans(Metrics& metrics)
      : detection(histogramFamily(metrics, "amf_failure_detection_seconds",
                                  "Time from a failure's first sign to the director's decision acting on it, by kind "
                                  "(VMs: recorded by their host's amfd; hosts and amfds: by the director)")),
        outage(histogramFamily(metrics, "amf_si_outage_seconds",
                               "Spans in which an SI had no acknowledged active unit running on a host that is up, "
                               "after it had been served (recorded by the director when the span ends)")),
        migration(histogramFamily(metrics, "amf_migration_downtime_seconds",
                                  "Live migrations' switch-over downtime, as QEMU measured it")
                      .Add({}, kDowntimeBuckets)),
        recovery(counterFamily(metrics, "amf_recovery_actions_total",
                               "Recovery actions the director decided, by kind (counted by the director)")),
        fence(counterFamily(metrics, "amf_fence_operations_total",
                            "Fence agent runs that ended, by outcome (counted by the director)")),
        snapshot(std::make_shared<Snapshot>()) {
    for (const char* kind : kFailureKinds) detectionByKind[kind] = &detection.Add({{"kind", kind}}, kDetectionBuckets);
    for (const char* kind : kRecoveryKinds) recoveryByKind[kind] = &recovery.Add({{"kind", kind}});
    fenceOk = &fence.Add({{"outcome", "ok"}});
    fenceFailed = &fence.Add({{"outcome", "failed"}});
    metrics.impl().add(snapshot);
  }

  prometheus::Family<prometheus::Histogram>& detection;
  prometheus::Family<prometheus::Histogram>& outage;
  prometheus::Histogram& migration;
  prometheus::Family<prometheus::Counter>& recovery;
  prometheus::Family<prometheus::Counter>& fence;
  std::map<std::string, prometheus::Histogram*> detectionByKind;
  std::map<std::string, prometheus::Counter*> recoveryByKind;
  std::map<std::string, prometheus::Histogram*> outageBySi;
  prometheus::Counter* fenceOk = nullptr;
  prometheus::Counter* fenceFailed = nullptr;
  std::shared_ptr<Snapshot> snapshot;

  struct Pending {
    std::string kind;
    TimePoint since;
  };
  std::map<std::string, Pending> vmFailures;  // by VM of this host: reported, not yet acted on
  std::map<std::string, Pending> nodeLosses;  // by node: gone from the view, not yet decided on
  std::map<std::string, TimePoint> outages;   // by SI: unserved since
  std::set<std::string> everServed;           // SIs this amfd has seen served
};

StateMetrics::StateMetrics(Scheduler& scheduler, Metrics& metrics, std::string node,
                           std::function<const engine::ClusterState*()> state,
                           std::function<std::optional<TimePoint>(const std::string& vm)> lastHeartbeat)
    : scheduler_(scheduler),
      node_(std::move(node)),
      state_(std::move(state)),
      lastHeartbeat_(std::move(lastHeartbeat)),
      spans_(std::make_unique<Spans>(metrics)) {
  refresh();
}

StateMetrics::~StateMetrics() {
  if (refresh_) scheduler_.cancel(*refresh_);
}

bool StateMetrics::directing() const { return haveView_ && engine::directorOf(view_) == view_.self; }

void StateMetrics::onView(const engine::View& view) {
  view_ = view;
  haveView_ = true;
  if (const ClusterState* state = state_()) {
    for (const auto& [name, node] : state->nodes) {
      const bool watched = node.status == NodeStatus::kUp || node.status == NodeStatus::kAmfdDown;
      if (watched && !view.hosts.contains(node.id)) {
        auto& pending = spans_->nodeLosses[name];
        if (pending.kind != "host-lost") pending = {"host-lost", scheduler_.now()};
      } else if (node.status == NodeStatus::kUp && !view.group.contains(node.id)) {
        spans_->nodeLosses.try_emplace(name, Spans::Pending{"amfd-down", scheduler_.now()});
      } else {
        spans_->nodeLosses.erase(name);
      }
    }
    trackOutages(*state);
  }
  changed();
}

void StateMetrics::onApplied(const engine::Envelope& message, const engine::ClusterState& state) {
  const TimePoint now = scheduler_.now();
  if (const auto* report = std::get_if<engine::Report>(&message)) {
    if (const auto* failed = std::get_if<engine::VmFailed>(report)) {
      auto vm = state.vms.find(failed->vm);
      // Only the failure the state took (a repeated or stale report changes nothing there).
      if (failed->node == node_ && vm != state.vms.end() && vm->second.failure == failed->kind &&
          !spans_->vmFailures.contains(failed->vm)) {
        TimePoint since = now;
        if (failed->kind == engine::FailureKind::kHang && lastHeartbeat_) {
          if (std::optional<TimePoint> last = lastHeartbeat_(failed->vm); last && *last <= now) since = *last;
        }
        spans_->vmFailures[failed->vm] = {engine::failureWord(failed->kind), since};
      }
    } else if (const auto* fenced = std::get_if<engine::FenceDone>(report); fenced && directing()) {
      (fenced->ok ? spans_->fenceOk : spans_->fenceFailed)->Increment();
    }
  } else if (const auto* decision = std::get_if<engine::Decision>(&message)) {
    const bool mine = haveView_ && decision->director == view_.self;
    for (const auto& action : decision->actions) {
      if (const auto* status = std::get_if<engine::SetNodeStatus>(&action)) {
        auto pending = spans_->nodeLosses.find(status->node);
        if (pending == spans_->nodeLosses.end()) continue;
        if (mine && (status->status == NodeStatus::kLost || status->status == NodeStatus::kAmfdDown)) {
          spans_->detectionByKind.at(pending->second.kind)->Observe(seconds(now - pending->second.since));
        }
        spans_->nodeLosses.erase(pending);
      }
      if (const char* kind = recoveryKind(action); kind != nullptr && mine) {
        spans_->recoveryByKind.at(kind)->Increment();
      }
    }
    for (auto it = spans_->vmFailures.begin(); it != spans_->vmFailures.end();) {
      auto vm = state.vms.find(it->first);
      if (vm != state.vms.end() && vm->second.failure) {
        ++it;
        continue;
      }
      if (vm != state.vms.end()) spans_->detectionByKind.at(it->second.kind)->Observe(seconds(now - it->second.since));
      it = spans_->vmFailures.erase(it);
    }
  }
  trackOutages(state);
  changed();
}

void StateMetrics::onSynced(const engine::ClusterState& state) {
  std::erase_if(spans_->vmFailures, [&](const auto& entry) {
    auto vm = state.vms.find(entry.first);
    return vm == state.vms.end() || !vm->second.failure;
  });
  trackOutages(state);
  changed();
}

void StateMetrics::trackOutages(const engine::ClusterState& state) {
  auto& outages = spans_->outages;
  // Without quorum this amfd sees only its side: it tracks nothing (and directs nothing).
  if (!haveView_ || !view_.quorate) outages.clear();
  const TimePoint now = scheduler_.now();
  for (const auto& [name, si] : state.sis) {
    if (!spans_->outageBySi.contains(name)) {
      spans_->outageBySi[name] = &spans_->outage.Add({{"si", name}, {"sg", si.sg}}, kOutageBuckets);
    }
    if (!haveView_ || !view_.quorate) continue;
    auto sg = state.sgs.find(si.sg);
    const bool wanted = si.admin == model::AdminState::kUnlocked && sg != state.sgs.end() &&
                        sg->second.admin == model::AdminState::kUnlocked;
    if (!wanted) {
      // Locked on purpose: no outage now, and none until it is served again after the unlock.
      outages.erase(name);
      spans_->everServed.erase(name);
    } else if (served(state, si, &view_)) {
      if (auto open = outages.find(name); open != outages.end()) {
        if (directing()) spans_->outageBySi.at(name)->Observe(seconds(now - open->second));
        outages.erase(open);
      }
      spans_->everServed.insert(name);
    } else if (spans_->everServed.contains(name)) {
      outages.try_emplace(name, now);
    }
  }
  for (auto it = spans_->outageBySi.begin(); it != spans_->outageBySi.end();) {
    if (state.sis.contains(it->first)) {
      ++it;
      continue;
    }
    spans_->outage.Remove(it->second);
    outages.erase(it->first);
    spans_->everServed.erase(it->first);
    it = spans_->outageBySi.erase(it);
  }
}

void StateMetrics::observeMigration(Duration downtime) { spans_->migration.Observe(seconds(downtime)); }

void StateMetrics::changed() {
  if (refresh_) return;
  refresh_ = scheduler_.after(Duration(0), [this] {
    refresh_.reset();
    refresh();
  });
}

void StateMetrics::refresh() {
  if (refresh_) {
    scheduler_.cancel(*refresh_);
    refresh_.reset();
  }
  const ClusterState* state = state_();
  std::vector<MetricFamily> out;
  MetricFamily director = gauge("amf_director", "1 when this amfd directs the cluster");
  sample(director, {}, directing() ? 1 : 0);
  MetricFamily synced =
      gauge("amf_synced", "1 when this amfd holds the group's replicated state (the series below are exported then)");
  sample(synced, {}, state != nullptr ? 1 : 0);
  MetricFamily quorate = gauge("amf_cluster_quorate", "1 when this amfd's side of the membership has quorum");
  sample(quorate, {}, haveView_ && view_.quorate ? 1 : 0);
  MetricFamily hosts = gauge("amf_cluster_hosts", "Hosts in the Corosync membership, as this amfd sees it");
  sample(hosts, {}, haveView_ ? static_cast<double>(view_.hosts.size()) : 0);
  MetricFamily amfds = gauge("amf_cluster_amfds", "amfds in the group, as this amfd sees it");
  sample(amfds, {}, haveView_ ? static_cast<double>(view_.group.size()) : 0);
  out.insert(out.end(), {director, synced, quorate, hosts, amfds});
  if (state == nullptr) {
    spans_->snapshot->publish(std::move(out));
    return;
  }

  MetricFamily generation = gauge("amf_cluster_generation", "The configuration's generation");
  sample(generation, {}, static_cast<double>(state->generation));
  MetricFamily decisions =
      family("amf_cluster_decisions_total", "Decisions in the replicated state's history", MetricType::Counter);
  sample(decisions, {}, static_cast<double>(state->decisions));

  MetricFamily nodeStatus = gauge("amf_node_status", "1 for the host's status (up, amfd-down, lost, fencing, down)");
  MetricFamily nodeAdmin = gauge("amf_node_admin_state", "1 for the host's administrative state");
  MetricFamily nodeOper = gauge("amf_node_oper_state", "1 for the host's operational state");
  MetricFamily inMembership = gauge("amf_node_in_membership", "1 when the host is in the Corosync membership");
  MetricFamily amfdInGroup = gauge("amf_node_amfd_in_group", "1 when the host's amfd is in the group");
  MetricFamily alarm = gauge("amf_node_alarm", "1 while the host has an alarm (fencing it failed)");
  MetricFamily capacityVcpus = gauge("amf_node_capacity_vcpus", "vCPUs the host offers (0: not declared)");
  MetricFamily capacityMemory = gauge("amf_node_capacity_memory_bytes", "Memory the host offers (0: not declared)");
  MetricFamily placedVcpus = gauge("amf_node_placed_vcpus", "vCPUs of the VMs placed on the host");
  MetricFamily placedMemory = gauge("amf_node_placed_memory_bytes", "Memory of the VMs placed on the host");
  MetricFamily placedVms = gauge("amf_node_placed_vms", "VMs placed on the host");
  std::map<std::string, std::array<double, 3>> placed;  // node -> vcpus, memory, VMs
  for (const auto& [name, vm] : state->vms) {
    if (vm.node.empty() || vm.presence == model::PresenceState::kUninstantiated) continue;
    const model::VmSpec& spec = state->vmSpec(name);
    auto& sums = placed[vm.node];
    sums[0] += spec.vcpus;
    sums[1] += static_cast<double>(spec.memory);
    sums[2] += 1;
  }
  for (const auto& spec : state->cluster().nodes) {
    const engine::NodeRuntime* node = state->node(spec.name);
    if (node == nullptr) continue;
    const Labels labels = {{"node", spec.name}};
    for (NodeStatus status : kNodeStatuses) {
      sample(nodeStatus, {{"node", spec.name}, {"status", engine::nodeStatusWord(status)}},
             node->status == status ? 1 : 0);
    }
    states(nodeAdmin, labels, node->admin);
    states(nodeOper, labels, node->oper);
    sample(inMembership, labels, haveView_ && view_.hosts.contains(node->id) ? 1 : 0);
    sample(amfdInGroup, labels, haveView_ && view_.group.contains(node->id) ? 1 : 0);
    sample(alarm, labels, node->alarm.empty() ? 0 : 1);
    sample(capacityVcpus, labels, spec.capacity.vcpus);
    sample(capacityMemory, labels, static_cast<double>(spec.capacity.memory));
    const auto sums = placed[spec.name];
    sample(placedVcpus, labels, sums[0]);
    sample(placedMemory, labels, sums[1]);
    sample(placedVms, labels, sums[2]);
  }

  MetricFamily sgAdmin = gauge("amf_sg_admin_state", "1 for the service group's administrative state");
  MetricFamily sgHeartbeat =
      gauge("amf_sg_heartbeat_interval_seconds", "The guest heartbeat interval the service group asks for");
  MetricFamily sgHeartbeatTimeout =
      gauge("amf_sg_heartbeat_timeout_seconds", "No heartbeat for this long: the service group's guest is hung");
  for (const auto& [name, sg] : state->sgs) {
    states(sgAdmin, {{"sg", name}}, sg.admin);
    if (const auto& heartbeat = state->sgSpec(name).health.heartbeat) {
      sample(sgHeartbeat, {{"sg", name}}, seconds(heartbeat->interval));
      sample(sgHeartbeatTimeout, {{"sg", name}}, seconds(heartbeat->timeout));
    }
  }

  MetricFamily suAdmin = gauge("amf_su_admin_state", "1 for the service unit's administrative state");
  MetricFamily suOper = gauge("amf_su_oper_state", "1 for the service unit's operational state");
  MetricFamily suPresence = gauge("amf_su_presence_state", "1 for the service unit's presence state");
  MetricFamily suReadiness = gauge("amf_su_readiness_state", "1 for the service unit's readiness state");
  MetricFamily suNode = gauge("amf_su_node", "1 for the host the service unit is placed on");
  MetricFamily suHa = gauge("amf_su_ha_state", "1 for the HA state the service unit holds an SI in");
  MetricFamily suAcked =
      gauge("amf_su_ha_acknowledged", "1 when the unit's guests acknowledged its HA state for the SI");
  for (const auto& [name, su] : state->sus) {
    const Labels labels = {{"su", name}, {"sg", su.sg}};
    states(suAdmin, labels, su.admin);
    states(suOper, labels, engine::effectiveSuOper(*state, su));
    states(suPresence, labels, engine::suPresence(*state, su));
    states(suReadiness, labels, engine::suReadiness(*state, su));
    if (!su.node.empty()) sample(suNode, {{"su", name}, {"sg", su.sg}, {"node", su.node}}, 1);
  }

  MetricFamily siAdmin = gauge("amf_si_admin_state", "1 for the SI's administrative state");
  MetricFamily siServed = gauge("amf_si_served",
                                "1 when the SI has an acknowledged active unit whose VMs run without a failure on a "
                                "host that is up");
  MetricFamily siAssignments = gauge("amf_si_assignments", "The SI's assignments by HA state");
  for (const auto& [name, si] : state->sis) {
    const Labels labels = {{"si", name}, {"sg", si.sg}};
    states(siAdmin, labels, si.admin);
    sample(siServed, labels, served(*state, si, haveView_ ? &view_ : nullptr) ? 1 : 0);
    std::map<model::HaState, int> counts;
    for (const auto& a : si.assignments) {
      ++counts[a.ha];
      auto su = state->sus.find(a.su);
      const Labels unit = {{"su", a.su}, {"sg", su == state->sus.end() ? si.sg : su->second.sg}, {"si", name}};
      states(suHa, unit, a.ha);
      sample(suAcked, unit, a.acked ? 1 : 0);
    }
    for (const auto& [ha, word] : model::enumWords(model::HaState{})) {
      sample(siAssignments, {{"si", name}, {"sg", si.sg}, {"ha", std::string(word)}}, counts[ha]);
    }
  }

  MetricFamily vmPresence = gauge("amf_vm_presence_state", "1 for the VM's presence state");
  MetricFamily vmNode = gauge("amf_vm_node", "1 for the host the VM is placed on");
  MetricFamily vmFailure = gauge("amf_vm_failure_pending", "1 while a failure of the VM is reported and not acted on");
  for (const auto& [name, vm] : state->vms) {
    auto su = state->sus.find(vm.su);
    const std::string sg = su == state->sus.end() ? "" : su->second.sg;
    const Labels labels = {{"domain", name}, {"su", vm.su}, {"sg", sg}};
    states(vmPresence, labels, vm.presence);
    if (!vm.node.empty()) sample(vmNode, {{"domain", name}, {"su", vm.su}, {"sg", sg}, {"node", vm.node}}, 1);
    sample(vmFailure, labels, vm.failure ? 1 : 0);
  }

  moveInto(out, {&generation,    &decisions,      &nodeStatus,  &nodeAdmin,
                 &nodeOper,      &inMembership,   &amfdInGroup, &alarm,
                 &capacityVcpus, &capacityMemory, &placedVcpus, &placedMemory,
                 &placedVms,     &sgAdmin,        &sgHeartbeat, &sgHeartbeatTimeout,
                 &suAdmin,       &suOper,         &suPresence,  &suReadiness,
                 &suNode,        &suHa,           &suAcked,     &siAdmin,
                 &siServed,      &siAssignments,  &vmPresence,  &vmNode,
                 &vmFailure});
  spans_->snapshot->publish(std::move(out));
}

}  // namespace kvm_amf::monitor
