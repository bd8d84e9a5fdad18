// The group channel: membership with virtual synchrony and totally ordered multicast, as Corosync
// CPG provides it (with votequorum for quorum). Real: cluster/corosync; simulated: cluster/sim.
#pragma once

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kvm_amf/common/result.h"

namespace kvm_amf::cluster {

// Why a member left the group (Corosync CPG's reasons).
enum class LeaveReason {
  kLeft,         // it left on purpose
  kProcessDied,  // its process died; its host is still in the membership
  kHostLeft,     // its host left the membership (crash, partition)
};

struct ViewChange {
  std::set<int> members;  // node ids of the group's members now
  std::vector<int> joined;
  std::vector<std::pair<int, LeaveReason>> left;
  std::set<int> hosts;   // node ids of hosts in this partition's membership
  bool quorate = false;  // this partition has quorum
};

// Callbacks on the owner's event loop. Virtual synchrony: every member of a view gets the same
// messages in the same order between two view changes, and a message is delivered in the view in
// which it was sent.
class GroupListener {
 public:
  virtual ~GroupListener() = default;
  virtual void onView(const ViewChange& view) = 0;
  virtual void onDeliver(int sender, const std::string& payload) = 0;
};

class GroupChannel {
 public:
  virtual ~GroupChannel() = default;
  virtual int localNodeId() const = 0;
  // Joins; the first onView includes this member. REQUIRES: listener outlives the membership.
  virtual Status join(GroupListener* listener) = 0;
  // Sends to every member, this one included, in the group's total order.
  virtual Status multicast(std::string payload) = 0;
  virtual void leave() = 0;
};

}  // namespace kvm_amf::cluster
