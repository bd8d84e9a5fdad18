#include "kvm_amf/vmm/libvirt_hypervisor.h"

#include <gtest/gtest.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kvm_amf/amf/config/loader.h"
#include "testing/temp_dir.h"

namespace kvm_amf::vmm {
namespace {

using kvm_amf::testing::TempDir;

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr Duration kWait = 5s;  // upper bound only: every wait ends as soon as its callback ran

// A ServiceGroup with one small VM named `name` (direct kernel boot; the test driver runs nothing).
model::VmSpec vmSpec(const std::string& name) {
  const std::string yaml = R"(apiVersion: kvm-amf/v1
kind: ServiceGroup
metadata:
  name: sg
spec:
  redundancy: {model: No-Redundancy}
  units:
    - name: unit-1
      vms:
        - name: )" + name + R"(
          memory: 128Mi
          boot: {kernel: /images/vmlinux, cmdline: console=ttyS0}
  serviceInstances:
    - name: si
)";
  const config::LoadResult loaded = config::loadConfiguration({{"sg.yaml", yaml}});
  EXPECT_TRUE(loaded.ok()) << (loaded.errors.empty() ? "" : loaded.errors.front().message);
  if (!loaded.ok()) return {};
  return loaded.config.serviceGroups.at(0).units.at(0).vms.at(0);
}

struct RecordedEvent {
  std::string vm;
  VmEvent event;
  bool onLoopThread;
};

class RecordingListener : public HypervisorListener {
 public:
  explicit RecordingListener(std::thread::id loopThread) : loopThread_(loopThread) {}
  void onVmEvent(const std::string& vm, VmEvent event) override {
    events.push_back({vm, event, std::this_thread::get_id() == loopThread_});
  }
  std::vector<RecordedEvent> events;

 private:
  std::thread::id loopThread_;
};

class RecordingObserver : public LibvirtObserver {
 public:
  explicit RecordingObserver(std::thread::id loopThread) : loopThread_(loopThread) {}
  void onRebooted(const std::string& vm) override {
    rebooted.push_back(vm);
    allOnLoopThread = allOnLoopThread && std::this_thread::get_id() == loopThread_;
  }
  void onAnnounced(const std::string& vm, const Status& status) override {
    announced.emplace_back(vm, status.ok());
    allOnLoopThread = allOnLoopThread && std::this_thread::get_id() == loopThread_;
  }
  std::vector<std::string> rebooted;
  std::vector<std::pair<std::string, bool>> announced;
  bool allOnLoopThread = true;

 private:
  std::thread::id loopThread_;
};

class LibvirtHypervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto created = EventLoop::create();
    ASSERT_TRUE(created.ok());
    loop_ = std::move(created).value();
    ASSERT_FALSE(dir_.path().empty());
  }

  LibvirtOptions options(const std::string& uri) {
    LibvirtOptions o;
    o.uri = uri;
    o.domain.agentSocketDir = (dir_.path() / "agent").string();
    return o;
  }

  // A private test-driver host (each connection gets its own copy): no domains.
  std::string privateUri() {
    const fs::path node = dir_.path() / "node.xml";
    std::ofstream(node) << "<node>\n  <cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>"
                           "<active>2</active><mhz>2000</mhz><model>i686</model></cpu>\n"
                           "  <memory>2097152</memory>\n</node>\n";
    return "test://" + node.string();
  }

  std::unique_ptr<LibvirtHypervisor> connect(const std::string& uri) {
    auto connected = LibvirtHypervisor::connect(*loop_, options(uri));
    EXPECT_TRUE(connected.ok()) << (connected.ok() ? "" : connected.error().message);
    return connected.ok() ? std::move(connected).value() : nullptr;
  }

  // Runs the loop until `ready` holds (checked after each callback batch) or kWait passes.
  template <typename Pred>
  bool runUntil(Pred ready) {
    for (int i = 0; i < 500 && !ready(); ++i) loop_->runFor(kWait / 500);
    return ready();
  }

  Status startVm(LibvirtHypervisor& hv, const model::VmSpec& spec) {
    std::optional<Status> result;
    hv.start(spec, std::nullopt, [&](Status s) { result = std::move(s); });
    EXPECT_TRUE(runUntil([&] { return result.has_value(); }));
    return result.value_or(Error{"no answer"});
  }

  Status destroyVm(LibvirtHypervisor& hv, const std::string& vm) {
    std::optional<Status> result;
    hv.destroy(vm, [&](Status s) { result = std::move(s); });
    EXPECT_TRUE(runUntil([&] { return result.has_value(); }));
    return result.value_or(Error{"no answer"});
  }

  // Runs one Done-style operation to its end.
  template <typename Op>
  Status await(Op op) {
    std::optional<Status> result;
    op([&](Status s) { result = std::move(s); });
    EXPECT_TRUE(runUntil([&] { return result.has_value(); }));
    return result.value_or(Error{"no answer"});
  }

  Result<std::vector<VmStats>> stats(LibvirtHypervisor& hv) {
    std::optional<Result<std::vector<VmStats>>> result;
    hv.stats([&](Result<std::vector<VmStats>> r) { result = std::move(r); });
    EXPECT_TRUE(runUntil([&] { return result.has_value(); }));
    return result.value_or(Error{"no answer"});
  }

  std::vector<std::string> running(LibvirtHypervisor& hv) {
    std::optional<Result<std::vector<std::string>>> result;
    hv.listRunning([&](Result<std::vector<std::string>> r) { result = std::move(r); });
    EXPECT_TRUE(runUntil([&] { return result.has_value(); }));
    if (!result || !result->ok()) {
      ADD_FAILURE() << (result ? result->error().message : "no answer");
      return {};
    }
    return result->value();
  }

  static bool contains(const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  }

  TempDir dir_{"libvirt-hv"};
  std::unique_ptr<EventLoop> loop_;
};

// A second, raw libvirt connection: the world behind the adapter's back.
class RawConnection {
 public:
  explicit RawConnection(const std::string& uri) : conn_(virConnectOpen(uri.c_str())) {}
  ~RawConnection() {
    if (conn_ != nullptr) virConnectClose(conn_);
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;
  virConnectPtr get() const { return conn_; }
  bool defined(const std::string& vm) const {
    virDomainPtr domain = virDomainLookupByName(conn_, vm.c_str());
    if (domain == nullptr) return false;
    virDomainFree(domain);
    return true;
  }
  // virDomainState, or -1 for an unknown VM.
  int state(const std::string& vm) const {
    virDomainPtr domain = virDomainLookupByName(conn_, vm.c_str());
    if (domain == nullptr) return -1;
    int result = -1;
    if (virDomainGetState(domain, &result, nullptr, 0) < 0) result = -1;
    virDomainFree(domain);
    return result;
  }
  bool hasManagedSave(const std::string& vm) const {
    virDomainPtr domain = virDomainLookupByName(conn_, vm.c_str());
    if (domain == nullptr) return false;
    const bool saved = virDomainHasManagedSaveImage(domain, 0) == 1;
    virDomainFree(domain);
    return saved;
  }
  bool destroy(const std::string& vm) const {
    virDomainPtr domain = virDomainLookupByName(conn_, vm.c_str());
    if (domain == nullptr) return false;
    const bool ok = virDomainDestroy(domain) == 0;
    virDomainFree(domain);
    return ok;
  }

 private:
  virConnectPtr conn_;
};

TEST_F(LibvirtHypervisorTest, ConnectFailsForUnknownTestFile) {
  auto connected = LibvirtHypervisor::connect(*loop_, options("test://" + (dir_.path() / "missing.xml").string()));
  ASSERT_FALSE(connected.ok());
  EXPECT_NE(connected.error().message.find("virConnectOpen"), std::string::npos) << connected.error().message;
}

TEST_F(LibvirtHypervisorTest, StartListDestroyUndefines) {
  auto hv = connect("test:///default");
  ASSERT_TRUE(hv);
  RawConnection raw("test:///default");
  ASSERT_NE(raw.get(), nullptr);

  const model::VmSpec spec = vmSpec("vm-cycle");
  const Status started = startVm(*hv, spec);
  ASSERT_TRUE(started.ok()) << started.error().message;
  EXPECT_TRUE(contains(running(*hv), "vm-cycle"));
  EXPECT_TRUE(raw.defined("vm-cycle"));

  const Status destroyed = destroyVm(*hv, "vm-cycle");
  ASSERT_TRUE(destroyed.ok()) << destroyed.error().message;
  EXPECT_FALSE(contains(running(*hv), "vm-cycle"));
  EXPECT_FALSE(raw.defined("vm-cycle"));
}

TEST_F(LibvirtHypervisorTest, StartOfRunningVmSucceedsAndRedefines) {
  auto hv = connect(privateUri());
  ASSERT_TRUE(hv);
  const model::VmSpec spec = vmSpec("vm-twice");
  ASSERT_TRUE(startVm(*hv, spec).ok());
  const Status again = startVm(*hv, spec);
  EXPECT_TRUE(again.ok()) << again.error().message;
  const auto names = running(*hv);
  EXPECT_EQ(std::count(names.begin(), names.end(), "vm-twice"), 1);
}

TEST_F(LibvirtHypervisorTest, StartAfterDestroyRunsAgain) {
  auto hv = connect(privateUri());
  ASSERT_TRUE(hv);
  const model::VmSpec spec = vmSpec("vm-again");
  ASSERT_TRUE(startVm(*hv, spec).ok());
  ASSERT_TRUE(destroyVm(*hv, "vm-again").ok());
  ASSERT_TRUE(startVm(*hv, spec).ok());
  EXPECT_TRUE(contains(running(*hv), "vm-again"));
}

TEST_F(LibvirtHypervisorTest, DestroyOfUnknownVmSucceeds) {
  auto hv = connect(privateUri());
  ASSERT_TRUE(hv);
  const Status destroyed = destroyVm(*hv, "no-such-vm");
  EXPECT_TRUE(destroyed.ok()) << destroyed.error().message;
}

TEST_F(LibvirtHypervisorTest, DestroyOfDefinedStoppedVmUndefinesIt) {
  auto hv = connect("test:///default");
  ASSERT_TRUE(hv);
  RawConnection raw("test:///default");
  ASSERT_TRUE(startVm(*hv, vmSpec("vm-stopped")).ok());
  ASSERT_TRUE(raw.destroy("vm-stopped"));  // stopped but still defined
  ASSERT_TRUE(raw.defined("vm-stopped"));
  const Status destroyed = destroyVm(*hv, "vm-stopped");
  EXPECT_TRUE(destroyed.ok()) << destroyed.error().message;
  EXPECT_FALSE(raw.defined("vm-stopped"));
}

TEST_F(LibvirtHypervisorTest, SpecDomainXmlRefusesIsAnError) {
  auto hv = connect(privateUri());
  ASSERT_TRUE(hv);
  model::VmSpec spec = vmSpec("vm-bad");
  spec.vcpus = 2;
  spec.cpu.pinning = {"1"};  // one entry for two vCPUs: domainXml refuses it
  const Status started = startVm(*hv, spec);
  ASSERT_FALSE(started.ok());
  EXPECT_NE(started.error().message.find("pinning"), std::string::npos) << started.error().message;
}

TEST_F(LibvirtHypervisorTest, DestroyBehindOurBackIsACrashOnTheLoopThreadOwnDestroyIsNot) {
  auto hv = connect("test:///default");
  ASSERT_TRUE(hv);
  RecordingListener listener(std::this_thread::get_id());
  hv->setListener(&listener);
  RawConnection raw("test:///default");

  ASSERT_TRUE(startVm(*hv, vmSpec("vm-victim")).ok());
  ASSERT_TRUE(startVm(*hv, vmSpec("vm-ours")).ok());

  ASSERT_TRUE(raw.destroy("vm-victim"));
  ASSERT_TRUE(runUntil([&] { return !listener.events.empty(); }));
  ASSERT_EQ(listener.events.size(), 1u);
  EXPECT_EQ(listener.events[0].vm, "vm-victim");
  EXPECT_EQ(listener.events[0].event, VmEvent::kCrashed);
  EXPECT_TRUE(listener.events[0].onLoopThread);

  ASSERT_TRUE(destroyVm(*hv, "vm-ours").ok());
  // Our destroy's events (Stopped, Undefined) had their chance: a listRunning round trip after the
  // destroy, then a further turn of the loop.
  EXPECT_FALSE(contains(running(*hv), "vm-ours"));
  loop_->runFor(200ms);
  EXPECT_EQ(listener.events.size(), 1u);
}

TEST_F(LibvirtHypervisorTest, GuestShutdownIsACrash) {
  auto hv = connect("test:///default");
  ASSERT_TRUE(hv);
  RecordingListener listener(std::this_thread::get_id());
  hv->setListener(&listener);
  RawConnection raw("test:///default");
  ASSERT_TRUE(startVm(*hv, vmSpec("vm-poweroff")).ok());
  virDomainPtr domain = virDomainLookupByName(raw.get(), "vm-poweroff");
  ASSERT_NE(domain, nullptr);
  EXPECT_EQ(virDomainShutdown(domain), 0);
  virDomainFree(domain);
  ASSERT_TRUE(runUntil([&] { return !listener.events.empty(); }));
  EXPECT_EQ(listener.events[0].vm, "vm-poweroff");
  EXPECT_EQ(listener.events[0].event, VmEvent::kCrashed);
}

TEST_F(LibvirtHypervisorTest, DestructionWithCallsInFlightDropsTheirCompletions) {
  auto hv = connect("test:///default");
  ASSERT_TRUE(hv);
  RecordingListener listener(std::this_thread::get_id());
  hv->setListener(&listener);
  int completions = 0;
  for (int i = 0; i < 20; ++i) {
    const std::string name = "vm-inflight-" + std::to_string(i);
    hv->start(vmSpec(name), std::nullopt, [&](Status) { ++completions; });
    hv->destroy(name, [&](Status) { ++completions; });
    hv->listRunning([&](Result<std::vector<std::string>>) { ++completions; });
  }
  hv.reset();
  loop_->runFor(300ms);
  EXPECT_EQ(completions, 0);
  EXPECT_TRUE(listener.events.empty());
}

TEST_F(LibvirtHypervisorTest, PauseAndResumeAreIdempotentAndNoEvents) {
  auto hv = connect("test:///default");
  ASSERT_TRUE(hv);
  RecordingListener listener(std::this_thread::get_id());
  hv->setListener(&listener);
  RawConnection raw("test:///default");
  ASSERT_TRUE(startVm(*hv, vmSpec("vm-pause")).ok());

  Status paused = await([&](Done d) { hv->pause("vm-pause", std::move(d)); });
  ASSERT_TRUE(paused.ok()) << paused.error().message;
  EXPECT_EQ(raw.state("vm-pause"), VIR_DOMAIN_PAUSED);
  EXPECT_TRUE(contains(running(*hv), "vm-pause"));  // paused is still active
  paused = await([&](Done d) { hv->pause("vm-pause", std::move(d)); });
  EXPECT_TRUE(paused.ok()) << paused.error().message;

  Status resumed = await([&](Done d) { hv->resume("vm-pause", std::move(d)); });
  ASSERT_TRUE(resumed.ok()) << resumed.error().message;
  EXPECT_EQ(raw.state("vm-pause"), VIR_DOMAIN_RUNNING);
  resumed = await([&](Done d) { hv->resume("vm-pause", std::move(d)); });
  EXPECT_TRUE(resumed.ok()) << resumed.error().message;

  loop_->runFor(100ms);
  EXPECT_TRUE(listener.events.empty());
  ASSERT_TRUE(destroyVm(*hv, "vm-pause").ok());
}

TEST_F(LibvirtHypervisorTest, SuspendAndRestoreThroughManagedSave) {
  auto hv = connect("test:///default");
  ASSERT_TRUE(hv);
  RecordingListener listener(std::this_thread::get_id());
  hv->setListener(&listener);
  RawConnection raw("test:///default");
  ASSERT_TRUE(startVm(*hv, vmSpec("vm-save")).ok());

  const Status suspended = await([&](Done d) { hv->suspend("vm-save", 5s, std::move(d)); });
  ASSERT_TRUE(suspended.ok()) << suspended.error().message;
  EXPECT_EQ(raw.state("vm-save"), VIR_DOMAIN_SHUTOFF);
  EXPECT_TRUE(raw.hasManagedSave("vm-save"));
  EXPECT_FALSE(contains(running(*hv), "vm-save"));

  const Status restored = await([&](Done d) { hv->restore("vm-save", 5s, std::move(d)); });
  ASSERT_TRUE(restored.ok()) << restored.error().message;
  EXPECT_EQ(raw.state("vm-save"), VIR_DOMAIN_RUNNING);
  EXPECT_FALSE(raw.hasManagedSave("vm-save"));
  EXPECT_TRUE(contains(running(*hv), "vm-save"));

  // Nothing saved any more: restore refuses, naming the VM.
  const Status again = await([&](Done d) { hv->restore("vm-save", 5s, std::move(d)); });
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message.find("vm-save"), std::string::npos) << again.error().message;
  EXPECT_NE(again.error().message.find("managed save"), std::string::npos) << again.error().message;

  loop_->runFor(100ms);
  EXPECT_TRUE(listener.events.empty());
  ASSERT_TRUE(destroyVm(*hv, "vm-save").ok());
}

TEST_F(LibvirtHypervisorTest, ShutdownStopsAndUndefinesWithoutEvent) {
  auto hv = connect("test:///default");
  ASSERT_TRUE(hv);
  RecordingListener listener(std::this_thread::get_id());
  hv->setListener(&listener);
  RawConnection raw("test:///default");
  ASSERT_TRUE(startVm(*hv, vmSpec("vm-shutdown")).ok());

  // The test driver powers the guest off at once: done well before the grace.
  const Status stopped = await([&](Done d) { hv->shutdown("vm-shutdown", 3s, std::move(d)); });
  ASSERT_TRUE(stopped.ok()) << stopped.error().message;
  EXPECT_FALSE(raw.defined("vm-shutdown"));
  EXPECT_FALSE(contains(running(*hv), "vm-shutdown"));
  loop_->runFor(200ms);
  EXPECT_TRUE(listener.events.empty());
}

TEST_F(LibvirtHypervisorTest, ShutdownOfUnknownOrStoppedVmSucceeds) {
  auto hv = connect("test:///default");
  ASSERT_TRUE(hv);
  RawConnection raw("test:///default");
  Status result = await([&](Done d) { hv->shutdown("no-such-vm", 1s, std::move(d)); });
  EXPECT_TRUE(result.ok()) << result.error().message;

  ASSERT_TRUE(startVm(*hv, vmSpec("vm-shutdown-stopped")).ok());
  ASSERT_TRUE(raw.destroy("vm-shutdown-stopped"));
  result = await([&](Done d) { hv->shutdown("vm-shutdown-stopped", 1s, std::move(d)); });
  EXPECT_TRUE(result.ok()) << result.error().message;
  EXPECT_FALSE(raw.defined("vm-shutdown-stopped"));
}

TEST_F(LibvirtHypervisorTest, RebootAndResetKeepTheVmRunningWithoutEvent) {
  auto hv = connect("test:///default");
  ASSERT_TRUE(hv);
  RecordingListener listener(std::this_thread::get_id());
  hv->setListener(&listener);
  RawConnection raw("test:///default");
  ASSERT_TRUE(startVm(*hv, vmSpec("vm-reboot")).ok());
  const Status rebooted = await([&](Done d) { hv->reboot("vm-reboot", 100ms, std::move(d)); });
  EXPECT_TRUE(rebooted.ok()) << rebooted.error().message;
  const Status reset = await([&](Done d) { hv->reset("vm-reboot", std::move(d)); });
  EXPECT_TRUE(reset.ok()) << reset.error().message;
  EXPECT_EQ(raw.state("vm-reboot"), VIR_DOMAIN_RUNNING);
  loop_->runFor(100ms);
  EXPECT_TRUE(listener.events.empty());
  ASSERT_TRUE(destroyVm(*hv, "vm-reboot").ok());
}

// libvirt's test driver accepts virDomainReboot and never reboots the guest (no reboot event): the
// reboot completes only once the grace has passed and the VM was reset, never as soon as the guest
// was asked.
TEST_F(LibvirtHypervisorTest, RebootOfAGuestThatDoesNotRebootResetsItAfterTheGrace) {
  auto hv = connect(privateUri());
  ASSERT_TRUE(hv);
  RecordingListener listener(std::this_thread::get_id());
  hv->setListener(&listener);
  ASSERT_TRUE(startVm(*hv, vmSpec("vm-deaf")).ok());
  const TimePoint asked = loop_->now();
  const Status rebooted = await([&](Done d) { hv->reboot("vm-deaf", 400ms, std::move(d)); });
  ASSERT_TRUE(rebooted.ok()) << rebooted.error().message;
  EXPECT_GE(loop_->now() - asked, Duration(400));
  EXPECT_TRUE(contains(running(*hv), "vm-deaf"));

  // One reboot of a VM at a time: a second one while the first waits is refused, naming the VM.
  std::optional<Status> first;
  hv->reboot("vm-deaf", 400ms, [&](Status st) { first = std::move(st); });
  const Status second = await([&](Done d) { hv->reboot("vm-deaf", 400ms, std::move(d)); });
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message.find("vm-deaf"), std::string::npos) << second.error().message;
  EXPECT_FALSE(first.has_value());
  ASSERT_TRUE(runUntil([&] { return first.has_value(); }));
  EXPECT_TRUE(first->ok()) << first->error().message;

  loop_->runFor(100ms);
  EXPECT_TRUE(listener.events.empty());
}

// A fresh start of a VM with a managed save (a suspend it was not restored from) does not restore
// it: the save is removed first, so restore() finds none. Through the Hypervisor interface, as the
// local agent calls it.
TEST_F(LibvirtHypervisorTest, StartDiscardsAManagedSave) {
  auto hv = connect("test:///default");
  ASSERT_TRUE(hv);
  Hypervisor& hypervisor = *hv;
  RawConnection raw("test:///default");
  ASSERT_TRUE(startVm(*hv, vmSpec("vm-stale-save")).ok());
  ASSERT_TRUE(await([&](Done d) { hypervisor.suspend("vm-stale-save", 5s, std::move(d)); }).ok());
  ASSERT_TRUE(raw.hasManagedSave("vm-stale-save"));

  const Status started = startVm(*hv, vmSpec("vm-stale-save"));
  ASSERT_TRUE(started.ok()) << started.error().message;
  EXPECT_EQ(raw.state("vm-stale-save"), VIR_DOMAIN_RUNNING);
  EXPECT_FALSE(raw.hasManagedSave("vm-stale-save"));

  ASSERT_TRUE(await([&](Done d) { hypervisor.suspend("vm-stale-save", 5s, std::move(d)); }).ok());
  ASSERT_TRUE(await([&](Done d) { hypervisor.restore("vm-stale-save", 5s, std::move(d)); }).ok());
  EXPECT_EQ(raw.state("vm-stale-save"), VIR_DOMAIN_RUNNING);

  // A destroy discards a managed save too (it undefines the VM with it).
  ASSERT_TRUE(await([&](Done d) { hypervisor.suspend("vm-stale-save", 5s, std::move(d)); }).ok());
  ASSERT_TRUE(destroyVm(*hv, "vm-stale-save").ok());
  EXPECT_FALSE(raw.defined("vm-stale-save"));
}

TEST_F(LibvirtHypervisorTest, OperationsOnUnknownVmFailNamingIt) {
  auto hv = connect(privateUri());
  ASSERT_TRUE(hv);
  const std::vector<std::pair<std::string, std::function<void(Done)>>> operations = {
      {"pause", [&](Done d) { hv->pause("vm-ghost", std::move(d)); }},
      {"resume", [&](Done d) { hv->resume("vm-ghost", std::move(d)); }},
      {"suspend", [&](Done d) { hv->suspend("vm-ghost", 1s, std::move(d)); }},
      {"restore", [&](Done d) { hv->restore("vm-ghost", 1s, std::move(d)); }},
      {"reboot", [&](Done d) { hv->reboot("vm-ghost", 1s, std::move(d)); }},
      {"reset", [&](Done d) { hv->reset("vm-ghost", std::move(d)); }},
  };
  for (const auto& [name, operation] : operations) {
    const Status result = await(operation);
    ASSERT_FALSE(result.ok()) << name;
    EXPECT_NE(result.error().message.find("vm-ghost"), std::string::npos) << name << ": " << result.error().message;
  }
  std::optional<Result<MigrationOutcome>> migrated;
  MigrationOptions options;
  options.destinationUri = "test:///default";
  hv->migrate("vm-ghost", options, nullptr, [&](Result<MigrationOutcome> r) { migrated = std::move(r); });
  ASSERT_TRUE(runUntil([&] { return migrated.has_value(); }));
  ASSERT_FALSE(migrated->ok());
  EXPECT_NE(migrated->error().message.find("vm-ghost"), std::string::npos) << migrated->error().message;
}

TEST_F(LibvirtHypervisorTest, OperationsOnStoppedVmFailCleanly) {
  auto hv = connect("test:///default");
  ASSERT_TRUE(hv);
  RawConnection raw("test:///default");
  ASSERT_TRUE(startVm(*hv, vmSpec("vm-off")).ok());
  ASSERT_TRUE(raw.destroy("vm-off"));
  for (const auto& operation : std::vector<std::function<void(Done)>>{
           [&](Done d) { hv->pause("vm-off", std::move(d)); },
           [&](Done d) { hv->suspend("vm-off", 1s, std::move(d)); },
           [&](Done d) { hv->reset("vm-off", std::move(d)); },
       }) {
    const Status result = await(operation);
    ASSERT_FALSE(result.ok());
    EXPECT_NE(result.error().message.find("vm-off"), std::string::npos) << result.error().message;
  }
  ASSERT_TRUE(destroyVm(*hv, "vm-off").ok());
}

TEST_F(LibvirtHypervisorTest, StatsListTheActiveVmsWithTheirState) {
  auto hv = connect(privateUri());
  ASSERT_TRUE(hv);
  ASSERT_TRUE(startVm(*hv, vmSpec("vm-stats-a")).ok());
  ASSERT_TRUE(startVm(*hv, vmSpec("vm-stats-b")).ok());
  ASSERT_TRUE(await([&](Done d) { hv->pause("vm-stats-b", std::move(d)); }).ok());
  ASSERT_TRUE(startVm(*hv, vmSpec("vm-stats-c")).ok());
  ASSERT_TRUE(await([&](Done d) { hv->suspend("vm-stats-c", 1s, std::move(d)); }).ok());  // defined, not active

  const Result<std::vector<VmStats>> result = stats(*hv);
  ASSERT_TRUE(result.ok()) << result.error().message;
  std::map<std::string, VmStats> byName;
  for (const VmStats& s : result.value()) byName[s.vm] = s;
  ASSERT_EQ(byName.count("vm-stats-a"), 1u);
  ASSERT_EQ(byName.count("vm-stats-b"), 1u);
  EXPECT_EQ(byName.count("vm-stats-c"), 0u);
  EXPECT_TRUE(byName["vm-stats-a"].running);
  EXPECT_FALSE(byName["vm-stats-b"].running);  // paused
  // libvirt 9's test driver gives only the state group: every figure reads 0, no disks, no NICs.
  EXPECT_EQ(byName["vm-stats-a"].cpuTimeNs, 0u);
  EXPECT_TRUE(byName["vm-stats-a"].nics.empty());

  // Overlapping calls both answer with every active VM.
  std::optional<Result<std::vector<VmStats>>> first, second;
  hv->stats([&](Result<std::vector<VmStats>> r) { first = std::move(r); });
  hv->stats([&](Result<std::vector<VmStats>> r) { second = std::move(r); });
  ASSERT_TRUE(runUntil([&] { return first.has_value() && second.has_value(); }));
  ASSERT_TRUE(first->ok() && second->ok());
  EXPECT_EQ(first->value().size(), 2u);
  EXPECT_EQ(second->value().size(), 2u);
}

TEST_F(LibvirtHypervisorTest, MigrateOnTheTestDriverFailsClearlyAndTheVmStays) {
  auto hv = connect("test:///default");
  ASSERT_TRUE(hv);
  RecordingListener listener(std::this_thread::get_id());
  hv->setListener(&listener);
  ASSERT_TRUE(startVm(*hv, vmSpec("vm-migrate")).ok());
  MigrationOptions options;
  options.destinationUri = "test:///default";
  options.migrationUri = "tcp://127.0.0.1";
  options.destinationAgentSocketDir = (dir_.path() / "agent-b").string();
  options.timeout = 3s;
  std::optional<Result<MigrationOutcome>> first, second;
  int progressCalls = 0;
  hv->migrate(
      "vm-migrate", options, [&](const MigrationProgress&) { ++progressCalls; },
      [&](Result<MigrationOutcome> r) { first = std::move(r); });
  // A second migration of the same VM while the first runs is refused.
  hv->migrate("vm-migrate", options, nullptr, [&](Result<MigrationOutcome> r) { second = std::move(r); });
  ASSERT_TRUE(runUntil([&] { return first.has_value() && second.has_value(); }));
  ASSERT_FALSE(first->ok());
  EXPECT_NE(first->error().message.find("virDomainMigrateToURI3 on vm-migrate"), std::string::npos)
      << first->error().message;
  EXPECT_NE(first->error().message.find("p2p migration is not supported"), std::string::npos) << first->error().message;
  ASSERT_FALSE(second->ok());
  EXPECT_NE(second->error().message.find("in progress"), std::string::npos) << second->error().message;
  EXPECT_EQ(progressCalls, 0);
  EXPECT_TRUE(contains(running(*hv), "vm-migrate"));

  // Finished: the next one is accepted (and fails the same way).
  std::optional<Result<MigrationOutcome>> third;
  hv->migrate("vm-migrate", options, nullptr, [&](Result<MigrationOutcome> r) { third = std::move(r); });
  ASSERT_TRUE(runUntil([&] { return third.has_value(); }));
  ASSERT_FALSE(third->ok());
  EXPECT_EQ(third->error().message.find("in progress"), std::string::npos) << third->error().message;
  EXPECT_TRUE(listener.events.empty());
  ASSERT_TRUE(destroyVm(*hv, "vm-migrate").ok());
}

TEST_F(LibvirtHypervisorTest, NoAnnounceWithoutQemuMonitor) {
  auto hv = connect(privateUri());
  ASSERT_TRUE(hv);
  RecordingObserver observer(std::this_thread::get_id());
  hv->setObserver(&observer);
  ASSERT_TRUE(startVm(*hv, vmSpec("vm-announce")).ok());
  ASSERT_TRUE(await([&](Done d) { hv->suspend("vm-announce", 1s, std::move(d)); }).ok());
  ASSERT_TRUE(await([&](Done d) { hv->restore("vm-announce", 1s, std::move(d)); }).ok());
  // The announce (skipped: the test driver has no QEMU monitor) queues behind on the VM's worker.
  EXPECT_TRUE(contains(running(*hv), "vm-announce"));
  ASSERT_TRUE(await([&](Done d) { hv->pause("vm-announce", std::move(d)); }).ok());
  loop_->runFor(100ms);
  EXPECT_TRUE(observer.announced.empty());
  EXPECT_TRUE(observer.allOnLoopThread);
}

TEST_F(LibvirtHypervisorTest, DestructionWithNewOperationsInFlightDropsTheirCompletions) {
  auto hv = connect("test:///default");
  ASSERT_TRUE(hv);
  RecordingObserver observer(std::this_thread::get_id());
  hv->setObserver(&observer);
  int completions = 0;
  MigrationOptions options;
  options.destinationUri = "test:///default";
  for (int i = 0; i < 10; ++i) {
    const std::string name = "vm-inflight-ops-" + std::to_string(i);
    hv->start(vmSpec(name), std::nullopt, [&](Status) { ++completions; });
    hv->pause(name, [&](Status) { ++completions; });
    hv->resume(name, [&](Status) { ++completions; });
    hv->migrate(
        name, options, [&](const MigrationProgress&) { ++completions; },
        [&](Result<MigrationOutcome>) { ++completions; });
    hv->stats([&](Result<std::vector<VmStats>>) { ++completions; });
    hv->shutdown(name, 1s, [&](Status) { ++completions; });
  }
  hv.reset();
  loop_->runFor(300ms);
  EXPECT_EQ(completions, 0);
  EXPECT_TRUE(observer.rebooted.empty());
  EXPECT_TRUE(observer.announced.empty());
}

TEST_F(LibvirtHypervisorTest, ConnectAgainAfterDestructionWorks) {
  for (int round = 0; round < 3; ++round) {
    auto hv = connect(privateUri());
    ASSERT_TRUE(hv);
    ASSERT_TRUE(startVm(*hv, vmSpec("vm-round")).ok());
    EXPECT_TRUE(contains(running(*hv), "vm-round"));
  }
}

}  // namespace
}  // namespace kvm_amf::vmm
