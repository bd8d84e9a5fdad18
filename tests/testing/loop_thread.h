// A real event loop running on a thread of its own, for tests whose objects live on a loop (an
// admin server, node managers) while the test's thread plays a client.
#pragma once

#include <functional>
#include <future>
#include <memory>
#include <thread>

#include "kvm_amf/common/event_loop.h"

namespace kvm_amf::testing {

class LoopThread {
 public:
  // ok() is false if the loop could not be created.
  LoopThread() {
    auto loop = EventLoop::create();
    if (!loop.ok()) return;
    loop_ = std::move(loop).value();
    thread_ = std::thread([this] { loop_->run(); });
  }
  // Stops the loop; what lives on it must be destroyed on it first (onLoop).
  ~LoopThread() {
    if (!loop_) return;
    loop_->stop();
    thread_.join();
  }
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  bool ok() const { return loop_ != nullptr; }
  EventLoop& loop() { return *loop_; }

  // Runs `fn` on the loop thread and returns what it returns. REQUIRES: ok(); not on the loop thread.
  template <typename T>
  T onLoop(std::function<T()> fn) {
    std::promise<T> result;
    loop_->post([&] { result.set_value(fn()); });
    return result.get_future().get();
  }

 private:
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
};

}  // namespace kvm_amf::testing
