// Fencing: making certain a lost host runs nothing (powering it off). Real: a command run with
// the host's name and a timeout; simulated: cluster/sim.
#pragma once

#include <functional>
#include <string>

namespace kvm_amf::cluster {

class FenceAgent {
 public:
  virtual ~FenceAgent() = default;
  // Fences `node`; `done(ok, message)` runs on the owner's event loop when the attempt ends
  // (ok: the host is certainly off). One attempt per call; the caller retries.
  virtual void fence(const std::string& node, std::function<void(bool ok, std::string message)> done) = 0;
};

}  // namespace kvm_amf::cluster
