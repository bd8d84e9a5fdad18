#include "kvm_amf/common/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <limits>
#include <string>
#include <utility>

namespace kvm_amf {

namespace {

constexpr int kMaxEvents = 64;
constexpr std::int64_t kNoDeadline = std::numeric_limits<std::int64_t>::max();

// epoll data: the watch generation in the high half, the fd in the low half.
std::uint64_t packEvent(std::uint32_t generation, int fd) {
  return (static_cast<std::uint64_t>(generation) << 32) | static_cast<std::uint32_t>(fd);
}

std::int64_t clockMs(clockid_t clock) {
  timespec ts{};
  if (clock_gettime(clock, &ts) != 0) std::abort();  // only with an invalid clock id
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// An error of the system call `what` with errno's text.
Error sysError(const char* what) { return Error{std::string(what) + ": " + std::strerror(errno)}; }

}  // namespace

Result<std::unique_ptr<EventLoop>> EventLoop::create() {
  int epollFd = epoll_create1(EPOLL_CLOEXEC);
  if (epollFd < 0) return sysError("epoll_create1");
  int wakeFd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wakeFd < 0) {
    Error error = sysError("eventfd");
    close(epollFd);
    return error;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = packEvent(0, wakeFd);
  if (epoll_ctl(epollFd, EPOLL_CTL_ADD, wakeFd, &ev) != 0) {
    Error error = sysError("epoll_ctl");
    close(wakeFd);
    close(epollFd);
    return error;
  }
  return std::unique_ptr<EventLoop>(new EventLoop(epollFd, wakeFd));
}

EventLoop::EventLoop(int epollFd, int wakeFd) : epollFd_(epollFd), wakeFd_(wakeFd) { followClockSteps(); }

void EventLoop::followClockSteps() {
  // The two clocks are read a moment apart and rounded to milliseconds, so a fresh difference
  // jitters by a millisecond; following only larger changes keeps timers with the same time in
  // the order they were added, and still follows a step of the real clock.
  const std::int64_t fresh = clockMs(CLOCK_REALTIME) - monotonicMs();
  if (std::abs(fresh - realMinusMono_) > 1) realMinusMono_ = fresh;
}

EventLoop::~EventLoop() {
  close(wakeFd_);
  close(epollFd_);
}

std::int64_t EventLoop::monotonicMs() { return clockMs(CLOCK_MONOTONIC); }

TimePoint EventLoop::now() const { return TimePoint(clockMs(CLOCK_REALTIME)); }

TimerId EventLoop::at(TimePoint when, std::function<void()> fn) {
  const std::int64_t dueMono = when.count() - realMinusMono_;
  TimerId id = nextTimer_++;
  timers_.emplace(id, std::make_pair(dueMono, std::move(fn)));
  timerOrder_.emplace(dueMono, id);
  return id;
}

void EventLoop::cancel(TimerId id) {
  auto timer = timers_.find(id);
  if (timer == timers_.end()) return;
  auto [first, last] = timerOrder_.equal_range(timer->second.first);
  for (auto it = first; it != last; ++it) {
    if (it->second == id) {
      timerOrder_.erase(it);
      break;
    }
  }
  timers_.erase(timer);
}

Status EventLoop::watch(int fd, std::function<void()> onReady) {
  if (watches_.count(fd) != 0) return Error{"fd " + std::to_string(fd) + " is already watched"};
  std::uint32_t generation = nextGeneration_++;
  if (nextGeneration_ == 0) nextGeneration_ = 1;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = packEvent(generation, fd);
  if (epoll_ctl(epollFd_, EPOLL_CTL_ADD, fd, &ev) != 0) return sysError("epoll_ctl(EPOLL_CTL_ADD)");
  watches_.emplace(fd, Watch{generation, std::make_shared<std::function<void()>>(std::move(onReady))});
  return Status::success();
}

void EventLoop::unwatch(int fd) {
  auto it = watches_.find(fd);
  if (it == watches_.end()) return;
  // Fails only if fd was closed first, which also took it out of the epoll set.
  epoll_ctl(epollFd_, EPOLL_CTL_DEL, fd, nullptr);
  watches_.erase(it);
}

void EventLoop::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(postedMutex_);
    posted_.push_back(std::move(fn));
  }
  wake();
}

void EventLoop::wake() {
  std::uint64_t one = 1;
  // EAGAIN means the counter is already huge, so the loop is awake anyway.
  while (write(wakeFd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void EventLoop::stop() {
  stopping_.store(true, std::memory_order_release);
  wake();
}

void EventLoop::run() {
  while (!stopRequested()) turn(kNoDeadline);
  stopping_.store(false, std::memory_order_release);
}

void EventLoop::runFor(Duration timeout) {
  std::int64_t deadline = monotonicMs() + timeout.count();
  while (!stopRequested() && monotonicMs() < deadline) turn(deadline);
  stopping_.store(false, std::memory_order_release);
}

void EventLoop::turn(std::int64_t deadlineMono) {
  followClockSteps();
  std::int64_t wakeAt = deadlineMono;
  if (!timerOrder_.empty()) wakeAt = std::min(wakeAt, timerOrder_.begin()->first);
  int timeoutMs = -1;
  if (wakeAt != kNoDeadline) {
    // monotonicMs() rounds down, so the wait never ends before wakeAt: no early, empty turns.
    timeoutMs = static_cast<int>(std::clamp<std::int64_t>(wakeAt - monotonicMs(), 0, INT_MAX));
  }

  epoll_event events[kMaxEvents];
  int count = epoll_wait(epollFd_, events, kMaxEvents, timeoutMs);
  if (count < 0) {
    if (errno != EINTR) {
      std::perror("kvm_amf::EventLoop: epoll_wait");
      std::abort();  // only with a broken epoll fd or buffer: a bug here
    }
    count = 0;
  }

  bool woken = false;
  for (int i = 0; i < count && !stopRequested(); ++i) {
    int fd = static_cast<int>(static_cast<std::uint32_t>(events[i].data.u64));
    auto generation = static_cast<std::uint32_t>(events[i].data.u64 >> 32);
    if (generation == 0) {
      woken = true;
      continue;
    }
    auto it = watches_.find(fd);
    if (it == watches_.end() || it->second.generation != generation) continue;  // unwatched this turn
    std::shared_ptr<std::function<void()>> onReady = it->second.onReady;        // may unwatch itself
    (*onReady)();
  }

  std::int64_t nowMono = monotonicMs();
  std::vector<TimerId> due;
  for (auto it = timerOrder_.begin(); it != timerOrder_.end() && it->first <= nowMono; ++it) due.push_back(it->second);
  for (TimerId id : due) {
    if (stopRequested()) break;
    auto timer = timers_.find(id);
    if (timer == timers_.end()) continue;  // cancelled by an earlier callback
    std::function<void()> fn = std::move(timer->second.second);
    cancel(id);
    fn();
  }

  if (woken) {
    std::uint64_t counter = 0;
    while (read(wakeFd_, &counter, sizeof counter) < 0 && errno == EINTR) {
    }
  }
  std::vector<std::function<void()>> posted;
  {
    std::lock_guard<std::mutex> lock(postedMutex_);
    posted.swap(posted_);
  }
  for (std::size_t i = 0; i < posted.size(); ++i) {
    if (stopRequested()) {
      std::lock_guard<std::mutex> lock(postedMutex_);
      posted_.insert(posted_.begin(), std::make_move_iterator(posted.begin() + static_cast<std::ptrdiff_t>(i)),
                     std::make_move_iterator(posted.end()));
      wake();  // the rest run on the next run()
      break;
    }
    posted[i]();
  }
}

}  // namespace kvm_amf
