// amf-admin's cluster verbs (status, get, the admin and VM operations, events) against a real
// admin server: an AdminServer on an EventLoop running in a background thread, with a fake amfd
// that answers `status` with a document engine::statusDocument made from the example
// configuration, records the commands it gets and answers them as each test says.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli_test_util.h"
#include "kvm_amf/admin/admin_server.h"
#include "kvm_amf/amf/config/loader.h"
#include "kvm_amf/amf/engine/status.h"
#include "kvm_amf/cli/admin_cli.h"
#include "kvm_amf/cli/exit_codes.h"
#include "kvm_amf/cli/yaml_emitter.h"
#include "kvm_amf/common/event_loop.h"
#include "testing/loop_thread.h"
#include "testing/temp_dir.h"

namespace kvm_amf::cli {
namespace {

using admin::proto::Reply;
using admin::proto::Request;
using nlohmann::json;
using testing::admin;
using testing::contains;
using testing::example;
using testing::Invocation;
using testing::lines;
using Clock = std::chrono::steady_clock;

// The first line that starts with `prefix`; empty if none.
std::string lineStarting(const std::string& text, const std::string& prefix) {
  for (const auto& line : lines(text)) {
    if (line.starts_with(prefix)) return line;
  }
  return "";
}

std::chrono::milliseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

// The example cluster in a running state: node1 and node2 up (node1 directs), node3 lost with a
// failing fence agent; mme's pair placed (the standby not yet confirmed), lb on two of its three
// hosts with a crashed VM, sgw-1 locked, sgw-2's VM stopped by an operator, oam and sgw unassigned.
json exampleStatus() {
  config::LoadResult loaded =
      config::loadConfigurationFiles({example("cluster.yaml"), example("sg-mme.yaml"), example("sg-sgw.yaml"),
                                      example("sg-lb.yaml"), example("sg-oam.yaml")});
  EXPECT_TRUE(loaded.ok());
  auto config = std::make_shared<const model::Configuration>(std::move(loaded.config));
  engine::ClusterState s = engine::initialState(config, 1);
  s.decisions = 42;
  s.nodes["node1"].status = engine::NodeStatus::kUp;
  s.nodes["node2"].status = engine::NodeStatus::kUp;
  s.nodes["node3"].status = engine::NodeStatus::kLost;
  s.nodes["node3"].oper = model::OperState::kDisabled;
  s.nodes["node3"].alarm = "fence agent failed: exit 1";
  auto place = [&](const std::string& su, const std::string& vm, const std::string& node) {
    s.sus[su].node = node;
    s.vms[vm].node = node;
    s.vms[vm].presence = model::PresenceState::kInstantiated;
  };
  place("mme-a", "mme-a-vm", "node1");
  place("mme-b", "mme-b-vm", "node2");
  place("lb-1", "lb-1-vm", "node1");
  place("lb-2", "lb-2-vm", "node2");
  s.vms["lb-2-vm"].failure = engine::FailureKind::kCrash;
  s.sus["sgw-1"].admin = model::AdminState::kLocked;
  s.vms["sgw-2-vm"].hold = engine::VmHold::kStopped;
  s.sis["mme-si"].assignments = {{"mme-a", model::HaState::kActive, true}, {"mme-b", model::HaState::kStandby, false}};
  s.sis["lb-si"].assignments = {{"lb-1", model::HaState::kActive, true}, {"lb-2", model::HaState::kActive, true}};

  engine::View view;
  view.self = s.nodes["node2"].id;
  view.group = {s.nodes["node1"].id, s.nodes["node2"].id};
  view.hosts = view.group;
  view.quorate = true;
  view.clusterSize = 3;
  json document = engine::statusDocument(s, view);
  document["node"] = "node2";  // what amfd adds
  document["synced"] = true;
  return document;
}

// amfd as far as amf-admin can tell: `status` answers the document, commands are recorded and
// answered with the code set (or not at all). Runs on the loop thread; the test reads and sets it
// under its lock.
class FakeAmfd : public admin::AdminHandler {
 public:
  explicit FakeAmfd(json document) : document_(std::move(document)) {}

  void onRequest(const Request& request, const admin::Peer&, std::function<void(Reply)> reply) override {
    std::lock_guard lock(mutex_);
    requests_.push_back(request);
    Reply answer;
    if (request.has_query()) {
      answer.set_code(statusCode_);
      if (statusCode_ == Reply::OK) {
        answer.set_body(document_.dump());
      } else {
        answer.set_message("amfd on node2 is not synchronised with the cluster yet (no quorate group)");
      }
    } else {
      if (silent_) return;  // the client times out
      answer.set_code(commandCode_);
      answer.set_message("amfd says " + Reply::Code_Name(commandCode_) + " to '" + request.command().words() + "'");
    }
    reply(answer);
  }

  void answerCommands(Reply::Code code) {
    std::lock_guard lock(mutex_);
    commandCode_ = code;
  }
  void answerStatus(Reply::Code code) {
    std::lock_guard lock(mutex_);
    statusCode_ = code;
  }
  void beSilent() {
    std::lock_guard lock(mutex_);
    silent_ = true;
  }
  std::vector<Request> requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }
  // The words of every command received, in order.
  std::vector<std::string> commands() {
    std::vector<std::string> words;
    for (const auto& request : requests()) {
      if (request.has_command()) words.push_back(request.command().words());
    }
    return words;
  }

 private:
  const json document_;
  std::mutex mutex_;
  std::vector<Request> requests_;
  Reply::Code commandCode_ = Reply::OK;
  Reply::Code statusCode_ = Reply::OK;
  bool silent_ = false;
};

class AdminClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    ASSERT_TRUE(loop_.ok());
    // The server lives on the loop's thread: made, used and destroyed there.
    admin::AdminServerOptions options;
    options.ipcPath = endpoint();
    options.eventsPath = eventsEndpoint();
    options.logger = [](const std::string&) {};
    std::string error = onLoop<std::string>([this, options] {
      auto server = admin::AdminServer::create(loop_.loop(), options, amfd_);
      if (!server.ok()) return server.error().message;
      server_ = std::move(server).value();
      return std::string();
    });
    ASSERT_EQ(error, "");
  }

  void TearDown() override {
    if (!loop_.ok()) return;
    onLoop<bool>([this] {
      server_.reset();
      return true;
    });
  }

  template <typename T>
  T onLoop(std::function<T()> fn) {
    return loop_.onLoop<T>(std::move(fn));
  }

  std::string endpoint() const { return "ipc://" + (dir_ / "admin.sock").string(); }
  std::string eventsEndpoint() const { return "ipc://" + (dir_ / "events.sock").string(); }

  // amf-admin --endpoint (this server) ARGS...
  Invocation run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--endpoint", endpoint()});
    return admin(args);
  }

  // Publishes `events` on the loop `delay` from now.
  void publishLater(Duration delay, std::vector<admin::proto::Event> events) {
    loop_.loop().post([this, delay, events] {
      loop_.loop().after(delay, [this, events] {
        for (const auto& event : events) server_->publish(event);
      });
    });
  }

  const json document_ = exampleStatus();
  kvm_amf::testing::TempDir dir_{"kvm-amf-cli-cluster"};
  FakeAmfd amfd_{document_};
  kvm_amf::testing::LoopThread loop_;
  std::unique_ptr<admin::AdminServer> server_;  // loop thread only
};

// --- status

TEST_F(AdminClusterTest, StatusShowsQuorumProblemsFirstHostsAndUnits) {
  Invocation r = run({"status"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.err, "");
  const std::string& out = r.out;
  std::vector<std::string> all = lines(out);
  ASSERT_GE(all.size(), 2u);
  EXPECT_EQ(all[0], "Cluster: quorate, director node1; answered by amfd on node2");
  EXPECT_EQ(all[1], "Hosts: 2 of 3 members, amfd on 2; configuration generation 1, 42 decisions");

  // Problems come before everything else, as the document lists them.
  const auto problems = out.find("\nPROBLEMS\n");
  const auto hosts = out.find("\nHOSTS\n");
  const auto mme = out.find("\nSG mme (2N)\n");
  const auto sis = out.find("\nSIS\n");
  ASSERT_NE(problems, std::string::npos) << out;
  ASSERT_NE(hosts, std::string::npos) << out;
  ASSERT_NE(mme, std::string::npos) << out;
  ASSERT_NE(sis, std::string::npos) << out;
  EXPECT_LT(problems, hosts);
  EXPECT_LT(hosts, mme);
  EXPECT_LT(mme, sis);
  for (const auto& problem : document_["problems"]) {
    const auto at = out.find("  " + problem.get<std::string>() + "\n");
    EXPECT_NE(at, std::string::npos) << problem;
    EXPECT_LT(at, hosts) << problem;
  }
  EXPECT_TRUE(contains(out, "  node/node3 is lost: fence agent failed: exit 1\n")) << out;
  EXPECT_TRUE(contains(out, "  si/oam-si is not served: no active assignment\n")) << out;
  EXPECT_TRUE(contains(out, "  vm/lb-2-vm failed (crash), recovery pending\n")) << out;
  EXPECT_TRUE(
      contains(out, "  vm/sgw-2-vm is stopped by an operator: su/sgw-2 is out of service (vm start vm/sgw-2-vm)\n"))
      << out;

  // Hosts: membership, amfd, status, and their states only when unusual.
  EXPECT_EQ(lineStarting(out, "  NODE"), "  NODE   ID  MEMBER  AMFD  STATUS  STATE");
  EXPECT_EQ(lineStarting(out, "  node1 "), "  node1  1   yes     yes   up      -");
  EXPECT_EQ(lineStarting(out, "  node3 "), "  node3  3   no      no    lost    disabled");

  // Units per service group, with host, states and HA state per SI.
  EXPECT_TRUE(contains(out, "\nSG lb (N-Way-Active)\n")) << out;
  EXPECT_TRUE(contains(out, "\nSG oam (No-Redundancy)\n")) << out;
  EXPECT_TRUE(contains(out, "\nSG sgw (N+M)\n")) << out;
  EXPECT_EQ(lineStarting(out.substr(mme), "  SU "), "  SU     HOST   ADMIN     OPER     PRESENCE      READINESS   HA");
  EXPECT_EQ(lineStarting(out, "  mme-a "),
            "  mme-a  node1  unlocked  enabled  instantiated  in-service  mme-si=active");
  EXPECT_EQ(lineStarting(out, "  mme-b "),
            "  mme-b  node2  unlocked  enabled  instantiated  in-service  mme-si=standby");
  const std::string lb3 = lineStarting(out, "  lb-3 ");
  EXPECT_EQ(lb3, "  lb-3  -      unlocked  enabled  uninstantiated  out-of-service  -");
  EXPECT_TRUE(contains(lineStarting(out, "  sgw-1 "), " locked ")) << out;

  // SIs with their assignments; an assignment not yet confirmed says so.
  EXPECT_TRUE(contains(lineStarting(out, "  mme-si "), "mme-a=active, mme-b=standby (unconfirmed)")) << out;
  EXPECT_TRUE(contains(lineStarting(out, "  lb-si "), "lb-1=active, lb-2=active")) << out;
  EXPECT_TRUE(lineStarting(out, "  oam-si ").ends_with("unlocked  -")) << out;

  // Last, the VMs an operator paused or stopped, and only those.
  const auto held = out.find("\nVMS HELD BY AN OPERATOR\n");
  ASSERT_NE(held, std::string::npos) << out;
  EXPECT_LT(sis, held);
  EXPECT_EQ(lineStarting(out.substr(held), "  VM "), "  VM        SU     HOST  PRESENCE        ADMIN");
  EXPECT_EQ(lineStarting(out.substr(held), "  sgw-2-vm "), "  sgw-2-vm  sgw-2  -     uninstantiated  stopped");
  EXPECT_EQ(lines(out.substr(held + 1)).size(), 3u) << out;

  std::vector<Request> requests = amfd_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_TRUE(requests[0].has_query());
  EXPECT_EQ(requests[0].query().what(), "status");
}

TEST_F(AdminClusterTest, StatusJsonIsTheDocumentAsReceived) {
  Invocation r = run({"status", "-o", "json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  json printed = json::parse(r.out, nullptr, false);
  ASSERT_FALSE(printed.is_discarded()) << r.out;
  EXPECT_EQ(printed, document_);
  EXPECT_TRUE(contains(r.out, "\n  \"quorate\": true,\n")) << "pretty-printed";
}

TEST_F(AdminClusterTest, StatusYamlHoldsTheDocument) {
  Invocation r = run({"-o", "yaml", "status"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const std::string& out = r.out;
  // amfd sends its keys sorted (nlohmann::json); they are printed in the order received. The
  // digest starts with a digit, so it is quoted.
  EXPECT_TRUE(
      out.starts_with("configDigest: \"") &&
      out.find("\"\ndecisions: 42\ndirector: node1\ngeneration: 1\nnode: node2\nnodes:\n  - admin: unlocked\n") ==
          std::string("configDigest: \"01234567").size())
      << out;
  for (const char* line :
       {"quorate: true", "synced: true", "    name: node1", "    member: true", "    alarm: \"\"",
        "    alarm: \"fence agent failed: exit 1\"", "    model: \"2N\"", "    model: N+M", "    name: mme-a",
        "    node: null", "    ha: {}", "    ha:", "      mme-si: active", "      - acked: false", "        su: mme-b",
        "problems:", "  - \"si/oam-si is not served: no active assignment\""}) {
    EXPECT_NE(out.find(std::string("\n") + line + "\n"), std::string::npos) << line << "\n" << out;
  }
}

TEST_F(AdminClusterTest, StatusOfAnAmfdNotSynchronisedExits69) {
  amfd_.answerStatus(Reply::UNAVAILABLE);
  Invocation r = run({"status"});
  EXPECT_EQ(r.code, kExitUnavailable);
  EXPECT_EQ(r.err, "amf-admin: amfd on node2 is not synchronised with the cluster yet (no quorate group)\n");
  EXPECT_EQ(r.out, "");
}

// --- get

TEST_F(AdminClusterTest, GetListsOneKind) {
  Invocation r = run({"get", "sus"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  std::vector<std::string> rows = lines(r.out);
  ASSERT_EQ(rows.size(), document_["sus"].size() + 1) << r.out;
  EXPECT_EQ(rows[0].substr(0, 4), "NAME");
  EXPECT_TRUE(contains(rows[0], "SG") && contains(rows[0], "HOST") && contains(rows[0], "HA")) << rows[0];
  EXPECT_TRUE(contains(lineStarting(r.out, "mme-a "), "mme-si=active")) << r.out;

  // Singular and plural name the same kind; each kind has its table.
  EXPECT_EQ(run({"get", "su"}).out, r.out);
  for (const char* kind : {"nodes", "sgs", "sis", "vms"}) {
    Invocation k = run({"get", kind});
    ASSERT_EQ(k.code, kExitOk) << kind << k.err;
    EXPECT_EQ(lines(k.out).size(), document_[kind].size() + 1) << k.out;
  }
  EXPECT_TRUE(contains(lineStarting(run({"get", "vm"}).out, "lb-2-vm "), "crash"));
  const std::string vms = run({"get", "vms"}).out;
  EXPECT_TRUE(lines(vms)[0].ends_with("  FAILURE  ADMIN")) << vms;
  EXPECT_TRUE(lineStarting(vms, "sgw-2-vm ").ends_with("  stopped")) << vms;
  EXPECT_TRUE(lineStarting(vms, "mme-a-vm ").ends_with("  -")) << vms;

  Invocation machine = run({"get", "sis", "-o", "json"});
  ASSERT_EQ(machine.code, kExitOk) << machine.err;
  EXPECT_EQ(json::parse(machine.out), document_["sis"]);
}

TEST_F(AdminClusterTest, GetOneObject) {
  Invocation r = run({"get", "su", "mme-b"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  ASSERT_EQ(lines(r.out).size(), 2u) << r.out;
  EXPECT_TRUE(lines(r.out)[1].starts_with("mme-b  mme  ")) << r.out;

  json expected;
  for (const auto& su : document_["sus"]) {
    if (su["name"] == "mme-b") expected = su;
  }
  Invocation machine = run({"-o", "json", "get", "sus", "mme-b"});
  ASSERT_EQ(machine.code, kExitOk) << machine.err;
  EXPECT_EQ(json::parse(machine.out), expected);

  Invocation yaml = run({"get", "node", "node3", "-o", "yaml"});
  ASSERT_EQ(yaml.code, kExitOk) << yaml.err;
  EXPECT_TRUE(yaml.out.starts_with("admin: unlocked\n")) << yaml.out;
  EXPECT_TRUE(contains(yaml.out, "\nname: node3\n")) << yaml.out;
  EXPECT_TRUE(contains(yaml.out, "\nstatus: lost\n")) << yaml.out;
}

TEST_F(AdminClusterTest, GetAnUnknownNameExits1) {
  Invocation r = run({"get", "su", "nosuch"});
  EXPECT_EQ(r.code, kExitRefused);
  EXPECT_EQ(r.err, "amf-admin: no su/nosuch\n");
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(run({"get", "nodes", "node9"}).err, "amf-admin: no node/node9\n");
}

TEST_F(AdminClusterTest, GetAnUnknownKindIsAUsageError) {
  Invocation r = run({"get", "widgets"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_TRUE(contains(r.err, "unknown kind 'widgets'")) << r.err;
  EXPECT_EQ(run({"get"}).code, kExitUsage);
  EXPECT_TRUE(amfd_.requests().empty());
}

// --- admin and VM operations

TEST_F(AdminClusterTest, EachOperationSendsItsCanonicalWords) {
  struct Case {
    std::vector<std::string> args;
    std::string words;
  };
  const std::vector<Case> cases = {
      {{"lock", "su/mme-a"}, "lock su/mme-a"},
      {{"unlock", "node/node2"}, "unlock node/node2"},
      {{"lock-in", "sg/mme"}, "lock-in sg/mme"},
      {{"unlock-in", "ng/core"}, "unlock-in ng/core"},
      {{"shutdown", "si/mme-si"}, "shutdown si/mme-si"},
      {{"restart", "vm/mme-a-vm"}, "restart vm/mme-a-vm"},
      {{"repaired", "node/node3"}, "repaired node/node3"},
      {{"si-swap", "si/mme-si"}, "si-swap si/mme-si"},
      {{"sg-adjust", "sg/sgw"}, "sg-adjust sg/sgw"},
      {{"vm", "start", "vm/oam-vm"}, "vm start vm/oam-vm"},
      {{"vm", "shutdown", "vm/oam-vm"}, "vm shutdown vm/oam-vm"},
      {{"vm", "destroy", "vm/oam-vm"}, "vm destroy vm/oam-vm"},
      {{"vm", "pause", "vm/oam-vm"}, "vm pause vm/oam-vm"},
      {{"vm", "resume", "vm/oam-vm"}, "vm resume vm/oam-vm"},
      {{"vm", "suspend", "vm/oam-vm"}, "vm suspend vm/oam-vm"},
      {{"vm", "reboot", "vm/oam-vm"}, "vm reboot vm/oam-vm"},
      {{"vm", "reset", "vm/oam-vm"}, "vm reset vm/oam-vm"},
      {{"migrate", "su/mme-a", "--to", "node/node3"}, "migrate su/mme-a --to node/node3"},
      // Options in any order, durations written canonically; --timeout after migrate is the migration's.
      {{"migrate", "--timeout", "90s", "su/mme-a", "--max-downtime", "0.2s", "--to", "node/node3"},
       "migrate su/mme-a --to node/node3 --max-downtime 200ms --timeout 90s"},
      {{"lock", "su/mme-a", "--timeout", "5s"}, "lock su/mme-a"},
  };
  std::vector<std::string> expected;
  for (const Case& c : cases) {
    Invocation r = run(c.args);
    EXPECT_EQ(r.code, kExitOk) << c.words << ": " << r.err;
    EXPECT_EQ(r.out, "amfd says OK to '" + c.words + "'\n");
    EXPECT_EQ(r.err, "");
    expected.push_back(c.words);
  }
  EXPECT_EQ(amfd_.commands(), expected);
}

TEST_F(AdminClusterTest, ReplyCodesMapToExitCodes) {
  const std::vector<std::pair<Reply::Code, int>> cases = {
      {Reply::OK, kExitOk},
      {Reply::REFUSED, kExitRefused},
      {Reply::INVALID, kExitDataError},
      {Reply::UNAVAILABLE, kExitUnavailable},
      {Reply::TIMEOUT, kExitTimeout},
      {Reply::DIFFERENT, kExitRefused},
  };
  for (const auto& [code, exit] : cases) {
    amfd_.answerCommands(code);
    Invocation r = run({"si-swap", "si/mme-si"});
    EXPECT_EQ(r.code, exit) << Reply::Code_Name(code);
    const std::string message = "amfd says " + Reply::Code_Name(code) + " to 'si-swap si/mme-si'\n";
    if (code == Reply::OK) {
      EXPECT_EQ(r.out, message);
      EXPECT_EQ(r.err, "");
    } else {
      EXPECT_EQ(r.out, "");
      EXPECT_EQ(r.err, "amf-admin: " + message);
    }
  }
}

TEST_F(AdminClusterTest, AWrongOperationIsAUsageErrorAndNeverSent) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"lock", "sux"}, "lock: 'sux' is not a target"},
      {{"lock"}, "lock needs a target"},
      {{"lock", "su/a", "su/b"}, "unexpected word 'su/b'"},
      {{"si-swap", "su/mme-a"}, "si-swap applies to si/NAME, not su/mme-a"},
      {{"restart", "node/node1"}, "restart applies to su/NAME or vm/NAME"},
      {{"vm", "frobnicate", "vm/x"}, "unknown vm operation 'frobnicate'"},
      {{"vm", "vm/x"}, "unknown vm operation 'vm/x'"},
      {{"unlock", "su/Bad_Name"}, "is not a valid name"},
      {{"migrate", "su/mme-a"}, "migrate needs a destination: --to node/NAME"},
      {{"migrate", "su/mme-a", "--to", "su/mme-b"}, "--to applies to node/NAME"},
      {{"migrate", "su/mme-a", "--to", "node/node3", "--max-downtime", "fast"},
       "--max-downtime: 'fast' is not a duration"},
      {{"migrate", "su/mme-a", "--to", ""}, "--to needs a value"},
  };
  for (const auto& [args, message] : cases) {
    Invocation r = run(args);
    EXPECT_EQ(r.code, kExitUsage) << message;
    EXPECT_TRUE(r.err.starts_with("amf-admin: ")) << r.err;
    EXPECT_TRUE(contains(r.err, message)) << r.err;
    EXPECT_EQ(r.out, "");
  }
  Invocation badTimeout = run({"--timeout", "soon", "lock", "su/mme-a"});
  EXPECT_EQ(badTimeout.code, kExitUsage);
  EXPECT_TRUE(contains(badTimeout.err, "--timeout: 'soon'")) << badTimeout.err;
  EXPECT_TRUE(amfd_.requests().empty());
}

// --- failures to reach amfd

TEST_F(AdminClusterTest, NoAmfdExits69AtOnceNamingTheEndpoint) {
  const std::string nowhere = "ipc://" + (dir_ / "none" / "admin.sock").string();
  for (const std::vector<std::string>& verb :
       std::vector<std::vector<std::string>>{{"status"}, {"get", "sus"}, {"lock", "su/mme-a"}, {"events"}}) {
    std::vector<std::string> args = {"--endpoint", nowhere};
    args.insert(args.end(), verb.begin(), verb.end());
    const auto start = Clock::now();
    Invocation r = admin(args);
    EXPECT_LT(since(start).count(), 2000) << verb[0];
    EXPECT_EQ(r.code, kExitUnavailable) << verb[0];
    EXPECT_EQ(r.err,
              "amf-admin: no amfd at " + nowhere + ": No such file or directory (is amfd running on this host?)\n")
        << verb[0];
  }
}

TEST_F(AdminClusterTest, AnAmfdThatNeverAnswersTimesOutWith75) {
  amfd_.beSilent();
  const auto start = Clock::now();
  Invocation r = run({"--timeout", "300ms", "lock", "su/mme-a"});
  const auto took = since(start);
  EXPECT_EQ(r.code, kExitTimeout);
  EXPECT_EQ(r.err, "amf-admin: no reply from amfd at " + endpoint() + " within 300 ms\n");
  EXPECT_GE(took.count(), 300);
  EXPECT_LT(took.count(), 5000);
  EXPECT_EQ(amfd_.commands(), std::vector<std::string>{"lock su/mme-a"});
}

TEST_F(AdminClusterTest, TheEndpointComesFromTheOptionThenTheEnvironment) {
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(runAdmin({"get", "sgs"}, out, err, endpoint()), kExitOk) << err.str();
  EXPECT_TRUE(contains(out.str(), "N-Way-Active")) << out.str();

  std::ostringstream out2;
  std::ostringstream err2;
  const std::string bogus = "ipc://" + (dir_ / "bogus.sock").string();
  EXPECT_EQ(runAdmin({"--endpoint", endpoint(), "get", "sgs"}, out2, err2, bogus), kExitOk) << err2.str();
  EXPECT_EQ(runAdmin({"get", "sgs"}, out2, err2, bogus), kExitUnavailable);
  EXPECT_TRUE(contains(err2.str(), "no amfd at " + bogus)) << err2.str();
}

// --- events

std::vector<admin::proto::Event> threeEvents() {
  std::vector<admin::proto::Event> events(3);
  events[0].set_time_ms(1700000000123);
  events[0].set_type("view");
  events[0].set_text("membership: amfd on nodes [1,2], hosts [1,2], quorate");
  events[0].set_json(R"({"amfds":[1,2],"quorate":true})");
  events[1].set_time_ms(1700000000456);
  events[1].set_type("decision");
  events[1].set_text("start su/mme-a on node1");
  events[1].set_json(R"({"seq":43,"actions":["start su/mme-a on node1"]})");
  events[2].set_time_ms(1700000001000);
  events[2].set_type("report");
  events[2].set_text("two\nlines");
  events[2].set_json("not JSON");
  return events;
}

TEST_F(AdminClusterTest, EventsPrintsWhatArrivesWithinASecond) {
  // Published once the subscription has long reached the server (it takes milliseconds), well
  // within the window (1 s from the subscription).
  publishLater(Duration(500), threeEvents());
  const auto start = Clock::now();
  Invocation r = run({"events"});
  const auto took = since(start);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out,
            "2023-11-14T22:13:20.123Z  view      membership: amfd on nodes [1,2], hosts [1,2], quorate\n"
            "2023-11-14T22:13:20.456Z  decision  start su/mme-a on node1\n"
            "2023-11-14T22:13:21.000Z  report    two lines\n");
  EXPECT_GE(took.count(), 1000);
  EXPECT_LT(took.count(), 5000);
}

TEST_F(AdminClusterTest, EventsAsJsonOneObjectALine) {
  publishLater(Duration(500), threeEvents());
  Invocation r = run({"events", "-o", "json", "--events", eventsEndpoint()});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  std::vector<std::string> printed = lines(r.out);
  ASSERT_EQ(printed.size(), 3u) << r.out;
  json first = json::parse(printed[0]);
  EXPECT_EQ(first, json::parse(R"({"timeMs":1700000000123,"seq":1,"type":"view",
      "text":"membership: amfd on nodes [1,2], hosts [1,2], quorate","data":{"amfds":[1,2],"quorate":true}})"));
  EXPECT_TRUE(printed[0].starts_with(R"({"timeMs":1700000000123,"seq":1,"type":"view","text":)")) << printed[0];
  EXPECT_EQ(json::parse(printed[1])["data"]["seq"], 43);
  EXPECT_EQ(json::parse(printed[2])["seq"], 3);
  EXPECT_EQ(json::parse(printed[2])["text"], "two\nlines");
  EXPECT_EQ(json::parse(printed[2])["data"], "not JSON");
}

TEST_F(AdminClusterTest, EventsWithNothingHappeningPrintNothing) {
  Invocation r = run({"events"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST_F(AdminClusterTest, EventsNeedAnEndpointTheyCanTell) {
  const std::string other = "ipc://" + (dir_ / "other.sock").string();
  Invocation r = admin({"--endpoint", other, "events"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_TRUE(contains(r.err, "give it with --events URI")) << r.err;
}

// --- the YAML emitter

TEST(YamlEmitter, QuotesEveryStringThatWouldReadAsSomethingElse) {
  using Json = nlohmann::ordered_json;
  for (const char* plain : {"node1", "su/mme-a", "N+M", "in-service", "a.b_c"}) {
    EXPECT_EQ(yamlScalar(Json(plain)), plain);
  }
  const std::vector<std::pair<std::string, std::string>> quoted = {
      {"", R"("")"},
      {"2N", R"("2N")"},
      {"123", R"("123")"},
      {"1e3", R"("1e3")"},
      {"true", R"("true")"},
      {"No", R"("No")"},
      {"y", R"("y")"},
      {"null", R"("null")"},
      {"~", R"("~")"},
      {"-x", R"("-x")"},
      {"a: b", R"("a: b")"},
      {"a #b", R"("a #b")"},
      {"[x]", R"("[x]")"},
      {"say \"hi\"\\", R"("say \"hi\"\\")"},
      {"tab\there\nnew", R"("tab\there\nnew")"},
      {std::string("bell\x07") + "\x7f", R"("bell\x07\x7f")"},
      {"caf\xc3\xa9", "\"caf\xc3\xa9\""},
      {"nel\xc2\x85", R"("nel\u0085")"},
      {"ls\xe2\x80\xa8", R"("ls\u2028")"},
  };
  for (const auto& [text, yaml] : quoted) EXPECT_EQ(yamlScalar(Json(text)), yaml) << text;
  EXPECT_EQ(yamlScalar(Json(nullptr)), "null");
  EXPECT_EQ(yamlScalar(Json(false)), "false");
  EXPECT_EQ(yamlScalar(Json(-42)), "-42");
  EXPECT_EQ(yamlScalar(Json(1.5)), "1.5");
  EXPECT_EQ(yamlScalar(Json(1e20)), "1.0e+20");
}

TEST(YamlEmitter, WritesBlocksWithDashesAndFlowEmpties) {
  using Json = nlohmann::ordered_json;
  Json value = Json::parse(R"({"b": 1, "a": [1, {"x": "v", "z": [[], {}]}, [2, 3]], "e": {}, "f": [],
                               "my key": {"k": null}})");
  EXPECT_EQ(toYamlDocument(value),
            "b: 1\n"
            "a:\n"
            "  - 1\n"
            "  - x: v\n"
            "    z:\n"
            "      - []\n"
            "      - {}\n"
            "  - - 2\n"
            "    - 3\n"
            "e: {}\n"
            "f: []\n"
            "\"my key\":\n"
            "  k: null\n");
  EXPECT_EQ(toYamlDocument(Json::array()), "[]\n");
  EXPECT_EQ(toYamlDocument(Json("x y")), "\"x y\"\n");
}

}  // namespace
}  // namespace kvm_amf::cli
