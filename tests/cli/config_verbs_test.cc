// amf-admin's configuration verbs (apply, diff, delete) end to end: amf-admin talks to amfd's real
// admin service (daemon/admin_service.cc) behind a real admin server, whose node manager is one of
// three complete node managers over the simulated group and simulated hypervisors, all on a real
// event loop in a background thread. Only Corosync and libvirt are simulated.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "amf/config/config_test_util.h"
#include "cli_test_util.h"
#include "kvm_amf/admin/admin_client.h"
#include "kvm_amf/admin/admin_server.h"
#include "kvm_amf/cli/exit_codes.h"
#include "kvm_amf/cluster/sim_network.h"
#include "kvm_amf/common/event_loop.h"
#include "kvm_amf/daemon/admin_service.h"
#include "kvm_amf/vmm/sim_host.h"
#include "testing/loop_thread.h"
#include "testing/temp_dir.h"
#include "text_diff.h"

namespace kvm_amf::cli {
namespace {

using config::testing::kCluster;
using config::testing::serviceGroup;
using config::testing::unit;
using nlohmann::json;
using testing::contains;
using testing::Invocation;
using testing::lines;
using Clock = std::chrono::steady_clock;

// Far more than anything here should take, so that a slow machine does not fail a test.
constexpr std::chrono::seconds kPatience{20};

std::string web(const std::string& more = "") {
  return serviceGroup("web", "2N", "[" + unit("web-a", 1) + ", " + unit("web-b", 2) + more + "]", "[{name: web-si}]");
}
std::string cache() {
  return serviceGroup("cache", "No-Redundancy", "[" + unit("cache-1", 3) + "]", "[{name: cache-si}]");
}

class NoTruth : public vmm::SimTruthObserver {
 public:
  void onVmRunning(const std::string&, const std::string&, bool) override {}
  void onGuestHa(const std::string&, const std::string&, const std::string&, std::optional<model::HaState>) override {}
  void onGuestHung(const std::string&, const std::string&, bool) override {}
};

// Everything that lives on the loop thread: made, used and destroyed there.
struct Cluster {
  struct Host {
    std::unique_ptr<vmm::SimHost> sim;
    std::unique_ptr<cluster::SimFenceAgent> fence;
    std::unique_ptr<cluster::GroupChannel> channel;
    std::unique_ptr<node::NodeManager> manager;
  };
  explicit Cluster(EventLoop& loop)
      : network(loop, {1, 2, 3}, false, cluster::SimNetworkTiming{Duration(50), Duration(1)}) {}

  NoTruth truth;
  cluster::SimNetwork network;
  std::map<std::string, Host> hosts;
  std::unique_ptr<daemon::AdminService> service;  // n2's amfd answers
  std::unique_ptr<admin::AdminServer> server;
};

class ConfigVerbsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    write("cluster.yaml", kCluster);
    write("web.yaml", web());
    write("cache.yaml", cache());
    config::LoadResult loaded = config::loadConfigurationFiles({path("cluster.yaml"), path("web.yaml")});
    ASSERT_TRUE(loaded.ok());
    auto config = std::make_shared<const model::Configuration>(std::move(loaded.config));

    ASSERT_TRUE(loop_.ok());
    const std::string error = onLoop<std::string>([this, config] { return build(config); });
    ASSERT_EQ(error, "");
    ASSERT_TRUE(waitFor([this] { return servedGeneration(1); })) << "the cluster did not serve web";
  }

  std::string build(const std::shared_ptr<const model::Configuration>& config) {
    cluster_ = std::make_unique<Cluster>(loop_.loop());
    cluster_->service = std::make_unique<daemon::AdminService>("n2");
    const vmm::SimHostTiming timing{Duration(20), Duration(10), Duration(1)};
    for (const auto& node : config->cluster->nodes) {
      Cluster::Host& host = cluster_->hosts[node.name];
      host.sim = std::make_unique<vmm::SimHost>(node.name, loop_.loop(), timing, cluster_->truth,
                                                [](std::uint64_t) { return std::uint64_t{0}; });
      host.fence =
          std::make_unique<cluster::SimFenceAgent>(loop_.loop(), Duration(10), [](const std::string&) { return true; });
      host.channel = cluster_->network.channel(node.id);
      node::NodeManagerDeps deps{&loop_.loop(), host.channel.get(), host.fence.get(), host.sim.get(), host.sim.get()};
      if (node.name == "n2") deps.observer = cluster_->service.get();
      host.manager = std::make_unique<node::NodeManager>(node.name, deps, engine::initialState(config, 1));
    }
    admin::AdminServerOptions options;
    options.ipcPath = endpoint();
    options.eventsPath = "ipc://" + (dir_ / "events.sock").string();
    options.logger = [](const std::string&) {};
    auto server = admin::AdminServer::create(loop_.loop(), options, *cluster_->service);
    if (!server.ok()) return server.error().message;
    cluster_->server = std::move(server).value();
    cluster_->service->attach(cluster_->hosts.at("n2").manager.get(), cluster_->server.get());
    for (auto& [name, host] : cluster_->hosts) {
      if (Status started = host.manager->start(); !started.ok()) return started.error().message;
    }
    return "";
  }

  void TearDown() override {
    if (!loop_.ok()) return;
    onLoop<bool>([this] {
      if (cluster_) cluster_->server.reset();
      cluster_.reset();
      return true;
    });
  }

  template <typename T>
  T onLoop(std::function<T()> fn) {
    return loop_.onLoop<T>(std::move(fn));
  }

  // Checks `done` on the loop thread until it holds or kPatience passes.
  bool waitFor(const std::function<bool()>& done) {
    const auto end = Clock::now() + kPatience;
    while (Clock::now() < end) {
      if (onLoop<bool>(done)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  // Loop thread: every node manager is synchronised at `generation`, every SI is held active.
  bool servedGeneration(std::uint64_t generation) {
    for (auto& [name, host] : cluster_->hosts) {
      const engine::ClusterState* state = host.manager->state();
      if (state == nullptr || state->generation != generation) return false;
      for (const auto& [si, runtime] : state->sis) {
        bool active = false;
        for (const auto& a : runtime.assignments) active = active || (a.ha == model::HaState::kActive && a.acked);
        if (!active) return false;
      }
    }
    return true;
  }

  std::uint64_t generation() {
    return onLoop<std::uint64_t>([this] { return cluster_->hosts.at("n1").manager->state()->generation; });
  }
  std::uint64_t requestsServed() {
    return onLoop<std::uint64_t>([this] { return cluster_->server->stats().requests; });
  }

  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string endpoint() const { return "ipc://" + (dir_ / "admin.sock").string(); }

  // amf-admin --endpoint (n2's amfd) ARGS...
  Invocation run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--endpoint", endpoint()});
    return testing::admin(args);
  }

  kvm_amf::testing::TempDir dir_{"kvm-amf-config-verbs"};
  kvm_amf::testing::LoopThread loop_;
  std::unique_ptr<Cluster> cluster_;  // loop thread only
};

TEST_F(ConfigVerbsTest, ApplyAddsAServiceGroupAndSaysWhatChanged) {
  Invocation r = run({"apply", "-f", path("cache.yaml")});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "applied: generation 2 (sg/cache added)\n");
  EXPECT_EQ(r.err, "");
  EXPECT_TRUE(waitFor([this] { return servedGeneration(2); })) << "cache-si is not served everywhere";

  // The same documents again change nothing.
  r = run({"apply", "-f", path("cache.yaml"), "-f", path("web.yaml")});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "unchanged: generation 2 (the documents are what runs)\n");
  EXPECT_EQ(generation(), 2u);
}

TEST_F(ConfigVerbsTest, ApplyJsonIsTheMachineForm) {
  Invocation r = run({"-o", "json", "apply", "-f", path("cache.yaml")});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const json body = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(body.is_object()) << r.out;
  EXPECT_EQ(body["outcome"], "applied");
  EXPECT_EQ(body["generation"], 2);
  ASSERT_EQ(body["changes"].size(), 1u);
  EXPECT_EQ(body["changes"][0]["object"], "sg/cache");
  EXPECT_EQ(body["changes"][0]["change"], "added");
  EXPECT_EQ(body["changes"][0]["before"], "");
  EXPECT_TRUE(contains(body["changes"][0]["after"].get<std::string>(), "kind: ServiceGroup\n"));
  EXPECT_EQ(body["errors"], json::array());
  EXPECT_EQ(body["problems"], json::array());
}

TEST_F(ConfigVerbsTest, DiffExitsZeroWhenEqualAndOneWithAUnifiedDiffOfEachDocument) {
  Invocation same = run({"diff", "-f", path("web.yaml")});
  EXPECT_EQ(same.code, kExitOk) << same.err;
  EXPECT_EQ(same.out, "");

  write("web-c.yaml", web(", " + unit("web-c", 5)));
  Invocation r = run({"diff", "-f", path("web-c.yaml"), "-f", path("cache.yaml")});
  EXPECT_EQ(r.code, kExitRefused) << r.err;
  EXPECT_EQ(r.err, "");
  const std::vector<std::string> out = lines(r.out);
  ASSERT_GE(out.size(), 4u) << r.out;
  EXPECT_EQ(out[0], "--- sg/cache (not in generation 1)");
  EXPECT_EQ(out[1], "+++ sg/cache (applied)");
  EXPECT_EQ(out[2].substr(0, 10), "@@ -0,0 +1") << out[2];
  EXPECT_TRUE(contains(r.out, "\n--- sg/web (generation 1)\n+++ sg/web (applied)\n@@ -")) << r.out;
  EXPECT_TRUE(contains(r.out, "\n+    - name: web-c\n")) << r.out;
  for (const auto& line : out) EXPECT_TRUE(!line.starts_with("-") || line.starts_with("--- ")) << "removed: " << line;
  EXPECT_EQ(generation(), 1u);
}

TEST_F(ConfigVerbsTest, DryRunShowsWhatWouldChangeAndChangesNothing) {
  Invocation r = run({"apply", "--dry-run", "-f", path("cache.yaml")});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const std::vector<std::string> out = lines(r.out);
  ASSERT_GE(out.size(), 3u) << r.out;
  EXPECT_EQ(out[0], "dry run: generation 1 would become 2 (sg/cache added); nothing changed");
  EXPECT_EQ(out[1], "--- sg/cache (not in generation 1)");
  EXPECT_EQ(generation(), 1u);
}

TEST_F(ConfigVerbsTest, InvalidDocumentsExit65WithEveryErrorAtItsFileLineAndColumn) {
  write("bad.yaml",
        "apiVersion: kvm-amf/v1\nkind: ServiceGroup\nmetadata: {name: cache}\nspec:\n  failback: maybe\n"
        "  redundancy: {model: 3N}\n  units: [" +
            unit("cache-1", 3) + ", " + unit("cache-2", 4) + "]\n  serviceInstances: [{name: cache-si}]\n");
  for (const char* verb : {"apply", "diff"}) {
    Invocation r = run({verb, "-f", path("bad.yaml")});
    EXPECT_EQ(r.code, kExitDataError) << verb << ": " << r.err;
    const std::vector<std::string> err = lines(r.err);
    ASSERT_EQ(err.size(), 3u) << r.err;
    EXPECT_TRUE(err[0].starts_with(path("bad.yaml") + ":5:13: ")) << err[0];
    EXPECT_TRUE(err[1].starts_with(path("bad.yaml") + ":6:23: ")) << err[1];
    EXPECT_EQ(err[2], "2 errors; nothing changed");
    EXPECT_EQ(r.out, "");
  }
  EXPECT_EQ(generation(), 1u);
}

TEST_F(ConfigVerbsTest, YamlThatDoesNotParseExits65AtItsLineAndColumn) {
  write("broken.yaml", "apiVersion: kvm-amf/v1\nkind: ServiceGroup\nmetadata: {name: [cache\n");
  Invocation r = run({"apply", "-f", path("cache.yaml"), "-f", path("broken.yaml")});
  EXPECT_EQ(r.code, kExitDataError) << r.err;
  const std::vector<std::string> err = lines(r.err);
  ASSERT_EQ(err.size(), 2u) << r.err;
  EXPECT_TRUE(err[0].starts_with(path("broken.yaml") + ":4:1: ")) << err[0];
  EXPECT_EQ(err[1], "1 error; nothing changed");
  EXPECT_EQ(generation(), 1u);
}

TEST_F(ConfigVerbsTest, WithoutQuorumApplyAndDeleteExit69AndDiffAnswersFromThisHostsCopy) {
  onLoop<bool>([this] {
    cluster_->network.partition({{2}, {1, 3}});
    return true;
  });
  ASSERT_TRUE(waitFor([this] { return !cluster_->hosts.at("n2").manager->view().quorate; }));
  Invocation r = run({"apply", "-f", path("cache.yaml")});
  EXPECT_EQ(r.code, kExitUnavailable) << r.err;
  EXPECT_EQ(r.err, "amf-admin: amfd on n2 has no quorate cluster to send the change to\n");
  EXPECT_EQ(run({"delete", "sg/web"}).code, kExitUnavailable);
  EXPECT_EQ(run({"apply", "--dry-run", "-f", path("cache.yaml")}).code, kExitUnavailable);
  EXPECT_EQ(run({"diff", "-f", path("cache.yaml")}).code, kExitRefused);  // this host's copy, as `status` shows it
}

TEST_F(ConfigVerbsTest, AnErrorTheChangeCausesInTheRunningConfigurationIsReportedThere) {
  std::string cluster = kCluster;
  cluster.erase(cluster.find("  nodeGroups:"));
  write("app.yaml",
        serviceGroup("app", "No-Redundancy", "[" + unit("app-1", 4) + "]", "[{name: app-si}]", "  nodeGroup: g12\n"));
  ASSERT_EQ(run({"apply", "-f", path("app.yaml")}).code, kExitOk);
  write("cluster.yaml", cluster);
  Invocation r = run({"apply", "-f", path("cluster.yaml")});
  EXPECT_EQ(r.code, kExitDataError) << r.err;
  EXPECT_TRUE(contains(r.err, "(running configuration):")) << r.err;
  EXPECT_TRUE(contains(r.err, "no node group named 'g12'")) << r.err;
}

TEST_F(ConfigVerbsTest, ARefusedChangeExits1WithEachProblemNamingItsObject) {
  Invocation r = run({"delete", "sg/web"});
  EXPECT_EQ(r.code, kExitRefused) << r.err;
  EXPECT_EQ(r.out, "");
  const std::vector<std::string> err = lines(r.err);
  ASSERT_EQ(err.size(), 3u) << r.err;
  EXPECT_TRUE(err[0].starts_with("amf-admin: su/web-a is instantiated on n")) << err[0];
  EXPECT_TRUE(contains(err[0], "lock su/web-a (or sg/web), then lock-in it")) << err[0];
  EXPECT_TRUE(err[1].starts_with("amf-admin: su/web-b is instantiated on n")) << err[1];
  EXPECT_TRUE(err[2].starts_with("amf-admin: si/web-si has assignments")) << err[2];

  r = run({"apply", "--generation", "5", "-f", path("cache.yaml")});
  EXPECT_EQ(r.code, kExitRefused);
  EXPECT_EQ(r.err, "amf-admin: the configuration is at generation 1, not 5; diff again\n");
  EXPECT_EQ(generation(), 1u);
}

TEST_F(ConfigVerbsTest, DeleteRemovesAServiceGroupOnceItIsLockedForInstantiation) {
  ASSERT_EQ(run({"apply", "--generation", "1", "-f", path("cache.yaml")}).code, kExitOk);
  ASSERT_TRUE(waitFor([this] { return servedGeneration(2); }));
  EXPECT_EQ(run({"lock", "sg/cache"}).code, kExitOk);
  EXPECT_EQ(run({"lock-in", "sg/cache"}).code, kExitOk);
  ASSERT_TRUE(waitFor([this] {
    const engine::ClusterState* s = cluster_->hosts.at("n2").manager->state();
    return s && engine::suPresence(*s, s->sus.at("cache-1")) == model::PresenceState::kUninstantiated &&
           s->sus.at("cache-1").node.empty();
  }));
  Invocation r = run({"delete", "sg/cache"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "deleted: generation 3 (sg/cache removed)\n");
  EXPECT_TRUE(waitFor([this] { return servedGeneration(3); }));

  r = run({"delete", "sg/cache"});
  EXPECT_EQ(r.code, kExitRefused);
  EXPECT_EQ(r.err, "amf-admin: no sg/cache in the configuration\n");
}

TEST_F(ConfigVerbsTest, AConfigEventIsPublishedWhenTheGenerationChanges) {
  auto client = admin::AdminClient::connect(endpoint());
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE(client.value()->subscribe("ipc://" + (dir_ / "events.sock").string()).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the subscription reaches the server
  ASSERT_EQ(run({"apply", "-f", path("cache.yaml")}).code, kExitOk);
  std::optional<admin::proto::Event> config;
  const auto end = Clock::now() + kPatience;
  while (!config && Clock::now() < end) {
    auto event = client.value()->nextEvent(Duration(1000));
    ASSERT_TRUE(event.ok());
    if (event.value() && event.value()->type() == "config") config = *event.value();
  }
  ASSERT_TRUE(config) << "no config event";
  EXPECT_EQ(config->text(), "configuration generation 2: sg/cache added");
  EXPECT_EQ(json::parse(config->json()),
            json::parse(R"({"generation": 2, "changes": [{"object": "sg/cache", "change": "added"}]})"));
}

TEST_F(ConfigVerbsTest, BadArgumentsAreUsageErrorsAndAmfdIsNotAsked) {
  const std::uint64_t before = requestsServed();
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"apply"},
           {"apply", "-f"},
           {"apply", "--generation", "abc", "-f", path("cache.yaml")},
           {"apply", "--generation", "0", "-f", path("cache.yaml")},
           {"apply", "--generation", "-3", "-f", path("cache.yaml")},
           {"diff"},
           {"delete"},
           {"delete", "su/web-a"},
           {"delete", "node/n1"},
           {"delete", "web"},
           {"delete", "sg/Not_A_Name"},
           {"apply", "--what", "-f", path("cache.yaml")},
       }) {
    std::string words;
    for (const auto& arg : args) words += arg + " ";
    Invocation r = run(args);
    EXPECT_EQ(r.code, kExitUsage) << words << "\n" << r.err;
    EXPECT_NE(r.err, "") << words;
  }
  EXPECT_EQ(requestsServed(), before);
}

TEST_F(ConfigVerbsTest, AFileThatCannotBeReadExits65AndAmfdIsNotAsked) {
  const std::uint64_t before = requestsServed();
  Invocation r = run({"apply", "-f", path("cache.yaml"), "-f", path("missing.yaml"), "-f", dir_.path().string()});
  EXPECT_EQ(r.code, kExitDataError);
  EXPECT_EQ(r.err, path("missing.yaml") + ": cannot be read\n" + dir_.path().string() +
                       ": cannot be read\n2 errors; nothing changed\n");
  EXPECT_EQ(run({"diff", "-f", path("missing.yaml")}).code, kExitDataError);
  EXPECT_EQ(requestsServed(), before);
}

TEST_F(ConfigVerbsTest, WithoutAmfdEveryVerbExits69) {
  const std::string nowhere = "ipc://" + (dir_ / "nobody" / "admin.sock").string();
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"apply", "-f", path("cache.yaml")}, {"diff", "-f", path("cache.yaml")}, {"delete", "sg/web"}}) {
    std::vector<std::string> all = {"--endpoint", nowhere};
    all.insert(all.end(), args.begin(), args.end());
    Invocation r = testing::admin(all);
    EXPECT_EQ(r.code, kExitUnavailable) << args[0] << ": " << r.err;
    EXPECT_TRUE(contains(r.err, "no amfd at " + nowhere)) << r.err;
  }
}

// ---- The unified diff the verbs print --------------------------------------------------------------

std::string numbered(int from, int to, int changed = 0) {
  std::string text;
  for (int i = from; i <= to; ++i) text += (i == changed ? "changed " : "line ") + std::to_string(i) + "\n";
  return text;
}

TEST(UnifiedDiff, IsEmptyForEqualTexts) {
  EXPECT_EQ(unifiedDiff("", ""), "");
  EXPECT_EQ(unifiedDiff(numbered(1, 20), numbered(1, 20)), "");
}

TEST(UnifiedDiff, ShowsAChangeWithThreeLinesAround) {
  EXPECT_EQ(unifiedDiff(numbered(1, 10), numbered(1, 10, 5)),
            "@@ -2,7 +2,7 @@\n line 2\n line 3\n line 4\n-line 5\n+changed 5\n line 6\n line 7\n line 8\n");
  EXPECT_EQ(unifiedDiff(numbered(1, 3), numbered(1, 3, 1), 0), "@@ -1,1 +1,1 @@\n-line 1\n+changed 1\n");
}

TEST(UnifiedDiff, SeparatesDistantChangesAndJoinsCloseOnes) {
  std::string twice = numbered(1, 30, 3);
  twice.replace(twice.find("line 25\n"), 8, "changed 25\n");
  const std::string far = unifiedDiff(numbered(1, 30), twice);
  EXPECT_NE(far.find("@@ -1,6 +1,6 @@\n"), std::string::npos) << far;
  EXPECT_NE(far.find("@@ -22,7 +22,7 @@\n"), std::string::npos) << far;

  std::string close = numbered(1, 30, 3);
  close.replace(close.find("line 9\n"), 7, "changed 9\n");  // 5 unchanged lines between: one hunk
  const std::string one = unifiedDiff(numbered(1, 30), close);
  EXPECT_TRUE(one.starts_with("@@ -1,12 +1,12 @@\n")) << one;
  EXPECT_EQ(one.find("\n@@"), std::string::npos) << one;
}

TEST(UnifiedDiff, ShowsWholeTextsAddedOrRemovedAndLastLinesWithoutNewline) {
  EXPECT_EQ(unifiedDiff("", "a\nb\n"), "@@ -0,0 +1,2 @@\n+a\n+b\n");
  EXPECT_EQ(unifiedDiff("a\nb\n", ""), "@@ -1,2 +0,0 @@\n-a\n-b\n");
  EXPECT_EQ(unifiedDiff("a\nb", "a\nc"), "@@ -1,2 +1,2 @@\n a\n-b\n+c\n");
  EXPECT_EQ(unifiedDiff("a\nx\nb\n", "a\nb\ny\n"), "@@ -1,3 +1,3 @@\n a\n-x\n b\n+y\n");
}

}  // namespace
}  // namespace kvm_amf::cli
