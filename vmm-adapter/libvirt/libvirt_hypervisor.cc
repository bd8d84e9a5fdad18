#include "kvm_amf/vmm/libvirt_hypervisor.h"

#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "kvm_amf/common/worker.h"

namespace kvm_amf::vmm {
namespace libvirt_detail {

namespace {

std::string lastErrorMessage() {
  const char* message = virGetLastErrorMessage();
  return message != nullptr ? message : "unknown error";
}

int lastErrorCode() {
  virErrorPtr error = virGetLastError();
  return error != nullptr ? error->code : VIR_ERR_OK;
}

Error libvirtError(const std::string& call, const std::string& subject) {
  return Error{"libvirt " + call + " on " + subject + ": " + lastErrorMessage()};
}

// libvirt's error handler prints every error to stderr; the adapter reports errors itself.
void ignoreError(void* /*opaque*/, virErrorPtr /*error*/) {}

// libvirt's event implementation is process-wide: registered once, before the first connection.
void initializeLibvirtOnce() {
  static std::once_flag once;  // NOLINT: libvirt's own state is process-wide; this only guards its set-up
  std::call_once(once, [] {
    virInitialize();
    virSetErrorFunc(nullptr, ignoreError);
    virEventRegisterDefaultImpl();
  });
}

void noopTimeout(int /*timer*/, void* /*opaque*/) {}

// A reference to a connection held for the length of one call (virConnectClose drops it).
class ConnectionRef {
 public:
  explicit ConnectionRef(virConnectPtr conn) : conn_(conn) {
    if (conn_ != nullptr) virConnectRef(conn_);
  }
  struct Adopt {};
  ConnectionRef(virConnectPtr conn, Adopt /*owned already*/) : conn_(conn) {}
  ~ConnectionRef() {
    if (conn_ != nullptr) virConnectClose(conn_);
  }
  ConnectionRef(const ConnectionRef&) = delete;
  ConnectionRef& operator=(const ConnectionRef&) = delete;
  virConnectPtr get() const { return conn_; }

 private:
  virConnectPtr conn_;
};

class DomainRef {
 public:
  explicit DomainRef(virDomainPtr domain) : domain_(domain) {}
  ~DomainRef() {
    if (domain_ != nullptr) virDomainFree(domain_);
  }
  DomainRef(const DomainRef&) = delete;
  DomainRef& operator=(const DomainRef&) = delete;
  virDomainPtr get() const { return domain_; }

 private:
  virDomainPtr domain_;
};

template <typename R>
struct CallState {
  bool finished = false;    // loop thread only
  TimerId timer = 0;        // loop thread only
  std::optional<R> result;  // written by the worker, read on the loop thread after the worker posts
  std::function<void(R)> done;
};

// How often shutdown() asks whether the guest powered off, migrate() reads the job's progress, and
// a migration past its timeout is asked again to abort (an abort sent before the job began fails).
constexpr Duration kShutdownPollInterval(200);
constexpr Duration kProgressInterval(1'000);
constexpr Duration kAbortRetryInterval(1'000);
// After a successful migration call, how long to wait for libvirt's job-completed event (the
// statistics of the finished job: the source domain is gone by then, so they cannot be queried).
constexpr Duration kCompletedStatsWait(2'000);
// How long stats() waits for one VM's QEMU (normally milliseconds) before answering without its
// CPU, memory and disk figures.
constexpr Duration kQemuStatsWait(1'000);
// How long an operation that starts or stops a VM waits for the event thread to process the
// lifecycle event it caused (see Core::afterEvents).
constexpr Duration kEventWait(2'000);

// QEMU re-announces the VM's MACs (RARP) so that switches learn where it runs now. The same
// timings as QEMU's own announcement after an incoming migration.
constexpr const char* kAnnounceSelf =
    R"({"execute":"announce-self","arguments":{"initial":50,"max":550,"rounds":5,"step":100}})";

constexpr unsigned kMigrateFlags = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_PERSIST_DEST |
                                   VIR_MIGRATE_UNDEFINE_SOURCE | VIR_MIGRATE_ABORT_ON_ERROR;

// Statistics come in two parts. libvirt 9 asks QEMU's monitor for CPU_TOTAL (halt-polling time),
// BALLOON and BLOCK, and NOWAIT only skips a domain whose job lock is taken, not one whose QEMU
// does not answer (SIGSTOPped: the call hangs until it runs again). So the bulk call on the
// connection worker takes only what libvirt has without QEMU, and the rest is asked per VM, on
// the VM's worker, where a hung QEMU holds up only that VM.
constexpr unsigned kHostStatsGroups = VIR_DOMAIN_STATS_STATE | VIR_DOMAIN_STATS_INTERFACE;
constexpr unsigned kQemuStatsGroups = VIR_DOMAIN_STATS_CPU_TOTAL | VIR_DOMAIN_STATS_BALLOON | VIR_DOMAIN_STATS_BLOCK;

// Read access to libvirt's typed parameters (statistics, job figures) by name; a missing field
// reads as 0 or "", and any integer type reads as a number.
class TypedParams {
 public:
  TypedParams(virTypedParameterPtr params, int count) : params_(params), count_(count) {}

  std::uint64_t number(const std::string& name) const {
    virTypedParameterPtr param = virTypedParamsGet(params_, count_, name.c_str());
    if (param == nullptr) return 0;
    switch (param->type) {
      case VIR_TYPED_PARAM_INT:
        return param->value.i > 0 ? static_cast<std::uint64_t>(param->value.i) : 0;
      case VIR_TYPED_PARAM_UINT:
        return param->value.ui;
      case VIR_TYPED_PARAM_LLONG:
        return param->value.l > 0 ? static_cast<std::uint64_t>(param->value.l) : 0;
      case VIR_TYPED_PARAM_ULLONG:
        return param->value.ul;
      default:
        return 0;
    }
  }
  bool has(const std::string& name) const { return virTypedParamsGet(params_, count_, name.c_str()) != nullptr; }
  std::string text(const std::string& name) const {
    const char* value = nullptr;
    if (virTypedParamsGetString(params_, count_, name.c_str(), &value) != 1 || value == nullptr) return "";
    return value;
  }

 private:
  virTypedParameterPtr params_;
  int count_;
};

// Typed parameters built for a call (migration parameters), freed with the object.
class TypedParamList {
 public:
  TypedParamList() = default;
  ~TypedParamList() { virTypedParamsFree(params_, count_); }
  TypedParamList(const TypedParamList&) = delete;
  TypedParamList& operator=(const TypedParamList&) = delete;

  bool add(const char* name, const std::string& value) {
    return virTypedParamsAddString(&params_, &count_, &capacity_, name, value.c_str()) == 0;
  }
  bool add(const char* name, std::uint64_t value) {
    return virTypedParamsAddULLong(&params_, &count_, &capacity_, name, value) == 0;
  }
  virTypedParameterPtr get() const { return params_; }
  int size() const { return count_; }

 private:
  virTypedParameterPtr params_ = nullptr;
  int count_ = 0;
  int capacity_ = 0;
};

// One VM's record of virConnectGetAllDomainStats.
VmStats vmStatsOf(virDomainStatsRecordPtr record) {
  const TypedParams params(record->params, record->nparams);
  VmStats stats;
  stats.vm = virDomainGetName(record->dom);
  stats.running = params.number("state.state") == VIR_DOMAIN_RUNNING;
  stats.cpuTimeNs = params.number("cpu.time");
  stats.memoryKiB = params.number("balloon.current");
  stats.memoryMaxKiB = params.number("balloon.maximum");
  stats.memoryRssKiB = params.number("balloon.rss");
  stats.memoryUsableKiB = params.number("balloon.usable");
  const std::uint64_t disks = params.number("block.count");
  for (std::uint64_t i = 0; i < disks; ++i) {
    const std::string p = "block." + std::to_string(i) + ".";
    stats.disks.push_back({.name = params.text(p + "name"),
                           .readBytes = params.number(p + "rd.bytes"),
                           .writeBytes = params.number(p + "wr.bytes"),
                           .readRequests = params.number(p + "rd.reqs"),
                           .writeRequests = params.number(p + "wr.reqs"),
                           .errors = params.number(p + "errors"),
                           .allocation = params.number(p + "allocation"),
                           .capacity = params.number(p + "capacity"),
                           .physical = params.number(p + "physical")});
  }
  const std::uint64_t nics = params.number("net.count");
  for (std::uint64_t i = 0; i < nics; ++i) {
    const std::string p = "net." + std::to_string(i) + ".";
    stats.nics.push_back({.name = params.text(p + "name"),
                          .rxBytes = params.number(p + "rx.bytes"),
                          .txBytes = params.number(p + "tx.bytes"),
                          .rxPackets = params.number(p + "rx.pkts"),
                          .txPackets = params.number(p + "tx.pkts"),
                          .rxDrops = params.number(p + "rx.drop"),
                          .txDrops = params.number(p + "tx.drop"),
                          .rxErrors = params.number(p + "rx.errs"),
                          .txErrors = params.number(p + "tx.errs")});
  }
  return stats;
}

MigrationProgress progressOf(const TypedParams& job) {
  return {.elapsed = Duration(static_cast<Duration::rep>(job.number(VIR_DOMAIN_JOB_TIME_ELAPSED))),
          .dataTotal = job.number(VIR_DOMAIN_JOB_DATA_TOTAL),
          .dataProcessed = job.number(VIR_DOMAIN_JOB_DATA_PROCESSED),
          .dataRemaining = job.number(VIR_DOMAIN_JOB_DATA_REMAINING),
          .memoryIteration = job.number(VIR_DOMAIN_JOB_MEMORY_ITERATION)};
}

// `xml` (a domain XML as libvirt writes it) with the agent channel's socket moved to `dir`: the
// path domainXml() gives for that directory. An error if the XML has no agent channel or the path
// does not fit a UNIX socket address.
Result<std::string> withAgentSocketDir(std::string xml, const std::string& vm, std::string dir) {
  constexpr std::size_t kMaxSocketPath = 107;
  while (dir.size() > 1 && dir.ends_with('/')) dir.pop_back();
  if (!dir.starts_with('/')) return Error{"destinationAgentSocketDir '" + dir + "' is not an absolute path"};
  const std::string path = (dir == "/" ? "" : dir) + "/" + vm + ".agent";
  if (path.size() > kMaxSocketPath) return Error{"the destination agent socket path '" + path + "' is too long"};
  const std::string target = "name='" + std::string(kAgentChannelName) + "'";
  const std::size_t targetAt = xml.find(target);
  const std::size_t channelAt = targetAt == std::string::npos ? std::string::npos : xml.rfind("<channel", targetAt);
  const std::size_t pathAt = channelAt == std::string::npos ? std::string::npos : xml.find(" path='", channelAt);
  const std::size_t valueAt = pathAt == std::string::npos ? pathAt : pathAt + std::string_view(" path='").size();
  const std::size_t valueEnd = valueAt == std::string::npos ? valueAt : xml.find('\'', valueAt);
  if (pathAt == std::string::npos || pathAt > targetAt || valueEnd == std::string::npos) {
    return Error{"the domain XML of " + vm + " has no agent channel (" + std::string(kAgentChannelName) + ")"};
  }
  Result<std::string> escaped = escapeXml(path);
  if (!escaped.ok()) return Error{"the destination agent socket path '" + path + "' " + escaped.error().message};
  xml.replace(valueAt, valueEnd - valueAt, escaped.value());
  return xml;
}

}  // namespace

// One migrate() in progress. Loop thread only, except `abortRequested`.
struct Migration {
  std::string vm;
  MigrationOptions options;
  std::function<void(const MigrationProgress&)> progress;
  std::function<void(Result<MigrationOutcome>)> done;
  TimePoint started{0};
  // Reads the job's progress and aborts it while the VM's worker is blocked in the migration call.
  std::unique_ptr<Worker> monitor;
  int monitorJobs = 0;  // given to `monitor` and not completed yet
  TimerId pollTimer = 0, timeoutTimer = 0, abortTimer = 0, statsTimer = 0;
  bool timedOut = false;
  bool finished = false;
  std::optional<Duration> returnedAfter;      // the migration call succeeded after this long
  std::optional<MigrationProgress> last;      // the last progress read
  std::optional<MigrationOutcome> completed;  // from libvirt's job-completed event
  std::optional<std::uint64_t> retired;       // the monitor's key in Core::retiredMonitors once finished
  // Set when the timeout passed or the adapter goes away: a migration call not yet begun is not made.
  std::shared_ptr<std::atomic<bool>> abortRequested = std::make_shared<std::atomic<bool>>(false);
};

// The adapter's state, shared with libvirt's callbacks (through a weak_ptr they own) so that a
// callback running while the adapter goes away finds it expired instead of freed.
struct Core : std::enable_shared_from_this<Core> {
  Core(EventLoop& l, LibvirtOptions o) : loop(l), options(std::move(o)) {}

  EventLoop& loop;
  const LibvirtOptions options;

  // Loop thread only.
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
  HypervisorListener* listener = nullptr;
  LibvirtObserver* observer = nullptr;
  std::unique_ptr<Worker> connectionWorker;  // connection-wide calls: list, stats, reconnect
  std::map<std::string, std::unique_ptr<Worker>> vmWorkers;
  bool reconnecting = false;
  TimerId reconnectTimer = 0;
  std::map<std::string, std::shared_ptr<Migration>> migrations;  // in progress, by VM
  // Monitors of finished migrations with a job still running: destroyed when it completes.
  std::map<std::uint64_t, std::unique_ptr<Worker>> retiredMonitors;
  std::uint64_t nextRetired = 0;

  std::mutex mutex;  // guards the members below (loop thread, workers, event thread)
  virConnectPtr conn = nullptr;
  std::vector<int> callbackIds;
  std::unique_ptr<std::weak_ptr<Core>> closeOpaque;  // the close callback's; freed once it is unregistered
  std::set<std::string> destroyRequested;            // our destroy is under way: its STOPPED event is not a failure
  std::set<std::string> running;                     // domains last seen running: the list at connect, plus events
  std::set<std::string> incoming;                    // started here for an incoming migration, not yet resumed
  std::map<std::string, int> statsAsked;             // a VM's statistics queries that have not returned
  std::set<std::string> statsLate;                   // ... of which one is past its deadline: not asked again

  std::atomic<bool> stopEvents = false;
  std::thread eventThread;  // runs virEventRunDefaultImpl until stopEvents
  // The driver has no QEMU monitor (the test driver): announce-self is not tried again.
  std::atomic<bool> noQemuMonitor = false;

  Worker& workerFor(const std::string& vm) {
    auto& worker = vmWorkers[vm];
    if (!worker) worker = std::make_unique<Worker>(loop);
    return *worker;
  }

  // Runs job on worker; `done` gets its result on the loop thread, or a time-out error if the
  // deadline (callTimeout, or `timeout`) passes first (the late result is then dropped). Loop thread.
  template <typename R>
  void call(Worker& worker, const std::string& callName, const std::string& subject, std::function<R()> job,
            std::function<void(R)> done) {
    call<R>(worker, callName, subject, options.callTimeout, std::move(job), std::move(done));
  }
  template <typename R>
  void call(Worker& worker, const std::string& callName, const std::string& subject, Duration timeout,
            std::function<R()> job, std::function<void(R)> done) {
    auto state = std::make_shared<CallState<R>>();
    state->done = std::move(done);
    const auto ms = timeout.count();
    state->timer = loop.after(timeout, [flag = alive, state, callName, subject, ms] {
      if (!*flag || state->finished) return;
      state->finished = true;
      state->done(
          R(Error{"libvirt " + callName + " on " + subject + " timed out after " + std::to_string(ms) + " ms"}));
    });
    worker.run([state, job = std::move(job)] { state->result.emplace(job()); },
               [this, state] {
                 if (state->finished) return;
                 state->finished = true;
                 loop.cancel(state->timer);
                 state->done(std::move(*state->result));
               });
  }

  // Any thread: the current connection, or nothing while the daemon is away.
  std::unique_ptr<ConnectionRef> connection() {
    std::lock_guard lock(mutex);
    if (conn == nullptr) return nullptr;
    return std::make_unique<ConnectionRef>(conn);
  }

  // Worker: a connection of its own for one long call (migration, managed save, restore); an
  // error while the daemon is away. With an event loop registered, libvirt 9's client holds up
  // other threads' calls on a connection while one call on it runs long (until the next keep-alive
  // exchange, up to 5 s): the shared connection stays free for every other call. The test driver
  // runs in this process (no RPC, no such hold-up), and each connection to a test:///PATH file is
  // a world of its own: there the shared connection is used.
  Result<std::unique_ptr<ConnectionRef>> ownConnection(const std::string& call, const std::string& vm) {
    auto shared = connection();
    if (!shared) return disconnectedError(call, vm);  // reconnecting: no new connection either
    if (options.uri.starts_with("test:")) return shared;
    virConnectPtr fresh = virConnectOpen(options.uri.c_str());
    if (fresh == nullptr) return libvirtError("virConnectOpen", options.uri + " (for " + call + " on " + vm + ")");
    return std::make_unique<ConnectionRef>(fresh, ConnectionRef::Adopt{});
  }

  Error disconnectedError(const std::string& call, const std::string& subject) const {
    return Error{"libvirt " + call + " on " + subject + ": not connected to " + options.uri + " (reconnecting)"};
  }

  // Loop thread: runs fn on vm's worker with the domain looked up by name (an unknown VM is an
  // error naming it); a long call (`own`) on a connection of its own.
  enum class Connection { kShared, kOwn };
  void domainCall(const std::string& vm, const std::string& callName, Duration timeout,
                  std::function<Status(virDomainPtr)> fn, Done done, Connection which = Connection::kShared) {
    call<Status>(
        workerFor(vm), callName, vm, timeout,
        [this, vm, callName, which, fn = std::move(fn)]() -> Status {
          std::unique_ptr<ConnectionRef> ref;
          if (which == Connection::kOwn) {
            Result<std::unique_ptr<ConnectionRef>> own = ownConnection(callName, vm);
            if (!own.ok()) return own.error();
            ref = std::move(own).value();
          } else {
            ref = connection();
            if (!ref) return disconnectedError(callName, vm);
          }
          DomainRef domain(virDomainLookupByName(ref->get(), vm.c_str()));
          if (domain.get() == nullptr) return libvirtError("virDomainLookupByName", vm);
          return fn(domain.get());
        },
        std::move(done));
  }

  // Runs `done` on the loop thread later (never from inside the call that was asked for).
  template <typename R>
  void answerLater(std::function<void(R)> done, R result) {
    loop.post([flag = alive, done = std::move(done), result = std::move(result)]() mutable {
      if (*flag) done(std::move(result));
    });
  }

  // Worker: destroys the domain (marked in destroyRequested, so that its STOPPED event is not a
  // failure), then undefines it. An unknown or stopped VM is success. Complete it with
  // afterStopped().
  Status destroyAndUndefine(const std::string& vm) {
    auto ref = connection();
    if (!ref) return disconnectedError("destroy", vm);
    auto forget = [this, &vm] {
      std::lock_guard lock(mutex);
      destroyRequested.erase(vm);
    };
    {
      std::lock_guard lock(mutex);
      destroyRequested.insert(vm);  // before the call: its STOPPED event may come at once
    }
    // On success the mark stays: the caller removes it once the STOPPED event, if one is still
    // to come (the VM may also have stopped just before), has been processed (afterStopped).
    DomainRef domain(virDomainLookupByName(ref->get(), vm.c_str()));
    if (domain.get() == nullptr) {
      if (lastErrorCode() == VIR_ERR_NO_DOMAIN) return Status::success();
      forget();
      return libvirtError("virDomainLookupByName", vm);
    }
    killIfStopped(vm);
    if (virDomainDestroy(domain.get()) < 0 && lastErrorCode() != VIR_ERR_OPERATION_INVALID) {
      forget();
      return libvirtError("virDomainDestroy", vm);
    }
    return undefine(domain.get(), vm);
  }

  // Worker. libvirt's destroy sends QEMU SIGTERM and waits up to 10 s before SIGKILL; a QEMU
  // stopped by a signal (SIGSTOP: a hung VM, as the lab makes one) leaves SIGTERM pending, so the
  // destroy takes those 10 s, and the cluster would fence the host for a VM it could not stop. A
  // destroy is a power-off anyway: such a QEMU gets SIGKILL here first. A running QEMU is left to
  // libvirt's gentler order (QEMU flushes its disks on SIGTERM). The pid file must name this VM's
  // QEMU (`-name guest=VM,...`), so a stale file whose pid was reused kills nothing.
  void killIfStopped(const std::string& vm) const {
    if (options.qemuPidDir.empty()) return;
    std::ifstream pidFile(options.qemuPidDir + "/" + vm + ".pid");
    long pid = 0;
    if (!(pidFile >> pid) || pid <= 1) return;
    const std::string proc = "/proc/" + std::to_string(pid);
    std::ifstream cmdline(proc + "/cmdline", std::ios::binary);
    const std::string args((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
    if (args.find("guest=" + vm + ",") == std::string::npos &&
        args.find("guest=" + vm + std::string(1, '\0')) == std::string::npos) {
      return;
    }
    std::ifstream stat(proc + "/stat");
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    if (close == std::string::npos || close + 2 >= line.size()) return;
    const char state = line[close + 2];
    if (state == 'T' || state == 't') ::kill(static_cast<pid_t>(pid), SIGKILL);
  }

  // Worker: undefines a stopped domain with its managed save, snapshots' and checkpoints' metadata
  // and NVRAM. A transient or vanished domain is success.
  static Status undefine(virDomainPtr domain, const std::string& vm) {
    if (virDomainIsPersistent(domain) != 1) return Status::success();  // transient: gone with the destroy
    constexpr unsigned kAll = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                              VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | VIR_DOMAIN_UNDEFINE_NVRAM;
    constexpr unsigned kBasic = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;
    if (virDomainUndefineFlags(domain, kAll) == 0) return Status::success();
    // Drivers that know no NVRAM or checkpoints (the test driver) refuse those flags.
    if ((lastErrorCode() == VIR_ERR_INVALID_ARG || lastErrorCode() == VIR_ERR_NO_SUPPORT) &&
        virDomainUndefineFlags(domain, kBasic) == 0) {
      return Status::success();
    }
    if (lastErrorCode() == VIR_ERR_NO_DOMAIN) return Status::success();
    return libvirtError("virDomainUndefineFlags", vm);
  }

  // Event thread: reports `event` for `vm` to the listener on the loop thread.
  void deliver(const std::string& vm, VmEvent event) {
    loop.post([self = shared_from_this(), flag = alive, vm, event] {
      if (*flag && self->listener != nullptr) self->listener->onVmEvent(vm, event);
    });
  }

  // Event thread: runs fn on the loop thread while the adapter exists.
  void onLoop(std::function<void(Core&)> fn) {
    loop.post([self = shared_from_this(), flag = alive, fn = std::move(fn)] {
      if (*flag) fn(*self);
    });
  }

  // ---- Ordering with the event thread (loop thread) ----
  //
  // Lifecycle events reach the event thread later than the calls that cause them return. An
  // operation that starts or stops a VM therefore completes only once the event thread has
  // processed its event (the VM's entry in `running` says so), or after kEventWait at the latest.
  // So the STOPPED event of a destroy always finds its destroyRequested mark (a start that
  // follows at once would otherwise clear it, and the event would read as a crash), and no mark
  // outlives its event.

  struct EventWaiter {
    bool wantRunning = false;
    std::function<void()> then;
    TimerId timer = 0;
  };
  std::multimap<std::string, std::shared_ptr<EventWaiter>> eventWaiters;  // loop thread only

  bool isRunning(const std::string& vm) {
    std::lock_guard lock(mutex);
    return running.count(vm) > 0;
  }

  // Calls `then` once `vm` is (wantRunning) or is not running as far as processed events tell.
  void afterEvents(const std::string& vm, bool wantRunning, std::function<void()> then) {
    if (isRunning(vm) == wantRunning) return then();
    auto waiter = std::make_shared<EventWaiter>();
    waiter->wantRunning = wantRunning;
    waiter->then = std::move(then);
    waiter->timer = loop.after(kEventWait, [this, flag = alive, vm, waiter] {
      if (*flag) fireWaiter(vm, waiter);
    });
    eventWaiters.emplace(vm, waiter);
  }

  void fireWaiter(const std::string& vm, const std::shared_ptr<EventWaiter>& waiter) {
    auto [first, last] = eventWaiters.equal_range(vm);
    for (auto it = first; it != last; ++it) {
      if (it->second != waiter) continue;
      eventWaiters.erase(it);
      loop.cancel(waiter->timer);
      waiter->then();
      return;
    }
  }

  // After the event thread processed a lifecycle event of `vm`.
  void checkWaiters(const std::string& vm) {
    const bool now = isRunning(vm);
    std::vector<std::shared_ptr<EventWaiter>> due;
    auto [first, last] = eventWaiters.equal_range(vm);
    for (auto it = first; it != last; ++it) {
      if (it->second->wantRunning == now) due.push_back(it->second);
    }
    for (const auto& waiter : due) fireWaiter(vm, waiter);
  }

  // Completion of an operation that stopped `vm` on purpose: once its STOPPED event has been
  // processed, the destroyRequested mark goes (the event consumed it, or none is coming).
  Done afterStopped(const std::string& vm, Done done) {
    return [this, vm, done = std::move(done)](Status status) {
      if (!status.ok()) {
        forgetDestroy(vm);
        return done(std::move(status));
      }
      afterEvents(vm, false, [this, vm, done] {
        forgetDestroy(vm);
        done(Status::success());
      });
    };
  }

  // Completion of an operation that started `vm`: once its STARTED event has been processed.
  Done afterStarted(const std::string& vm, Done done) {
    return [this, vm, done = std::move(done)](Status status) {
      if (!status.ok()) return done(std::move(status));
      afterEvents(vm, true, [done] { done(Status::success()); });
    };
  }

  void forgetDestroy(const std::string& vm) {
    std::lock_guard lock(mutex);
    destroyRequested.erase(vm);
  }

  // Event thread.
  void onLifecycle(const std::string& vm, int event, int detail) {
    std::optional<VmEvent> report;
    bool announceHere = false;
    {
      std::lock_guard lock(mutex);
      if (event == VIR_DOMAIN_EVENT_STARTED && detail == VIR_DOMAIN_EVENT_STARTED_MIGRATED) {
        // An incoming migration's QEMU, paused until the switch-over: not running here yet, and
        // its MACs must not be announced before the VM has left the source.
        incoming.insert(vm);
      } else if (event == VIR_DOMAIN_EVENT_STARTED || event == VIR_DOMAIN_EVENT_RESUMED) {
        incoming.erase(vm);
        running.insert(vm);
        // Booted or restored here, or the switch-over of a migration (here the destination's, or
        // a source's that resumed after a failed switch-over: the VM is here either way).
        announceHere = (event == VIR_DOMAIN_EVENT_STARTED &&
                        (detail == VIR_DOMAIN_EVENT_STARTED_BOOTED || detail == VIR_DOMAIN_EVENT_STARTED_RESTORED)) ||
                       (event == VIR_DOMAIN_EVENT_RESUMED && detail == VIR_DOMAIN_EVENT_RESUMED_MIGRATED);
      } else if (event == VIR_DOMAIN_EVENT_STOPPED) {
        running.erase(vm);
        if (incoming.erase(vm) > 0) return;          // a failed incoming migration: the VM runs on at the source
        if (destroyRequested.erase(vm) > 0) return;  // our own destroy or shutdown
        switch (detail) {
          case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN:   // the guest powered off on its own
          case VIR_DOMAIN_EVENT_STOPPED_DESTROYED:  // someone else destroyed it
          case VIR_DOMAIN_EVENT_STOPPED_CRASHED:
          case VIR_DOMAIN_EVENT_STOPPED_FAILED:  // QEMU died
            report = VmEvent::kCrashed;
            break;
          default:  // saved, migrated away, reverted to a snapshot: deliberate, not a failure
            break;
        }
      } else if (event == VIR_DOMAIN_EVENT_CRASHED) {
        report = VmEvent::kCrashed;  // guest panic; a STOPPED(CRASHED) may follow: listeners are idempotent
      }
    }
    onLoop([vm](Core& core) { core.checkWaiters(vm); });
    if (report) deliver(vm, *report);
    if (announceHere && !noQemuMonitor.load(std::memory_order_relaxed)) onLoop([vm](Core& core) { core.announce(vm); });
  }

  // Loop thread: asks QEMU to announce the VM's MACs, on its worker; reports to the observer. A
  // driver without a QEMU monitor (the test driver) is a silent skip.
  void announce(const std::string& vm) {
    call<std::optional<Status>>(
        workerFor(vm), "announce-self", vm,
        [this, vm]() -> std::optional<Status> {
          auto ref = connection();
          if (!ref) return Status(disconnectedError("announce-self", vm));
          DomainRef domain(virDomainLookupByName(ref->get(), vm.c_str()));
          if (domain.get() == nullptr) return Status(libvirtError("virDomainLookupByName", vm));
          char* reply = nullptr;
          if (virDomainQemuMonitorCommand(domain.get(), kAnnounceSelf, &reply, 0) < 0) {
            if (lastErrorCode() == VIR_ERR_NO_SUPPORT) {
              noQemuMonitor.store(true, std::memory_order_relaxed);
              return std::nullopt;
            }
            return Status(libvirtError("virDomainQemuMonitorCommand(announce-self)", vm));
          }
          const std::string answer = reply != nullptr ? reply : "";
          free(reply);  // NOLINT(cppcoreguidelines-no-malloc): allocated by libvirt
          if (answer.find("\"return\"") == std::string::npos) {
            return Status(Error{"QEMU refused announce-self on " + vm + ": " + answer});
          }
          return Status::success();
        },
        [this, vm](std::optional<Status> status) {
          if (status && observer != nullptr) observer->onAnnounced(vm, *status);
        });
  }

  // ---- Reboots (loop thread) ----
  //
  // virDomainReboot returns once the guest was asked; the guest then shuts down and resets, which
  // libvirt reports with its reboot event. reboot() completes on that event, so that the caller
  // does not take the guest that was asked for the one that booted again (an HA state told to it
  // in between would be acknowledged and then forgotten).

  struct RebootWait {
    Done done;
    bool asked = false;      // virDomainReboot returned
    bool rebooted = false;   // libvirt's reboot event came
    bool resetting = false;  // the grace passed: reset, which completes the reboot
    TimerId graceTimer = 0;
  };
  std::map<std::string, std::shared_ptr<RebootWait>> reboots;  // by VM, loop thread only

  void reset(const std::string& vm, Done done) {
    domainCall(
        vm, "virDomainReset", options.callTimeout,
        [vm](virDomainPtr domain) -> Status {
          if (virDomainReset(domain, 0) < 0) return libvirtError("virDomainReset", vm);
          return Status::success();
        },
        std::move(done));
  }

  void reboot(const std::string& vm, Duration grace, Done done) {
    if (reboots.contains(vm)) {
      answerLater<Status>(std::move(done), Error{"a reboot of " + vm + " is in progress already"});
      return;
    }
    auto wait = std::make_shared<RebootWait>();
    wait->done = std::move(done);
    reboots[vm] = wait;
    domainCall(
        vm, "virDomainReboot", options.callTimeout,
        [vm](virDomainPtr domain) -> Status {
          if (virDomainReboot(domain, 0) < 0) return libvirtError("virDomainReboot", vm);
          return Status::success();
        },
        [this, vm, grace, wait](Status status) {
          if (!ownsReboot(vm, wait)) return;
          if (!status.ok() || wait->rebooted) return finishReboot(vm, std::move(status));
          wait->asked = true;
          wait->graceTimer = loop.after(grace, [this, flag = alive, vm, wait] {
            if (!*flag || !ownsReboot(vm, wait)) return;
            wait->graceTimer = 0;
            wait->resetting = true;
            // The guest did not act on the request (no ACPI support, or it is stuck): the reset button.
            reset(vm, [this, vm, wait](Status outcome) {
              if (ownsReboot(vm, wait)) finishReboot(vm, std::move(outcome));
            });
          });
        });
  }

  bool ownsReboot(const std::string& vm, const std::shared_ptr<RebootWait>& wait) const {
    auto it = reboots.find(vm);
    return it != reboots.end() && it->second == wait;
  }

  void finishReboot(const std::string& vm, Status status) {
    auto it = reboots.find(vm);
    if (it == reboots.end()) return;
    std::shared_ptr<RebootWait> wait = it->second;
    reboots.erase(it);
    if (wait->graceTimer != 0) loop.cancel(wait->graceTimer);
    wait->done(std::move(status));
  }

  // libvirt's reboot event: the guest reset (on its own, asked by reboot(), or by a reset).
  void onRebootEvent(const std::string& vm) {
    if (observer != nullptr) observer->onRebooted(vm);
    auto it = reboots.find(vm);
    if (it == reboots.end()) return;
    it->second->rebooted = true;
    // Before virDomainReboot returned, the event completes the reboot when it does.
    if (it->second->asked && !it->second->resetting) finishReboot(vm, Status::success());
  }

  // Event thread: a finished job's statistics. Only an outgoing migration's are used: the source
  // domain is gone when migrate()'s call returns, so they cannot be queried then.
  void onJobCompleted(const std::string& vm, const TypedParams& stats) {
    if (stats.number(VIR_DOMAIN_JOB_OPERATION) != VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT) return;
    MigrationOutcome outcome;
    outcome.total = Duration(static_cast<Duration::rep>(stats.number(VIR_DOMAIN_JOB_TIME_ELAPSED)));
    outcome.downtime = Duration(static_cast<Duration::rep>(stats.number(VIR_DOMAIN_JOB_DOWNTIME)));
    outcome.dataTransferred = stats.number(VIR_DOMAIN_JOB_DATA_PROCESSED);
    onLoop([vm, outcome](Core& core) { core.migrationCompleted(vm, outcome); });
  }

  static std::shared_ptr<Core> fromOpaque(void* opaque) { return static_cast<std::weak_ptr<Core>*>(opaque)->lock(); }
  static void freeOpaque(void* opaque) { delete static_cast<std::weak_ptr<Core>*>(opaque); }

  static int lifecycleCallback(virConnectPtr /*conn*/, virDomainPtr dom, int event, int detail, void* opaque) {
    if (auto core = fromOpaque(opaque)) core->onLifecycle(virDomainGetName(dom), event, detail);
    return 0;
  }
  static void rebootCallback(virConnectPtr /*conn*/, virDomainPtr dom, void* opaque) {
    if (auto core = fromOpaque(opaque)) {
      core->onLoop([vm = std::string(virDomainGetName(dom))](Core& c) { c.onRebootEvent(vm); });
    }
  }
  static void jobCompletedCallback(virConnectPtr /*conn*/, virDomainPtr dom, virTypedParameterPtr params, int count,
                                   void* opaque) {
    if (auto core = fromOpaque(opaque)) core->onJobCompleted(virDomainGetName(dom), TypedParams(params, count));
  }
  // (libvirt's watchdog, I/O error, reboot and job-completed callbacks return nothing; the
  // lifecycle callback returns int.)
  static void watchdogCallback(virConnectPtr /*conn*/, virDomainPtr dom, int /*action*/, void* opaque) {
    if (auto core = fromOpaque(opaque)) core->deliver(virDomainGetName(dom), VmEvent::kWatchdog);
  }
  static void ioErrorCallback(virConnectPtr /*conn*/, virDomainPtr dom, const char* /*srcPath*/,
                              const char* /*devAlias*/, int action, void* opaque) {
    // Only the pause action stops the guest; with report/none the guest sees the error and carries on.
    if (action != VIR_DOMAIN_EVENT_IO_ERROR_PAUSE) return;
    if (auto core = fromOpaque(opaque)) core->deliver(virDomainGetName(dom), VmEvent::kIoError);
  }
  static void closeCallback(virConnectPtr closed, int /*reason*/, void* opaque) {
    auto core = fromOpaque(opaque);
    if (!core) return;
    core->loop.post([core, flag = core->alive, closed] {
      if (*flag) core->onDisconnected(closed);
    });
  }

  // Any thread but the event thread: opens a connection with every callback registered and reads
  // the running domains. On success the connection becomes the current one.
  Result<std::set<std::string>> open() {
    virConnectPtr fresh = virConnectOpen(options.uri.c_str());
    if (fresh == nullptr) return libvirtError("virConnectOpen", options.uri);
    std::vector<int> ids;
    auto fail = [&](const std::string& call) -> Result<std::set<std::string>> {
      Error error = libvirtError(call, options.uri);
      for (int id : ids) virConnectDomainEventDeregisterAny(fresh, id);
      virConnectClose(fresh);
      return error;
    };
    const std::pair<int, virConnectDomainEventGenericCallback> events[] = {
        {VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(lifecycleCallback)},
        {VIR_DOMAIN_EVENT_ID_WATCHDOG, VIR_DOMAIN_EVENT_CALLBACK(watchdogCallback)},
        {VIR_DOMAIN_EVENT_ID_IO_ERROR, VIR_DOMAIN_EVENT_CALLBACK(ioErrorCallback)},
        {VIR_DOMAIN_EVENT_ID_REBOOT, VIR_DOMAIN_EVENT_CALLBACK(rebootCallback)},
        {VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, VIR_DOMAIN_EVENT_CALLBACK(jobCompletedCallback)},
    };
    for (const auto& [eventId, callback] : events) {
      auto* opaque = new std::weak_ptr<Core>(weak_from_this());
      const int id = virConnectDomainEventRegisterAny(fresh, nullptr, eventId, callback, opaque, freeOpaque);
      if (id < 0) {
        delete opaque;
        return fail("virConnectDomainEventRegisterAny");
      }
      ids.push_back(id);
    }
    auto* closeOpaqueFresh = new std::weak_ptr<Core>(weak_from_this());
    // Without a free callback: drivers without close callbacks (the test driver) accept the
    // registration but drop the opaque, so the adapter owns it and frees it in closeCurrent().
    if (virConnectRegisterCloseCallback(fresh, closeCallback, closeOpaqueFresh, nullptr) < 0) {
      delete closeOpaqueFresh;
      return fail("virConnectRegisterCloseCallback");
    }
    Result<std::vector<std::string>> names = listActive(fresh);
    if (!names.ok()) {
      virConnectUnregisterCloseCallback(fresh, closeCallback);
      delete closeOpaqueFresh;
      for (int id : ids) virConnectDomainEventDeregisterAny(fresh, id);
      virConnectClose(fresh);
      return names.error();
    }
    std::set<std::string> now(names.value().begin(), names.value().end());
    std::lock_guard lock(mutex);
    conn = fresh;
    callbackIds = std::move(ids);
    closeOpaque.reset(closeOpaqueFresh);
    return now;
  }

  // Any thread: deregisters the callbacks of the current connection and drops it.
  void closeCurrent() {
    virConnectPtr old = nullptr;
    std::vector<int> ids;
    std::unique_ptr<std::weak_ptr<Core>> opaque;
    {
      std::lock_guard lock(mutex);
      old = std::exchange(conn, nullptr);
      ids = std::exchange(callbackIds, {});
      opaque = std::move(closeOpaque);
    }
    if (old == nullptr) return;
    for (int id : ids) virConnectDomainEventDeregisterAny(old, id);  // errors ignored: the daemon may be gone
    virConnectUnregisterCloseCallback(old, closeCallback);
    virConnectClose(old);
  }

  static Result<std::vector<std::string>> listActive(virConnectPtr c) {
    virDomainPtr* domains = nullptr;
    const int count = virConnectListAllDomains(c, &domains, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    if (count < 0) return libvirtError("virConnectListAllDomains", "the host");
    std::vector<std::string> names;
    for (int i = 0; i < count; ++i) {
      names.emplace_back(virDomainGetName(domains[i]));  // NOLINT(cppcoreguidelines-pro-bounds-pointer-arithmetic)
      virDomainFree(domains[i]);                         // NOLINT(cppcoreguidelines-pro-bounds-pointer-arithmetic)
    }
    free(domains);  // NOLINT(cppcoreguidelines-no-malloc): allocated by libvirt
    return names;
  }

  // Loop thread: the daemon went away (libvirt's close callback). Drops the connection and
  // reconnects in the background.
  void onDisconnected(virConnectPtr closed) {
    {
      std::lock_guard lock(mutex);
      if (conn != closed) return;  // an old connection's late close
    }
    if (reconnecting) return;
    reconnecting = true;
    connectionWorker->run([this] { closeCurrent(); }, [this] { scheduleReconnect(); });
  }

  void scheduleReconnect() {
    reconnectTimer = loop.after(options.reconnectInterval, [this, flag = alive] {
      if (!*flag) return;
      reconnectTimer = 0;
      auto attempt = std::make_shared<std::optional<Result<std::set<std::string>>>>();
      connectionWorker->run([this, attempt] { attempt->emplace(open()); },
                            [this, attempt] { afterReconnect(std::move(**attempt)); });
    });
  }

  // Loop thread. A VM that ran before the daemon went away and runs no longer stopped while
  // nobody could tell us why: it is reported as crashed (unless we were destroying it). Those
  // still running are not reported at all.
  void afterReconnect(Result<std::set<std::string>> now) {
    if (!now.ok()) {
      scheduleReconnect();
      return;
    }
    reconnecting = false;
    std::vector<std::string> gone;
    {
      std::lock_guard lock(mutex);
      for (const auto& vm : running) {
        if (now.value().count(vm) == 0 && destroyRequested.erase(vm) == 0) gone.push_back(vm);
      }
      running = std::move(now).value();
    }
    for (const auto& vm : gone) deliver(vm, VmEvent::kCrashed);
  }

  void runEvents() {
    while (!stopEvents.load(std::memory_order_acquire)) {
      if (virEventRunDefaultImpl() < 0) break;
    }
  }

  // Connection worker: every active domain with the figures that need no QEMU (state, NICs).
  static Result<std::vector<VmStats>> hostStats(virConnectPtr c) {
    virDomainStatsRecordPtr* records = nullptr;
    constexpr unsigned kActive = VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE;
    int count =
        virConnectGetAllDomainStats(c, kHostStatsGroups, &records, kActive | VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT);
    if (count < 0 && (lastErrorCode() == VIR_ERR_INVALID_ARG || lastErrorCode() == VIR_ERR_NO_SUPPORT)) {
      count = virConnectGetAllDomainStats(c, kHostStatsGroups, &records, kActive);  // a driver without NOWAIT
    }
    if (count < 0) return libvirtError("virConnectGetAllDomainStats", "the host");
    std::vector<VmStats> stats;
    for (int i = 0; i < count; ++i) {
      stats.push_back(vmStatsOf(records[i]));  // NOLINT(cppcoreguidelines-pro-bounds-pointer-arithmetic)
    }
    virDomainStatsRecordListFree(records);
    return stats;
  }

  // VM worker: the figures QEMU gives (CPU time, balloon, disks). Not waited for when another job
  // holds the domain (NOWAIT); a QEMU that does not answer holds up this worker only.
  Result<VmStats> qemuStats(const std::string& vm) {
    struct Asked {  // the query returned, in time or late
      Core& core;
      const std::string& vm;
      ~Asked() {
        std::lock_guard lock(core.mutex);
        if (--core.statsAsked[vm] > 0) return;
        core.statsAsked.erase(vm);
        core.statsLate.erase(vm);
      }
    } asked{*this, vm};
    auto ref = connection();
    if (!ref) return disconnectedError("virDomainListGetStats", vm);
    DomainRef domain(virDomainLookupByName(ref->get(), vm.c_str()));
    if (domain.get() == nullptr) return libvirtError("virDomainLookupByName", vm);
    std::array<virDomainPtr, 2> domains = {domain.get(), nullptr};
    virDomainStatsRecordPtr* records = nullptr;
    int count =
        virDomainListGetStats(domains.data(), kQemuStatsGroups, &records, VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT);
    if (count < 0 && (lastErrorCode() == VIR_ERR_INVALID_ARG || lastErrorCode() == VIR_ERR_NO_SUPPORT)) {
      count = virDomainListGetStats(domains.data(), kQemuStatsGroups, &records, 0);
    }
    if (count < 0) return libvirtError("virDomainListGetStats", vm);
    VmStats stats = count > 0 ? vmStatsOf(records[0]) : VmStats{};
    virDomainStatsRecordListFree(records);
    return stats;
  }

  // Loop thread: the host part, then each VM's QEMU part on its worker (in parallel); a VM whose
  // QEMU part fails, takes longer than kQemuStatsWait, or is still waited for from an earlier call
  // keeps 0 and no disks.
  void stats(std::function<void(Result<std::vector<VmStats>>)> done) {
    call<Result<std::vector<VmStats>>>(
        *connectionWorker, "virConnectGetAllDomainStats", options.uri,
        [this]() -> Result<std::vector<VmStats>> {
          auto ref = connection();
          if (!ref) return disconnectedError("virConnectGetAllDomainStats", options.uri);
          return hostStats(ref->get());
        },
        [this, done = std::move(done)](Result<std::vector<VmStats>> host) mutable {
          if (!host.ok()) return done(host.error());
          struct Gather {
            std::vector<VmStats> stats;
            std::size_t pending = 0;
            std::function<void(Result<std::vector<VmStats>>)> done;
          };
          auto gather = std::make_shared<Gather>();
          gather->stats = std::move(host).value();
          gather->done = std::move(done);
          for (std::size_t i = 0; i < gather->stats.size(); ++i) {
            const std::string vm = gather->stats[i].vm;
            gather->stats[i].complete = false;  // until its QEMU answers
            {
              std::lock_guard lock(mutex);
              if (statsLate.count(vm) > 0) continue;  // an earlier query still waits for its QEMU
              ++statsAsked[vm];
            }
            ++gather->pending;
            call<Result<VmStats>>(
                workerFor(vm), "virDomainListGetStats", vm, std::min(options.callTimeout, kQemuStatsWait),
                [this, vm] { return qemuStats(vm); },
                [this, gather, i, vm](Result<VmStats> qemu) {
                  if (!qemu.ok()) {
                    std::lock_guard lock(mutex);
                    if (statsAsked.count(vm) > 0) statsLate.insert(vm);  // timed out: still running
                  } else {
                    VmStats& s = gather->stats[i];
                    s.complete = true;
                    s.cpuTimeNs = qemu.value().cpuTimeNs;
                    s.memoryKiB = qemu.value().memoryKiB;
                    s.memoryMaxKiB = qemu.value().memoryMaxKiB;
                    s.memoryRssKiB = qemu.value().memoryRssKiB;
                    s.memoryUsableKiB = qemu.value().memoryUsableKiB;
                    s.disks = qemu.value().disks;
                  }
                  if (--gather->pending == 0) gather->done(std::move(gather->stats));
                });
          }
          if (gather->pending == 0) gather->done(std::move(gather->stats));
        });
  }

  // ---- shutdown(): ask, wait up to the grace, destroy and undefine (loop thread) ----

  struct ShutdownOp {
    std::string vm;
    Done done;
    TimePoint deadline{0};  // destroyed if it still runs then
    TimerId guard = 0;      // the whole operation's bound
    bool finished = false;
  };
  enum class ShutdownAsked { kUnknownVm, kNotRunning, kAsked, kRefused };

  void shutdown(const std::string& vm, Duration grace, Done done) {
    auto op = std::make_shared<ShutdownOp>();
    op->vm = vm;
    op->done = std::move(done);
    op->deadline = loop.now() + grace;
    const Duration bound = grace + options.callTimeout;
    op->guard = loop.after(bound, [flag = alive, op, ms = bound.count()] {
      if (!*flag || op->finished) return;
      op->finished = true;
      op->done(Error{"shutdown of " + op->vm + " did not finish within " + std::to_string(ms) + " ms"});
    });
    call<Result<ShutdownAsked>>(
        workerFor(vm), "virDomainShutdown", vm, [this, vm] { return askShutdown(vm); },
        [this, op](Result<ShutdownAsked> asked) {
          if (op->finished) return;
          if (!asked.ok()) return finishShutdown(*op, asked.error());
          switch (asked.value()) {
            case ShutdownAsked::kUnknownVm:
              return finishShutdown(*op, Status::success());
            case ShutdownAsked::kAsked:
              return awaitPowerOff(op);
            case ShutdownAsked::kNotRunning:  // still defined: undefined below
            case ShutdownAsked::kRefused:     // e.g. no ACPI: destroyed at once
              return destroyForShutdown(op);
          }
        });
  }

  // Worker.
  Result<ShutdownAsked> askShutdown(const std::string& vm) {
    auto ref = connection();
    if (!ref) return disconnectedError("virDomainShutdown", vm);
    DomainRef domain(virDomainLookupByName(ref->get(), vm.c_str()));
    if (domain.get() == nullptr) {
      if (lastErrorCode() == VIR_ERR_NO_DOMAIN) return ShutdownAsked::kUnknownVm;
      return libvirtError("virDomainLookupByName", vm);
    }
    if (virDomainIsActive(domain.get()) != 1) return ShutdownAsked::kNotRunning;
    {
      std::lock_guard lock(mutex);
      destroyRequested.insert(vm);  // the guest's power-off (STOPPED, SHUTDOWN) is not a failure
    }
    return virDomainShutdown(domain.get()) == 0 ? ShutdownAsked::kAsked : ShutdownAsked::kRefused;
  }

  void awaitPowerOff(const std::shared_ptr<ShutdownOp>& op) {
    loop.after(kShutdownPollInterval, [this, flag = alive, op] {
      if (!*flag || op->finished) return;
      if (loop.now() >= op->deadline) return destroyForShutdown(op);
      call<Result<bool>>(
          workerFor(op->vm), "virDomainIsActive", op->vm,
          [this, vm = op->vm]() -> Result<bool> {
            auto ref = connection();
            if (!ref) return disconnectedError("virDomainIsActive", vm);
            DomainRef domain(virDomainLookupByName(ref->get(), vm.c_str()));
            if (domain.get() == nullptr) {
              if (lastErrorCode() == VIR_ERR_NO_DOMAIN) return false;
              return libvirtError("virDomainLookupByName", vm);
            }
            const int active = virDomainIsActive(domain.get());
            if (active < 0) return libvirtError("virDomainIsActive", vm);
            return active == 1;
          },
          [this, op](Result<bool> active) {
            if (op->finished) return;
            // Still running (or unknown: the destroy tells): ask again, or destroy once the grace is over.
            if (active.ok() && active.value()) return awaitPowerOff(op);
            destroyForShutdown(op);
          });
    });
  }

  void destroyForShutdown(const std::shared_ptr<ShutdownOp>& op) {
    call<Status>(
        workerFor(op->vm), "destroy", op->vm, [this, vm = op->vm] { return destroyAndUndefine(vm); },
        afterStopped(op->vm, [this, op](Status status) { finishShutdown(*op, std::move(status)); }));
  }

  void finishShutdown(ShutdownOp& op, Status status) {
    if (op.finished) return;
    op.finished = true;
    loop.cancel(op.guard);
    op.done(std::move(status));
  }

  // ---- migrate() (loop thread unless said otherwise) ----

  void migrate(const std::string& vm, const MigrationOptions& migration,
               std::function<void(const MigrationProgress&)> progress,
               std::function<void(Result<MigrationOutcome>)> done) {
    if (migrations.count(vm) > 0) {
      answerLater<Result<MigrationOutcome>>(std::move(done), Error{"a migration of " + vm + " is in progress"});
      return;
    }
    auto m = std::make_shared<Migration>();
    m->vm = vm;
    m->options = migration;
    m->progress = std::move(progress);
    m->done = std::move(done);
    m->started = loop.now();
    m->monitor = std::make_unique<Worker>(loop);
    migrations[vm] = m;
    m->pollTimer = loop.after(kProgressInterval, [this, flag = alive, m] {
      if (*flag) pollProgress(m);
    });
    m->timeoutTimer = loop.after(migration.timeout, [this, flag = alive, m] {
      if (!*flag || m->finished || m->returnedAfter) return;  // done: only its figures are awaited
      m->timeoutTimer = 0;
      m->timedOut = true;
      m->abortRequested->store(true);
      abortMigration(m);
    });
    call<Status>(
        workerFor(vm), "virDomainMigrateToURI3", vm, migration.timeout + options.callTimeout,
        [this, vm, migration, abort = m->abortRequested] { return migrateOut(vm, migration, *abort); },
        [this, m](Status status) { migrationReturned(m, std::move(status)); });
  }

  // VM worker: the migration call, which blocks until the VM runs at the destination (or failed).
  Status migrateOut(const std::string& vm, const MigrationOptions& migration, const std::atomic<bool>& abort) {
    Result<std::unique_ptr<ConnectionRef>> ref = ownConnection("virDomainMigrateToURI3", vm);
    if (!ref.ok()) return ref.error();
    DomainRef domain(virDomainLookupByName(ref.value()->get(), vm.c_str()));
    if (domain.get() == nullptr) return libvirtError("virDomainLookupByName", vm);
    if (abort.load()) return Error{"migration of " + vm + " aborted before it began"};
    // Set before the call: QEMU keeps the limit for the migration (libvirt 9 accepts it while no
    // job runs). A driver that cannot set it keeps its default.
    const auto downtimeMs = static_cast<unsigned long long>(std::max<Duration::rep>(migration.maxDowntime.count(), 1));
    if (virDomainMigrateSetMaxDowntime(domain.get(), downtimeMs, 0) < 0 && lastErrorCode() != VIR_ERR_NO_SUPPORT) {
      return libvirtError("virDomainMigrateSetMaxDowntime", vm);
    }
    TypedParamList params;
    bool added = true;
    if (!migration.migrationUri.empty()) added = added && params.add(VIR_MIGRATE_PARAM_URI, migration.migrationUri);
    if (migration.bandwidthMiBps > 0) {
      added = added && params.add(VIR_MIGRATE_PARAM_BANDWIDTH, migration.bandwidthMiBps);
    }
    if (!migration.destinationAgentSocketDir.empty()) {
      // The live definition (DEST_XML) and the persistent one (PERSIST_XML: without it the
      // destination would keep this host's paths for the VM's next start).
      const std::pair<unsigned, const char*> definitions[] = {
          {VIR_DOMAIN_XML_MIGRATABLE, VIR_MIGRATE_PARAM_DEST_XML},
          {VIR_DOMAIN_XML_MIGRATABLE | VIR_DOMAIN_XML_INACTIVE, VIR_MIGRATE_PARAM_PERSIST_XML},
      };
      for (const auto& [xmlFlags, param] : definitions) {
        char* xml = virDomainGetXMLDesc(domain.get(), xmlFlags);
        if (xml == nullptr) return libvirtError("virDomainGetXMLDesc", vm);
        Result<std::string> rewritten = withAgentSocketDir(xml, vm, migration.destinationAgentSocketDir);
        free(xml);  // NOLINT(cppcoreguidelines-no-malloc): allocated by libvirt
        if (!rewritten.ok()) return Error{"migration of " + vm + ": " + rewritten.error().message};
        added = added && params.add(param, rewritten.value());
      }
    }
    if (!added) return libvirtError("virTypedParamsAdd", vm);
    if (virDomainMigrateToURI3(domain.get(), migration.destinationUri.c_str(), params.get(), params.size(),
                               kMigrateFlags) < 0) {
      return libvirtError("virDomainMigrateToURI3", vm + " to " + migration.destinationUri);
    }
    return Status::success();
  }

  // Runs job on the migration's monitor; `done` on the loop thread unless the migration finished
  // meanwhile. The monitor of a finished migration is destroyed once its last job completed.
  void onMonitor(const std::shared_ptr<Migration>& m, std::function<void()> job, std::function<void()> done) {
    ++m->monitorJobs;
    m->monitor->run(std::move(job), [this, m, done = std::move(done)] {
      --m->monitorJobs;
      if (!m->finished) return done();
      if (m->monitorJobs == 0 && m->retired) retiredMonitors.erase(*m->retired);  // joins an idle thread
    });
  }

  // Monitor: the running migration job's figures, if there is one.
  std::optional<MigrationProgress> jobProgress(const std::string& vm) {
    auto ref = connection();
    if (!ref) return std::nullopt;
    DomainRef domain(virDomainLookupByName(ref->get(), vm.c_str()));
    if (domain.get() == nullptr) return std::nullopt;
    int type = VIR_DOMAIN_JOB_NONE;
    virTypedParameterPtr params = nullptr;
    int count = 0;
    if (virDomainGetJobStats(domain.get(), &type, &params, &count, 0) < 0) return std::nullopt;
    std::optional<MigrationProgress> progress;
    const TypedParams job(params, count);
    if (type != VIR_DOMAIN_JOB_NONE &&
        (!job.has(VIR_DOMAIN_JOB_OPERATION) ||
         job.number(VIR_DOMAIN_JOB_OPERATION) == VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT)) {
      progress = progressOf(job);
    }
    virTypedParamsFree(params, count);
    return progress;
  }

  // Monitor: errors are ignored (no job yet, or it finished meanwhile).
  void abortJob(const std::string& vm) {
    auto ref = connection();
    if (!ref) return;
    DomainRef domain(virDomainLookupByName(ref->get(), vm.c_str()));
    if (domain.get() != nullptr) virDomainAbortJob(domain.get());
  }

  void pollProgress(const std::shared_ptr<Migration>& m) {
    m->pollTimer = 0;
    if (m->finished) return;
    auto read = std::make_shared<std::optional<MigrationProgress>>();
    onMonitor(
        m, [this, vm = m->vm, read] { *read = jobProgress(vm); },
        [this, m, read] {
          m->pollTimer = loop.after(kProgressInterval, [this, flag = alive, m] {
            if (*flag) pollProgress(m);
          });
          if (!*read) return;
          m->last = **read;
          if (m->progress) m->progress(**read);
        });
  }

  // Until the call returns: an abort sent before the job began, or between its phases, finds none.
  void abortMigration(const std::shared_ptr<Migration>& m) {
    m->abortTimer = 0;
    if (m->finished) return;
    onMonitor(
        m, [this, vm = m->vm] { abortJob(vm); },
        [this, m] {
          m->abortTimer = loop.after(kAbortRetryInterval, [this, flag = alive, m] {
            if (*flag) abortMigration(m);
          });
        });
  }

  void migrationReturned(const std::shared_ptr<Migration>& m, Status status) {
    if (m->finished) return;
    if (!status.ok()) {
      if (!m->timedOut) return finishMigration(m, status.error());
      return finishMigration(
          m, Error{"migration of " + m->vm + " did not finish within " + std::to_string(m->options.timeout.count()) +
                   " ms and was aborted: " + status.error().message});
    }
    m->returnedAfter = std::max(Duration(0), loop.now() - m->started);
    if (m->completed) return finishMigration(m, outcomeOf(*m));
    m->statsTimer = loop.after(kCompletedStatsWait, [this, flag = alive, m] {
      m->statsTimer = 0;
      if (*flag && !m->finished) finishMigration(m, outcomeOf(*m));
    });
  }

  // The job-completed event of vm's outgoing migration.
  void migrationCompleted(const std::string& vm, const MigrationOutcome& outcome) {
    auto it = migrations.find(vm);
    if (it == migrations.end()) return;
    std::shared_ptr<Migration> m = it->second;
    m->completed = outcome;
    if (m->returnedAfter) finishMigration(m, outcomeOf(*m));
  }

  // The total is our own (from the call); downtime and data are libvirt's, from the job-completed
  // event, or (without it) the data of the last progress read and no downtime.
  static MigrationOutcome outcomeOf(const Migration& m) {
    MigrationOutcome outcome;
    outcome.total = m.returnedAfter.value_or(Duration(0));
    if (m.completed) {
      outcome.downtime = m.completed->downtime;
      outcome.dataTransferred = m.completed->dataTransferred;
    } else if (m.last) {
      outcome.dataTransferred = m.last->dataProcessed;
    }
    return outcome;
  }

  void finishMigration(const std::shared_ptr<Migration>& m, Result<MigrationOutcome> result) {
    m->finished = true;
    for (TimerId* timer : {&m->pollTimer, &m->timeoutTimer, &m->abortTimer, &m->statsTimer}) {
      if (*timer != 0) loop.cancel(std::exchange(*timer, 0));
    }
    if (auto it = migrations.find(m->vm); it != migrations.end() && it->second == m) migrations.erase(it);
    if (m->monitorJobs == 0) {
      m->monitor.reset();  // idle: joins at once
    } else {
      m->retired = nextRetired++;
      retiredMonitors[*m->retired] = std::move(m->monitor);
    }
    auto done = std::move(m->done);
    done(std::move(result));
  }
};

}  // namespace libvirt_detail

using libvirt_detail::Core;
using libvirt_detail::DomainRef;
using libvirt_detail::lastErrorCode;
using libvirt_detail::libvirtError;

Result<std::unique_ptr<LibvirtHypervisor>> LibvirtHypervisor::connect(EventLoop& loop, LibvirtOptions options) {
  libvirt_detail::initializeLibvirtOnce();
  auto core = std::make_shared<Core>(loop, std::move(options));
  Result<std::set<std::string>> opened = core->open();
  if (!opened.ok()) return opened.error();
  {
    std::lock_guard lock(core->mutex);
    core->running = std::move(opened).value();
  }
  core->connectionWorker = std::make_unique<Worker>(loop);
  core->eventThread = std::thread([raw = core.get()] { raw->runEvents(); });
  return std::unique_ptr<LibvirtHypervisor>(new LibvirtHypervisor(std::move(core)));
}

LibvirtHypervisor::LibvirtHypervisor(std::shared_ptr<Core> core) : core_(std::move(core)) {}

LibvirtHypervisor::~LibvirtHypervisor() {
  *core_->alive = false;  // timers and posts still queued on the loop do nothing now
  core_->listener = nullptr;
  core_->observer = nullptr;
  if (core_->reconnectTimer != 0) core_->loop.cancel(core_->reconnectTimer);
  // Migrations in flight are aborted (their VMs keep running here), on their monitors, so that the
  // VMs' workers blocked in the migration call return.
  for (const auto& [vm, migration] : core_->migrations) {
    migration->abortRequested->store(true);
    migration->monitor->run([core = core_.get(), vm = vm] { core->abortJob(vm); });
  }
  // Joins: waits for the libvirt calls in flight (a call stuck on a hung QEMU holds this up until
  // libvirt gives up on it); their completions are dropped.
  core_->vmWorkers.clear();
  for (const auto& [vm, migration] : core_->migrations) migration->monitor.reset();
  core_->migrations.clear();
  core_->retiredMonitors.clear();
  core_->connectionWorker.reset();
  core_->closeCurrent();
  // Wakes the event loop with a timer that fires on every iteration until the thread has seen the flag.
  core_->stopEvents.store(true, std::memory_order_release);
  const int wake = virEventAddTimeout(0, libvirt_detail::noopTimeout, nullptr, nullptr);
  core_->eventThread.join();
  if (wake >= 0) virEventRemoveTimeout(wake);
}

void LibvirtHypervisor::setListener(HypervisorListener* listener) { core_->listener = listener; }

void LibvirtHypervisor::start(const model::VmSpec& spec, const std::optional<model::WatchdogSpec>& watchdog,
                              Done done) {
  Core& core = *core_;
  DomainOptions domainOptions = core.options.domain;
  domainOptions.watchdog = watchdog;
  const std::string name = spec.name;
  core.call<Status>(
      core.workerFor(name), "start", name,
      [&core, name, spec, domainOptions = std::move(domainOptions)]() mutable -> Status {
        auto conn = core.connection();
        if (!conn) return core.disconnectedError("start", name);
        {
          std::lock_guard lock(core.mutex);
          core.destroyRequested.erase(name);
        }
        // A domain of that name exists: redefine it under its own UUID (libvirt refuses a new one).
        if (domainOptions.uuid.empty()) {
          DomainRef existing(virDomainLookupByName(conn->get(), name.c_str()));
          std::array<char, VIR_UUID_STRING_BUFLEN> uuid{};
          if (existing.get() != nullptr && virDomainGetUUIDString(existing.get(), uuid.data()) == 0) {
            domainOptions.uuid = uuid.data();
          }
        }
        Result<std::string> xml = domainXml(spec, domainOptions);
        if (!xml.ok()) return xml.error();
        DomainRef domain(virDomainDefineXML(conn->get(), xml.value().c_str()));
        if (domain.get() == nullptr) return libvirtError("virDomainDefineXML", name);
        if (virDomainIsActive(domain.get()) == 1) return Status::success();
        // A fresh start: virDomainCreate would restore a managed save of it (suspend), which is
        // restore()'s to do.
        if (virDomainHasManagedSaveImage(domain.get(), 0) == 1 && virDomainManagedSaveRemove(domain.get(), 0) < 0) {
          return libvirtError("virDomainManagedSaveRemove", name);
        }
        if (virDomainCreate(domain.get()) < 0) {
          Error error = libvirtError("virDomainCreate", name);
          // Started meanwhile by someone else: it runs, which is what was asked for.
          if (lastErrorCode() == VIR_ERR_OPERATION_INVALID && virDomainIsActive(domain.get()) == 1) {
            return Status::success();
          }
          return error;
        }
        return Status::success();
      },
      core.afterStarted(name, std::move(done)));
}

void LibvirtHypervisor::destroy(const std::string& vm, Done done) {
  Core& core = *core_;
  core.call<Status>(
      core.workerFor(vm), "destroy", vm, [&core, vm] { return core.destroyAndUndefine(vm); },
      core.afterStopped(vm, std::move(done)));
}

void LibvirtHypervisor::listRunning(std::function<void(Result<std::vector<std::string>>)> done) {
  Core& core = *core_;
  core.call<Result<std::vector<std::string>>>(
      *core.connectionWorker, "virConnectListAllDomains", core.options.uri,
      [&core]() -> Result<std::vector<std::string>> {
        auto conn = core.connection();
        if (!conn) return core.disconnectedError("virConnectListAllDomains", core.options.uri);
        return Core::listActive(conn->get());
      },
      std::move(done));
}

void LibvirtHypervisor::setObserver(LibvirtObserver* observer) { core_->observer = observer; }

void LibvirtHypervisor::shutdown(const std::string& vm, Duration grace, Done done) {
  core_->shutdown(vm, grace, std::move(done));
}

void LibvirtHypervisor::pause(const std::string& vm, Done done) {
  core_->domainCall(
      vm, "virDomainSuspend", core_->options.callTimeout,
      [vm](virDomainPtr domain) -> Status {
        if (virDomainSuspend(domain) == 0) return Status::success();
        Error error = libvirtError("virDomainSuspend", vm);
        int state = VIR_DOMAIN_NOSTATE;
        if (virDomainGetState(domain, &state, nullptr, 0) == 0 && state == VIR_DOMAIN_PAUSED) {
          return Status::success();  // paused already
        }
        return error;
      },
      std::move(done));
}

void LibvirtHypervisor::resume(const std::string& vm, Done done) {
  core_->domainCall(
      vm, "virDomainResume", core_->options.callTimeout,
      [vm](virDomainPtr domain) -> Status {
        if (virDomainResume(domain) == 0) return Status::success();
        Error error = libvirtError("virDomainResume", vm);
        int state = VIR_DOMAIN_NOSTATE;
        if (virDomainGetState(domain, &state, nullptr, 0) == 0 && state == VIR_DOMAIN_RUNNING) {
          return Status::success();  // running already
        }
        return error;
      },
      std::move(done));
}

void LibvirtHypervisor::suspend(const std::string& vm, Duration timeout, Done done) {
  core_->domainCall(
      vm, "virDomainManagedSave", timeout,
      [vm](virDomainPtr domain) -> Status {
        if (virDomainManagedSave(domain, 0) < 0) return libvirtError("virDomainManagedSave", vm);
        return Status::success();
      },
      std::move(done), Core::Connection::kOwn);
}

void LibvirtHypervisor::restore(const std::string& vm, Duration timeout, Done done) {
  Core& core = *core_;
  core.domainCall(
      vm, "virDomainCreate", timeout,
      [&core, vm](virDomainPtr domain) -> Status {
        const int saved = virDomainHasManagedSaveImage(domain, 0);
        if (saved < 0) return libvirtError("virDomainHasManagedSaveImage", vm);
        if (saved == 0) return Error{"restore of " + vm + ": it has no managed save image"};
        {
          std::lock_guard lock(core.mutex);
          core.destroyRequested.erase(vm);
        }
        if (virDomainCreate(domain) < 0) return libvirtError("virDomainCreate", vm);
        return Status::success();
      },
      core.afterStarted(vm, std::move(done)), Core::Connection::kOwn);
}

void LibvirtHypervisor::reboot(const std::string& vm, Duration grace, Done done) {
  core_->reboot(vm, grace, std::move(done));
}

void LibvirtHypervisor::reset(const std::string& vm, Done done) { core_->reset(vm, std::move(done)); }

void LibvirtHypervisor::stats(std::function<void(Result<std::vector<VmStats>>)> done) { core_->stats(std::move(done)); }

void LibvirtHypervisor::migrate(const std::string& vm, const MigrationOptions& options,
                                std::function<void(const MigrationProgress&)> progress,
                                std::function<void(Result<MigrationOutcome>)> done) {
  core_->migrate(vm, options, std::move(progress), std::move(done));
}

}  // namespace kvm_amf::vmm
