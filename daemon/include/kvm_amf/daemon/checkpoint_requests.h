// The admin API's checkpoint requests (admin.proto `Checkpoint`, docs/admin-api.md), served by this
// host's checkpoint service: reads from its replica, writes through the group.
#pragma once

#include <functional>
#include <string>

#include "kvm_amf/admin/admin.pb.h"
#include "kvm_amf/ckpt/checkpoint_service.h"

namespace kvm_amf::daemon {

// The admin reply code for a checkpoint error: INVALID for a malformed request, UNAVAILABLE without
// quorum or before the service is synchronised, REFUSED for the rest (not found, exists, a limit,
// a full disk, an interrupted or failed write).
admin::proto::Reply::Code replyCodeOf(ckpt::ErrorKind kind);

class CheckpointRequests {
 public:
  // REQUIRES: `service` outlives this.
  CheckpointRequests(std::string node, ckpt::CheckpointService& service) : node_(std::move(node)), service_(service) {}

  // Serves one request; `reply` is called once, at once (reads, refusals) or when the write is
  // answered. Replies: OK with a message, a JSON body for LIST and INFO ({"checkpoints": [...]},
  // one checkpoint with "sections") and READ ({"name", "section", "bytes"}, the data in
  // Reply.data); errors as replyCodeOf says, with the service's message.
  void serve(const admin::proto::Checkpoint& request, std::function<void(admin::proto::Reply)> reply);

 private:
  std::string node_;
  ckpt::CheckpointService& service_;
};

}  // namespace kvm_amf::daemon
