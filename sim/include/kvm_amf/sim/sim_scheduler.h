// Simulated time: a discrete-event scheduler. Events run in (time, order of scheduling) order, so
// a simulation is deterministic.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <tuple>

#include "kvm_amf/common/scheduler.h"

namespace kvm_amf::sim {

class SimScheduler : public Scheduler {
 public:
  TimePoint now() const override { return now_; }
  TimerId at(TimePoint when, std::function<void()> fn) override;
  void cancel(TimerId id) override;

  // Runs every event due at or before `limit`, in order; time then stands at `limit`.
  void runUntil(TimePoint limit);
  std::uint64_t eventsRun() const { return eventsRun_; }

 private:
  TimePoint now_{0};
  TimerId next_ = 0;
  std::set<std::tuple<TimePoint, TimerId>> queue_;
  std::map<TimerId, std::function<void()>> pending_;
  std::uint64_t eventsRun_ = 0;
};

}  // namespace kvm_amf::sim
