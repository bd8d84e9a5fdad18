// The metrics of one amfd and the HTTP endpoint that serves them in Prometheus's text format
// (docs/monitoring.md). The collectors (state_metrics.h, vm_metrics.h, process_metrics.h,
// notifier.h) register their families here; the endpoint serves whatever they last published.
//
// Threads: the collectors update their figures on the event loop; the endpoint serves from
// threads of its own (prometheus-cpp's embedded web server), which read the figures under the
// registry's locks and never touch the loop's state.
#pragma once

#include <memory>
#include <string>

#include "kvm_amf/common/result.h"

namespace kvm_amf::monitor {

class Metrics {
 public:
  Metrics();
  // Stops the endpoint (a scrape in progress is finished first).
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Serves GET /metrics on `address`, "ADDR:PORT" (port 0: a free port; port() tells which). An
  // error naming the address if it cannot be bound; it may be called again then, not after a
  // success.
  Status serve(const std::string& address);
  // The port serve() bound; 0 before (or when not serving).
  int port() const;
  // What /metrics serves now. Thread-safe.
  std::string text() const;

  // The registry behind this, for the collectors of monitor/ (monitor/registry.h).
  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvm_amf::monitor
