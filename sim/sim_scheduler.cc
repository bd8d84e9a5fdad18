#include "kvm_amf/sim/sim_scheduler.h"

namespace kvm_amf::sim {

TimerId SimScheduler::at(TimePoint when, std::function<void()> fn) {
  const TimerId id = ++next_;
  queue_.emplace(std::max(when, now_), id);
  pending_.emplace(id, std::move(fn));
  return id;
}

void SimScheduler::cancel(TimerId id) {
  // The queue entry stays and is skipped when it comes up.
  pending_.erase(id);
}

void SimScheduler::runUntil(TimePoint limit) {
  while (!queue_.empty()) {
    auto [when, id] = *queue_.begin();
    if (when > limit) break;
    queue_.erase(queue_.begin());
    auto it = pending_.find(id);
    if (it == pending_.end()) continue;
    std::function<void()> fn = std::move(it->second);
    pending_.erase(it);
    now_ = when;
    ++eventsRun_;
    fn();
  }
  now_ = std::max(now_, limit);
}

}  // namespace kvm_amf::sim
