// Durable storage of this host's copy of the replicated state, so that a whole-cluster stop and
// start finds the configuration and the last known placement. Real: DiskStateStore; the
// simulation keeps each host's state in memory and needs none.
#pragma once

#include <functional>
#include <string>

namespace kvm_amf::node {

class StateStore {
 public:
  virtual ~StateStore() = default;
  // Stores `encoded` (the state, as engine::encodeState gives it) in place of what was stored.
  // `durable(ok)` runs on the owner's event loop once this save has reached the disk (ok) or
  // failed (the previous state is kept and the failure is the store's to report). Saves complete
  // in the order given.
  virtual void save(std::string encoded, std::function<void(bool ok)> durable) = 0;
};

}  // namespace kvm_amf::node
