#include "kvm_amf/cluster/sim_network.h"

#include <algorithm>

namespace kvm_amf::cluster {
namespace {

class SimChannel : public GroupChannel {
 public:
  SimChannel(SimNetwork& network, std::weak_ptr<bool> networkAlive, int host)
      : network_(network), networkAlive_(std::move(networkAlive)), host_(host) {}
  ~SimChannel() override {
    // Destroyed without leave(): the process died.
    if (joined_ && !networkAlive_.expired()) network_.leave(host_, LeaveReason::kProcessDied);
  }

  int localNodeId() const override { return host_; }
  Status join(GroupListener* listener) override {
    if (!network_.hostIsUp(host_)) return Error{"host " + std::to_string(host_) + " is down"};
    joined_ = true;
    network_.join(host_, listener);
    return Status::success();
  }
  Status multicast(std::string payload) override {
    if (!joined_) return Error{"not in the group"};
    network_.multicast(host_, std::move(payload));
    return Status::success();
  }
  void leave() override {
    if (!joined_) return;
    joined_ = false;
    network_.leave(host_, LeaveReason::kLeft);
  }

 private:
  SimNetwork& network_;
  std::weak_ptr<bool> networkAlive_;
  int host_;
  bool joined_ = false;
};

}  // namespace

SimNetwork::SimNetwork(Scheduler& scheduler, std::set<int> hosts, bool twoNode, SimNetworkTiming timing)
    : scheduler_(scheduler), allHosts_(std::move(hosts)), twoNode_(twoNode), timing_(timing) {
  for (int h : allHosts_) {
    up_[h] = true;
    side_[h] = 0;
    agreed_[h] = allHosts_;
  }
}

SimNetwork::~SimNetwork() {
  *alive_ = false;
  if (reconfigureTimer_) scheduler_.cancel(*reconfigureTimer_);
  for (const auto& pending : inflight_) scheduler_.cancel(pending.timer);
}

std::unique_ptr<GroupChannel> SimNetwork::channel(int host) {
  return std::make_unique<SimChannel>(*this, alive_, host);
}

bool SimNetwork::hostIsUp(int host) const {
  auto it = up_.find(host);
  return it != up_.end() && it->second;
}

bool SimNetwork::connected(int a, int b) const { return hostIsUp(a) && hostIsUp(b) && side_.at(a) == side_.at(b); }

std::vector<std::set<int>> SimNetwork::components() const {
  std::vector<std::set<int>> out;
  std::set<int> seen;
  for (int h : allHosts_) {
    if (!hostIsUp(h) || seen.contains(h)) continue;
    std::set<int> component;
    for (int other : allHosts_) {
      if (connected(h, other)) component.insert(other);
    }
    seen.insert(component.begin(), component.end());
    out.push_back(component);
  }
  return out;
}

bool SimNetwork::quorateSet(const std::set<int>& hosts) const {
  const std::size_t votes = hosts.size();
  if (twoNode_ && allHosts_.size() == 2) return votes >= 1;
  return votes * 2 > allHosts_.size();
}

std::set<int> SimNetwork::membership(int host) const {
  auto it = agreed_.find(host);
  return it == agreed_.end() ? std::set<int>{} : it->second;
}

bool SimNetwork::quorate(int host) const { return hostIsUp(host) && quorateSet(membership(host)); }

void SimNetwork::join(int host, GroupListener* listener) {
  Member member;
  member.listener = listener;
  member.incarnation = ++incarnation_;
  members_[host] = member;
  if (frozen_.contains(host)) return;  // the coming reconfiguration includes it
  scheduler_.after(timing_.latency, [this, alive = alive_, host] {
    if (!*alive || !hostIsUp(host) || frozen_.contains(host)) return;
    deliverView(agreed_.at(host), {}, {});
  });
}

void SimNetwork::leave(int host, LeaveReason reason) {
  if (members_.erase(host) == 0) return;
  held_.erase(host);
  if (!hostIsUp(host) || frozen_.contains(host)) return;
  scheduler_.after(timing_.latency, [this, alive = alive_, host, reason] {
    if (!*alive || !hostIsUp(host) || frozen_.contains(host)) return;
    deliverView(agreed_.at(host), {{host, reason}}, {});
  });
}

void SimNetwork::multicast(int sender, std::string payload) {
  auto it = members_.find(sender);
  if (it == members_.end()) return;
  if (frozen_.contains(sender)) {
    held_[sender].push_back({sender, std::move(payload)});
    return;
  }
  Pending pending;
  pending.sender = sender;
  pending.payload = std::move(payload);
  for (int r : it->second.viewMembers) {
    auto m = members_.find(r);
    if (m != members_.end()) pending.recipients.emplace_back(r, m->second.incarnation);
  }
  const std::uint64_t id = ++nextPending_;
  pending.id = id;
  pending.timer = scheduler_.after(timing_.latency, [this, alive = alive_, id] {
    if (!*alive) return;
    deliverUpTo(id);
  });
  inflight_.push_back(std::move(pending));
}

void SimNetwork::deliverUpTo(std::uint64_t id) {
  while (!inflight_.empty() && inflight_.front().id <= id) {
    Pending pending = std::move(inflight_.front());
    inflight_.pop_front();
    scheduler_.cancel(pending.timer);
    if (tap_) tap_(pending.sender, pending.payload);
    for (const auto& [r, incarnation] : pending.recipients) {
      auto m = members_.find(r);
      if (m == members_.end() || m->second.incarnation != incarnation) continue;
      m->second.listener->onDeliver(pending.sender, pending.payload);
    }
  }
}

void SimNetwork::deliverView(const std::set<int>& component,
                             const std::vector<std::pair<int, LeaveReason>>& processLeft, const std::vector<int>&) {
  // Virtual synchrony: what was sent in the old view is delivered before the new view.
  if (!inflight_.empty()) deliverUpTo(inflight_.back().id);
  std::set<int> group;
  for (int h : component) {
    if (members_.contains(h)) group.insert(h);
  }
  const bool isQuorate = quorateSet(component);
  for (int m : group) {
    auto it = members_.find(m);
    if (it == members_.end()) continue;
    ViewChange view;
    view.members = group;
    view.hosts = component;
    view.quorate = isQuorate;
    for (int g : group) {
      if (!it->second.viewMembers.contains(g)) view.joined.push_back(g);
    }
    for (int old : it->second.viewMembers) {
      if (group.contains(old)) continue;
      LeaveReason reason = LeaveReason::kProcessDied;
      if (!component.contains(old)) reason = LeaveReason::kHostLeft;
      for (const auto& [h, r] : processLeft) {
        if (h == old) reason = r;
      }
      view.left.emplace_back(old, reason);
    }
    if (view.joined.empty() && view.left.empty() && it->second.viewHosts == component &&
        it->second.viewQuorate == isQuorate) {
      continue;  // nothing changed for this member
    }
    it->second.viewMembers = group;
    it->second.viewHosts = component;
    it->second.viewQuorate = isQuorate;
    it->second.listener->onView(view);
  }
}

void SimNetwork::scheduleReconfigure() {
  if (reconfigureTimer_) scheduler_.cancel(*reconfigureTimer_);
  reconfigureTimer_ = scheduler_.after(timing_.detect, [this, alive = alive_] {
    if (!*alive) return;
    reconfigureTimer_.reset();
    reconfigure();
  });
}

void SimNetwork::reconfigure() {
  if (!inflight_.empty()) deliverUpTo(inflight_.back().id);
  for (const auto& component : components()) {
    for (int h : component) {
      agreed_[h] = component;
      frozen_.erase(h);
    }
    deliverView(component, {}, {});
    flushHeld(component);
  }
}

void SimNetwork::flushHeld(const std::set<int>& component) {
  for (int sender : component) {
    auto it = held_.find(sender);
    if (it == held_.end()) continue;
    std::deque<Message> messages = std::move(it->second);
    held_.erase(it);
    for (auto& m : messages) multicast(m.sender, std::move(m.payload));
  }
}

void SimNetwork::freezeAll() {
  for (int h : allHosts_) {
    if (hostIsUp(h)) frozen_.insert(h);
  }
}

void SimNetwork::hostDown(int host) {
  if (!hostIsUp(host)) return;
  up_[host] = false;
  members_.erase(host);
  held_.erase(host);
  agreed_.erase(host);
  frozen_.erase(host);
  for (auto& [h, membership] : agreed_) {
    if (membership.contains(host)) frozen_.insert(h);
  }
  scheduleReconfigure();
}

void SimNetwork::hostUp(int host) {
  if (hostIsUp(host)) return;
  up_[host] = true;
  agreed_[host] = {host};
  frozen_.insert(host);
  for (int h : allHosts_) {
    if (connected(h, host)) frozen_.insert(h);
  }
  scheduleReconfigure();
}

void SimNetwork::partition(const std::vector<std::set<int>>& sides) {
  int isolated = -1;
  for (int h : allHosts_) side_[h] = isolated--;
  int side = 1;
  for (const auto& hosts : sides) {
    for (int h : hosts) side_[h] = side;
    ++side;
  }
  freezeAll();
  scheduleReconfigure();
}

void SimNetwork::heal() {
  for (int h : allHosts_) side_[h] = 0;
  freezeAll();
  scheduleReconfigure();
}

SimFenceAgent::SimFenceAgent(Scheduler& scheduler, Duration delay, std::function<bool(const std::string&)> powerOff)
    : scheduler_(scheduler), delay_(delay), powerOff_(std::move(powerOff)) {}

void SimFenceAgent::fence(const std::string& node, const FenceMethod&, Done done) {
  scheduler_.after(delay_, [this, node, done = std::move(done)] {
    const bool ok = powerOff_(node);
    done(ok, ok ? "powered off" : "the fence agent failed");
  });
}

}  // namespace kvm_amf::cluster
