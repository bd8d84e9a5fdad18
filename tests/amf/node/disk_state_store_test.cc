#include "kvm_amf/amf/node/disk_state_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kvm_amf/amf/config/loader.h"
#include "kvm_amf/common/durable_file.h"
#include "kvm_amf/common/event_loop.h"
#include "testing/run_until.h"

namespace kvm_amf::node {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

// Far more than anything here should take, so that a slow machine does not fail a test.
constexpr Duration kPatience{10000};

constexpr const char* kClusterYaml = R"(apiVersion: kvm-amf/v1
kind: Cluster
metadata:
  name: store
spec:
  nodes:
    - {name: node1, address: 10.1.0.1}
    - {name: node2, address: 10.1.0.2}
  nodeGroups:
    - {name: all, nodes: [node1, node2]}
)";

constexpr const char* kServiceGroupYaml = R"(apiVersion: kvm-amf/v1
kind: ServiceGroup
metadata:
  name: web
spec:
  redundancy: {model: 2N}
  nodeGroup: all
  units:
    - name: web-a
      vms:
        - {name: web-a-vm, memory: 128Mi, boot: {kernel: /k}}
    - name: web-b
      vms:
        - {name: web-b-vm, memory: 128Mi, boot: {kernel: /k}}
  serviceInstances:
    - name: web-si
)";

std::shared_ptr<const model::Configuration> configuration() {
  config::LoadResult loaded =
      config::loadConfiguration({{"cluster.yaml", kClusterYaml}, {"sg.yaml", kServiceGroupYaml}});
  EXPECT_TRUE(loaded.ok()) << (loaded.ok() ? "" : loaded.errors.front().str());
  return std::make_shared<const model::Configuration>(std::move(loaded.config));
}

// A state of the test cluster after `decisions` decisions, with runtime fields away from their
// defaults so that a field the store lost would show.
engine::ClusterState stateAfter(std::uint64_t decisions) {
  static const std::shared_ptr<const model::Configuration> config = configuration();
  engine::ClusterState state = engine::initialState(config, 1);
  state.decisions = decisions;
  state.applied = decisions * 2;
  engine::NodeRuntime& node1 = state.nodes.at("node1");
  node1.status = engine::NodeStatus::kUp;
  node1.since = TimePoint(1'700'000'000'000 + static_cast<std::int64_t>(decisions));
  node1.agentReady = true;
  engine::SuRuntime& su = state.sus.at("web-a");
  su.node = "node1";
  su.restarts = {static_cast<int>(decisions % 7), TimePoint(1'700'000'000'500)};
  state.vms.at("web-a-vm").presence = model::PresenceState::kInstantiated;
  state.vms.at("web-a-vm").node = "node1";
  state.sis.at("web-si").assignments.push_back({"web-a", engine::HaState::kActive, true});
  return state;
}

struct Durable {
  std::vector<int> order;  // the tags of the callbacks run, in the order run
  std::vector<bool> ok;
  bool offLoopThread = false;
};

class DiskStateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto created = EventLoop::create();
    ASSERT_TRUE(created.ok()) << created.error().message;
    loop_ = std::move(created).value();
    std::string pattern = (fs::temp_directory_path() / "disk_state_store_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = (dir_ / "state").string();
  }
  void TearDown() override {
    loop_.reset();
    fs::remove_all(dir_);
  }

  // A durable callback that records `tag` and its outcome in `durable`.
  std::function<void(bool)> record(Durable& durable, int tag) {
    return [&durable, tag, loopThread = std::this_thread::get_id()](bool ok) {
      if (std::this_thread::get_id() != loopThread) durable.offLoopThread = true;
      durable.order.push_back(tag);
      durable.ok.push_back(ok);
    };
  }

  // Runs the loop until `done()` holds or `limit` passes; returns done().
  bool runUntil(const std::function<bool()>& done, Duration limit = kPatience) {
    return kvm_amf::testing::runUntil(*loop_, done, limit);
  }

  // The state in path_; fails the test when there is none or it is refused.
  std::optional<engine::ClusterState> loaded() {
    auto state = DiskStateStore::load(path_);
    EXPECT_TRUE(state.ok()) << state.error().message;
    if (!state.ok()) return std::nullopt;
    EXPECT_TRUE(state.value().has_value()) << "no state in " << path_;
    return state.value();
  }

  std::unique_ptr<EventLoop> loop_;
  fs::path dir_;
  std::string path_;
};

TEST_F(DiskStateStoreTest, EncodeAndDecodeRoundTrip) {
  const engine::ClusterState state = stateAfter(3);
  const Result<engine::ClusterState> decoded = decodeState(encodeState(state));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_TRUE(decoded.value() == state);
}

TEST_F(DiskStateStoreTest, SaveThenLoadGivesAnEqualState) {
  const engine::ClusterState state = stateAfter(5);
  DiskStateStore store(*loop_, path_);
  EXPECT_EQ(store.path(), path_);
  Durable durable;
  store.save(encodeState(state), record(durable, 1));
  ASSERT_TRUE(runUntil([&] { return !durable.order.empty(); }));
  EXPECT_EQ(durable.ok, std::vector<bool>{true});
  EXPECT_EQ(store.saves(), 1u);
  EXPECT_EQ(store.failures(), 0u);
  EXPECT_EQ(store.lastError(), "");

  const auto back = loaded();
  ASSERT_TRUE(back.has_value());
  EXPECT_TRUE(*back == state);
  EXPECT_FALSE(*back == stateAfter(6));  // the comparison does tell states apart
  EXPECT_FALSE(fs::exists(path_ + ".tmp"));
}

TEST_F(DiskStateStoreTest, DurableCallbacksRunOnTheLoopInOrder) {
  DiskStateStore store(*loop_, path_);
  Durable durable;
  for (int i = 0; i < 5; ++i) {
    store.save(encodeState(stateAfter(static_cast<std::uint64_t>(i))), record(durable, i));
    EXPECT_EQ(durable.order.size(), static_cast<std::size_t>(i)) << "a durable callback ran inside save()";
    // Let each write finish before the next save, so that none coalesce.
    ASSERT_TRUE(runUntil([&] { return durable.order.size() == static_cast<std::size_t>(i) + 1; }));
  }
  EXPECT_EQ(durable.order, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(durable.ok, std::vector<bool>(5, true));
  EXPECT_FALSE(durable.offLoopThread);
  EXPECT_EQ(store.saves(), 5u);
  EXPECT_EQ(store.failures(), 0u);
  const auto back = loaded();
  ASSERT_TRUE(back.has_value());
  EXPECT_TRUE(*back == stateAfter(4));
}

TEST_F(DiskStateStoreTest, SavesIssuedBackToBackCoalesce) {
  constexpr int kSaves = 50;
  DiskStateStore store(*loop_, path_);
  Durable durable;
  // The loop does not run between these calls, so no completion can come in: the first save
  // starts a write and the other 49 wait as one.
  for (int i = 0; i < kSaves; ++i) {
    store.save(encodeState(stateAfter(static_cast<std::uint64_t>(i))), record(durable, i));
  }
  EXPECT_TRUE(durable.order.empty());
  ASSERT_TRUE(runUntil([&] { return durable.order.size() == kSaves; }));

  std::vector<int> expected;
  for (int i = 0; i < kSaves; ++i) expected.push_back(i);
  EXPECT_EQ(durable.order, expected);
  EXPECT_EQ(durable.ok, std::vector<bool>(kSaves, true));
  EXPECT_FALSE(durable.offLoopThread);
  EXPECT_LT(store.saves(), static_cast<std::uint64_t>(kSaves));
  EXPECT_EQ(store.saves(), 2u);
  EXPECT_EQ(store.failures(), 0u);

  const auto back = loaded();
  ASSERT_TRUE(back.has_value());
  EXPECT_TRUE(*back == stateAfter(kSaves - 1));
}

TEST_F(DiskStateStoreTest, ASaveWithoutACallbackIsStillWritten) {
  DiskStateStore store(*loop_, path_);
  store.save(encodeState(stateAfter(8)), nullptr);
  ASSERT_TRUE(runUntil([&] { return store.saves() == 1; }));
  const auto back = loaded();
  ASSERT_TRUE(back.has_value());
  EXPECT_TRUE(*back == stateAfter(8));
}

TEST_F(DiskStateStoreTest, LoadOfAMissingFileIsNullopt) {
  const auto state = DiskStateStore::load(path_);
  ASSERT_TRUE(state.ok()) << state.error().message;
  EXPECT_FALSE(state.value().has_value());
}

TEST_F(DiskStateStoreTest, LoadOfAGarbageFileNamesTheFile) {
  {
    std::ofstream out(path_, std::ios::binary);
    out << "this is not a state file, nor any other kind of durable file";
  }
  const auto state = DiskStateStore::load(path_);
  ASSERT_FALSE(state.ok());
  EXPECT_THAT(state.error().message, HasSubstr(path_));
}

TEST_F(DiskStateStoreTest, LoadOfATruncatedFileNamesTheFile) {
  {
    DiskStateStore store(*loop_, path_);
    Durable durable;
    store.save(encodeState(stateAfter(2)), record(durable, 0));
    ASSERT_TRUE(runUntil([&] { return !durable.order.empty(); }));
  }
  fs::resize_file(path_, fs::file_size(path_) - 10);
  const auto state = DiskStateStore::load(path_);
  ASSERT_FALSE(state.ok());
  EXPECT_THAT(state.error().message, HasSubstr(path_));
  EXPECT_THAT(state.error().message, HasSubstr("truncated"));
}

TEST_F(DiskStateStoreTest, LoadOfAWellFramedButUndecodableFileNamesTheFile) {
  // The store's own framing around bytes that are no encoded state.
  ASSERT_TRUE(writeDurableFile(path_, "KVMAMFST", "not an encoded state").ok());
  const auto state = DiskStateStore::load(path_);
  ASSERT_FALSE(state.ok());
  EXPECT_THAT(state.error().message, HasSubstr(path_));
  EXPECT_THAT(state.error().message, HasSubstr("undecodable"));
}

TEST_F(DiskStateStoreTest, DestroyingTheStoreRightAfterASaveFinishesIt) {
  {
    DiskStateStore store(*loop_, path_);
    store.save(encodeState(stateAfter(11)), nullptr);
  }
  const auto back = loaded();
  ASSERT_TRUE(back.has_value());
  EXPECT_TRUE(*back == stateAfter(11));
}

TEST_F(DiskStateStoreTest, DestroyingTheStoreFinishesTheWriteInProgressAndThePendingOne) {
  Durable durable;
  {
    DiskStateStore store(*loop_, path_);
    store.save(encodeState(stateAfter(20)), record(durable, 0));  // starts a write
    store.save(encodeState(stateAfter(21)), record(durable, 1));  // pending
    store.save(encodeState(stateAfter(22)), record(durable, 2));  // replaces the pending one
  }
  const auto back = loaded();
  ASSERT_TRUE(back.has_value());
  EXPECT_TRUE(*back == stateAfter(22));
  // A completion the destroyed store's worker posted must not reach the destroyed store (the
  // sanitizer builds catch it if it does).
  loop_->runFor(Duration(50));
}

TEST_F(DiskStateStoreTest, ASaveIntoAMissingDirectoryFailsAndIsCounted) {
  const std::string path = (dir_ / "missing" / "state").string();
  DiskStateStore store(*loop_, path);
  Durable durable;
  store.save(encodeState(stateAfter(1)), record(durable, 0));
  ASSERT_TRUE(runUntil([&] { return durable.order.size() == 1; }));
  EXPECT_EQ(durable.ok, std::vector<bool>{false});
  EXPECT_EQ(store.saves(), 0u);
  EXPECT_EQ(store.failures(), 1u);
  EXPECT_THAT(store.lastError(), HasSubstr(path));

  store.save(encodeState(stateAfter(2)), record(durable, 1));
  ASSERT_TRUE(runUntil([&] { return durable.order.size() == 2; }));
  EXPECT_EQ(durable.ok, (std::vector<bool>{false, false}));
  EXPECT_EQ(store.saves(), 0u);
  EXPECT_EQ(store.failures(), 2u);
  EXPECT_THAT(store.lastError(), HasSubstr(path));

  // Once the directory is there, the same store writes again; the failures stay counted.
  fs::create_directory(dir_ / "missing");
  store.save(encodeState(stateAfter(3)), record(durable, 2));
  ASSERT_TRUE(runUntil([&] { return durable.order.size() == 3; }));
  EXPECT_EQ(durable.order, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(durable.ok, (std::vector<bool>{false, false, true}));
  EXPECT_EQ(store.saves(), 1u);
  EXPECT_EQ(store.failures(), 2u);
  const auto back = DiskStateStore::load(path);
  ASSERT_TRUE(back.ok()) << back.error().message;
  ASSERT_TRUE(back.value().has_value());
  EXPECT_TRUE(*back.value() == stateAfter(3));
}

}  // namespace
}  // namespace kvm_amf::node
