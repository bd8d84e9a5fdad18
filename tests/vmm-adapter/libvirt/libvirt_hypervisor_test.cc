#include "kvm_amf/vmm/libvirt_hypervisor.h"

#include <gtest/gtest.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
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
