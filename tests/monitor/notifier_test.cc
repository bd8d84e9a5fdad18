// Notifier: webhooks to an HTTP listener of the test, commands with the event on stdin, bounded
// time, failures and drops counted, classes chosen per destination.
#include "kvm_amf/monitor/notifier.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "exposition.h"
#include "testing/run_until.h"
#include "testing/temp_dir.h"

namespace kvm_amf::monitor {
namespace {

using testing::valueOf;

// An HTTP listener on 127.0.0.1: records each request and answers `status` (or, with
// `answer` false, reads the request and never answers until it is destroyed).
class Listener {
 public:
  explicit Listener(int status = 200, bool answer = true) : status_(status), answer_(answer) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    socklen_t length = sizeof address;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    listen(fd_, 16);
    thread_ = std::thread([this] { serve(); });
  }
  ~Listener() {
    stopping_ = true;
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
    for (int c : held_) close(c);
  }
  std::string url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::vector<std::string> requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  void serve() {
    while (!stopping_) {
      const int client = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) return;
      std::string request;
      char buf[4096];
      // Headers, then Content-Length bytes of body.
      std::size_t need = std::string::npos;
      while (need == std::string::npos || request.size() < need) {
        const ssize_t n = read(client, buf, sizeof buf);
        if (n <= 0) break;
        request.append(buf, static_cast<std::size_t>(n));
        const std::size_t end = request.find("\r\n\r\n");
        if (end != std::string::npos && need == std::string::npos) {
          const std::size_t at = request.find("Content-Length: ");
          need = end + 4 + std::stoul(request.substr(at + 16));
        }
      }
      {
        std::lock_guard lock(mutex_);
        requests_.push_back(request);
      }
      if (!answer_) {
        held_.push_back(client);
        continue;
      }
      const std::string reply = "HTTP/1.1 " + std::to_string(status_) + " Whatever\r\nContent-Length: 0\r\n\r\n";
      (void)!write(client, reply.data(), reply.size());
      close(client);
    }
  }

  int status_;
  bool answer_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_ = false;
  std::mutex mutex_;
  std::vector<std::string> requests_;
  std::vector<int> held_;
  std::thread thread_;
};

class NotifierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto created = EventLoop::create();
    ASSERT_TRUE(created.ok());
    loop = std::move(created).value();
  }
  NotifyTarget webhook(const std::string& eventClass, const std::string& url) {
    Result<NotifyTarget> target = parseNotifyTarget(eventClass + "=" + url, false);
    EXPECT_TRUE(target.ok());
    return target.ok() ? target.value() : NotifyTarget{};
  }
  NotifyTarget command(const std::string& eventClass, const std::string& text) {
    Result<NotifyTarget> target = parseNotifyTarget(eventClass + "=" + text, true);
    EXPECT_TRUE(target.ok());
    return target.ok() ? target.value() : NotifyTarget{};
  }
  std::unique_ptr<Notifier> notifier(std::vector<NotifyTarget> targets, Duration timeout = Duration(2'000),
                                     std::size_t queueLimit = 100) {
    NotifierOptions options;
    options.targets = std::move(targets);
    options.timeout = timeout;
    options.queueLimit = queueLimit;
    options.log = [this](const std::string& line) { logged.push_back(line); };
    return std::make_unique<Notifier>(*loop, &metrics, options);
  }
  double count(const std::string& kind, const std::string& outcome) {
    return valueOf(metrics.text(), "amf_notifications_total", {{"kind", kind}, {"outcome", outcome}}).value_or(-1);
  }
  bool until(const std::function<bool()>& done, Duration limit = Duration(10'000)) {
    return kvm_amf::testing::runUntil(*loop, done, limit);
  }

  std::unique_ptr<EventLoop> loop;
  Metrics metrics;
  std::vector<std::string> logged;
};

TEST_F(NotifierTest, AWebhookGetsTheEventAsAnHttpPostOfItsJson) {
  Listener listener;
  auto n = notifier({webhook("failure", listener.url("/amf/events"))});
  n->notify("report", {"failure"}, R"({"type":"report","text":"vm-failed mme-a-vm"})");
  ASSERT_TRUE(until([&] { return count("webhook", "sent") == 1; }));
  ASSERT_EQ(listener.requests().size(), 1u);
  const std::string request = listener.requests()[0];
  EXPECT_EQ(request.rfind("POST /amf/events HTTP/1.1\r\n", 0), 0u) << request;
  EXPECT_NE(request.find("Content-Type: application/json\r\n"), std::string::npos);
  EXPECT_NE(request.find("\r\n\r\n{\"type\":\"report\",\"text\":\"vm-failed mme-a-vm\"}"), std::string::npos);
  EXPECT_EQ(count("webhook", "failed"), 0);
}

TEST_F(NotifierTest, EachDestinationGetsOnlyItsClassesAndOnceAnEvent) {
  Listener failures, everything;
  auto n = notifier(
      {webhook("failure", failures.url()), webhook("recovery", failures.url()), webhook("all", everything.url())});
  n->notify("decision", {"recovery", "state"}, "{}");
  n->notify("view", {"membership"}, "{}");
  n->notify("report", {"failure"}, "{}");
  ASSERT_TRUE(until([&] { return count("webhook", "sent") == 5; }));
  EXPECT_EQ(failures.requests().size(), 2u);  // the decision (once, not per class) and the report
  EXPECT_EQ(everything.requests().size(), 3u);
}

TEST_F(NotifierTest, AnErrorStatusARefusedConnectionAndASilentServerAreCountedFailures) {
  Listener refusing(500);
  Listener silent(200, false);
  // A port nobody listens on: a listener's, closed.
  std::string closedUrl;
  {
    Listener gone;
    closedUrl = gone.url();
  }
  auto n = notifier({webhook("all", refusing.url()), webhook("all", silent.url()), webhook("all", closedUrl)},
                    Duration(300));
  const auto start = std::chrono::steady_clock::now();
  n->notify("report", {"failure"}, "{}");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(50));  // the loop is not held
  ASSERT_TRUE(until([&] { return count("webhook", "failed") == 3; }));
  std::string all;
  for (const auto& line : logged) all += line + "\n";
  EXPECT_NE(all.find("500 Whatever"), std::string::npos) << all;
  EXPECT_NE(all.find("no answer within 300 ms"), std::string::npos) << all;
  EXPECT_NE(all.find("Connection refused"), std::string::npos) << all;
  EXPECT_EQ(count("webhook", "sent"), 0);
}

TEST_F(NotifierTest, ACommandGetsTheEventOnItsInputAndItsTypeInItsEnvironment) {
  kvm_amf::testing::TempDir dir("monitor-notify");
  const std::string out = (dir / "event").string();
  auto n = notifier({command("fence", "cat > " + out + "; echo \"$AMF_EVENT_TYPE $AMF_EVENT_CLASSES\" >> " + out)});
  n->notify("decision", {"fence", "state"}, R"({"type":"decision"})");
  ASSERT_TRUE(until([&] { return count("command", "sent") == 1; }));
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "{\"type\":\"decision\"}decision fence,state\n");
}

TEST_F(NotifierTest, ACommandThatFailsOrOverrunsIsCountedAndItsGroupKilled) {
  kvm_amf::testing::TempDir dir("monitor-notify");
  const std::string pidFile = (dir / "pid").string();
  auto n = notifier(
      {command("failure", "echo bad news; exit 3"), command("failure", "sleep 30 & echo $! > " + pidFile + "; wait")},
      Duration(300));
  n->notify("report", {"failure"}, "{}");
  ASSERT_TRUE(until([&] { return count("command", "failed") == 2; }));
  std::string all;
  for (const auto& line : logged) all += line + "\n";
  EXPECT_NE(all.find("exited with status 3: bad news"), std::string::npos) << all;
  EXPECT_NE(all.find("timed out after 300 ms"), std::string::npos) << all;
  // The command's child went with its group.
  std::ifstream in(pidFile);
  pid_t sleeper = 0;
  in >> sleeper;
  ASSERT_GT(sleeper, 0);
  EXPECT_TRUE(until([&] { return kill(sleeper, 0) != 0; }, Duration(2'000)));
}

TEST_F(NotifierTest, AFullQueueDropsAndCounts) {
  Listener silent(200, false);
  auto n = notifier({webhook("all", silent.url())}, Duration(300), 2);
  for (int i = 0; i < 5; ++i) n->notify("report", {"failure"}, "{}");
  EXPECT_EQ(count("webhook", "dropped"), 3);
  ASSERT_TRUE(until([&] { return count("webhook", "failed") == 2; }));
  n->notify("report", {"failure"}, "{}");  // room again
  EXPECT_EQ(count("webhook", "dropped"), 3);
}

TEST_F(NotifierTest, DestroyingDropsWhatWaitsAndDoesNotWaitForIt) {
  Listener silent(200, false);
  auto n = notifier({webhook("all", silent.url())}, Duration(300));
  for (int i = 0; i < 20; ++i) n->notify("report", {"failure"}, "{}");
  const auto start = std::chrono::steady_clock::now();
  n.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1'500));  // one delivery, not 20
}

TEST(NotifyTarget, ParsingRefusesWhatItCannotDeliver) {
  EXPECT_TRUE(parseNotifyTarget("failure=http://10.0.0.9:8080/hooks/amf", false).ok());
  EXPECT_TRUE(parseNotifyTarget("all=http://[::1]:9/x", false).ok());
  EXPECT_TRUE(parseNotifyTarget("fence=/usr/local/bin/page --team ops", true).ok());
  EXPECT_EQ(parseNotifyTarget("failure=http://h", false).value().url, "http://h");
  auto bad = [](const std::string& spec, bool command, const std::string& says) {
    Result<NotifyTarget> target = parseNotifyTarget(spec, command);
    ASSERT_FALSE(target.ok()) << spec;
    EXPECT_NE(target.error().message.find(says), std::string::npos) << target.error().message;
  };
  bad("failures=http://h/", false, "unknown event class 'failures'");
  bad("failure", false, "expected CLASS=URL");
  bad("failure=", true, "expected CLASS=COMMAND");
  bad("failure=https://h/", false, "https is not supported");
  bad("failure=http://h:99999/", false, "bad port");
  bad("failure=http:///x", false, "no host");
  bad("failure=http://h/a b", false, "blank or control");
}

}  // namespace
}  // namespace kvm_amf::monitor
