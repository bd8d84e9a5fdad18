#include "kvm_amf/cluster/corosync_group.h"

#include <corosync/cmap.h>
#include <corosync/cpg.h>
#include <corosync/votequorum.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace kvm_amf::cluster {
namespace {

std::string csError(const char* call, cs_error_t error) {
  return std::string(call) + ": " + cs_strerror(error) + " (" + std::to_string(static_cast<int>(error)) + ")";
}

LeaveReason leaveReason(uint32_t reason) {
  switch (reason) {
    case CPG_REASON_PROCDOWN:
      return LeaveReason::kProcessDied;
    case CPG_REASON_NODEDOWN:
      return LeaveReason::kHostLeft;
    default:
      return LeaveReason::kLeft;
  }
}

// Reads the configured nodes (nodelist.node.N.{nodeid,name,ring0_addr}) from cmap.
Result<std::map<int, std::string>> readNodeNames() {
  cmap_handle_t cmap = 0;
  cs_error_t error = cmap_initialize(&cmap);
  if (error != CS_OK) return Error{csError("cmap_initialize", error)};
  std::map<int, std::string> names;
  cmap_iter_handle_t iter = 0;
  error = cmap_iter_init(cmap, "nodelist.node.", &iter);
  if (error != CS_OK) {
    cmap_finalize(cmap);
    return Error{csError("cmap_iter_init", error)};
  }
  std::map<std::string, int> ids;  // "nodelist.node.N" -> node id
  char key[CMAP_KEYNAME_MAXLEN + 1];
  size_t length = 0;
  cmap_value_types_t type{};
  while (cmap_iter_next(cmap, iter, key, &length, &type) == CS_OK) {
    const std::string name(key);
    const std::string suffix = ".nodeid";
    if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    uint32_t id = 0;
    if (cmap_get_uint32(cmap, key, &id) == CS_OK)
      ids[name.substr(0, name.size() - suffix.size())] = static_cast<int>(id);
  }
  cmap_iter_finalize(cmap, iter);
  for (const auto& [prefix, id] : ids) {
    char* value = nullptr;
    if (cmap_get_string(cmap, (prefix + ".name").c_str(), &value) != CS_OK &&
        cmap_get_string(cmap, (prefix + ".ring0_addr").c_str(), &value) != CS_OK) {
      names[id] = "node" + std::to_string(id);
      continue;
    }
    names[id] = value;
    free(value);  // NOLINT(cppcoreguidelines-no-malloc): cmap allocates with malloc
  }
  cmap_finalize(cmap);
  return names;
}

}  // namespace

// The C callbacks find their group through the handle's context.
struct CorosyncGroup::Access {
  static CorosyncGroup* of(cpg_handle_t handle) {
    void* context = nullptr;
    if (cpg_context_get(handle, &context) != CS_OK) return nullptr;
    return static_cast<CorosyncGroup*>(context);
  }

  static void deliver(cpg_handle_t handle, const cpg_name*, uint32_t nodeid, uint32_t, void* message, size_t length) {
    CorosyncGroup* group = of(handle);
    if (!group) return;
    group->inOrder([group, nodeid, payload = std::string(static_cast<const char*>(message), length)] {
      if (group->inView_ && group->listener_) group->listener_->onDeliver(static_cast<int>(nodeid), payload);
    });
  }

  static void confChange(cpg_handle_t handle, const cpg_name*, const cpg_address* members, size_t memberCount,
                         const cpg_address* left, size_t leftCount, const cpg_address*, size_t) {
    CorosyncGroup* group = of(handle);
    if (!group || !group->joined_) return;
    std::set<int> now;
    bool self = false;
    for (size_t i = 0; i < memberCount; ++i) {
      now.insert(static_cast<int>(members[i].nodeid));
      if (static_cast<int>(members[i].nodeid) == group->localNodeId_ &&
          members[i].pid == static_cast<uint32_t>(getpid())) {
        self = true;
      }
    }
    if (!self) return;  // a change before our own join took effect
    std::vector<std::pair<int, LeaveReason>> gone;
    for (size_t i = 0; i < leftCount; ++i)
      gone.emplace_back(static_cast<int>(left[i].nodeid), leaveReason(left[i].reason));
    group->inOrder(
        [group, now = std::move(now), gone = std::move(gone)]() mutable { group->onConfChange(std::move(now), gone); });
  }

  static void totemChange(cpg_handle_t handle, cpg_ring_id, uint32_t count, const uint32_t* members) {
    CorosyncGroup* group = of(handle);
    if (!group) return;
    std::set<int> ring;
    for (uint32_t i = 0; i < count; ++i) ring.insert(static_cast<int>(members[i]));
    group->onRing(std::move(ring));
  }
};

Result<std::unique_ptr<CorosyncGroup>> CorosyncGroup::connect(EventLoop& loop, CorosyncGroupOptions options) {
  std::unique_ptr<CorosyncGroup> group(new CorosyncGroup(loop, std::move(options)));
  Status status = group->open();
  if (!status.ok()) return status.error();
  return group;
}

CorosyncGroup::CorosyncGroup(EventLoop& loop, CorosyncGroupOptions options)
    : loop_(loop), options_(std::move(options)) {}

CorosyncGroup::~CorosyncGroup() {
  if (retryTimer_) loop_.cancel(*retryTimer_);
  if (reconnectTimer_) loop_.cancel(*reconnectTimer_);
  close();
}

Status CorosyncGroup::open() {
  Result<std::map<int, std::string>> names = readNodeNames();
  if (!names.ok())
    return Error{"cannot read the node list from Corosync (is corosync running?): " + names.error().message};

  cpg_model_v1_data_t model{};
  model.model = CPG_MODEL_V1;
  model.cpg_deliver_fn = &Access::deliver;
  model.cpg_confchg_fn = &Access::confChange;
  model.cpg_totem_confchg_fn = &Access::totemChange;
  model.flags = CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF;
  cpg_handle_t cpg = 0;
  cs_error_t error = cpg_model_initialize(&cpg, CPG_MODEL_V1, reinterpret_cast<cpg_model_data_t*>(&model), this);
  if (error != CS_OK) return Error{"cannot connect to Corosync's CPG: " + csError("cpg_model_initialize", error)};
  unsigned int nodeid = 0;
  int fd = -1;
  if ((error = cpg_local_get(cpg, &nodeid)) != CS_OK || (error = cpg_fd_get(cpg, &fd)) != CS_OK) {
    cpg_finalize(cpg);
    return Error{"Corosync's CPG: " + csError("cpg_local_get/cpg_fd_get", error)};
  }
  votequorum_handle_t votequorum = 0;
  votequorum_callbacks_t callbacks{};
  if ((error = votequorum_initialize(&votequorum, &callbacks)) != CS_OK) {
    cpg_finalize(cpg);
    return Error{"cannot connect to Corosync's votequorum (is the quorum provider corosync_votequorum?): " +
                 csError("votequorum_initialize", error)};
  }
  Status watched = loop_.watch(fd, [this] { onReadable(); });
  if (!watched.ok()) {
    votequorum_finalize(votequorum);
    cpg_finalize(cpg);
    return watched;
  }
  cpg_ = cpg;
  votequorum_ = votequorum;
  cpgFd_ = fd;
  localNodeId_ = static_cast<int>(nodeid);
  nodeNames_ = std::move(names.value());
  return Status::success();
}

void CorosyncGroup::close() {
  if (cpgFd_ >= 0) loop_.unwatch(cpgFd_);
  cpgFd_ = -1;
  if (cpg_) cpg_finalize(cpg_);
  if (votequorum_) votequorum_finalize(votequorum_);
  cpg_ = 0;
  votequorum_ = 0;
  broken_ = false;
  ringKnown_ = false;
  held_.clear();
  inView_ = false;
  outbox_.clear();
  if (retryTimer_) loop_.cancel(*retryTimer_);
  retryTimer_.reset();
  if (joinTimer_) loop_.cancel(*joinTimer_);
  joinTimer_.reset();
}

Status CorosyncGroup::join(GroupListener* listener) {
  listener_ = listener;
  joined_ = true;
  if (!cpg_) return Error{"not connected to Corosync"};
  return joinGroup();
}

Status CorosyncGroup::joinGroup() {
  cpg_name name{};
  if (options_.groupName.size() > CPG_MAX_NAME_LENGTH) return Error{"group name too long: " + options_.groupName};
  name.length = static_cast<uint32_t>(options_.groupName.size());
  std::memcpy(name.value, options_.groupName.data(), name.length);
  const cs_error_t error = cpg_join(cpg_, &name);
  if (error == CS_ERR_TRY_AGAIN) {
    // Corosync is synchronising after a membership change: join a little later.
    if (!joinTimer_) {
      joinTimer_ = loop_.after(options_.retryInterval, [this] {
        joinTimer_.reset();
        if (!cpg_ || broken_ || !joined_) return;
        Status status = joinGroup();
        if (!status.ok()) lost(status.error().message);
      });
    }
    return Status::success();
  }
  if (error != CS_OK) {
    return Error{"cannot join the CPG group " + options_.groupName + ": " + csError("cpg_join", error)};
  }
  return Status::success();
}

void CorosyncGroup::leave() {
  joined_ = false;
  inView_ = false;
  outbox_.clear();
  if (!cpg_) return;
  cpg_name name{};
  name.length = static_cast<uint32_t>(std::min<std::size_t>(options_.groupName.size(), CPG_MAX_NAME_LENGTH));
  std::memcpy(name.value, options_.groupName.data(), name.length);
  cpg_leave(cpg_, &name);
}

Status CorosyncGroup::multicast(std::string payload) {
  if (!cpg_ || broken_) return Error{"not connected to Corosync"};
  if (!joined_) return Error{"not in the group"};
  outbox_.push_back(std::move(payload));
  flush();
  return Status::success();
}

void CorosyncGroup::flush() {
  while (cpg_ && !broken_ && !outbox_.empty()) {
    iovec iov{outbox_.front().data(), outbox_.front().size()};
    const cs_error_t error = cpg_mcast_joined(cpg_, CPG_TYPE_AGREED, &iov, 1);
    if (error == CS_ERR_TRY_AGAIN) {
      if (!retryTimer_) {
        retryTimer_ = loop_.after(options_.retryInterval, [this] {
          retryTimer_.reset();
          flush();
        });
      }
      return;
    }
    if (error != CS_OK) {
      lost(csError("cpg_mcast_joined", error));
      return;
    }
    outbox_.pop_front();
  }
}

void CorosyncGroup::onReadable() {
  if (broken_) return;
  const cs_error_t error = cpg_dispatch(cpg_, CS_DISPATCH_ALL);
  if (error != CS_OK && error != CS_ERR_TRY_AGAIN) {
    lost(csError("cpg_dispatch", error));
    return;
  }
  // Deliveries mean Corosync's queue moved: send what flow control held back.
  if (!outbox_.empty()) flush();
}

void CorosyncGroup::lost(const std::string& why) {
  if (broken_) return;
  broken_ = true;
  std::fprintf(stderr, "kvm-amf: lost Corosync (%s); reconnecting every %lld ms\n", why.c_str(),
               static_cast<long long>(options_.reconnectInterval.count()));
  // Finalising the handles must wait until no libcpg call is on the stack.
  if (reconnectTimer_) loop_.cancel(*reconnectTimer_);
  reconnectTimer_ = loop_.after(Duration(0), [this] {
    reconnectTimer_.reset();
    disconnect();
  });
}

void CorosyncGroup::disconnect() {
  const bool wasInView = inView_;
  close();
  ring_ = {localNodeId_};
  if (wasInView && listener_) {
    // Alone and without quorum: the other hosts will see this one leave and fence it.
    ViewChange view;
    view.members = {localNodeId_};
    for (int id : members_) {
      if (id != localNodeId_) view.left.emplace_back(id, LeaveReason::kHostLeft);
    }
    view.hosts = {localNodeId_};
    view.quorate = false;
    members_ = view.members;
    emit(std::move(view));
  }
  scheduleReconnect();
}

void CorosyncGroup::scheduleReconnect() {
  if (reconnectTimer_) return;
  reconnectTimer_ = loop_.after(options_.reconnectInterval, [this] {
    reconnectTimer_.reset();
    if (cpg_) return;
    Status status = open();
    if (status.ok() && joined_) status = joinGroup();
    if (!status.ok()) {
      close();
      scheduleReconnect();
    }
  });
}

void CorosyncGroup::onConfChange(std::set<int> members, const std::vector<std::pair<int, LeaveReason>>& departed) {
  const std::set<int> before = inView_ ? members_ : std::set<int>{};
  std::vector<int> joined;
  for (int id : members) {
    if (!before.contains(id)) joined.push_back(id);
  }
  std::vector<std::pair<int, LeaveReason>> left;
  std::set<int> hostsDown;
  for (const auto& [id, reason] : departed) {
    if (reason == LeaveReason::kHostLeft) hostsDown.insert(id);
    const bool listed =
        std::any_of(left.begin(), left.end(), [id = id](const auto& entry) { return entry.first == id; });
    if (!members.contains(id) && before.contains(id) && !listed) left.emplace_back(id, reason);
  }
  inView_ = true;
  members_ = members;
  std::set<int> hosts;
  for (int id : ring_) {
    if (!hostsDown.contains(id)) hosts.insert(id);
  }
  hosts.insert(members.begin(), members.end());
  ViewChange view;
  view.members = std::move(members);
  view.joined = std::move(joined);
  view.left = std::move(left);
  view.hosts = std::move(hosts);
  view.quorate = quorate(view.hosts);
  emit(std::move(view));
}

void CorosyncGroup::inOrder(std::function<void()> callback) {
  if (ringKnown_) {
    callback();
  } else {
    held_.push_back(std::move(callback));
  }
}

void CorosyncGroup::onRing(std::set<int> ring) {
  ring_ = std::move(ring);
  if (!ringKnown_) {
    ringKnown_ = true;
    while (!held_.empty()) {
      std::function<void()> callback = std::move(held_.front());
      held_.pop_front();
      callback();
    }
  }
  if (!inView_ || !joined_) return;
  std::set<int> hosts = ring_;
  hosts.insert(members_.begin(), members_.end());
  const bool isQuorate = quorate(hosts);
  if (last_ && last_->hosts == hosts && last_->quorate == isQuorate) return;
  ViewChange view;
  view.members = members_;
  view.hosts = std::move(hosts);
  view.quorate = isQuorate;
  emit(std::move(view));
}

void CorosyncGroup::emit(ViewChange view) {
  last_ = view;
  if (listener_) listener_->onView(view);
}

bool CorosyncGroup::quorate(const std::set<int>& hosts) {
  votequorum_info info{};
  if (!votequorum_ || votequorum_getinfo(votequorum_, static_cast<unsigned int>(localNodeId_), &info) != CS_OK) {
    return false;
  }
  if ((info.flags & VOTEQUORUM_INFO_WAIT_FOR_ALL) && !sawAllNodes_) {
    const bool all = std::all_of(nodeNames_.begin(), nodeNames_.end(),
                                 [&hosts](const auto& node) { return hosts.contains(node.first); });
    if (all || (info.flags & VOTEQUORUM_INFO_QUORATE)) sawAllNodes_ = true;
    if (!sawAllNodes_) return false;
  }
  return hosts.size() >= info.quorum && info.quorum > 0;
}

}  // namespace kvm_amf::cluster
