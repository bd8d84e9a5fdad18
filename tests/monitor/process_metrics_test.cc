// ProcessMetrics: amfd's own figures from /proc, the event loop's lag, admin request durations.
#include "kvm_amf/monitor/process_metrics.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "exposition.h"
#include "kvm_amf/common/event_loop.h"

namespace kvm_amf::monitor {
namespace {

using testing::valueOf;

TEST(ProcessMetrics, TheProcessFiguresAreReadWhenScraped) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  Metrics metrics;
  ProcessOptions options;
  options.version = "9.9.9";
  ProcessMetrics process(*loop.value(), metrics, options);
  std::string text = metrics.text();
  EXPECT_GT(valueOf(text, "amf_process_resident_memory_bytes").value_or(0), 1e6);
  EXPECT_GE(valueOf(text, "amf_process_threads").value_or(0), 1);
  EXPECT_GE(valueOf(text, "amf_process_open_fds").value_or(0), 3);
  const double started = valueOf(text, "amf_process_start_time_seconds").value_or(0);
  EXPECT_NEAR(started, static_cast<double>(loop.value()->now().count()) / 1000.0, 3600);
  EXPECT_EQ(valueOf(text, "amf_build_info", {{"version", "9.9.9"}}), 1);
  // CPU time moves with work done.
  const double before = valueOf(text, "amf_process_cpu_seconds_total").value_or(-1);
  volatile double sink = 0;
  for (auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
       std::chrono::steady_clock::now() < end;) {
    sink = sink + 1;
  }
  EXPECT_GT(valueOf(metrics.text(), "amf_process_cpu_seconds_total").value_or(-1), before);
}

TEST(ProcessMetrics, TheLoopsLagIsHowLateTheProbeRan) {
  auto created = EventLoop::create();
  ASSERT_TRUE(created.ok());
  EventLoop& loop = *created.value();
  Metrics metrics;
  ProcessOptions options;
  options.probe = Duration(10);
  ProcessMetrics process(loop, metrics, options);
  process.start();
  loop.runFor(Duration(100));
  const double quietSum = valueOf(metrics.text(), "amf_event_loop_lag_seconds_sum").value_or(-1);
  EXPECT_GE(valueOf(metrics.text(), "amf_event_loop_lag_seconds_count").value_or(0), 3);
  // A callback that holds the loop for 80 ms makes the probe late by about that much.
  loop.after(Duration(1), [] { std::this_thread::sleep_for(std::chrono::milliseconds(80)); });
  loop.runFor(Duration(150));
  const double sum = valueOf(metrics.text(), "amf_event_loop_lag_seconds_sum").value_or(-1);
  EXPECT_GE(sum - quietSum, 0.06);
  EXPECT_GE(valueOf(metrics.text(), "amf_event_loop_lag_seconds_bucket", {{"le", "0.1"}}).value_or(0), 1);
}

TEST(ProcessMetrics, AdminRequestsAreObservedByKind) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  Metrics metrics;
  ProcessOptions options;
  options.adminRequests = {"query", "command"};
  ProcessMetrics process(*loop.value(), metrics, options);
  EXPECT_EQ(valueOf(metrics.text(), "amf_admin_request_duration_seconds_count", {{"request", "command"}}), 0);
  process.observeAdminRequest("command", Duration(30));
  process.observeAdminRequest("apply", Duration(200));
  const std::string text = metrics.text();
  EXPECT_EQ(valueOf(text, "amf_admin_request_duration_seconds_count", {{"request", "command"}}), 1);
  EXPECT_DOUBLE_EQ(valueOf(text, "amf_admin_request_duration_seconds_sum", {{"request", "apply"}}).value_or(0), 0.2);
  EXPECT_EQ(valueOf(text, "amf_admin_request_duration_seconds_count", {{"request", "query"}}), 0);
}

}  // namespace
}  // namespace kvm_amf::monitor
