#include "kvm_amf/monitor/notifier.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <optional>
#include <set>

#include "delivery.h"
#include "kvm_amf/common/worker.h"
#include "registry.h"

namespace kvm_amf::monitor {

const std::vector<std::string>& eventClasses() {
  static const std::vector<std::string> kClasses = {"failure", "recovery", "fence", "membership",
                                                    "config",  "admin",    "state"};
  return kClasses;
}

Result<NotifyTarget> parseNotifyTarget(const std::string& spec, bool command) {
  const std::size_t equals = spec.find('=');
  if (equals == std::string::npos || equals + 1 == spec.size()) {
    return Error{"'" + spec + "': expected CLASS=" + (command ? "COMMAND" : "URL")};
  }
  NotifyTarget target;
  target.eventClass = spec.substr(0, equals);
  const auto& classes = eventClasses();
  if (target.eventClass != "all" && std::find(classes.begin(), classes.end(), target.eventClass) == classes.end()) {
    std::string known;
    for (const auto& c : classes) known += c + ", ";
    return Error{"'" + spec + "': unknown event class '" + target.eventClass + "' (known: " + known + "all)"};
  }
  if (command) {
    target.command = spec.substr(equals + 1);
  } else {
    target.url = spec.substr(equals + 1);
    if (Result<HttpUrl> url = parseHttpUrl(target.url); !url.ok()) return url.error();
  }
  return target;
}

struct Notifier::Destination {
  std::string name;  // for the log
  bool webhook = false;
  HttpUrl url;
  std::string command;
  std::set<std::string> classes;
  std::size_t waiting = 0;  // queued or under way (loop thread)
  std::shared_ptr<std::atomic<bool>> stopping = std::make_shared<std::atomic<bool>>(false);
  prometheus::Counter* sent = nullptr;
  prometheus::Counter* failed = nullptr;
  prometheus::Counter* dropped = nullptr;
  std::unique_ptr<Worker> worker;  // destroyed first: it may run a delivery that reads the above
};

Notifier::Notifier(EventLoop& loop, Metrics* metrics, NotifierOptions options)
    : loop_(loop), options_(std::move(options)) {
  prometheus::Family<prometheus::Counter>* counts =
      metrics == nullptr ? nullptr
                         : &counterFamily(*metrics, "amf_notifications_total",
                                          "Event notifications by destination kind (webhook, command) and outcome "
                                          "(sent, failed, dropped: the destination's queue was full)");
  // Both kinds' series exist from the start, destinations or not (dashboards name them).
  std::map<std::string, std::array<prometheus::Counter*, 3>> byKind;
  for (const char* kind : {"webhook", "command"}) {
    if (counts == nullptr) break;
    byKind[kind] = {&counts->Add({{"kind", kind}, {"outcome", "sent"}}),
                    &counts->Add({{"kind", kind}, {"outcome", "failed"}}),
                    &counts->Add({{"kind", kind}, {"outcome", "dropped"}})};
  }
  std::map<std::string, Destination*> byName;
  for (const auto& target : options_.targets) {
    const bool webhook = !target.url.empty();
    const std::string name = webhook ? target.url : "command '" + target.command + "'";
    Destination*& destination = byName[name];
    if (destination == nullptr) {
      auto made = std::make_unique<Destination>();
      made->name = name;
      made->webhook = webhook;
      made->command = target.command;
      if (webhook) made->url = parseHttpUrl(target.url).value();
      if (counts != nullptr) {
        const auto& [sent, failed, dropped] = byKind.at(webhook ? "webhook" : "command");
        made->sent = sent;
        made->failed = failed;
        made->dropped = dropped;
      }
      made->worker = std::make_unique<Worker>(loop_);
      destination = made.get();
      destinations_.push_back(std::move(made));
    }
    destination->classes.insert(target.eventClass);
  }
}

Notifier::~Notifier() {
  for (auto& destination : destinations_) destination->stopping->store(true);
  for (auto& destination : destinations_) destination->worker.reset();
}

void Notifier::notify(const std::string& type, const std::vector<std::string>& classes, const std::string& json) {
  std::string classList;
  for (const auto& c : classes) classList += (classList.empty() ? "" : ",") + c;
  for (auto& owned : destinations_) {
    Destination& destination = *owned;
    const bool wanted = destination.classes.contains("all") ||
                        std::any_of(classes.begin(), classes.end(),
                                    [&](const std::string& c) { return destination.classes.contains(c); });
    if (!wanted) continue;
    if (destination.waiting >= options_.queueLimit) {
      if (destination.dropped) destination.dropped->Increment();
      if (options_.log) {
        options_.log("notification of a " + type + " event to " + destination.name +
                     " dropped: " + std::to_string(destination.waiting) + " waiting");
      }
      continue;
    }
    ++destination.waiting;
    auto outcome = std::make_shared<std::optional<Status>>();
    destination.worker->run(
        // Worker thread: reads only what does not change after construction.
        [&destination, outcome, json, type, classList, timeout = options_.timeout, stopping = destination.stopping] {
          if (stopping->load()) return;
          *outcome = destination.webhook
                         ? httpPost(destination.url, json, timeout)
                         : runCommand(destination.command, json,
                                      {{"AMF_EVENT_TYPE", type}, {"AMF_EVENT_CLASSES", classList}}, timeout);
        },
        [this, &destination, outcome, type] {
          --destination.waiting;
          if (!outcome->has_value()) return;
          if (outcome->value().ok()) {
            if (destination.sent) destination.sent->Increment();
            return;
          }
          if (destination.failed) destination.failed->Increment();
          if (options_.log) {
            options_.log("notification of a " + type + " event to " + destination.name +
                         " failed: " + outcome->value().error().message);
          }
        });
  }
}

}  // namespace kvm_amf::monitor
