// Running a real event loop in a test until something holds.
#pragma once

#include <functional>

#include "kvm_amf/common/event_loop.h"

namespace kvm_amf::testing {

// Runs `loop` until `done()` holds (checked every `poll`) or `limit` passes; returns done().
inline bool runUntil(EventLoop& loop, const std::function<bool()>& done, Duration limit, Duration poll = Duration(5)) {
  TimerId pending = 0;
  std::function<void()> check = [&] {
    pending = 0;
    if (done()) {
      loop.stop();
    } else {
      pending = loop.after(poll, check);
    }
  };
  pending = loop.after(Duration(0), check);
  loop.runFor(limit);
  if (pending != 0) loop.cancel(pending);
  return done();
}

}  // namespace kvm_amf::testing
