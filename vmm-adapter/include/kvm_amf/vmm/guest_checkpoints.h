// Where the guest channel hands the checkpoint requests of guest applications (CKPT-READ and
// CKPT-WRITE, docs/guest-protocol.md). amfd implements it with the checkpoint service
// (daemon/guest_checkpoints.h); the hypervisor adapter itself knows nothing of checkpoints.
#pragma once

#include <functional>
#include <string>

#include "kvm_amf/common/result.h"

namespace kvm_amf::vmm {

class GuestCheckpoints {
 public:
  // Called once, on the channel's loop, inside the call or later. An error's message is what the
  // guest is told: one line for a person.
  using ReadDone = std::function<void(Result<std::string> data)>;
  using WriteDone = std::function<void(Status status)>;

  virtual ~GuestCheckpoints() = default;
  // The data of `section` of checkpoint `name`, as the guest of `vm` names them.
  virtual void read(const std::string& vm, const std::string& name, const std::string& section, ReadDone done) = 0;
  // Replaces the section's data, once it is safe (acknowledged by the cluster).
  virtual void write(const std::string& vm, const std::string& name, const std::string& section, std::string data,
                     WriteDone done) = 0;
};

}  // namespace kvm_amf::vmm
