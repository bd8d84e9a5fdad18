#include "kvm_amf/common/event_loop.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace kvm_amf {
namespace {

using std::chrono::milliseconds;

// Far more than anything here should take, so that a slow machine does not fail a test.
constexpr Duration kPatience{5000};

std::unique_ptr<EventLoop> makeLoop() {
  auto loop = EventLoop::create();
  EXPECT_TRUE(loop.ok());
  return std::move(loop).value();
}

class Pipe {
 public:
  Pipe() { EXPECT_EQ(pipe(fds_), 0); }
  ~Pipe() {
    closeRead();
    if (fds_[1] >= 0) close(fds_[1]);
  }
  int readFd() const { return fds_[0]; }
  void write(const std::string& data) { EXPECT_EQ(::write(fds_[1], data.data(), data.size()), ssize_t(data.size())); }
  std::string read() {
    char buf[256];
    ssize_t n = ::read(fds_[0], buf, sizeof buf);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  }
  void closeRead() {
    if (fds_[0] >= 0) close(fds_[0]);
    fds_[0] = -1;
  }

 private:
  int fds_[2] = {-1, -1};
};

TEST(EventLoopTest, NowIsTheRealTime) {
  auto loop = makeLoop();
  auto real = std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch());
  EXPECT_LT(std::abs((loop->now() - real).count()), 2000);
}

TEST(EventLoopTest, TimersRunInTimeOrderAndCancelledOnesDoNot) {
  auto loop = makeLoop();
  std::vector<int> order;
  loop->after(Duration(30), [&] { order.push_back(3); });
  loop->after(Duration(10), [&] { order.push_back(1); });
  TimerId cancelled = loop->after(Duration(15), [&] { order.push_back(99); });
  loop->after(Duration(20), [&] { order.push_back(2); });
  loop->after(Duration(40), [&] { loop->stop(); });
  loop->cancel(cancelled);
  loop->cancel(cancelled);  // twice: ignored
  loop->cancel(12345);      // unknown: ignored
  loop->runFor(kPatience);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(EventLoopTest, TimersWithTheSameTimeRunInTheOrderAdded) {
  auto loop = makeLoop();
  std::vector<int> order;
  TimePoint when = loop->now() + Duration(5);
  for (int i = 0; i < 5; ++i) loop->at(when, [&order, i] { order.push_back(i); });
  loop->at(when + Duration(1), [&] { loop->stop(); });
  loop->runFor(kPatience);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(EventLoopTest, TimerInThePastRunsOnTheNextTurn) {
  auto loop = makeLoop();
  bool ran = false;
  loop->at(loop->now() - Duration(60000), [&] {
    ran = true;
    loop->stop();
  });
  auto start = std::chrono::steady_clock::now();
  loop->runFor(kPatience);
  EXPECT_TRUE(ran);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST(EventLoopTest, TimerWaitsAtLeastItsDelay) {
  auto loop = makeLoop();
  auto start = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point fired;
  loop->after(Duration(50), [&] {
    fired = std::chrono::steady_clock::now();
    loop->stop();
  });
  loop->runFor(kPatience);
  EXPECT_GE(fired - start, milliseconds(40));
  EXPECT_LT(fired - start, std::chrono::seconds(2));
}

TEST(EventLoopTest, CallbacksAddAndCancelTimers) {
  auto loop = makeLoop();
  std::vector<std::string> order;
  TimerId victim = loop->after(Duration(40), [&] { order.push_back("victim"); });
  loop->after(Duration(5), [&] {
    order.push_back("first");
    loop->cancel(victim);
    loop->after(Duration(5), [&] {
      order.push_back("nested");
      // Already due: runs on a later turn, not inside this one's list.
      loop->after(Duration(0), [&] {
        order.push_back("immediate");
        loop->stop();
      });
    });
  });
  loop->runFor(kPatience);
  EXPECT_EQ(order, (std::vector<std::string>{"first", "nested", "immediate"}));
}

TEST(EventLoopTest, TimerCancelledByAnEarlierTimerOfTheSameTurnDoesNotRun) {
  auto loop = makeLoop();
  bool secondRan = false;
  TimePoint when = loop->now() + Duration(5);
  TimerId second = 0;
  loop->at(when, [&] { loop->cancel(second); });
  second = loop->at(when, [&] { secondRan = true; });
  loop->after(Duration(30), [&] { loop->stop(); });
  loop->runFor(kPatience);
  EXPECT_FALSE(secondRan);
}

TEST(EventLoopTest, RunForReturnsAfterTheTimeout) {
  auto loop = makeLoop();
  auto start = std::chrono::steady_clock::now();
  loop->runFor(Duration(50));
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, milliseconds(49));
  EXPECT_LT(took, std::chrono::seconds(2));
}

TEST(EventLoopTest, WatchCallsBackOnlyWhenTheFdIsReadable) {
  auto loop = makeLoop();
  Pipe p;
  std::string received;
  int calls = 0;
  ASSERT_TRUE(loop->watch(p.readFd(),
                          [&] {
                            ++calls;
                            received += p.read();
                          })
                  .ok());
  loop->runFor(Duration(50));
  EXPECT_EQ(calls, 0);

  p.write("hello");
  loop->after(Duration(200), [&] { loop->stop(); });
  loop->runFor(kPatience);
  EXPECT_EQ(received, "hello");
  EXPECT_EQ(calls, 1);

  loop->unwatch(p.readFd());
  p.write("more");
  loop->runFor(Duration(50));
  EXPECT_EQ(calls, 1);
}

TEST(EventLoopTest, WatchingAnFdTwiceFailsAndABadFdFails) {
  auto loop = makeLoop();
  Pipe p;
  ASSERT_TRUE(loop->watch(p.readFd(), [] {}).ok());
  EXPECT_FALSE(loop->watch(p.readFd(), [] {}).ok());
  EXPECT_FALSE(loop->watch(-1, [] {}).ok());
  loop->unwatch(p.readFd());
  loop->unwatch(p.readFd());  // not watched: ignored
  EXPECT_TRUE(loop->watch(p.readFd(), [] {}).ok());
  loop->unwatch(p.readFd());
}

TEST(EventLoopTest, CallbackUnwatchesItsOwnFdAndReleasesWhatItCaptured) {
  auto loop = makeLoop();
  Pipe p;
  auto token = std::make_shared<int>(7);
  std::weak_ptr<int> watchToken = token;
  int calls = 0;
  int seen = 0;
  ASSERT_TRUE(loop->watch(p.readFd(),
                          [&, token] {
                            ++calls;
                            loop->unwatch(p.readFd());
                            seen = *token;  // the callback is still alive after unwatching itself
                            loop->stop();
                          })
                  .ok());
  token.reset();
  p.write("x");  // left unread: a watched fd would call back on every turn
  loop->runFor(kPatience);
  loop->runFor(Duration(50));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, 7);
  EXPECT_TRUE(watchToken.expired());
}

TEST(EventLoopTest, FdUnwatchedByAnEarlierCallbackOfTheSameTurnIsSkipped) {
  auto loop = makeLoop();
  Pipe a;
  Pipe b;
  int calls = 0;
  // Whichever is reported first unwatches the other; both are ready in the same turn.
  ASSERT_TRUE(loop->watch(a.readFd(),
                          [&] {
                            ++calls;
                            loop->unwatch(a.readFd());
                            loop->unwatch(b.readFd());
                          })
                  .ok());
  ASSERT_TRUE(loop->watch(b.readFd(),
                          [&] {
                            ++calls;
                            loop->unwatch(a.readFd());
                            loop->unwatch(b.readFd());
                          })
                  .ok());
  a.write("x");
  b.write("x");
  loop->runFor(Duration(100));
  EXPECT_EQ(calls, 1);
}

TEST(EventLoopTest, CallbackWatchesANewFd) {
  auto loop = makeLoop();
  Pipe first;
  Pipe second;
  std::vector<std::string> got;
  ASSERT_TRUE(loop->watch(first.readFd(),
                          [&] {
                            got.push_back(first.read());
                            loop->unwatch(first.readFd());
                            EXPECT_TRUE(loop->watch(second.readFd(),
                                                    [&] {
                                                      got.push_back(second.read());
                                                      loop->stop();
                                                    })
                                            .ok());
                            second.write("two");
                          })
                  .ok());
  first.write("one");
  loop->runFor(kPatience);
  EXPECT_EQ(got, (std::vector<std::string>{"one", "two"}));
  loop->unwatch(second.readFd());
}

TEST(EventLoopTest, PostFromAnotherThreadRunsInOrderOnTheLoopThread) {
  auto loop = makeLoop();
  constexpr int kCount = 1000;
  std::vector<int> got;
  std::thread::id loopThread = std::this_thread::get_id();
  bool allOnLoopThread = true;
  std::thread poster([&] {
    for (int i = 0; i < kCount; ++i) {
      loop->post([&, i] {
        allOnLoopThread = allOnLoopThread && std::this_thread::get_id() == loopThread;
        got.push_back(i);
        if (i == kCount - 1) loop->stop();
      });
    }
  });
  loop->runFor(kPatience);
  poster.join();
  ASSERT_EQ(got.size(), std::size_t(kCount));
  for (int i = 0; i < kCount; ++i) EXPECT_EQ(got[std::size_t(i)], i);
  EXPECT_TRUE(allOnLoopThread);
}

TEST(EventLoopTest, StopFromAnotherThreadEndsRun) {
  auto loop = makeLoop();
  std::thread stopper([&] {
    std::this_thread::sleep_for(milliseconds(50));
    loop->stop();
  });
  auto start = std::chrono::steady_clock::now();
  loop->run();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  stopper.join();
}

TEST(EventLoopTest, StopBeforeRunMakesRunReturnAndRunWorksAgainAfterwards) {
  auto loop = makeLoop();
  loop->stop();
  loop->run();  // returns at once
  int ran = 0;
  loop->post([&] {
    ++ran;
    loop->stop();
  });
  loop->run();
  EXPECT_EQ(ran, 1);
}

TEST(EventLoopTest, RunReturnsAfterTheCallbackThatCalledStop) {
  auto loop = makeLoop();
  std::vector<int> order;
  loop->post([&] {
    order.push_back(1);
    loop->stop();
  });
  loop->post([&] { order.push_back(2); });
  loop->run();
  EXPECT_EQ(order, (std::vector<int>{1}));
  loop->post([&] { loop->stop(); });
  loop->run();  // the rest runs next time, in order
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

}  // namespace
}  // namespace kvm_amf
