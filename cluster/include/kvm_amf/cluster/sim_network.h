// A simulated Corosync: hosts, their membership (with partitions), quorum, and a CPG-like group
// with virtual synchrony and total order, all on a simulated scheduler. Deterministic: the same
// calls at the same simulated times give the same deliveries in the same order.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kvm_amf/cluster/fence_agent.h"
#include "kvm_amf/cluster/group.h"
#include "kvm_amf/common/scheduler.h"

namespace kvm_amf::cluster {

struct SimNetworkTiming {
  Duration detect{360};  // a membership change is agreed this long after it happens (token + consensus)
  Duration latency{1};   // a multicast is delivered this long after it is sent
};

class SimNetwork {
 public:
  // Hosts are node ids; every host has one vote. `twoNode`: votequorum two_node.
  SimNetwork(Scheduler& scheduler, std::set<int> hosts, bool twoNode, SimNetworkTiming timing);
  ~SimNetwork();
  SimNetwork(const SimNetwork&) = delete;
  SimNetwork& operator=(const SimNetwork&) = delete;

  // The group channel of the process on `host` (one at a time; a new one replaces a dead one).
  std::unique_ptr<GroupChannel> channel(int host);

  // Sees every message once, when it is first delivered.
  void setTap(std::function<void(int sender, const std::string& payload)> tap) { tap_ = std::move(tap); }

  // Physical events; agreed by the members `timing.detect` later.
  void hostDown(int host);  // the host and its process are gone
  void hostUp(int host);
  void partition(const std::vector<std::set<int>>& sides);  // hosts in no side are isolated
  void heal();

  // The agreed membership of `host` (empty when it is down).
  std::set<int> membership(int host) const;
  bool quorate(int host) const;
  bool hostIsUp(int host) const;

  // Used by the channels.
  void join(int host, GroupListener* listener);
  void leave(int host, LeaveReason reason);
  void multicast(int sender, std::string payload);

 private:
  struct Message {
    int sender = 0;
    std::string payload;
  };
  struct Member {
    GroupListener* listener = nullptr;
    std::set<int> viewMembers;  // the last view delivered to it
    std::uint64_t incarnation = 0;
    std::set<int> viewHosts;
    bool viewQuorate = false;
  };
  struct Pending {  // a multicast on its way, to the members of the sender's view
    std::uint64_t id = 0;
    int sender = 0;
    std::string payload;
    std::vector<std::pair<int, std::uint64_t>> recipients;  // host, incarnation
    TimerId timer = 0;
  };

  bool connected(int a, int b) const;
  std::vector<std::set<int>> components() const;
  bool quorateSet(const std::set<int>& hosts) const;
  void scheduleReconfigure();
  void reconfigure();
  void freezeAll();
  // Delivers the members' new view of `component` (after everything still in flight).
  void deliverView(const std::set<int>& component, const std::vector<std::pair<int, LeaveReason>>& processLeft,
                   const std::vector<int>& processJoined);
  void deliverUpTo(std::uint64_t id);
  void flushHeld(const std::set<int>& component);

  Scheduler& scheduler_;
  std::set<int> allHosts_;
  bool twoNode_;
  SimNetworkTiming timing_;
  std::map<int, bool> up_;
  std::map<int, int> side_;
  std::map<int, std::set<int>> agreed_;      // per up host: its agreed membership
  std::set<int> frozen_;                     // hosts whose membership is being re-formed
  std::map<int, std::deque<Message>> held_;  // messages sent while frozen, by sender
  std::map<int, Member> members_;            // group members (processes that joined)
  std::uint64_t incarnation_ = 0;
  std::deque<Pending> inflight_;
  std::uint64_t nextPending_ = 0;
  std::optional<TimerId> reconfigureTimer_;
  std::function<void(int, const std::string&)> tap_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// A fence agent for the simulation: calls `powerOff(node)` after `delay`, unless told to fail.
class SimFenceAgent : public FenceAgent {
 public:
  SimFenceAgent(Scheduler& scheduler, Duration delay, std::function<bool(const std::string& node)> powerOff);
  void fence(const std::string& node, const FenceMethod& method, Done done) override;

 private:
  Scheduler& scheduler_;
  Duration delay_;
  std::function<bool(const std::string&)> powerOff_;
};

}  // namespace kvm_amf::cluster
