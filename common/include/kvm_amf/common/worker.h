// A worker thread for blocking calls (disk, libvirt): jobs run on it one at a time in the order
// given, and each job's completion runs on the event loop.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "kvm_amf/common/event_loop.h"

namespace kvm_amf {

class Worker {
 public:
  // REQUIRES: loop outlives the worker.
  explicit Worker(EventLoop& loop);
  // Finishes every job already given (their completions are dropped), then joins the thread.
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs `job` on the worker thread, then `done` on the loop thread. Called from the loop thread.
  void run(std::function<void()> job, std::function<void()> done = {});

 private:
  void main();

  EventLoop& loop_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // loop thread only
  std::mutex mutex_;                                            // guards jobs_ and stopping_
  std::condition_variable wake_;
  std::deque<std::pair<std::function<void()>, std::function<void()>>> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace kvm_amf
