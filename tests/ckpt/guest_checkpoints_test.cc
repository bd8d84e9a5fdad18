// The guests' checkpoints as amfd serves them (daemon/guest_checkpoints.h): each guest names
// checkpoints within its VM's service group, over a real checkpoint service (simulated group and
// disks, simulated time).
#include "kvm_amf/daemon/guest_checkpoints.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "kvm_amf/ckpt/sim_checkpoint_disk.h"
#include "kvm_amf/cluster/sim_network.h"
#include "kvm_amf/sim/sim_scheduler.h"

namespace kvm_amf::daemon {
namespace {

using namespace std::chrono_literals;

class GuestCheckpointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(service_.start().ok());
    run(1s);
    ASSERT_TRUE(service_.synced());
  }

  void run(Duration d) { scheduler_.runUntil(scheduler_.now() + d); }

  std::string write(const std::string& vm, const std::string& name, const std::string& section,
                    const std::string& data) {
    std::optional<Status> outcome;
    access_.write(vm, name, section, data, [&](Status s) { outcome = std::move(s); });
    run(100ms);
    if (!outcome) return "<no answer>";
    return outcome->ok() ? "ok" : outcome->error().message;
  }
  std::string read(const std::string& vm, const std::string& name, const std::string& section) {
    std::optional<Result<std::string>> outcome;
    access_.read(vm, name, section, [&](Result<std::string> r) { outcome = std::move(r); });
    if (!outcome) return "<no answer>";
    return outcome->ok() ? outcome->value() : "<" + outcome->error().message + ">";
  }

  sim::SimScheduler scheduler_;
  cluster::SimNetwork network_{scheduler_, {1}, false, cluster::SimNetworkTiming{}};
  std::unique_ptr<cluster::GroupChannel> channel_ = network_.channel(1);
  ckpt::SimCheckpointDisk disk_{scheduler_, std::make_shared<ckpt::SimDiskContents>()};
  ckpt::CheckpointService service_{ckpt::CheckpointServiceDeps{&scheduler_, channel_.get(), &disk_}, {}, std::nullopt};
  std::map<std::string, std::string> groups_{{"web-a-vm", "web"}, {"web-b-vm", "web"}, {"db-vm", "db"}};
  GuestCheckpointAccess access_{service_, [this](const std::string& vm) -> std::optional<std::string> {
                                  auto it = groups_.find(vm);
                                  if (it == groups_.end()) return std::nullopt;
                                  return it->second;
                                }};
};

TEST_F(GuestCheckpointsTest, TheGuestsOfOneGroupShareTheirCheckpoints) {
  EXPECT_EQ(write("web-a-vm", "app", "counter", "7"), "ok");
  EXPECT_EQ(read("web-b-vm", "app", "counter"), "7") << "the standby of the pair reads the active's write";
  EXPECT_EQ(service_.read("sg/web/app", "counter").value(), "7");
  EXPECT_EQ(service_.info("sg/web/app").value().attributes, ckpt::CheckpointAttributes{});
  EXPECT_EQ(write("web-b-vm", "app", "counter", "8"), "ok");
  EXPECT_EQ(read("web-a-vm", "app", "counter"), "8");
}

TEST_F(GuestCheckpointsTest, AGuestReachesNoOtherGroupsCheckpoints) {
  EXPECT_EQ(write("web-a-vm", "app", "counter", "7"), "ok");
  EXPECT_EQ(read("db-vm", "app", "counter"), "<no checkpoint 'sg/db/app'>");
  // Names are flat: ".." is no way out of the group's prefix.
  EXPECT_EQ(read("db-vm", "../web/app", "counter"), "<no checkpoint 'sg/db/../web/app'>");
  EXPECT_EQ(read("stranger", "app", "counter"), "<vm stranger is in no service group of the configuration>");
  EXPECT_EQ(write("stranger", "app", "counter", "x"), "vm stranger is in no service group of the configuration");
}

TEST_F(GuestCheckpointsTest, AMissingSectionFailsWithAClearReason) {
  EXPECT_EQ(write("web-a-vm", "app", "one", "1"), "ok");
  EXPECT_EQ(read("web-a-vm", "app", "two"), "<no section 'two' of checkpoint 'sg/web/app'>");
  EXPECT_EQ(read("web-a-vm", "bad name", "two"),
            "<checkpoint name 'sg/web/bad name' (15 bytes) is not 1 to 255 bytes of letters, digits and . _ / ->");
}

}  // namespace
}  // namespace kvm_amf::daemon
