// Fencing: making certain a lost host runs nothing (powering it off). Real: a command run with
// the host's name and a timeout; simulated: cluster/sim.
#pragma once

#include <functional>
#include <string>

#include "kvm_amf/common/time.h"

namespace kvm_amf::cluster {

// How to fence, from the configuration: a command with `{node}` standing for the host's name, and
// the time it may take. The simulated agent ignores it.
struct FenceMethod {
  std::string command;
  Duration timeout{10000};
};

class FenceAgent {
 public:
  using Done = std::function<void(bool ok, std::string message)>;
  virtual ~FenceAgent() = default;
  // Fences `node`; `done(ok, message)` runs on the owner's event loop when the attempt ends
  // (ok: the host is certainly off; message: why not, or what the agent said). One attempt per
  // call; the caller retries.
  virtual void fence(const std::string& node, const FenceMethod& method, Done done) = 0;
};

}  // namespace kvm_amf::cluster
