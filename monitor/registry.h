// Inside monitor/: the prometheus-cpp registry behind Metrics, and helpers to build metric
// families. Only monitor/ includes prometheus-cpp (scripts/check_boundaries.py).
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kvm_amf/common/time.h"
#include "kvm_amf/monitor/metrics.h"

namespace kvm_amf::monitor {

using prometheus::Labels;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Families rebuilt as a whole by their owner (on the loop) and served as last published: for
// series that come and go with the cluster's entities. publish() and Collect() are thread-safe.
class Snapshot : public prometheus::Collectable {
 public:
  void publish(std::vector<MetricFamily> families);
  std::vector<MetricFamily> Collect() const override;

 private:
  mutable std::mutex mutex_;  // guards families_ (the pointer; the vector is never changed)
  std::shared_ptr<const std::vector<MetricFamily>> families_ = std::make_shared<const std::vector<MetricFamily>>();
};

// Families read when scraped, on the endpoint's thread: `read` must be thread-safe.
class OnScrape : public prometheus::Collectable {
 public:
  explicit OnScrape(std::function<std::vector<MetricFamily>()> read) : read_(std::move(read)) {}
  std::vector<MetricFamily> Collect() const override { return read_(); }

 private:
  std::function<std::vector<MetricFamily>()> read_;
};

struct Metrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  mutable std::mutex mutex;                                            // guards collectables and exposer
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables;  // besides the registry
  std::unique_ptr<prometheus::Exposer> exposer;

  // Serves `collectable` beside the registry from now on (its owner keeps it alive as long as
  // this). Any thread.
  void add(std::shared_ptr<prometheus::Collectable> collectable);
  std::vector<MetricFamily> collect() const;
};

// An empty family.
MetricFamily family(std::string name, std::string help, MetricType type);
// Appends a sample of a gauge or counter family.
void sample(MetricFamily& family, Labels labels, double value);
// Moves each of `families` to the end of `out`.
void moveInto(std::vector<MetricFamily>& out, std::initializer_list<MetricFamily*> families);
// `ms` in seconds.
inline double seconds(Duration d) { return static_cast<double>(d.count()) / 1000.0; }

prometheus::Family<prometheus::Counter>& counterFamily(Metrics& metrics, const std::string& name,
                                                       const std::string& help);
prometheus::Family<prometheus::Gauge>& gaugeFamily(Metrics& metrics, const std::string& name, const std::string& help);
prometheus::Family<prometheus::Histogram>& histogramFamily(Metrics& metrics, const std::string& name,
                                                           const std::string& help);

}  // namespace kvm_amf::monitor
