#include "kvm_amf/vmm/libvirt_hypervisor.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <array>
#include <atomic>
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

}  // namespace

// The adapter's state, shared with libvirt's callbacks (through a weak_ptr they own) so that a
// callback running while the adapter goes away finds it expired instead of freed.
struct Core : std::enable_shared_from_this<Core> {
  Core(EventLoop& l, LibvirtOptions o) : loop(l), options(std::move(o)) {}

  EventLoop& loop;
  const LibvirtOptions options;

  // Loop thread only.
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
  HypervisorListener* listener = nullptr;
  std::unique_ptr<Worker> connectionWorker;  // connection-wide calls: list, reconnect
  std::map<std::string, std::unique_ptr<Worker>> vmWorkers;
  bool reconnecting = false;
  TimerId reconnectTimer = 0;

  std::mutex mutex;  // guards the members below (loop thread, workers, event thread)
  virConnectPtr conn = nullptr;
  std::vector<int> callbackIds;
  std::unique_ptr<std::weak_ptr<Core>> closeOpaque;  // the close callback's; freed once it is unregistered
  std::set<std::string> destroyRequested;            // our destroy is under way: its STOPPED event is not a failure
  std::set<std::string> running;                     // domains last seen running: the list at connect, plus events

  std::atomic<bool> stopEvents = false;
  std::thread eventThread;  // runs virEventRunDefaultImpl until stopEvents

  Worker& workerFor(const std::string& vm) {
    auto& worker = vmWorkers[vm];
    if (!worker) worker = std::make_unique<Worker>(loop);
    return *worker;
  }

  // Runs job on worker; `done` gets its result on the loop thread, or a time-out error if the
  // deadline passes first (the late result is then dropped). Loop thread.
  template <typename R>
  void call(Worker& worker, const std::string& callName, const std::string& subject, std::function<R()> job,
            std::function<void(R)> done) {
    auto state = std::make_shared<CallState<R>>();
    state->done = std::move(done);
    const auto ms = options.callTimeout.count();
    state->timer = loop.after(options.callTimeout, [flag = alive, state, callName, subject, ms] {
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

  Error disconnectedError(const std::string& call, const std::string& subject) const {
    return Error{"libvirt " + call + " on " + subject + ": not connected to " + options.uri + " (reconnecting)"};
  }

  // Event thread: reports `event` for `vm` to the listener on the loop thread.
  void deliver(const std::string& vm, VmEvent event) {
    loop.post([self = shared_from_this(), flag = alive, vm, event] {
      if (*flag && self->listener != nullptr) self->listener->onVmEvent(vm, event);
    });
  }

  // Event thread.
  void onLifecycle(const std::string& vm, int event, int detail) {
    std::optional<VmEvent> report;
    {
      std::lock_guard lock(mutex);
      if (event == VIR_DOMAIN_EVENT_STARTED || event == VIR_DOMAIN_EVENT_RESUMED) {
        running.insert(vm);
      } else if (event == VIR_DOMAIN_EVENT_STOPPED) {
        running.erase(vm);
        if (destroyRequested.erase(vm) > 0) return;  // our own destroy
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
    if (report) deliver(vm, *report);
  }

  static std::shared_ptr<Core> fromOpaque(void* opaque) { return static_cast<std::weak_ptr<Core>*>(opaque)->lock(); }
  static void freeOpaque(void* opaque) { delete static_cast<std::weak_ptr<Core>*>(opaque); }

  static int lifecycleCallback(virConnectPtr /*conn*/, virDomainPtr dom, int event, int detail, void* opaque) {
    if (auto core = fromOpaque(opaque)) core->onLifecycle(virDomainGetName(dom), event, detail);
    return 0;
  }
  static int watchdogCallback(virConnectPtr /*conn*/, virDomainPtr dom, int /*action*/, void* opaque) {
    if (auto core = fromOpaque(opaque)) core->deliver(virDomainGetName(dom), VmEvent::kWatchdog);
    return 0;
  }
  static int ioErrorCallback(virConnectPtr /*conn*/, virDomainPtr dom, const char* /*srcPath*/,
                             const char* /*devAlias*/, int action, void* opaque) {
    // Only the pause action stops the guest; with report/none the guest sees the error and carries on.
    if (action != VIR_DOMAIN_EVENT_IO_ERROR_PAUSE) return 0;
    if (auto core = fromOpaque(opaque)) core->deliver(virDomainGetName(dom), VmEvent::kIoError);
    return 0;
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
  if (core_->reconnectTimer != 0) core_->loop.cancel(core_->reconnectTimer);
  // Joins: waits for the libvirt calls in flight (a call stuck on a hung QEMU holds this up until
  // libvirt gives up on it); their completions are dropped.
  core_->vmWorkers.clear();
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
      std::move(done));
}

void LibvirtHypervisor::destroy(const std::string& vm, Done done) {
  Core& core = *core_;
  core.call<Status>(
      core.workerFor(vm), "destroy", vm,
      [&core, vm]() -> Status {
        auto conn = core.connection();
        if (!conn) return core.disconnectedError("destroy", vm);
        auto forget = [&core, &vm] {
          std::lock_guard lock(core.mutex);
          core.destroyRequested.erase(vm);
        };
        {
          std::lock_guard lock(core.mutex);
          core.destroyRequested.insert(vm);  // before the call: its STOPPED event may come at once
        }
        DomainRef domain(virDomainLookupByName(conn->get(), vm.c_str()));
        if (domain.get() == nullptr) {
          forget();
          if (lastErrorCode() == VIR_ERR_NO_DOMAIN) return Status::success();
          return libvirtError("virDomainLookupByName", vm);
        }
        if (virDomainDestroy(domain.get()) < 0) {
          // Not running: no STOPPED event will come.
          if (lastErrorCode() != VIR_ERR_OPERATION_INVALID) {
            forget();
            return libvirtError("virDomainDestroy", vm);
          }
          forget();
        }
        if (virDomainIsPersistent(domain.get()) != 1) return Status::success();  // transient: gone with the destroy
        constexpr unsigned kAll = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                                  VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | VIR_DOMAIN_UNDEFINE_NVRAM;
        constexpr unsigned kBasic = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;
        if (virDomainUndefineFlags(domain.get(), kAll) == 0) return Status::success();
        // Drivers that know no NVRAM or checkpoints (the test driver) refuse those flags.
        if ((lastErrorCode() == VIR_ERR_INVALID_ARG || lastErrorCode() == VIR_ERR_NO_SUPPORT) &&
            virDomainUndefineFlags(domain.get(), kBasic) == 0) {
          return Status::success();
        }
        if (lastErrorCode() == VIR_ERR_NO_DOMAIN) return Status::success();
        return libvirtError("virDomainUndefineFlags", vm);
      },
      std::move(done));
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

}  // namespace kvm_amf::vmm
