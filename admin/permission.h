// Who may use the admin API over IPC: root, the server's own user, and members of the configured
// group, judged by the kernel credentials libzmq reports for the connection.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>

#include "kvm_amf/admin/admin_server.h"
#include "kvm_amf/common/result.h"

namespace kvm_amf::admin::detail {

// libzmq 4.3 reports an IPC connection's peer as "HOST:UID:GID:PID" (the "Peer-Address" metadata
// of its messages and the ZAP request's address), the numbers read with SO_PEERCRED on the
// accepted socket when the connection was made. Fills peer.uid, gid and pid from such an address;
// leaves them empty for any other form (libzmq read no credentials).
void readIpcCredentials(const std::string& peerAddress, Peer& peer);

class Permission {
 public:
  // `group` empty: only root and the server's user. Fails if the group does not exist.
  static Result<Permission> create(const std::string& group);

  // Nothing if `peer` may use the API, else why not, for the peer to read:
  // "permission denied: uid 65534 is not root or in group kvm-amf". A member is a peer whose
  // primary group is the group, or whose user the group database lists in the group (as a
  // supplementary group or as its login group). Reads the user and group databases.
  std::optional<std::string> refusal(const Peer& peer) const;
  // The group's id; nothing without a group.
  std::optional<gid_t> gid() const { return gid_; }

 private:
  Permission(std::string group, std::optional<gid_t> gid, uid_t ownUid)
      : group_(std::move(group)), gid_(gid), ownUid_(ownUid) {}
  bool userInGroup(uid_t uid) const;

  std::string group_;
  std::optional<gid_t> gid_;
  uid_t ownUid_;
};

}  // namespace kvm_amf::admin::detail
