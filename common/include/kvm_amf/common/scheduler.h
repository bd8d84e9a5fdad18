// Time and timers, injected: the real event loop in programs, a simulated one in amf-sim and
// tests. Library code gets the time only from here (the boundary check enforces it).
#pragma once

#include <cstdint>
#include <functional>

#include "kvm_amf/common/time.h"

namespace kvm_amf {

using TimerId = std::uint64_t;

// Single-threaded: callbacks run on the owner's event loop, one at a time, never inside at().
class Scheduler {
 public:
  virtual ~Scheduler() = default;
  virtual TimePoint now() const = 0;
  // Runs fn at `when` (or as soon as possible if `when` has passed). Returns an id for cancel().
  virtual TimerId at(TimePoint when, std::function<void()> fn) = 0;
  TimerId after(Duration delay, std::function<void()> fn) { return at(now() + delay, std::move(fn)); }
  // Cancels a timer that has not run; an unknown or past id is ignored.
  virtual void cancel(TimerId id) = 0;
};

}  // namespace kvm_amf
