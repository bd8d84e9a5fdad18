#include "kvm_amf/daemon/guest_checkpoints.h"

namespace kvm_amf::daemon {

Result<std::string> GuestCheckpointAccess::checkpointName(const std::string& vm, const std::string& name) const {
  const std::optional<std::string> group = groupOf_(vm);
  if (!group) return Error{"vm " + vm + " is in no service group of the configuration"};
  return "sg/" + *group + "/" + name;
}

void GuestCheckpointAccess::read(const std::string& vm, const std::string& name, const std::string& section,
                                 ReadDone done) {
  Result<std::string> full = checkpointName(vm, name);
  if (!full.ok()) return done(full.error());
  ckpt::CkptResult<std::string> data = service_.read(full.value(), section);
  if (!data.ok()) return done(Error{data.error().message});
  done(std::move(data).value());
}

void GuestCheckpointAccess::write(const std::string& vm, const std::string& name, const std::string& section,
                                  std::string data, WriteDone done) {
  Result<std::string> full = checkpointName(vm, name);
  if (!full.ok()) return done(full.error());
  service_.put(
      full.value(), section, std::move(data), ckpt::WriteMode::kSync,
      [done = std::move(done)](ckpt::CkptResult<std::uint64_t> outcome) {
        done(outcome.ok() ? Status::success() : Status(Error{outcome.error().message}));
      },
      ckpt::CheckpointAttributes{});
}

}  // namespace kvm_amf::daemon
