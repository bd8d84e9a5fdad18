// The group channel over the host's Corosync: membership and agreed-order multicast from CPG,
// quorum from votequorum, node names from cmap. Driven by the event loop through CPG's file
// descriptor; nothing polls.
//
// Views: every CPG configuration change becomes a ViewChange, delivered in order with the
// messages, so every member sees the same views between the same messages. `hosts` is the totem
// ring membership; a ring change that leaves the group's members as they were is a view of its
// own. `quorate` is computed from the ring, not read from votequorum at delivery time, so that
// every member of a view judges it alike: the ring's votes (one a node) reach votequorum's
// quorum (which accounts for expected votes and two_node), and, when wait_for_all is on, the
// host has either seen every configured node in one ring or been told quorate by votequorum.
//
// Losing Corosync (its process died): the channel delivers a view with this member alone, not
// quorate, then tries to reconnect every `reconnectInterval`; a reconnection joins the group
// again and delivers the new membership as a view like any other.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "kvm_amf/cluster/group.h"
#include "kvm_amf/common/event_loop.h"

namespace kvm_amf::cluster {

struct CorosyncGroupOptions {
  std::string groupName = "kvm-amf";
  Duration reconnectInterval{1000};
  Duration retryInterval{2};  // send or join again after Corosync said "try again"
};

class CorosyncGroup : public GroupChannel {
 public:
  // Connects to this host's Corosync (CPG, votequorum, cmap). Fails with a message naming what
  // is missing when Corosync is not running or refuses. REQUIRES: loop outlives the group.
  static Result<std::unique_ptr<CorosyncGroup>> connect(EventLoop& loop, CorosyncGroupOptions options = {});
  ~CorosyncGroup() override;
  CorosyncGroup(const CorosyncGroup&) = delete;
  CorosyncGroup& operator=(const CorosyncGroup&) = delete;

  int localNodeId() const override { return localNodeId_; }
  Status join(GroupListener* listener) override;
  // Queues the payload if Corosync pushes back, and sends it when it can, in order. Fails only
  // when not joined or Corosync is lost (the message is then lost, as on a crash).
  Status multicast(std::string payload) override;
  void leave() override;

  // The configured nodes, id -> name, from Corosync's nodelist.
  const std::map<int, std::string>& nodeNames() const { return nodeNames_; }
  bool connected() const { return cpg_ != 0 && !broken_; }

  // Messages waiting for Corosync's flow control (for metrics and tests).
  std::size_t queued() const { return outbox_.size(); }

  // Called from the C callbacks; not for use by others.
  struct Access;

 private:
  CorosyncGroup(EventLoop& loop, CorosyncGroupOptions options);
  Status open();  // connects CPG, votequorum and cmap; on failure nothing stays open
  void close();
  Status joinGroup();
  void onReadable();
  void lost(const std::string& why);  // from inside libcpg calls: defers the rest to disconnect()
  void disconnect();
  void scheduleReconnect();
  void flush();
  // `departed`: the CPG left list (node id, reason), which may name processes of members.
  void onConfChange(std::set<int> members, const std::vector<std::pair<int, LeaveReason>>& departed);
  // Runs callback now, or, until this connection's first totem configuration has arrived, holds
  // it (with every later one, in order): a view is never built without the ring.
  void inOrder(std::function<void()> callback);
  void onRing(std::set<int> ring);
  void emit(ViewChange view);
  bool quorate(const std::set<int>& hosts);

  EventLoop& loop_;
  CorosyncGroupOptions options_;
  std::uint64_t cpg_ = 0;         // cpg_handle_t; 0: not connected
  std::uint64_t votequorum_ = 0;  // votequorum_handle_t
  int cpgFd_ = -1;
  bool broken_ = false;  // Corosync failed; the handles are closed on the next turn
  int localNodeId_ = 0;
  std::map<int, std::string> nodeNames_;
  GroupListener* listener_ = nullptr;
  bool joined_ = false;     // the listener wants to be in the group
  bool inView_ = false;     // our join has been confirmed by a configuration change
  std::set<int> members_;   // node ids in the group, as last delivered
  std::set<int> ring_;      // the totem membership
  bool ringKnown_ = false;  // this connection's first totem configuration has arrived
  std::deque<std::function<void()>> held_;
  std::optional<ViewChange> last_;
  bool sawAllNodes_ = false;  // wait_for_all satisfied
  std::deque<std::string> outbox_;
  std::optional<TimerId> retryTimer_;  // sends held back by flow control
  std::optional<TimerId> joinTimer_;   // a join Corosync asked to try again
  std::optional<TimerId> reconnectTimer_;
};

}  // namespace kvm_amf::cluster
