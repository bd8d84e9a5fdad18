#include "kvm_amf/amf/engine/codec.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "kvm_amf/amf/config/loader.h"
#include "kvm_amf/amf/config/serialize.h"

namespace kvm_amf::engine {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;
using model::AdminTarget;
using Kind = AdminTarget::Kind;

model::AdminCommand command(const std::string& words) {
  auto parsed = model::parseAdminCommand(words);
  EXPECT_TRUE(parsed) << words << ": " << parsed.error().message;
  return parsed ? parsed.value() : model::AdminCommand{};
}

// Encodes and decodes `message`, expecting the same value back.
void expectRoundTrip(const Envelope& message) {
  const std::string bytes = encode(message);
  const Result<Envelope> decoded = decode(bytes);
  ASSERT_TRUE(decoded) << decoded.error().message;
  EXPECT_TRUE(decoded.value() == message) << "differs after a round trip: " << Json::from_cbor(bytes).dump();
}

// The error decoding `bytes` gives; fails the test when they decode.
std::string errorOf(std::string_view bytes) {
  const Result<Envelope> decoded = decode(bytes);
  EXPECT_FALSE(decoded) << "decoded bytes that should be refused";
  return decoded ? std::string() : decoded.error().message;
}

std::string cbor(const Json& value) {
  std::string bytes;
  Json::to_cbor(value, bytes);
  return bytes;
}

// The JSON form of an encoded message, to be altered and encoded again.
Json jsonOf(const Envelope& message) { return Json::from_cbor(encode(message)); }

std::shared_ptr<const model::Configuration> exampleConfiguration() {
  std::vector<std::string> paths;
  for (const char* file : {"cluster.yaml", "sg-mme.yaml", "sg-sgw.yaml", "sg-lb.yaml", "sg-oam.yaml"}) {
    paths.push_back(std::string(KVM_AMF_SOURCE_DIR "/examples/") + file);
  }
  config::LoadResult loaded = config::loadConfigurationFiles(paths);
  EXPECT_TRUE(loaded.ok()) << (loaded.ok() ? "" : loaded.errors.front().str());
  return std::make_shared<const model::Configuration>(std::move(loaded.config));
}

// The example configuration without its last service group and with one unit ranked anew: what a
// configuration change could make of it.
std::shared_ptr<const model::Configuration> changedConfiguration() {
  model::Configuration changed = *exampleConfiguration();
  changed.serviceGroups.pop_back();
  changed.serviceGroups.front().units.front().rank = 9;
  return std::make_shared<const model::Configuration>(std::move(changed));
}

// A snapshot of the example cluster in the middle of its life: every kind of runtime field changed.
StateSnapshot busySnapshot() {
  ClusterState state = initialState(exampleConfiguration(), 7);
  state.decisions = 4242;
  state.applied = 5151;

  NodeRuntime& node1 = state.nodes.at("node1");
  node1.status = NodeStatus::kUp;
  node1.since = 1'700'000'000'123ms;
  node1.agentReady = true;
  NodeRuntime& node2 = state.nodes.at("node2");
  node2.status = NodeStatus::kFencing;
  node2.oper = OperState::kDisabled;
  node2.admin = AdminState::kLockedInstantiation;
  node2.fencer = 1;
  node2.fenceAttempts = 3;
  node2.lastFenceEnd = 1'700'000'000'999ms;
  node2.suFailovers = {2, 1'700'000'000'000ms};
  node2.alarm = "fence agent failed 3 times: exit 1";
  state.nodes.at("node3").status = NodeStatus::kAmfdDown;

  SuRuntime& mmeA = state.sus.at("mme-a");
  mmeA.node = "node1";
  mmeA.restarts = {1, 5000ms};
  mmeA.failovers = {2, 6000ms};
  mmeA.rank = 5;
  SuRuntime& mmeB = state.sus.at("mme-b");
  mmeB.node = "node2";
  mmeB.oper = OperState::kDisabled;
  mmeB.admin = AdminState::kShuttingDown;
  mmeB.avoidNode = "node2";
  mmeB.startFailures = 2;
  mmeB.instantiationFailed = true;

  VmRuntime& vmA = state.vms.at("mme-a-vm");
  vmA.presence = PresenceState::kInstantiated;
  vmA.node = "node1";
  vmA.restarts = {3, 7000ms};
  vmA.paused = true;
  VmRuntime& vmB = state.vms.at("mme-b-vm");
  vmB.presence = PresenceState::kTerminationFailed;
  vmB.node = "node2";
  vmB.failure = FailureKind::kIoError;
  vmB.hold = VmHold::kSuspended;
  vmB.savedOn = "node3";
  state.vms.at("sgw-1-vm").hold = VmHold::kStopped;

  SiRuntime& mmeSi = state.sis.at("mme-si");
  mmeSi.assignments = {{"mme-a", HaState::kActive, true}, {"mme-b", HaState::kQuiescing, false}};
  mmeSi.preferredActive = "mme-b";
  mmeSi.admin = AdminState::kLocked;
  mmeSi.rank = 4;
  state.sis.at("sgw-si-1").assignments = {{"sgw-1", HaState::kQuiesced, true}, {"sgw-2", HaState::kStandby, false}};

  state.sgs.at("sgw").adjust = true;
  state.sgs.at("lb").admin = AdminState::kLocked;

  state.pendingAdmin = {{17, 2, command("lock su/mme-a")},
                        {18, 3, command("migrate su/sgw-1 --to node/node3 --max-downtime 200ms --timeout 90s")}};
  state.pendingConfig = {{19, 3, 7, changedConfiguration()}};
  return StateSnapshot{.node = 2, .state = std::move(state), .round = 7};
}

// ---- Round trips ------------------------------------------------------------------------------

TEST(Codec, EveryReportKindRoundTrips) {
  const std::vector<Report> reports = {
      VmStarted{"mme-a-vm", "node1"},
      VmStartFailed{"mme-a-vm", "node1", "libvirt: no memory"},
      VmStopped{"mme-b-vm", "node2"},
      VmStopFailed{"mme-b-vm", "node2", "domain did not stop in 30s"},
      VmFailed{"sgw-1-vm", "node3", FailureKind::kWatchdog},
      HaAcked{"mme-a", "mme-si", HaState::kActive},
      AgentUp{"node2", {"mme-b-vm", "sgw-2-vm"}},
      AgentUp{"node3", {}},
      FenceDone{"node2", true, "", 1'700'000'000'123ms},
      FenceDone{"node3", false, "agent exit status 1", -5ms},
      AdminRequest{std::numeric_limits<std::uint64_t>::max(), 3, command("si-swap si/mme-si")},
      ConfigChange{5, 2, 7, changedConfiguration()},
      ConfigChange{6, 1, 0, nullptr},
  };
  std::set<std::size_t> kinds;
  for (const auto& report : reports) {
    SCOPED_TRACE(describe(report));
    kinds.insert(report.index());
    expectRoundTrip(report);
  }
  EXPECT_EQ(kinds.size(), std::variant_size_v<Report>);
}

TEST(Codec, EveryFailureKindAndHaStateRoundTrips) {
  for (FailureKind kind : {FailureKind::kCrash, FailureKind::kWatchdog, FailureKind::kHang, FailureKind::kIoError,
                           FailureKind::kUnhealthy}) {
    expectRoundTrip(Report{VmFailed{"vm", "node1", kind}});
  }
  for (HaState ha : {HaState::kActive, HaState::kStandby, HaState::kQuiescing, HaState::kQuiesced}) {
    expectRoundTrip(Report{HaAcked{"su", "si", ha}});
  }
}

TEST(Codec, AdminRequestsRoundTripEveryCommandShape) {
  for (const char* words :
       {"lock su/mme-a", "unlock node/node1", "lock-in sg/mme", "shutdown ng/core", "restart vm/mme-a-vm",
        "repaired su/mme-b", "sg-adjust sg/sgw", "vm destroy vm/lb-1-vm", "migrate su/mme-a --to node/node2",
        "migrate su/mme-a --to node/node2 --max-downtime 200ms --timeout 90s"}) {
    SCOPED_TRACE(words);
    expectRoundTrip(Report{AdminRequest{1, 1, command(words)}});
  }
}

TEST(Codec, DecisionWithEveryActionKindRoundTrips) {
  Decision decision;
  decision.director = 1;
  decision.at = 1'700'000'000'456ms;
  decision.actions = {
      SetNodeStatus{"node2", NodeStatus::kLost, "left the membership"},
      StartFence{"node2", 1},
      StartSu{"mme-b", "node3"},
      StopSu{"mme-b"},
      RestartVm{"mme-a-vm", false},
      RestartVm{"mme-a-vm", false, RestartMethod::kReboot},
      RestartVm{"mme-a-vm", false, RestartMethod::kReset},
      RestartSu{"sgw-1", true},
      FailoverSu{"sgw-2", true},
      SetNodeOper{"node2", OperState::kDisabled},
      DestroyVm{"lb-1-vm", "node3"},
      RepairSu{"mme-b"},
      SetHa{"mme-a", "mme-si", HaState::kQuiesced},
      RemoveAssignment{"mme-b", "mme-si"},
      SetAdmin{AdminTarget{Kind::kServiceGroup, "sgw"}, AdminState::kShuttingDown},
      SetPreferredActive{"mme-si", "mme-b"},
      SetPreferredActive{"mme-si", ""},
      SetSgAdjust{"sgw", true},
      AdminReply{99, 2, false, "su/nope: no such service unit"},
      SetConfiguration{changedConfiguration(), 8},
      ConfigReply{5, 2, true, false, 8, {}},
      ConfigReply{6, 1, false, true, 8, {"the configuration is at generation 8, not 7"}},
      ConfigReply{7, 3, false, false, 8, {"su/mme-a is instantiated on node1, so it cannot be removed", "second"}},
      StopVm{"lb-1-vm", "node3", VmStopMethod::kShutdown},
      StopVm{"lb-1-vm", "node3", VmStopMethod::kSuspend},
      StopVm{"lb-1-vm", "", VmStopMethod::kDestroy},
      StartVm{"lb-1-vm", "node3"},
      StartVm{"lb-1-vm", ""},
      SetVmPaused{"lb-1-vm", "node3", true},
      SetVmPaused{"lb-1-vm", "node3", false},
  };
  std::set<std::size_t> kinds;
  for (const auto& action : decision.actions) kinds.insert(action.index());
  EXPECT_EQ(kinds.size(), std::variant_size_v<Action>);
  expectRoundTrip(decision);
  expectRoundTrip(Decision{});
}

TEST(Codec, EveryNodeStatusAdminStateAndTargetKindRoundTrips) {
  Decision decision;
  for (NodeStatus status :
       {NodeStatus::kDown, NodeStatus::kUp, NodeStatus::kAmfdDown, NodeStatus::kLost, NodeStatus::kFencing}) {
    decision.actions.push_back(SetNodeStatus{"node1", status, nodeStatusWord(status)});
  }
  for (Kind kind :
       {Kind::kNode, Kind::kNodeGroup, Kind::kServiceGroup, Kind::kServiceUnit, Kind::kServiceInstance, Kind::kVm}) {
    for (AdminState admin :
         {AdminState::kUnlocked, AdminState::kLocked, AdminState::kLockedInstantiation, AdminState::kShuttingDown}) {
      decision.actions.push_back(SetAdmin{AdminTarget{kind, "x-1"}, admin});
    }
  }
  expectRoundTrip(decision);
}

TEST(Codec, IntegersRoundTripAtTheirLimits) {
  constexpr int kMin = std::numeric_limits<int>::min();
  constexpr int kMax = std::numeric_limits<int>::max();
  constexpr auto kU64Max = std::numeric_limits<std::uint64_t>::max();
  expectRoundTrip(StateOffer{kMin, true, kU64Max, 0});
  expectRoundTrip(StateOffer{kMax, false, 0, kU64Max, kU64Max, kU64Max});
  expectRoundTrip(Decision{kMin, TimePoint(std::numeric_limits<std::int64_t>::min()), {StartFence{"n", kMax}}});
  expectRoundTrip(Decision{kMax, TimePoint(std::numeric_limits<std::int64_t>::max()), {}});
}

TEST(Codec, StateOfferRoundTrips) {
  expectRoundTrip(StateOffer{3, true, 7, 4242, 99, 12});
  expectRoundTrip(StateOffer{});
}

TEST(Codec, StateSnapshotOfTheExampleClusterRoundTrips) {
  const StateSnapshot snapshot = busySnapshot();
  expectRoundTrip(snapshot);

  const Result<Envelope> decoded = decode(encode(snapshot));
  ASSERT_TRUE(decoded);
  const auto& state = std::get<StateSnapshot>(decoded.value()).state;
  ASSERT_NE(state.config, nullptr);
  EXPECT_NE(state.config, snapshot.state.config);  // a configuration of its own, equal in value
  EXPECT_TRUE(*state.config == *snapshot.state.config);
  EXPECT_EQ(state.generation, 7u);
  EXPECT_EQ(state.sis.at("mme-si").assignments.size(), 2u);
}

TEST(Codec, StateSnapshotOfAFreshStateAndOfNoStateRoundTrip) {
  expectRoundTrip(StateSnapshot{1, initialState(exampleConfiguration(), 1)});
  expectRoundTrip(StateSnapshot{});  // no configuration at all: null
}

TEST(Codec, WritesAVersionedMapWithTheMessageType) {
  const Json message = jsonOf(Report{VmFailed{"vm1", "node1", FailureKind::kIoError}});
  EXPECT_EQ(message, Json::parse(R"({"v": 3, "type": "vm-failed", "vm": "vm1", "node": "node1", "kind": "io-error"})"));

  const Json decision = jsonOf(
      Decision{1, 1500ms, {SetHa{"su1", "si1", HaState::kActive}, SetAdmin{{Kind::kNode, "n1"}, AdminState::kLocked}}});
  EXPECT_EQ(decision, Json::parse(R"({"v": 3, "type": "decision", "director": 1, "at": 1500, "actions": [
      {"type": "set-ha", "su": "su1", "si": "si1", "ha": "active"},
      {"type": "set-admin", "target": "node/n1", "admin": "locked"}]})"));

  const Json request = jsonOf(Report{AdminRequest{5, 2, command("migrate su/a --to node/n2 --timeout 90s")}});
  EXPECT_EQ(request["command"], "migrate su/a --to node/n2 --timeout 90s");

  const Json snapshot = jsonOf(busySnapshot());
  EXPECT_EQ(snapshot["state"]["config"][0]["kind"], "Cluster");
  EXPECT_EQ(snapshot["state"]["generation"], 7);
  EXPECT_EQ(snapshot["state"]["nodes"]["node2"]["status"], "fencing");
  EXPECT_EQ(snapshot["state"]["vms"]["mme-b-vm"]["failure"], "io-error");
  EXPECT_EQ(snapshot["state"]["vms"]["mme-a-vm"]["failure"], nullptr);
  EXPECT_EQ(snapshot["state"]["vms"]["mme-a-vm"]["paused"], true);
  EXPECT_EQ(snapshot["state"]["vms"]["mme-a-vm"]["hold"], "none");
  EXPECT_EQ(snapshot["state"]["vms"]["mme-b-vm"]["hold"], "suspended");
  EXPECT_EQ(snapshot["state"]["vms"]["mme-b-vm"]["savedOn"], "node3");

  const Json operations =
      jsonOf(Decision{1,
                      0ms,
                      {RestartVm{"vm1", false, RestartMethod::kReboot}, StopVm{"vm1", "n1", VmStopMethod::kSuspend},
                       StartVm{"vm1", "n1"}, SetVmPaused{"vm1", "n1", true}}});
  EXPECT_EQ(operations["actions"], Json::parse(R"([
      {"type": "restart-vm", "vm": "vm1", "counted": false, "method": "reboot"},
      {"type": "stop-vm", "vm": "vm1", "node": "n1", "method": "suspend"},
      {"type": "start-vm", "vm": "vm1", "node": "n1"},
      {"type": "set-vm-paused", "vm": "vm1", "node": "n1", "paused": true}])"));
  EXPECT_EQ(snapshot["state"]["pendingConfig"][0]["baseGeneration"], 7);
  EXPECT_EQ(snapshot["state"]["pendingConfig"][0]["config"][0]["kind"], "Cluster");

  const Json change = jsonOf(Report{ConfigChange{5, 2, 7, changedConfiguration()}});
  EXPECT_EQ(change["type"], "config-change");
  EXPECT_EQ(change["config"], Json::parse(config::toDocuments(*changedConfiguration()).dump()));
  const Json install = jsonOf(Decision{1, 0ms, {SetConfiguration{changedConfiguration(), 8}}});
  EXPECT_EQ(install["actions"][0]["type"], "set-configuration");
  EXPECT_EQ(install["actions"][0]["generation"], 8);
}

// What a version-2 message would not hold (VM operations): the defaults, as older amfds meant.
void withoutVmOperations(StateSnapshot& snapshot, Json& json) {
  for (auto& [name, vm] : snapshot.state.vms) {
    vm.paused = false;
    vm.hold = VmHold::kNone;
    vm.savedOn.clear();
    for (const char* key : {"paused", "hold", "savedOn"}) json["state"]["vms"][name].erase(key);
  }
}

TEST(Codec, ReadsAVersion1StateAsOneWithNoConfigurationChangePending) {
  StateSnapshot snapshot = busySnapshot();
  snapshot.state.pendingConfig.clear();
  Json old = jsonOf(snapshot);
  withoutVmOperations(snapshot, old);
  old["v"] = 1;
  old["state"].erase("pendingConfig");
  const Result<Envelope> decoded = decode(cbor(old));
  ASSERT_TRUE(decoded) << decoded.error().message;
  EXPECT_TRUE(decoded.value() == Envelope(snapshot));

  Json started = jsonOf(Report{VmStarted{"vm1", "node1"}});
  started["v"] = 1;
  ASSERT_TRUE(decode(cbor(started)));
  EXPECT_TRUE(decode(cbor(started)).value() == Envelope(Report{VmStarted{"vm1", "node1"}}));

  old["v"] = 0;
  EXPECT_NE(errorOf(cbor(old)).find("v: version 0"), std::string::npos);
}

TEST(Codec, ReadsAVersion2StateAndDecisionAsOnesWithoutVmOperations) {
  StateSnapshot snapshot = busySnapshot();
  Json old = jsonOf(snapshot);
  withoutVmOperations(snapshot, old);
  old["v"] = 2;
  const Result<Envelope> decoded = decode(cbor(old));
  ASSERT_TRUE(decoded) << decoded.error().message;
  EXPECT_TRUE(decoded.value() == Envelope(snapshot));

  // Every restart of an older director destroyed and started the VM.
  Json decision = jsonOf(Decision{1, 5ms, {RestartVm{"vm1", true}, StopSu{"su1"}}});
  decision["v"] = 2;
  decision["actions"][0].erase("method");
  const Result<Envelope> restart = decode(cbor(decision));
  ASSERT_TRUE(restart) << restart.error().message;
  EXPECT_TRUE(restart.value() == Envelope(Decision{1, 5ms, {RestartVm{"vm1", true}, StopSu{"su1"}}}));

  // A current message without the new fields is refused: only older versions get defaults.
  decision["v"] = 3;
  EXPECT_NE(errorOf(cbor(decision)).find("missing field \"method\""), std::string::npos);
  old["v"] = 3;
  EXPECT_NE(errorOf(cbor(old)).find("missing field \"paused\""), std::string::npos);
}

// ---- Refusals -----------------------------------------------------------------------------------

TEST(Codec, RefusesEmptyInputAndGarbage) {
  EXPECT_NE(errorOf("").find("empty"), std::string::npos);
  EXPECT_NE(errorOf("hello, world").find("CBOR"), std::string::npos);
  EXPECT_NE(errorOf(std::string("\xff\xff\xff\xff", 4)).find("CBOR"), std::string::npos);
  EXPECT_NE(errorOf(std::string(1000, '\0')).find("CBOR"), std::string::npos);  // trailing bytes
  std::string seeded;
  std::uint32_t x = 12345;
  for (int i = 0; i < 4096; ++i) {
    x = x * 1664525u + 1013904223u;
    seeded.push_back(static_cast<char>(x >> 24));
  }
  for (std::size_t start = 0; start < seeded.size(); start += 64) errorOf(seeded.substr(start));
}

TEST(Codec, RefusesValidCborThatIsNotAMessage) {
  EXPECT_NE(errorOf(cbor(Json::array({1, 2}))).find("expected a map"), std::string::npos);
  EXPECT_NE(errorOf(cbor("vm-started")).find("expected a map"), std::string::npos);
  EXPECT_NE(errorOf(cbor(Json::object())).find("missing field \"v\""), std::string::npos);
}

TEST(Codec, RefusesAnUnknownVersion) {
  Json message = jsonOf(Report{VmStarted{"vm1", "node1"}});
  for (const Json& version : {Json(0), Json(4), Json(-1), Json(1u << 31)}) {
    message["v"] = version;
    EXPECT_NE(errorOf(cbor(message)).find("v: "), std::string::npos) << version;
  }
  message["v"] = "1";
  EXPECT_NE(errorOf(cbor(message)).find("v: expected an integer"), std::string::npos);
  message.erase("v");
  EXPECT_NE(errorOf(cbor(message)).find("missing field \"v\""), std::string::npos);
}

TEST(Codec, RefusesAnUnknownType) {
  Json message = jsonOf(Report{VmStarted{"vm1", "node1"}});
  message["type"] = "vm-exploded";
  EXPECT_NE(errorOf(cbor(message)).find("unknown message type \"vm-exploded\""), std::string::npos);
  message["type"] = "set-ha";  // an action's type is not a message's
  errorOf(cbor(message));
  message["type"] = 7;
  EXPECT_NE(errorOf(cbor(message)).find("type: expected a string"), std::string::npos);

  Json decision = jsonOf(Decision{1, 0ms, {StopSu{"su1"}}});
  decision["actions"][0]["type"] = "vm-started";  // a report's type is not an action's
  EXPECT_NE(errorOf(cbor(decision)).find("actions[0].type: unknown type"), std::string::npos);
}

TEST(Codec, RefusesEveryMissingField) {
  const std::vector<Envelope> messages = {Report{FenceDone{"node2", true, "ok", 5ms}},
                                          Decision{1, 2ms, {SetNodeStatus{"node1", NodeStatus::kUp, "joined"}}},
                                          StateOffer{1, true, 2, 3}, busySnapshot()};
  for (const auto& original : messages) {
    const Json message = jsonOf(original);
    for (const auto& [key, value] : message.items()) {
      Json altered = message;
      altered.erase(key);
      EXPECT_NE(errorOf(cbor(altered)).find("missing field \"" + key + "\""), std::string::npos) << key;
    }
  }
  Json decision = jsonOf(messages[1]);
  decision["actions"][0].erase("reason");
  EXPECT_NE(errorOf(cbor(decision)).find("actions[0]: missing field \"reason\""), std::string::npos);

  Json snapshot = jsonOf(busySnapshot());
  for (const char* key : {"config", "generation", "decisions", "applied", "nodes", "sgs", "sus", "sis", "vms",
                          "pendingAdmin", "pendingConfig"}) {
    Json altered = snapshot;
    altered["state"].erase(key);
    EXPECT_NE(errorOf(cbor(altered)).find(std::string("state: missing field \"") + key + "\""), std::string::npos);
  }
  snapshot["state"]["nodes"]["node2"].erase("suFailovers");
  EXPECT_NE(errorOf(cbor(snapshot)).find("state.nodes.node2: missing field \"suFailovers\""), std::string::npos);
}

TEST(Codec, RefusesUnknownFields) {
  Json message = jsonOf(Report{VmStarted{"vm1", "node1"}});
  message["extra"] = 1;
  EXPECT_NE(errorOf(cbor(message)).find("unknown field \"extra\""), std::string::npos);

  Json snapshot = jsonOf(busySnapshot());
  snapshot["state"]["sis"]["mme-si"]["assignments"][0]["weight"] = 3;
  EXPECT_NE(errorOf(cbor(snapshot)).find("state.sis.mme-si.assignments[0]: unknown field \"weight\""),
            std::string::npos);
}

TEST(Codec, RefusesFieldsOfTheWrongType) {
  const Json fence = jsonOf(Report{FenceDone{"node2", true, "ok", 5ms}});
  const std::vector<std::pair<std::string, Json>> cases = {
      {"node", 1},
      {"node", nullptr},
      {"node", Json::array()},
      {"node", Json::object()},
      {"ok", 1},
      {"ok", "true"},
      {"at", 1.5},
      {"at", "5ms"},
      {"at", nullptr},
      {"message", Json::binary({1, 2})},
      {"at", 1e30},
  };
  for (const auto& [key, value] : cases) {
    Json altered = fence;
    altered[key] = value;
    EXPECT_NE(errorOf(cbor(altered)).find(key + ": expected"), std::string::npos) << key << " = " << value;
  }

  Json decision = jsonOf(Decision{1, 0ms, {}});
  decision["actions"] = Json::object();
  EXPECT_NE(errorOf(cbor(decision)).find("actions: expected a list"), std::string::npos);
  decision["actions"] = Json::array({"stop-su"});
  EXPECT_NE(errorOf(cbor(decision)).find("actions[0]: expected a map"), std::string::npos);

  Json snapshot = jsonOf(busySnapshot());
  snapshot["state"]["nodes"] = Json::array();
  EXPECT_NE(errorOf(cbor(snapshot)).find("state.nodes: expected a map"), std::string::npos);
  snapshot = jsonOf(busySnapshot());
  snapshot["state"]["config"] = "cluster.yaml";
  EXPECT_NE(errorOf(cbor(snapshot)).find("state.config: expected a list"), std::string::npos);
}

TEST(Codec, RefusesNumbersOutOfRange) {
  Json request = jsonOf(Report{AdminRequest{1, 2, command("lock su/a")}});
  request["from"] = std::int64_t{1} << 40;
  EXPECT_NE(errorOf(cbor(request)).find("from: integer 1099511627776 out of range"), std::string::npos);
  request["from"] = 2;
  request["id"] = -1;
  EXPECT_NE(errorOf(cbor(request)).find("id: integer -1 out of range"), std::string::npos);
  Json fence = jsonOf(Report{FenceDone{"n", true, "", 5ms}});
  fence["at"] = std::numeric_limits<std::uint64_t>::max();
  EXPECT_NE(errorOf(cbor(fence)).find("at: integer"), std::string::npos);
}

TEST(Codec, RefusesUnknownWordsAndCommands) {
  Json failed = jsonOf(Report{VmFailed{"vm1", "node1", FailureKind::kCrash}});
  failed["kind"] = "meltdown";
  EXPECT_NE(errorOf(cbor(failed)).find("kind: \"meltdown\" is not one of crash, watchdog"), std::string::npos);

  Json acked = jsonOf(Report{HaAcked{"su", "si", HaState::kActive}});
  acked["ha"] = "Active";
  EXPECT_NE(errorOf(cbor(acked)).find("ha: \"Active\" is not one of"), std::string::npos);

  Json status = jsonOf(Decision{1, 0ms, {SetNodeStatus{"n", NodeStatus::kUp, ""}}});
  status["actions"][0]["status"] = "gone";
  EXPECT_NE(errorOf(cbor(status)).find("actions[0].status: \"gone\" is not one of down, up"), std::string::npos);

  Json request = jsonOf(Report{AdminRequest{1, 2, command("lock su/a")}});
  request["command"] = "explode su/a";
  EXPECT_NE(errorOf(cbor(request)).find("command: not an admin command"), std::string::npos);

  Json admin = jsonOf(Decision{1, 0ms, {SetAdmin{{Kind::kNode, "n1"}, AdminState::kLocked}}});
  admin["actions"][0]["target"] = "host/n1";
  EXPECT_NE(errorOf(cbor(admin)).find("actions[0].target: not an admin target"), std::string::npos);

  Json stop = jsonOf(Decision{1, 0ms, {StopVm{"vm1", "n1", VmStopMethod::kSuspend}, RestartVm{"vm1", false}}});
  stop["actions"][0]["method"] = "hibernate";
  stop["actions"][1]["method"] = "kick";
  EXPECT_NE(errorOf(cbor(stop)).find("actions[0].method: \"hibernate\" is not one of shutdown, destroy or suspend"),
            std::string::npos);
  stop["actions"][0]["method"] = "destroy";
  EXPECT_NE(errorOf(cbor(stop)).find("actions[1].method: \"kick\" is not one of recreate, reboot or reset"),
            std::string::npos);

  Json snapshot = jsonOf(busySnapshot());
  snapshot["state"]["vms"]["mme-a-vm"]["hold"] = "frozen";
  EXPECT_NE(
      errorOf(cbor(snapshot)).find("state.vms.mme-a-vm.hold: \"frozen\" is not one of none, stopped or suspended"),
      std::string::npos);
}

TEST(Codec, RefusesASnapshotWhoseConfigurationDoesNotLoad) {
  Json snapshot = jsonOf(busySnapshot());
  snapshot["state"]["config"][0]["spec"]["nodes"][0]["address"] = "not an address";
  EXPECT_NE(errorOf(cbor(snapshot)).find("state.config: the configuration does not load"), std::string::npos);

  snapshot = jsonOf(busySnapshot());
  snapshot["state"]["config"][1]["kind"] = "Hypervisor";
  EXPECT_NE(errorOf(cbor(snapshot)).find("the configuration does not load"), std::string::npos);

  snapshot = jsonOf(busySnapshot());
  snapshot["state"]["config"][0]["metadata"]["name"] = Json::binary({0xde, 0xad});
  EXPECT_NE(errorOf(cbor(snapshot)).find("state.config[0].metadata.name"), std::string::npos);

  Json change = jsonOf(Report{ConfigChange{5, 2, 7, changedConfiguration()}});
  change["config"][1]["spec"]["redundancy"]["model"] = "3N";
  EXPECT_NE(errorOf(cbor(change)).find("config: the configuration does not load"), std::string::npos);
}

TEST(Codec, RefusesEveryTruncationOfAValidMessage) {
  const std::vector<Envelope> messages = {
      Report{AdminRequest{1, 2, command("migrate su/mme-a --to node/node2 --max-downtime 200ms")}},
      Decision{1, 2ms, {StartSu{"mme-a", "node1"}, SetHa{"mme-a", "mme-si", HaState::kActive}}},
      StateOffer{1, true, 2, 3}, busySnapshot()};
  for (const auto& message : messages) {
    const std::string bytes = encode(message);
    for (std::size_t size = 0; size < bytes.size(); ++size) {
      if (decode(std::string_view(bytes).substr(0, size))) {
        ADD_FAILURE() << "a prefix of " << size << " of " << bytes.size() << " bytes decoded";
        break;
      }
    }
  }
}

TEST(Codec, RefusesHostileSizesAndNesting) {
  // Nested lists far deeper than any message: refused before the recursive parser descends.
  const std::string deep(200'000, '\x81');
  EXPECT_NE(errorOf(deep).find("nested deeper"), std::string::npos);
  std::string deepMaps;
  for (int i = 0; i < 100'000; ++i) deepMaps += "\xa1\x61k";
  EXPECT_NE(errorOf(deepMaps).find("nested deeper"), std::string::npos);

  // A list that claims 2^32 items, and one with a few more than the limit.
  EXPECT_NE(errorOf(std::string("\x9a\xff\xff\xff\xff", 5)).find("more than 1000000 items"), std::string::npos);
  Json many = jsonOf(Report{AgentUp{"node1", {}}});
  many["runningVms"] = Json::array();
  for (int i = 0; i <= 1'000'000; ++i) many["runningVms"].push_back(0);
  EXPECT_NE(errorOf(cbor(many)).find("more than 1000000 items"), std::string::npos);

  // A string over 1 MiB.
  Json started = jsonOf(Report{VmStarted{"vm1", "node1"}});
  started["node"] = std::string((1u << 20) + 1, 'n');
  EXPECT_NE(errorOf(cbor(started)).find("a string longer than"), std::string::npos);
  started["node"] = std::string(1u << 20, 'n');  // exactly the limit is fine
  EXPECT_TRUE(decode(cbor(started)));

  // A message over 16 MiB, whatever it holds.
  EXPECT_NE(errorOf(std::string((16u << 20) + 1, '\0')).find("the limit is"), std::string::npos);

  // A string that claims 2^63 bytes, and a tagged value.
  errorOf(std::string("\xa1\x61v\x7b\x7f\xff\xff\xff\xff\xff\xff\xff", 12));
  errorOf(std::string("\xc1\x01", 2));
}

}  // namespace
}  // namespace kvm_amf::engine
