// amf-ckptnode: the checkpoint service of one host on the real Corosync group, with the real event
// loop and disk log, as amfd runs it. The checkpoint tests and benchmark on real Corosync run one
// per lab host; it writes what it sees to a journal (JSON lines) and a status file, and takes
// commands from a FIFO.
//
//   amf-ckptnode --dir DIR [--group NAME]
//
// DIR/ckpt/     the disk log (snapshot and log)
// DIR/journal   one JSON object a line: loaded, refused, acked, failed, read, bench
// DIR/status    the view, the replica's epoch and seq and the service's counts (JSON), every 100 ms
// DIR/control   FIFO; lines:
//   "create NAME"                      create a checkpoint (default attributes)
//   "stream NAME SECTION WINDOW SIZE"  synchronous writes of 1, 2, 3, ... (each the number padded
//                                      with '.' to SIZE bytes; the checkpoint is created if
//                                      missing), WINDOW outstanding; each answer is journalled
//                                      ("acked" with the value, or "failed")
//   "read NAME SECTION"                journals "read" with the data, or the error
//   "bench N SIZE WINDOW [async]"      N writes of SIZE bytes with WINDOW outstanding; journals
//                                      "bench": count, seconds, per_second, p50_ms, p99_ms, errors
//   "quit"
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "kvm_amf/ckpt/checkpoint_service.h"
#include "kvm_amf/ckpt/disk_checkpoint_log.h"
#include "kvm_amf/cluster/corosync_group.h"
#include "kvm_amf/common/event_loop.h"
#include "lab_node.h"

namespace kvm_amf {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

json statusOf(const ckpt::CheckpointService& service) {
  const ckpt::CheckpointServiceStats& s = service.stats();
  json status = {{"node", service.nodeId()},        {"members", service.members()},
                 {"quorate", service.quorate()},    {"synced", service.synced()},
                 {"durable", service.durableSeq()}, {"opsApplied", s.opsApplied},
                 {"appliedSent", s.appliedSent},    {"diskWrites", s.diskWrites},
                 {"diskFailures", s.diskFailures},  {"syncs", s.syncs},
                 {"malformed", s.malformed}};
  if (const ckpt::CheckpointStore* store = service.store()) {
    status["epoch"] = store->epoch();
    status["seq"] = store->seq();
    status["checkpoints"] = store->state().checkpoints.size();
  }
  return status;
}

// N writes with a window of them outstanding, timed with the real clock.
struct Bench {
  long total = 0;
  long sent = 0;
  long answered = 0;
  long errors = 0;
  std::size_t size = 0;
  long window = 1;
  ckpt::WriteMode mode = ckpt::WriteMode::kSync;
  Clock::time_point start;
  std::vector<double> latencies;  // ms
  std::string lastError;
};

int run(int argc, char** argv) {
  CLI::App app{"the checkpoint service on the real Corosync group (for tests and benchmarks)"};
  std::string dir;
  std::string groupName = "kvm-amf-ckpt";
  app.add_option("--dir", dir)->required();
  app.add_option("--group", groupName);
  CLI11_PARSE(app, argc, argv);

  Result<std::unique_ptr<EventLoop>> created = EventLoop::create();
  if (!created.ok()) {
    std::fprintf(stderr, "%s\n", created.error().message.c_str());
    return 1;
  }
  EventLoop& loop = *created.value();
  testing::JsonJournal journal(loop, dir + "/journal");
  const std::string ckptDir = dir + "/ckpt";
  ::mkdir(ckptDir.c_str(), 0755);

  std::string warning;
  Result<std::optional<ckpt::CheckpointStore>> stored = ckpt::DiskCheckpointLog::load(ckptDir, {}, &warning);
  const bool loaded = stored.ok();
  if (!loaded) {
    std::fprintf(stderr, "amf-ckptnode: refusing the stored checkpoints: %s\n", stored.error().message.c_str());
    journal.write({{"ev", "refused"}, {"error", stored.error().message}});
  } else {
    journal.write({{"ev", "loaded"},
                   {"warning", warning},
                   {"seq", stored.value() ? stored.value()->seq() : 0},
                   {"checkpoints", stored.value() ? stored.value()->state().checkpoints.size() : 0}});
  }

  std::unique_ptr<cluster::CorosyncGroup> group;
  cluster::CorosyncGroupOptions groupOptions;
  groupOptions.groupName = groupName;
  for (int attempt = 0;; ++attempt) {
    Result<std::unique_ptr<cluster::CorosyncGroup>> connected = cluster::CorosyncGroup::connect(loop, groupOptions);
    if (connected.ok()) {
      group = std::move(connected.value());
      break;
    }
    if (attempt == 300) {
      std::fprintf(stderr, "amf-ckptnode: %s\n", connected.error().message.c_str());
      return 69;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }

  ckpt::DiskCheckpointLog disk(loop, ckptDir);
  ckpt::CheckpointServiceOptions options;
  options.logger = [](const std::string& line) { std::fprintf(stderr, "amf-ckptnode: %s\n", line.c_str()); };
  ckpt::CheckpointService service(ckpt::CheckpointServiceDeps{&loop, group.get(), &disk}, options,
                                  loaded ? std::move(stored).value() : std::nullopt, loaded);
  if (Status status = service.start(); !status.ok()) {
    std::fprintf(stderr, "amf-ckptnode: %s\n", status.error().message.c_str());
    return 69;
  }

  // The stream: each write's answer sends the next one.
  std::uint64_t nextValue = 1;
  std::size_t streamSize = 1024;
  std::function<void(std::string, std::string)> streamOne = [&](std::string name, std::string section) {
    const std::uint64_t value = nextValue++;
    std::string data = std::to_string(value);
    data.resize(std::max(streamSize, data.size()), '.');
    service.put(
        name, section, std::move(data), ckpt::WriteMode::kSync,
        [&, name, section, value](ckpt::CkptResult<std::uint64_t> outcome) {
          if (outcome.ok()) {
            journal.write({{"ev", "acked"}, {"value", value}, {"seq", outcome.value()}});
          } else {
            journal.write({{"ev", "failed"},
                           {"value", value},
                           {"kind", std::string(ckpt::errorKindName(outcome.error().kind))},
                           {"error", outcome.error().message}});
          }
          // Go on after a refusal too (no quorum for a moment), a little later.
          if (outcome.ok()) {
            streamOne(name, section);
          } else {
            loop.after(Duration(50), [&, name, section] { streamOne(name, section); });
          }
        },
        ckpt::CheckpointAttributes{});
  };

  Bench bench;
  std::function<void()> benchOne = [&] {
    if (bench.sent >= bench.total) return;
    const long index = bench.sent++;
    const auto started = Clock::now();
    service.put(
        "bench", "s" + std::to_string(index % 64), std::string(bench.size, 'x'), bench.mode,
        [&, started](ckpt::CkptResult<std::uint64_t> outcome) {
          bench.latencies.push_back(std::chrono::duration<double, std::milli>(Clock::now() - started).count());
          ++bench.answered;
          if (!outcome.ok()) {
            ++bench.errors;
            bench.lastError = outcome.error().message;
          }
          if (bench.answered == bench.total) {
            const double seconds = std::chrono::duration<double>(Clock::now() - bench.start).count();
            std::vector<double> sorted = bench.latencies;
            std::sort(sorted.begin(), sorted.end());
            auto percentile = [&](double p) {
              return sorted.empty() ? 0.0 : sorted[std::min(sorted.size() - 1, std::size_t(p * sorted.size()))];
            };
            journal.write({{"ev", "bench"},
                           {"count", bench.total},
                           {"window", bench.window},
                           {"size", bench.size},
                           {"async", bench.mode == ckpt::WriteMode::kAsync},
                           {"seconds", seconds},
                           {"per_second", seconds > 0 ? bench.total / seconds : 0.0},
                           {"p50_ms", percentile(0.50)},
                           {"p99_ms", percentile(0.99)},
                           {"errors", bench.errors},
                           {"last_error", bench.lastError}});
            return;
          }
          benchOne();
        },
        ckpt::CheckpointAttributes{});
  };

  auto onLine = [&](const std::string& text) {
    std::istringstream line(text);
    std::string verb;
    line >> verb;
    if (verb == "quit") {
      service.stop();
      loop.stop();
    } else if (verb == "create") {
      std::string name;
      line >> name;
      service.create(name, {}, [&journal, name](ckpt::CkptResult<std::uint64_t> outcome) {
        journal.write({{"ev", "created"}, {"name", name}, {"ok", outcome.ok()}});
      });
    } else if (verb == "stream") {
      std::string name, section;
      long window = 1;
      line >> name >> section >> window >> streamSize;
      for (long i = 0; i < std::max(1L, window); ++i) streamOne(name, section);
    } else if (verb == "read") {
      std::string name, section;
      line >> name >> section;
      ckpt::CkptResult<std::string> data = service.read(name, section);
      if (data.ok()) {
        journal.write({{"ev", "read"}, {"name", name}, {"section", section}, {"data", data.value()}});
      } else {
        journal.write({{"ev", "read"}, {"name", name}, {"section", section}, {"error", data.error().message}});
      }
    } else if (verb == "bench") {
      std::string mode;
      bench = Bench{};
      line >> bench.total >> bench.size >> bench.window >> mode;
      bench.mode = mode == "async" ? ckpt::WriteMode::kAsync : ckpt::WriteMode::kSync;
      bench.latencies.reserve(static_cast<std::size_t>(bench.total));
      bench.start = Clock::now();
      for (long i = 0; i < bench.window; ++i) benchOne();
    }
  };
  testing::LabNodeInput input(loop, dir + "/control", onLine, [&] {
    service.stop();
    loop.stop();
  });

  std::function<void()> writeStatus = [&] {
    testing::writeAtomically(dir + "/status", statusOf(service).dump() + "\n");
    loop.after(Duration(100), writeStatus);
  };
  writeStatus();

  loop.run();
  testing::writeAtomically(dir + "/status", statusOf(service).dump() + "\n");
  return 0;
}

}  // namespace
}  // namespace kvm_amf

int main(int argc, char** argv) { return kvm_amf::run(argc, argv); }
