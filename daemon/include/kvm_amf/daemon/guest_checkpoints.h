// The guests' checkpoints (vmm::GuestCheckpoints) served by this host's checkpoint service. A
// guest's checkpoint NAME is the cluster's `sg/SG/NAME`, SG being the service group of the guest's
// VM: the guests of one group (the active and the standby of a 2N pair) share their checkpoints,
// and no guest reaches another group's or amfd's own. A write replaces the section's data,
// creating the section and the checkpoint (default attributes) when missing, and is answered once
// every member of the checkpoint group has it on disk.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "kvm_amf/ckpt/checkpoint_service.h"
#include "kvm_amf/vmm/guest_checkpoints.h"

namespace kvm_amf::daemon {

class GuestCheckpointAccess : public vmm::GuestCheckpoints {
 public:
  // `groupOf(vm)`: the service group of a VM of the configuration, or nullopt.
  using GroupOf = std::function<std::optional<std::string>(const std::string& vm)>;

  // REQUIRES: `service` outlives this.
  GuestCheckpointAccess(ckpt::CheckpointService& service, GroupOf groupOf)
      : service_(service), groupOf_(std::move(groupOf)) {}

  // The cluster's name of the checkpoint `name` of the guest of `vm`, or why there is none.
  Result<std::string> checkpointName(const std::string& vm, const std::string& name) const;

  void read(const std::string& vm, const std::string& name, const std::string& section, ReadDone done) override;
  void write(const std::string& vm, const std::string& name, const std::string& section, std::string data,
             WriteDone done) override;

 private:
  ckpt::CheckpointService& service_;
  GroupOf groupOf_;
};

}  // namespace kvm_amf::daemon
