// The real event loop of a daemon: the Scheduler on the real clock, file descriptors watched
// with epoll, and work handed in from other threads. One thread runs it; everything it calls
// back runs on that thread, one callback at a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "kvm_amf/common/result.h"
#include "kvm_amf/common/scheduler.h"

namespace kvm_amf {

class EventLoop : public Scheduler {
 public:
  // Fails only if the kernel refuses an epoll or eventfd descriptor.
  static Result<std::unique_ptr<EventLoop>> create();
  ~EventLoop() override;
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Milliseconds since the Unix epoch (CLOCK_REALTIME), so that times in the replicated state
  // mean the same on every host. Timers wait on CLOCK_MONOTONIC: a clock step moves now() but
  // does not make a timer fire early or late by the step.
  TimePoint now() const override;
  TimerId at(TimePoint when, std::function<void()> fn) override;
  void cancel(TimerId id) override;

  // Calls onReady whenever fd is readable (or has an error or hang-up: onReady must then read,
  // close or unwatch it, or it is called again). One watch per fd; the loop does not own fd.
  // unwatch() before closing fd. Safe to call from inside any callback, onReady's own included.
  Status watch(int fd, std::function<void()> onReady);
  void unwatch(int fd);

  // Thread-safe: runs fn on the loop thread, in the order posted, as soon as the loop gets to it.
  void post(std::function<void()> fn);

  // Runs until stop() (thread-safe, also from a callback). run() returns after the callback
  // that called stop().
  void run();
  void stop();
  // Runs callbacks until `timeout` has passed (monotonic) or stop() is called; for tools and tests.
  void runFor(Duration timeout);

 private:
  EventLoop(int epollFd, int wakeFd);
  // One round: waits at most until the next timer or `deadlineMono`, then runs what is ready:
  // watched fds, then the timers due when the wait ended, then what was posted. Returns early,
  // leaving the rest for the next round, once stop() has been called.
  void turn(std::int64_t deadlineMono);
  // Thread-safe: makes the next (or current) epoll_wait return.
  void wake();
  bool stopRequested() const { return stopping_.load(std::memory_order_acquire); }
  static std::int64_t monotonicMs();
  void followClockSteps();  // updates realMinusMono_ when the real clock has stepped

  std::int64_t realMinusMono_ = 0;  // CLOCK_REALTIME - CLOCK_MONOTONIC, in ms
  struct Watch {
    std::uint32_t generation;  // tells a new watch of a reused fd number from an old one
    std::shared_ptr<std::function<void()>> onReady;
  };
  int epollFd_;
  int wakeFd_;  // eventfd: post() and stop() wake the loop through it
  TimerId nextTimer_ = 1;
  std::uint32_t nextGeneration_ = 1;                 // 0 marks the wake fd in epoll data
  std::multimap<std::int64_t, TimerId> timerOrder_;  // monotonic due time (ms) -> timer, FIFO for equal times
  std::map<TimerId, std::pair<std::int64_t, std::function<void()>>> timers_;  // id -> due time, callback
  std::map<int, Watch> watches_;
  std::mutex postedMutex_;  // guards posted_, which other threads touch
  std::vector<std::function<void()>> posted_;
  std::atomic<bool> stopping_ = false;  // set by stop() from any thread, cleared when run()/runFor() return
};

}  // namespace kvm_amf
