#include "kvm_amf/monitor/process_metrics.h"

#include <map>

#include "proc_reader.h"
#include "registry.h"

namespace kvm_amf::monitor {

namespace {

const prometheus::Histogram::BucketBoundaries kLagBuckets = {0.001, 0.002, 0.005, 0.01, 0.025, 0.05,
                                                             0.1,   0.25,  0.5,   1,    2.5};
const prometheus::Histogram::BucketBoundaries kRequestBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};

// The process's figures as families; read on the endpoint's thread at each scrape.
std::vector<MetricFamily> processFamilies(const std::string& proc, const std::string& pid) {
  std::optional<ProcessFigures> figures = readProcess(proc, pid);
  if (!figures) return {};
  std::vector<MetricFamily> out;
  auto add = [&out](const char* name, const char* help, MetricType type, double value) {
    MetricFamily f = family(name, help, type);
    sample(f, {}, value);
    out.push_back(std::move(f));
  };
  add("amf_process_cpu_seconds_total", "amfd's CPU time, user and system", MetricType::Counter, figures->cpuSeconds);
  add("amf_process_resident_memory_bytes", "amfd's resident memory", MetricType::Gauge, figures->residentBytes);
  add("amf_process_virtual_memory_bytes", "amfd's address space", MetricType::Gauge, figures->virtualBytes);
  add("amf_process_threads", "amfd's threads", MetricType::Gauge, figures->threads);
  add("amf_process_open_fds", "amfd's open file descriptors", MetricType::Gauge, figures->openFds);
  add("amf_process_start_time_seconds", "When amfd started, since the Unix epoch", MetricType::Gauge,
      figures->startTimeSeconds);
  return out;
}

}  // namespace

struct ProcessMetrics::Impl {
  Impl(Scheduler& s, Metrics& m, ProcessOptions o)
      : scheduler(s),
        options(std::move(o)),
        lag(histogramFamily(m, "amf_event_loop_lag_seconds",
                            "How late the event loop ran a probe timer: the time other work held the loop")
                .Add({}, kLagBuckets)),
        requests(histogramFamily(m, "amf_admin_request_duration_seconds",
                                 "Time from an admin request's arrival to its answer, by request kind")),
        scrape(std::make_shared<OnScrape>(
            [proc = options.proc, pid = options.pid] { return processFamilies(proc, pid); })) {
    gaugeFamily(m, "amf_build_info", "amfd's version (the value is always 1)")
        .Add({{"version", options.version.empty() ? "unknown" : options.version}})
        .Set(1);
    m.impl().add(scrape);
    for (const auto& request : options.adminRequests) {
      byRequest[request] = &requests.Add({{"request", request}}, kRequestBuckets);
    }
  }

  void probe() {
    const TimePoint due = scheduler.now() + options.probe;
    timer = scheduler.at(due, [this, due] {
      const TimePoint late = scheduler.now() - due;
      lag.Observe(seconds(late > Duration(0) ? late : Duration(0)));
      probe();
    });
  }

  Scheduler& scheduler;
  ProcessOptions options;
  prometheus::Histogram& lag;
  prometheus::Family<prometheus::Histogram>& requests;
  std::map<std::string, prometheus::Histogram*> byRequest;
  std::shared_ptr<OnScrape> scrape;
  std::optional<TimerId> timer;
};

ProcessMetrics::ProcessMetrics(Scheduler& scheduler, Metrics& metrics, ProcessOptions options)
    : impl_(std::make_unique<Impl>(scheduler, metrics, std::move(options))) {}

ProcessMetrics::~ProcessMetrics() {
  if (impl_->timer) impl_->scheduler.cancel(*impl_->timer);
}

void ProcessMetrics::start() {
  if (!impl_->timer) impl_->probe();
}

void ProcessMetrics::observeAdminRequest(const std::string& request, Duration took) {
  prometheus::Histogram*& histogram = impl_->byRequest[request];
  if (histogram == nullptr) histogram = &impl_->requests.Add({{"request", request}}, kRequestBuckets);
  histogram->Observe(seconds(took));
}

}  // namespace kvm_amf::monitor
