// amfd's own figures (docs/monitoring.md): its CPU time, memory, threads and descriptors (read
// from /proc when scraped, on the endpoint's thread), how late the event loop runs a timer (a
// probe timer every `probe`), and how long admin requests take to be answered.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvm_amf/common/scheduler.h"
#include "kvm_amf/monitor/metrics.h"

namespace kvm_amf::monitor {

struct ProcessOptions {
  Duration probe = Duration(250);  // how often the loop's lag is measured
  std::string proc = "/proc";
  std::string pid = "self";  // whose figures (tests: another process)
  std::string version;       // amf_build_info's label
  // The request kinds whose amf_admin_request_duration_seconds series exist from the start.
  std::vector<std::string> adminRequests;
};

class ProcessMetrics {
 public:
  // REQUIRES: loop thread; scheduler and metrics outlive this.
  ProcessMetrics(Scheduler& scheduler, Metrics& metrics, ProcessOptions options = {});
  ~ProcessMetrics();
  ProcessMetrics(const ProcessMetrics&) = delete;
  ProcessMetrics& operator=(const ProcessMetrics&) = delete;

  // Starts the lag probe. Loop thread.
  void start();
  // An admin request of kind `request` (status, command, apply, delete, diff, ...) was answered
  // `took` after it arrived. Loop thread.
  void observeAdminRequest(const std::string& request, Duration took);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvm_amf::monitor
