// amf-admin's checkpoint verbs end to end: amf-admin talks to amfd's admin service and its
// checkpoint requests (daemon/checkpoint_requests.h) behind a real admin server, whose checkpoint
// service is one of three over the simulated group with simulated disks, all on a real event loop
// in a background thread. Only Corosync and the disks are simulated.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cli_test_util.h"
#include "kvm_amf/admin/admin_server.h"
#include "kvm_amf/ckpt/checkpoint_service.h"
#include "kvm_amf/ckpt/sim_checkpoint_disk.h"
#include "kvm_amf/cli/exit_codes.h"
#include "kvm_amf/cluster/sim_network.h"
#include "kvm_amf/daemon/admin_service.h"
#include "kvm_amf/daemon/checkpoint_requests.h"
#include "testing/loop_thread.h"
#include "testing/temp_dir.h"

namespace kvm_amf::cli {
namespace {

using nlohmann::json;
using testing::contains;
using testing::Invocation;
using Clock = std::chrono::steady_clock;

constexpr std::chrono::seconds kPatience{20};

// Everything that lives on the loop thread: made, used and destroyed there.
struct Cluster {
  struct Member {
    std::shared_ptr<ckpt::SimDiskContents> contents = std::make_shared<ckpt::SimDiskContents>();
    std::unique_ptr<ckpt::SimCheckpointDisk> disk;
    std::unique_ptr<cluster::GroupChannel> channel;
    std::unique_ptr<ckpt::CheckpointService> service;
  };
  explicit Cluster(EventLoop& loop)
      : network(loop, {1, 2, 3}, false, cluster::SimNetworkTiming{Duration(50), Duration(1)}) {}

  cluster::SimNetwork network;
  std::map<int, Member> members;
  std::unique_ptr<daemon::CheckpointRequests> requests;  // member 2's amfd answers
  std::unique_ptr<daemon::AdminService> service;
  std::unique_ptr<admin::AdminServer> server;
};

class CheckpointVerbsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    ASSERT_TRUE(loop_.ok());
    ASSERT_EQ(loop_.onLoop<std::string>([this] { return build(); }), "");
    ASSERT_TRUE(waitFor([this] {
      for (auto& [id, member] : cluster_->members) {
        if (!member.service->synced()) return false;
      }
      return true;
    }));
  }

  std::string build() {
    cluster_ = std::make_unique<Cluster>(loop_.loop());
    for (int id : {1, 2, 3}) {
      Cluster::Member& m = cluster_->members[id];
      m.disk = std::make_unique<ckpt::SimCheckpointDisk>(loop_.loop(), m.contents, Duration(1));
      m.channel = cluster_->network.channel(id);
      ckpt::CheckpointServiceOptions options;
      options.session = static_cast<std::uint64_t>(id);
      m.service = std::make_unique<ckpt::CheckpointService>(
          ckpt::CheckpointServiceDeps{&loop_.loop(), m.channel.get(), m.disk.get()}, options, std::nullopt, true);
    }
    cluster_->requests = std::make_unique<daemon::CheckpointRequests>("n2", *cluster_->members.at(2).service);
    cluster_->service = std::make_unique<daemon::AdminService>("n2");
    admin::AdminServerOptions options;
    options.ipcPath = endpoint();
    options.logger = [](const std::string&) {};
    auto server = admin::AdminServer::create(loop_.loop(), options, *cluster_->service);
    if (!server.ok()) return server.error().message;
    cluster_->server = std::move(server).value();
    cluster_->service->attachCheckpoints(cluster_->requests.get());
    for (auto& [id, member] : cluster_->members) {
      if (Status started = member.service->start(); !started.ok()) return started.error().message;
    }
    return "";
  }

  void TearDown() override {
    if (!loop_.ok()) return;
    loop_.onLoop<bool>([this] {
      if (cluster_) cluster_->server.reset();
      cluster_.reset();
      return true;
    });
  }

  bool waitFor(const std::function<bool()>& done) {
    const auto end = Clock::now() + kPatience;
    while (Clock::now() < end) {
      if (loop_.onLoop<bool>(done)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  // What member `id` holds in a section, read on the loop.
  std::string replica(int id, const std::string& name, const std::string& section) {
    return loop_.onLoop<std::string>([&] {
      ckpt::CkptResult<std::string> data = cluster_->members.at(id).service->read(name, section);
      return data.ok() ? data.value() : "<" + data.error().message + ">";
    });
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string endpoint() const { return "ipc://" + (dir_ / "admin.sock").string(); }
  Invocation run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--endpoint", endpoint()});
    return testing::admin(args);
  }

  kvm_amf::testing::TempDir dir_{"kvm-amf-ckpt-verbs"};
  kvm_amf::testing::LoopThread loop_;
  std::unique_ptr<Cluster> cluster_;  // loop thread only
};

TEST_F(CheckpointVerbsTest, CreateWriteReadInfoListDeleteAndUnlink) {
  Invocation r = run({"ckpt", "create", "app", "--retention", "1h", "--max-sections", "10"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "created: app\n");

  r = run({"ckpt", "write", "app", "counter", "--data", "42"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "written: app counter (2 bytes, on every host)\n");
  // Synchronous: every member has it already.
  for (int id : {1, 2, 3}) EXPECT_EQ(replica(id, "app", "counter"), "42") << id;

  r = run({"ckpt", "read", "app", "counter"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "42");

  r = run({"ckpt", "info", "app"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_TRUE(contains(r.out, "checkpoint app: 1 sections, 2 bytes, 0 openers\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "; retention 1h (removed at ")) << r.out;
  EXPECT_TRUE(contains(r.out, "limits: 10 sections, 1048576 bytes a section, 16777216 bytes in all\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "SECTION  BYTES  EXPIRES  UPDATED\ncounter  2      -        ")) << r.out;

  ASSERT_EQ(run({"ckpt", "create", "other"}).code, kExitOk);
  r = run({"ckpt", "list"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out,
            "NAME   SECTIONS  BYTES  OPENERS  RETENTION\n"
            "app    1         2      0        1h\n"
            "other  0         0      0        -\n");

  r = run({"ckpt", "delete", "app", "counter"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "deleted: app counter\n");
  r = run({"ckpt", "read", "app", "counter"});
  EXPECT_EQ(r.code, kExitRefused);
  EXPECT_EQ(r.err, "amf-admin: no section 'counter' of checkpoint 'app'\n");

  r = run({"ckpt", "unlink", "app"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "unlinked: app\n");
  EXPECT_EQ(replica(1, "app", "counter"), "<no checkpoint 'app'>");
}

TEST_F(CheckpointVerbsTest, JsonAndYamlAreTheMachineForms) {
  ASSERT_EQ(run({"ckpt", "create", "app"}).code, kExitOk);
  const std::string bytes("\x00\x01\xfe\xff", 4);
  {
    std::ofstream out(path("blob"), std::ios::binary);
    out << bytes;
  }
  ASSERT_EQ(run({"ckpt", "write", "app", "blob", "--file", path("blob")}).code, kExitOk);

  Invocation r = run({"-o", "json", "ckpt", "read", "app", "blob"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  json body = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(body.is_object()) << r.out;
  EXPECT_EQ(body["bytes"], 4);
  EXPECT_EQ(body["data"], "AAH+/w==");

  r = run({"ckpt", "info", "app", "-o", "json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  body = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(body.is_object()) << r.out;
  EXPECT_EQ(body["name"], "app");
  EXPECT_EQ(body["retentionMs"], nullptr);
  ASSERT_EQ(body["sections"].size(), 1u);
  EXPECT_EQ(body["sections"][0]["id"], "blob");
  EXPECT_EQ(body["sections"][0]["bytes"], 4);

  r = run({"-o", "yaml", "ckpt", "list"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_TRUE(contains(r.out, "checkpoints:\n  - name: app\n    sectionCount: 1\n")) << r.out;

  r = run({"-o", "json", "ckpt", "write", "app", "blob", "--data", "x", "--async"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  body = json::parse(r.out, nullptr, false);
  EXPECT_EQ(body["message"], "written: app blob (1 bytes, applied on n2)");
}

TEST_F(CheckpointVerbsTest, RefusalsInvalidInputAndUsageHaveTheirExitCodes) {
  Invocation r = run({"ckpt", "write", "none", "s", "--data", "x"});
  EXPECT_EQ(r.code, kExitRefused);
  EXPECT_EQ(r.err, "amf-admin: no checkpoint 'none'\n");

  r = run({"ckpt", "create", "bad name"});
  EXPECT_EQ(r.code, kExitDataError);
  EXPECT_TRUE(contains(r.err, "checkpoint name 'bad name' (8 bytes) is not 1 to 255 bytes")) << r.err;

  ASSERT_EQ(run({"ckpt", "create", "small", "--max-section-bytes", "4"}).code, kExitOk);
  r = run({"ckpt", "write", "small", "s", "--data", "12345"});
  EXPECT_EQ(r.code, kExitRefused);
  EXPECT_TRUE(contains(r.err, "would hold 5 bytes; the checkpoint's limit is 4 (maxSectionBytes)")) << r.err;

  r = run({"ckpt", "create", "small", "--max-section-bytes", "8"});
  EXPECT_EQ(r.code, kExitRefused);
  EXPECT_TRUE(contains(r.err, "exists with other attributes")) << r.err;

  EXPECT_EQ(run({"ckpt", "write", "small", "s"}).code, kExitUsage);
  EXPECT_EQ(run({"ckpt", "write", "small", "s", "--data", "x", "--file", path("f")}).code, kExitUsage);
  EXPECT_EQ(run({"ckpt", "create", "x", "--max-bytes", "lots"}).code, kExitUsage);
  EXPECT_EQ(run({"ckpt", "write", "small", "s", "--data", "x", "--expires-in", "soon"}).code, kExitUsage);
  EXPECT_EQ(run({"ckpt", "info"}).code, kExitUsage);
  EXPECT_EQ(run({"ckpt"}).code, kExitUsage);
  r = run({"ckpt", "write", "small", "s", "--file", path("missing")});
  EXPECT_EQ(r.code, kExitDataError);
  EXPECT_EQ(r.err, path("missing") + ": cannot be read\n");
}

TEST_F(CheckpointVerbsTest, WithoutQuorumWritesAndReadsExit69) {
  ASSERT_EQ(run({"ckpt", "create", "app"}).code, kExitOk);
  loop_.onLoop<bool>([this] {
    cluster_->network.partition({{2}, {1, 3}});
    return true;
  });
  ASSERT_TRUE(waitFor([this] { return !cluster_->members.at(2).service->quorate(); }));
  Invocation r = run({"ckpt", "write", "app", "s", "--data", "x"});
  EXPECT_EQ(r.code, kExitUnavailable);
  EXPECT_EQ(r.err, "amf-admin: no quorum: checkpoint writes need a quorate cluster\n");
  r = run({"ckpt", "list"});
  EXPECT_EQ(r.code, kExitUnavailable);
  EXPECT_TRUE(contains(r.err, "no quorum")) << r.err;
}

TEST_F(CheckpointVerbsTest, ASectionCanBeWrittenToExpire) {
  ASSERT_EQ(run({"ckpt", "create", "app"}).code, kExitOk);
  ASSERT_EQ(run({"ckpt", "write", "app", "s", "--data", "x", "--expires-in", "300ms"}).code, kExitOk);
  Invocation r = run({"ckpt", "info", "app", "-o", "json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_TRUE(json::parse(r.out)["sections"][0]["expiresMs"].is_number()) << r.out;
  EXPECT_TRUE(waitFor([this] {
    for (int id : {1, 2, 3}) {
      if (cluster_->members.at(id).service->read("app", "s").ok()) return false;
    }
    return true;
  })) << "the section did not expire everywhere";
}

}  // namespace
}  // namespace kvm_amf::cli
