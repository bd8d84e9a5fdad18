#include "kvm_amf/amf/node/node_manager.h"
#include "kvm_amf/common/overloaded.h"

#include <tuple>

#include "kvm_amf/amf/engine/apply.h"
#include "kvm_amf/amf/engine/codec.h"
#include "kvm_amf/amf/node/disk_state_store.h"

namespace kvm_amf::node {
namespace {

// The best state to continue from: a state at all, then the newest configuration, then the most
// decisions, then the lowest node id.
bool better(const engine::StateOffer& a, const engine::StateOffer& b) {
  return std::tuple(a.hasState, a.generation, a.decisions, a.applied, -a.node) >
         std::tuple(b.hasState, b.generation, b.decisions, b.applied, -b.node);
}

}  // namespace

NodeManager::NodeManager(std::string nodeName, NodeManagerDeps deps, std::optional<engine::ClusterState> initial)
    : name_(std::move(nodeName)), deps_(deps), state_(std::move(initial)) {
  view_.self = deps_.group->localNodeId();
  agent_ = std::make_unique<LocalAgent>(
      name_, view_.self, *deps_.scheduler, *deps_.hypervisor, *deps_.guests, *deps_.fence,
      [this]() -> const engine::ClusterState* { return state_ ? &*state_ : nullptr; },
      [this](engine::Report report) { send(engine::Envelope(std::move(report))); }, deps_.vmLimits);
}

NodeManager::~NodeManager() {
  if (dirty_ && deps_.store) persist();  // the store writes it before it goes
  *alive_ = false;
  if (wakeTimer_) deps_.scheduler->cancel(*wakeTimer_);
  if (selfFenceTimer_) deps_.scheduler->cancel(*selfFenceTimer_);
}

Status NodeManager::start() { return deps_.group->join(this); }

void NodeManager::stop() {
  deps_.group->leave();
  inGroup_ = false;
}

void NodeManager::submit(const model::AdminCommand& command, AdminDone done) {
  const std::uint64_t id = nextAdminId_++;
  adminWaiting_[id] = std::move(done);
  send(engine::Report(engine::AdminRequest{id, view_.self, command}));
}

void NodeManager::submitConfiguration(std::shared_ptr<const model::Configuration> config, std::uint64_t baseGeneration,
                                      ConfigDone done) {
  const std::uint64_t id = nextAdminId_++;
  configWaiting_[id] = std::move(done);
  send(engine::Report(engine::ConfigChange{id, view_.self, baseGeneration, std::move(config)}));
}

void NodeManager::send(const engine::Envelope& message) {
  Status status = deps_.group->multicast(engine::encode(message));
  (void)status;  // not in the group: the message is lost, as it would be on a crash
}

void NodeManager::onView(const cluster::ViewChange& change) {
  const bool first = !inGroup_;
  inGroup_ = true;
  view_.group = change.members;
  view_.hosts = change.hosts;
  view_.quorate = change.quorate;
  if (state_) {
    view_.clusterSize = state_->config->cluster->nodes.size();
    view_.twoNode = state_->config->cluster->membership.twoNode;
  }
  decisionInFlight_ = false;
  // A round runs again when members join, or when members leave during one (the best may be gone).
  if (first || !change.joined.empty() || syncing_) startSync();
  if (deps_.observer) deps_.observer->onView(view_);
  if (change.quorate) {
    everQuorate_ = true;
    if (selfFenceTimer_) deps_.scheduler->cancel(*selfFenceTimer_);
    selfFenceTimer_.reset();
  } else if (state_ && state_->config->cluster->fencing.mode == model::FencingMode::kSelf && !selfFenceTimer_) {
    // Quorum lost: the quorate side recovers this host's VMs after self.timeout + margin, so they
    // must be stopped within self.timeout. Waiting half of it first lets a membership flap (Corosync
    // reforming its ring as a host joins can leave a member alone for some milliseconds) pass
    // without stopping anything. Started without quorum (a whole cluster starting, or this host
    // cut off): the cluster gets all of self.timeout to form, so that VMs that ran on through a
    // restart of every node manager and Corosync are kept.
    const Duration timeout = state_->config->cluster->fencing.self.timeout;
    selfFenceTimer_ = deps_.scheduler->after(everQuorate_ ? timeout / 2 : timeout, [this, alive = alive_] {
      if (!*alive) return;
      selfFenceTimer_.reset();
      if (!view_.quorate) agent_->selfFence();
    });
  }
  maybeDecide();
}

void NodeManager::startSync(std::optional<std::uint64_t> join) {
  round_ = join ? *join : highestRound_ + 1;
  highestRound_ = std::max(highestRound_, round_);
  syncing_ = true;
  offers_.clear();
  snapshotFrom_ = 0;
  engine::StateOffer mine{view_.self,
                          state_.has_value(),
                          state_ ? state_->generation : 0,
                          state_ ? state_->decisions : 0,
                          state_ ? state_->applied : 0,
                          round_};
  send(engine::Envelope(mine));
}

void NodeManager::onDeliver(int, const std::string& payload) {
  if (state_ && known_.config != state_->config) known_ = engine::knownConfiguration(state_->config);
  Result<engine::Envelope> message = engine::decode(payload, &known_);
  if (!message.ok()) {
    ++malformed_;
    return;
  }
  std::visit(Overloaded{
                 [&](const engine::StateOffer& o) { offer(o); },
                 [&](const engine::StateSnapshot& s) { adopt(s); },
                 [&](const auto&) {
                   if (syncing_) {
                     buffered_.push_back(message.value());
                   } else if (state_) {
                     apply(message.value());
                   }
                 },
             },
             message.value());
}

void NodeManager::offer(const engine::StateOffer& o) {
  if (!view_.group.contains(o.node)) return;
  // Members need not see the same views while a host joins (Corosync can show the joining host
  // one configuration where the others see two), so they may start rounds at different places in
  // the stream: every member joins the highest round it hears of, and counts only its offers.
  highestRound_ = std::max(highestRound_, o.round);
  if (o.round > round_) startSync(o.round);
  if (o.round != round_ || !syncing_) return;  // an older round, or one this member finished
  offers_[o.node] = o;
  for (int member : view_.group) {
    if (!offers_.contains(member)) return;
  }
  const engine::StateOffer* best = nullptr;
  for (const auto& [node, candidate] : offers_) {
    if (!best || better(candidate, *best)) best = &candidate;
  }
  if (!best->hasState) return;  // nobody can continue; wait for a member with a state
  snapshotFrom_ = best->node;
  if (snapshotFrom_ == view_.self) send(engine::Envelope(engine::StateSnapshot{view_.self, *state_, round_}));
}

void NodeManager::adopt(const engine::StateSnapshot& snapshot) {
  if (!syncing_ || snapshot.round != round_ || snapshot.node != snapshotFrom_) return;
  if (!state_ || !(*state_ == snapshot.state)) state_ = snapshot.state;
  view_.clusterSize = state_->config->cluster->nodes.size();
  view_.twoNode = state_->config->cluster->membership.twoNode;
  syncing_ = false;
  stateChanged();
  if (deps_.observer) deps_.observer->onSynced(*state_);
  while (!buffered_.empty()) {
    engine::Envelope message = std::move(buffered_.front());
    buffered_.pop_front();
    apply(message);
  }
  // Report in after every state transfer: the adopted state may lack what this host reported in a
  // group whose state did not win (its running VMs, failures it saw).
  agent_->reportIn();
  maybeDecide();
}

void NodeManager::apply(const engine::Envelope& message) {
  std::visit(Overloaded{
                 [&](const engine::Report& report) {
                   engine::applyReport(*state_, report);
                   stateChanged();
                   if (deps_.observer) deps_.observer->onApplied(message, *state_);
                   agent_->onReport(report);
                 },
                 [&](const engine::Decision& decision) {
                   if (decision.director == view_.self) decisionInFlight_ = false;
                   // A decision counts only if its sender directs the view it is delivered in: one
                   // sent just before a membership change can arrive in a view without majority
                   // (Corosync delivers it in the new configuration). Every member judges alike.
                   if (decision.director != engine::directorOf(view_)) return;
                   engine::applyDecision(*state_, decision);
                   stateChanged();
                   if (deps_.observer) deps_.observer->onApplied(message, *state_);
                   agent_->onDecision(decision);
                   // A configuration change may have changed what the view's rules read from it.
                   view_.clusterSize = state_->config->cluster->nodes.size();
                   view_.twoNode = state_->config->cluster->membership.twoNode;
                   for (const auto& action : decision.actions) answerOwn(action);
                 },
                 [](const auto&) {},
             },
             message);
  maybeDecide();
}

void NodeManager::answerOwn(const engine::Action& action) {
  if (const auto* reply = std::get_if<engine::AdminReply>(&action); reply && reply->from == view_.self) {
    auto it = adminWaiting_.find(reply->id);
    if (it == adminWaiting_.end()) return;
    AdminDone done = std::move(it->second);
    adminWaiting_.erase(it);
    answer([done = std::move(done), ok = reply->ok, text = reply->message] { done(ok, text); });
  } else if (const auto* config = std::get_if<engine::ConfigReply>(&action); config && config->from == view_.self) {
    auto it = configWaiting_.find(config->id);
    if (it == configWaiting_.end()) return;
    ConfigDone done = std::move(it->second);
    configWaiting_.erase(it);
    answer([done = std::move(done), reply = *config] { done(reply); });
  }
}

void NodeManager::answer(std::function<void()> done) {
  if (deps_.store) {
    pendingAcks_.push_back(std::move(done));
  } else {
    done();
  }
}

void NodeManager::stateChanged() {
  if (!deps_.store) return;
  dirty_ = true;
  // One save at a time: changes made while one is being written go into the next, so a stream of
  // messages costs one encoding per disk write, not one per message.
  if (persistScheduled_ || saving_) return;
  persistScheduled_ = true;
  deps_.scheduler->after(Duration(0), [this, alive = alive_] {
    if (!*alive) return;
    persistScheduled_ = false;
    persist();
  });
}

void NodeManager::persist() {
  if (!state_ || !dirty_) return;
  dirty_ = false;
  saving_ = true;
  std::vector<std::function<void()>> acks = std::move(pendingAcks_);
  pendingAcks_.clear();
  // An answer goes out even if this host's disk failed: the outcome is in every member's state.
  deps_.store->save(encodeState(*state_), [this, alive = alive_, acks = std::move(acks)](bool) {
    if (!*alive) return;
    saving_ = false;
    for (const auto& ack : acks) ack();
    if (dirty_) persist();
  });
}

void NodeManager::maybeDecide() {
  if (!synced() || !view_.quorate || engine::directorOf(view_) != view_.self || decisionInFlight_) return;
  const TimePoint now = deps_.scheduler->now();
  engine::EngineStep step = engine::decide(*state_, view_, now);
  if (wakeTimer_) {
    deps_.scheduler->cancel(*wakeTimer_);
    wakeTimer_.reset();
  }
  if (step.wakeAt) {
    wakeTimer_ = deps_.scheduler->at(*step.wakeAt, [this, alive = alive_] {
      if (!*alive) return;
      wakeTimer_.reset();
      maybeDecide();
    });
  }
  if (step.actions.empty()) return;
  decisionInFlight_ = true;
  send(engine::Envelope(engine::Decision{view_.self, now, std::move(step.actions)}));
}

}  // namespace kvm_amf::node
