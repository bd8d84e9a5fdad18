// The endpoint: every collector's families served over HTTP, in a form `promtool check metrics`
// accepts (names, units, counters ending in _total, help); an address in use is an error. And the
// classes amfd gives its events for notifications.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "everything.h"
#include "exposition.h"
#include "kvm_amf/daemon/admin_service.h"
#include "testing/temp_dir.h"

namespace kvm_amf::monitor {
namespace {

using testing::valueOf;

// GET /metrics from 127.0.0.1:port; the whole answer, headers included.
std::string get(int port, const std::string& path = "/metrics") {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    close(fd);
    return "";
  }
  const std::string request = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  (void)!write(fd, request.data(), request.size());
  std::string answer;
  char buf[65536];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) answer.append(buf, static_cast<std::size_t>(n));
  close(fd);
  return answer;
}

TEST(Endpoint, ServesEveryCollectorOverHttp) {
  testing::Everything all;
  ASSERT_TRUE(all.ready);
  ASSERT_TRUE(all.metrics.serve("127.0.0.1:0").ok());
  ASSERT_GT(all.metrics.port(), 0);
  const std::string answer = get(all.metrics.port());
  ASSERT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer.substr(0, 200);
  const std::string body = answer.substr(answer.find("\r\n\r\n") + 4);
  EXPECT_EQ(valueOf(body, "amf_su_presence_state", {{"su", "mme-a"}, {"state", "instantiated"}}), 1);
  EXPECT_TRUE(valueOf(body, "amf_vm_cpu_seconds_total", {{"domain", "mme-a-vm"}}));
  EXPECT_TRUE(valueOf(body, "amf_process_cpu_seconds_total"));
  EXPECT_TRUE(valueOf(body, "amf_notifications_total", {{"kind", "command"}, {"outcome", "sent"}}));
  EXPECT_EQ(valueOf(body, "amf_failure_detection_seconds_count", {{"kind", "crash"}}), 0);
  EXPECT_NE(body.find("# TYPE amf_vm_cpu_seconds_total counter"), std::string::npos);
  EXPECT_NE(body.find("# HELP amf_si_outage_seconds "), std::string::npos);
}

TEST(Endpoint, PromtoolAcceptsTheOutput) {
  if (std::system("promtool --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no promtool";
  testing::Everything all;
  ASSERT_TRUE(all.ready);
  kvm_amf::testing::TempDir dir("monitor-promtool");
  const std::string file = (dir / "metrics.txt").string();
  std::ofstream(file) << all.metrics.text();
  const std::string report = (dir / "report.txt").string();
  const int rc = std::system(("promtool check metrics < " + file + " > " + report + " 2>&1").c_str());
  std::ifstream in(report);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(rc, 0) << text.str();
  EXPECT_EQ(text.str(), "") << "promtool's findings";
}

TEST(Endpoint, AnAddressInUseIsAnErrorAndCanBeTriedAgain) {
  auto first = std::make_unique<Metrics>();
  ASSERT_TRUE(first->serve("127.0.0.1:0").ok());
  Metrics second;
  const int port = first->port();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  Status status = second.serve(address);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find(address), std::string::npos) << status.error().message;
  EXPECT_EQ(second.port(), 0);
  first.reset();  // the address is free again
  ASSERT_TRUE(second.serve(address).ok());
  EXPECT_EQ(second.port(), port);
  EXPECT_EQ(get(port).rfind("HTTP/1.1 200", 0), 0u);
}

TEST(EventClasses, ReportsAndDecisionsAreClassedForNotifications) {
  using daemon::eventClassesOf;
  using std::vector;
  EXPECT_EQ(eventClassesOf(engine::Report(engine::VmFailed{"v", "n1", engine::FailureKind::kHang})),
            vector<std::string>{"failure"});
  EXPECT_EQ(eventClassesOf(engine::Report(engine::FenceDone{"n3", true, "", TimePoint(0)})),
            vector<std::string>{"fence"});
  EXPECT_EQ(eventClassesOf(engine::Report(engine::VmStarted{"v", "n1"})), vector<std::string>{"state"});
  EXPECT_EQ(eventClassesOf(testing::decision(1, {engine::SetHa{"a", "s", model::HaState::kActive},
                                                 engine::FailoverSu{"b", false}, engine::RestartVm{"v", true}})),
            (vector<std::string>{"recovery", "state"}));
  EXPECT_EQ(eventClassesOf(testing::decision(
                1, {engine::SetNodeStatus{"n3", engine::NodeStatus::kLost, ""}, engine::StartFence{"n3", 1}})),
            (vector<std::string>{"failure", "fence"}));
  EXPECT_EQ(eventClassesOf(testing::decision(1, {engine::AdminReply{1, 1, true, ""}})), vector<std::string>{"admin"});
}

}  // namespace
}  // namespace kvm_amf::monitor
