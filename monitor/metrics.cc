#include "kvm_amf/monitor/metrics.h"

#include <prometheus/text_serializer.h>

#include <exception>
#include <sstream>

#include "registry.h"

namespace kvm_amf::monitor {

void Snapshot::publish(std::vector<MetricFamily> families) {
  auto next = std::make_shared<const std::vector<MetricFamily>>(std::move(families));
  std::lock_guard lock(mutex_);
  families_ = std::move(next);
}

std::vector<MetricFamily> Snapshot::Collect() const {
  std::shared_ptr<const std::vector<MetricFamily>> current;
  {
    std::lock_guard lock(mutex_);
    current = families_;
  }
  return *current;
}

void Metrics::Impl::add(std::shared_ptr<prometheus::Collectable> collectable) {
  std::lock_guard lock(mutex);
  if (exposer) exposer->RegisterCollectable(collectable);
  collectables.push_back(std::move(collectable));
}

std::vector<MetricFamily> Metrics::Impl::collect() const {
  std::vector<MetricFamily> all = registry->Collect();
  std::lock_guard lock(mutex);
  for (const auto& collectable : collectables) {
    std::vector<MetricFamily> more = collectable->Collect();
    all.insert(all.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  }
  return all;
}

MetricFamily family(std::string name, std::string help, MetricType type) {
  MetricFamily out;
  out.name = std::move(name);
  out.help = std::move(help);
  out.type = type;
  return out;
}

void sample(MetricFamily& family, Labels labels, double value) {
  prometheus::ClientMetric metric;
  for (auto& [name, text] : labels) metric.label.push_back({name, std::move(text)});
  if (family.type == MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(std::move(metric));
}

void moveInto(std::vector<MetricFamily>& out, std::initializer_list<MetricFamily*> families) {
  for (MetricFamily* f : families) out.push_back(std::move(*f));
}

prometheus::Family<prometheus::Counter>& counterFamily(Metrics& metrics, const std::string& name,
                                                       const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(*metrics.impl().registry);
}

prometheus::Family<prometheus::Gauge>& gaugeFamily(Metrics& metrics, const std::string& name, const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(*metrics.impl().registry);
}

prometheus::Family<prometheus::Histogram>& histogramFamily(Metrics& metrics, const std::string& name,
                                                           const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(*metrics.impl().registry);
}

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {}

Metrics::~Metrics() {
  std::unique_ptr<prometheus::Exposer> exposer;
  {
    std::lock_guard lock(impl_->mutex);
    exposer = std::move(impl_->exposer);
  }
  exposer.reset();  // joins the endpoint's threads, outside the lock a scrape may be waiting for
}

Status Metrics::serve(const std::string& address) {
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // Two threads: a slow scraper does not hold up another.
    exposer = std::make_unique<prometheus::Exposer>(address, 2);
  } catch (const std::exception& e) {
    return Error{"metrics endpoint " + address + ": " + e.what()};
  }
  exposer->RegisterCollectable(impl_->registry);
  std::lock_guard lock(impl_->mutex);
  for (const auto& collectable : impl_->collectables) exposer->RegisterCollectable(collectable);
  impl_->exposer = std::move(exposer);
  return Status::success();
}

int Metrics::port() const {
  std::lock_guard lock(impl_->mutex);
  if (!impl_->exposer) return 0;
  const std::vector<int> ports = impl_->exposer->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

std::string Metrics::text() const {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, impl_->collect());
  return out.str();
}

}  // namespace kvm_amf::monitor
