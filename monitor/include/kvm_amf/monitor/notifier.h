// Event notification to configured destinations (docs/monitoring.md "Notifications"): per event
// class a webhook (HTTP POST of the event's JSON) or a command (the JSON on its standard input),
// besides `amf-admin events`. Deliveries run on a worker thread per destination, one at a time in
// order, each bounded by `timeout`; the loop only queues them. A destination with `queueLimit`
// deliveries waiting drops further ones. Every outcome is counted
// (amf_notifications_total{kind, outcome}) and failures and drops are logged.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kvm_amf/common/event_loop.h"
#include "kvm_amf/common/result.h"
#include "kvm_amf/monitor/metrics.h"

namespace kvm_amf::monitor {

// The event classes a destination may ask for (and "all").
//   failure     a VM failed (crash, watchdog, hang, I/O error, unhealthy), did not start or stop;
//               a host or its amfd was declared lost
//   recovery    the director restarted a VM or unit, failed a unit or a host over, repaired a
//               unit, destroyed a stray VM
//   fence       a fence agent was started, or ended
//   membership  the membership changed (hosts, amfds, quorum)
//   config      the configuration's generation changed
//   admin       an operator's command arrived or was answered, an administrative state changed
//   state       any other report or decision (starts, stops, assignments, acknowledgements)
const std::vector<std::string>& eventClasses();

struct NotifyTarget {
  std::string eventClass;  // one of eventClasses(), or "all"
  std::string url;         // a webhook: http://HOST[:PORT][/PATH]; or
  std::string command;     // a command, run as /bin/sh -c COMMAND
};

// "CLASS=URL" (a webhook) or, with `command`, "CLASS=COMMAND"; an error naming what is wrong (an
// unknown class, a URL that is not http://HOST[:PORT][/PATH], nothing after '=').
Result<NotifyTarget> parseNotifyTarget(const std::string& spec, bool command);

struct NotifierOptions {
  std::vector<NotifyTarget> targets;
  Duration timeout = Duration(5'000);           // per delivery: connect, send, answer; or the command's run
  std::size_t queueLimit = 100;                 // deliveries waiting per destination
  std::function<void(const std::string&)> log;  // one line per failed or dropped delivery
};

class Notifier {
 public:
  // `metrics` is optional. REQUIRES: loop thread; `loop` (and `metrics`) outlive this; the
  // targets parsed by parseNotifyTarget.
  Notifier(EventLoop& loop, Metrics* metrics, NotifierOptions options);
  // Drops the deliveries not begun; waits for those under way (each bounded by the timeout).
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // Queues `json` (the event, one JSON object) for every destination that asked for one of
  // `classes` or for "all"; a destination named under several of them gets it once. A command
  // also finds AMF_EVENT_TYPE (`type`) and AMF_EVENT_CLASSES (the classes, comma-separated) in
  // its environment. Loop thread; never blocks.
  void notify(const std::string& type, const std::vector<std::string>& classes, const std::string& json);

 private:
  struct Destination;
  EventLoop& loop_;
  NotifierOptions options_;
  std::vector<std::unique_ptr<Destination>> destinations_;
};

}  // namespace kvm_amf::monitor
