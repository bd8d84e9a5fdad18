// The node manager: one per host, the same class in amfd and in amf-sim. It is a member of the
// group, keeps its copy of the replicated state by applying the group's ordered messages, takes
// the state from its peers when it joins (state transfer), decides when it is the director, and
// has its local agent carry out what concerns its own host.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "kvm_amf/amf/engine/cluster_state.h"
#include "kvm_amf/amf/engine/codec.h"
#include "kvm_amf/amf/engine/engine.h"
#include "kvm_amf/amf/engine/messages.h"
#include "kvm_amf/amf/node/local_agent.h"
#include "kvm_amf/amf/node/state_store.h"
#include "kvm_amf/cluster/group.h"

namespace kvm_amf::node {

// What a node manager lets its owner watch (journals, the event stream, metrics). Called on the
// loop thread, after the fact; an observer must not call back into the node manager.
class NodeObserver {
 public:
  virtual ~NodeObserver() = default;
  virtual void onView(const engine::View& /*view*/) {}
  // A report, or a decision that counted, has been applied to the state.
  virtual void onApplied(const engine::Envelope& /*message*/, const engine::ClusterState& /*state*/) {}
  // A state transfer ended: the state is the group's.
  virtual void onSynced(const engine::ClusterState& /*state*/) {}
};

struct NodeManagerDeps {
  Scheduler* scheduler = nullptr;
  cluster::GroupChannel* group = nullptr;
  cluster::FenceAgent* fence = nullptr;
  vmm::Hypervisor* hypervisor = nullptr;
  vmm::GuestChannel* guests = nullptr;
  // Optional: where the state is kept across restarts. With a store, every change is saved and
  // an operator's command is answered only once the state holding its outcome is on this host's
  // disk.
  StateStore* store = nullptr;
  NodeObserver* observer = nullptr;  // optional
  VmOperationLimits vmLimits{};      // how long this host's VM operations may take
};

class NodeManager : public cluster::GroupListener {
 public:
  using AdminDone = std::function<void(bool ok, std::string message)>;
  using ConfigDone = std::function<void(const engine::ConfigReply& reply)>;

  // `initial`: the state this host had (from its disk, or the configuration's initial state); the
  // group's freshest state replaces it on joining. REQUIRES: every dependency outlives this.
  NodeManager(std::string nodeName, NodeManagerDeps deps, std::optional<engine::ClusterState> initial);
  ~NodeManager() override;
  NodeManager(const NodeManager&) = delete;
  NodeManager& operator=(const NodeManager&) = delete;

  Status start();  // joins the group
  void stop();     // leaves the group; VMs keep running

  // Sends an operator's command into the stream; `done` gets the director's answer.
  void submit(const model::AdminCommand& command, AdminDone done);
  // Sends a configuration change into the stream: `config`, the whole configuration wanted, merged
  // onto generation `baseGeneration` (config_change.h does the merging). `done` gets the director's
  // answer: installed as the next generation, or refused (stale: the generation has moved on).
  // Like `submit`, with a store the answer comes once the state holding it is on this host's disk,
  // and it never comes if this node manager leaves the group first.
  void submitConfiguration(std::shared_ptr<const model::Configuration> config, std::uint64_t baseGeneration,
                           ConfigDone done);

  // The replicated state once synchronised with the group; nullptr before.
  const engine::ClusterState* state() const { return synced() ? &*state_ : nullptr; }
  bool synced() const { return state_.has_value() && !syncing_ && inGroup_; }
  const engine::View& view() const { return view_; }
  bool isDirector() const { return synced() && engine::directorOf(view_) == view_.self; }
  const std::string& name() const { return name_; }
  std::uint64_t malformedMessages() const { return malformed_; }

  void onView(const cluster::ViewChange& view) override;
  void onDeliver(int sender, const std::string& payload) override;

 private:
  void send(const engine::Envelope& message);
  // Starts a state-transfer round: a new one (numbered above every round heard of), or `join`.
  void startSync(std::optional<std::uint64_t> join = std::nullopt);
  void offer(const engine::StateOffer& offer);
  void adopt(const engine::StateSnapshot& snapshot);
  void apply(const engine::Envelope& message);
  void maybeDecide();
  // The answer to a request of this node manager, if `action` is one.
  void answerOwn(const engine::Action& action);
  // Answers a request of this node manager: at once, or with a store once the state holding the
  // answer is on disk.
  void answer(std::function<void()> done);
  void stateChanged();  // schedules one save for the changes of this turn
  void persist();

  std::string name_;
  NodeManagerDeps deps_;
  std::optional<engine::ClusterState> state_;
  engine::View view_;
  bool inGroup_ = false;
  bool syncing_ = false;
  std::map<int, engine::StateOffer> offers_;
  int snapshotFrom_ = 0;
  std::uint64_t round_ = 0;                // the state-transfer round this member is in, or last finished
  std::uint64_t highestRound_ = 0;         // the highest round heard of
  std::deque<engine::Envelope> buffered_;  // reports and decisions delivered while synchronising
  bool decisionInFlight_ = false;
  std::optional<TimerId> wakeTimer_;
  bool everQuorate_ = false;               // this node manager has been in a quorate view
  std::optional<TimerId> selfFenceTimer_;  // without quorum: self-fence when it runs
  std::uint64_t nextAdminId_ = 1;
  std::map<std::uint64_t, AdminDone> adminWaiting_;
  std::map<std::uint64_t, ConfigDone> configWaiting_;
  std::uint64_t malformed_ = 0;
  bool persistScheduled_ = false;
  bool saving_ = false;                             // a save is being written
  bool dirty_ = false;                              // the state changed since the last save began
  std::vector<std::function<void()>> pendingAcks_;  // answers waiting for the next save
  engine::KnownConfiguration known_;                // this node's configuration, to decode snapshots cheaply
  std::unique_ptr<LocalAgent> agent_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace kvm_amf::node
