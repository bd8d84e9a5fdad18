#include "kvm_amf/common/worker.h"

namespace kvm_amf {

Worker::Worker(EventLoop& loop) : loop_(loop), thread_([this] { main(); }) {}

Worker::~Worker() {
  *alive_ = false;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void Worker::run(std::function<void()> job, std::function<void()> done) {
  {
    std::lock_guard lock(mutex_);
    // The completion is checked against alive_ on the loop thread: a worker destroyed meanwhile
    // drops it.
    jobs_.emplace_back(std::move(job), [alive = alive_, done = std::move(done)] {
      if (*alive && done) done();
    });
  }
  wake_.notify_one();
}

void Worker::main() {
  for (;;) {
    std::pair<std::function<void()>, std::function<void()>> next;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      next = std::move(jobs_.front());
      jobs_.pop_front();
    }
    next.first();
    loop_.post(std::move(next.second));
  }
}

}  // namespace kvm_amf
