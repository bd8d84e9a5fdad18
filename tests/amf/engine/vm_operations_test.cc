// The VM operations in the engine (`vm start|shutdown|destroy|pause|resume|suspend|reboot|reset`):
// what the director decides and answers for each, what applying it does to the state, and that
// nothing of it is a failure, recovered, or lets a second unit take an SI active.
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "amf/config/config_test_util.h"
#include "kvm_amf/amf/engine/apply.h"
#include "kvm_amf/amf/engine/engine.h"

namespace kvm_amf::engine {
namespace {

using namespace std::chrono_literals;
using config::testing::kCluster;
using config::testing::serviceGroup;
using config::testing::unit;

// web: 2N, restart first. app: 2N whose units have two VMs each. Both pairs: a on n1, b on n2.
std::shared_ptr<const model::Configuration> configuration(const std::string& webExtra = "") {
  const std::string vm = ", memory: 128Mi, boot: {kernel: /k}}";
  const std::string app =
      serviceGroup("app", "2N",
                   "[{name: app-a, vms: [{name: app-a-vm" + vm + ", {name: app-a-db" + vm +
                       "]}, {name: app-b, vms: [{name: app-b-vm" + vm + ", {name: app-b-db" + vm + "]}]",
                   "[{name: app-si}]");
  config::LoadResult loaded = config::loadConfiguration(
      {{"test.yaml", std::string(kCluster) +
                         serviceGroup("web", "2N", "[" + unit("web-a", 1) + ", " + unit("web-b", 2) + "]",
                                      "[{name: web-si}]", webExtra) +
                         app}});
  EXPECT_TRUE(loaded.ok()) << config::testing::errorLines(loaded);
  return std::make_shared<const model::Configuration>(std::move(loaded.config));
}

// Every host up; each pair's a active on n1 and b standby on n2, confirmed.
ClusterState runningState(const std::string& webExtra = "") {
  ClusterState s = initialState(configuration(webExtra), 1);
  for (auto& [name, node] : s.nodes) {
    node.status = NodeStatus::kUp;
    node.agentReady = true;
  }
  auto place = [&](const std::string& su, const std::string& node) {
    s.sus.at(su).node = node;
    for (const auto& vm : s.suSpec(su).vms) {
      s.vms.at(vm.name).node = node;
      s.vms.at(vm.name).presence = PresenceState::kInstantiated;
    }
  };
  place("web-a", "n1");
  place("web-b", "n2");
  place("app-a", "n1");
  place("app-b", "n2");
  s.sis.at("web-si").assignments = {{"web-a", HaState::kActive, true}, {"web-b", HaState::kStandby, true}};
  s.sis.at("app-si").assignments = {{"app-a", HaState::kActive, true}, {"app-b", HaState::kStandby, true}};
  return s;
}

View directorView() {
  View view;
  view.self = 1;
  view.group = {1, 2, 3};
  view.hosts = {1, 2, 3};
  view.quorate = true;
  view.clusterSize = 3;
  return view;
}

// One decision of the director, applied to `s`.
std::vector<Action> decideAndApply(ClusterState& s, TimePoint now = 30s) {
  EngineStep step = decide(s, directorView(), now);
  applyDecision(s, Decision{1, now, step.actions});
  return step.actions;
}

struct Answer {
  bool ok = false;
  std::string message;
  std::vector<Action> actions;  // the whole decision that answered
};

// The operator's command through the stream, and the director's decision on it (applied).
Answer command(ClusterState& s, const std::string& words, TimePoint now = 30s) {
  static std::uint64_t id = 0;
  auto parsed = model::parseAdminCommand(words);
  EXPECT_TRUE(parsed) << words;
  applyReport(s, AdminRequest{++id, 2, parsed.value()});
  Answer answer;
  answer.actions = decideAndApply(s, now);
  for (const auto& action : answer.actions) {
    if (const auto* reply = std::get_if<AdminReply>(&action); reply && reply->id == id) {
      answer.ok = reply->ok;
      answer.message = reply->message;
    }
  }
  EXPECT_TRUE(s.pendingAdmin.empty()) << words << " was not answered";
  return answer;
}

template <typename A>
std::vector<A> actionsOf(const std::vector<Action>& actions) {
  std::vector<A> out;
  for (const auto& action : actions) {
    if (const auto* a = std::get_if<A>(&action)) out.push_back(*a);
  }
  return out;
}

std::string describeAll(const std::vector<Action>& actions) {
  std::string out;
  for (const auto& action : actions) out += describe(action) + "\n";
  return out;
}

std::optional<Assignment> assignmentOf(const ClusterState& s, const std::string& si, const std::string& su) {
  for (const auto& a : s.sis.at(si).assignments) {
    if (a.su == su) return a;
  }
  return std::nullopt;
}

// Nothing that counts or recovers a failure, and nothing that moves the unit's SIs.
void expectNoRecovery(const std::vector<Action>& actions) {
  EXPECT_TRUE(actionsOf<FailoverSu>(actions).empty()) << describeAll(actions);
  EXPECT_TRUE(actionsOf<RestartSu>(actions).empty()) << describeAll(actions);
  for (const auto& restart : actionsOf<RestartVm>(actions)) EXPECT_FALSE(restart.counted) << describeAll(actions);
}

// The command is refused with `message`, and its decision holds nothing but the answer.
void expectRefused(ClusterState& s, const std::string& words, const std::string& message) {
  const Answer answer = command(s, words);
  EXPECT_FALSE(answer.ok) << words;
  EXPECT_EQ(answer.message, message) << words;
  EXPECT_EQ(answer.actions.size(), 1u) << words << ":\n" << describeAll(answer.actions);
}

// ---- Targets --------------------------------------------------------------------------------

TEST(VmOperations, AnUnknownVmIsRefusedForEveryOperation) {
  for (const char* op : {"start", "shutdown", "destroy", "pause", "resume", "suspend", "reboot", "reset"}) {
    ClusterState s = runningState();
    expectRefused(s, std::string("vm ") + op + " vm/nope", "no such vm/nope");
  }
}

TEST(VmOperations, MigrateIsStillRefusedWithItsMessage) {
  ClusterState s = runningState();
  expectRefused(s, "migrate su/web-b --to node/n3",
                "'migrate su/web-b --to node/n3' is carried out by the node manager, not the engine");
}

// ---- vm reboot, vm reset ----------------------------------------------------------------------

TEST(VmOperations, RebootOfTheActiveVmRestartsItInPlaceKeepingItsAssignment) {
  ClusterState s = runningState();
  const Answer answer = command(s, "vm reboot vm/web-a-vm");
  ASSERT_TRUE(answer.ok) << answer.message;
  EXPECT_EQ(answer.message, "vm/web-a-vm rebooting");
  const auto restarts = actionsOf<RestartVm>(answer.actions);
  ASSERT_EQ(restarts.size(), 1u);
  EXPECT_EQ(restarts[0], (RestartVm{"web-a-vm", false, RestartMethod::kReboot}));
  EXPECT_EQ(describe(restarts[0]), "reboot vm/web-a-vm (operator)");
  expectNoRecovery(answer.actions);
  EXPECT_TRUE(actionsOf<SetHa>(answer.actions).empty()) << describeAll(answer.actions);

  EXPECT_EQ(s.vms.at("web-a-vm").presence, PresenceState::kRestarting);
  EXPECT_EQ(s.vms.at("web-a-vm").restarts.count, 0);
  EXPECT_EQ(suPresence(s, s.sus.at("web-a")), PresenceState::kRestarting);
  EXPECT_EQ(assignmentOf(s, "web-si", "web-a"), (Assignment{"web-a", HaState::kActive, false}));

  // While it reboots nothing moves: web-b stays standby.
  const auto meanwhile = decideAndApply(s);
  EXPECT_TRUE(actionsOf<SetHa>(meanwhile).empty()) << describeAll(meanwhile);
  EXPECT_EQ(assignmentOf(s, "web-si", "web-b"), (Assignment{"web-b", HaState::kStandby, true}));

  applyReport(s, VmStarted{"web-a-vm", "n1"});
  EXPECT_EQ(s.vms.at("web-a-vm").presence, PresenceState::kInstantiated);
  applyReport(s, HaAcked{"web-a", "web-si", HaState::kActive});
  EXPECT_EQ(assignmentOf(s, "web-si", "web-a"), (Assignment{"web-a", HaState::kActive, true}));
  EXPECT_EQ(s.sus.at("web-a").restarts.count, 0);
}

TEST(VmOperations, ResetRestartsTheVmInPlaceByTheResetButton) {
  ClusterState s = runningState();
  const Answer answer = command(s, "vm reset vm/web-b-vm");
  ASSERT_TRUE(answer.ok) << answer.message;
  EXPECT_EQ(answer.message, "vm/web-b-vm resetting");
  EXPECT_EQ(actionsOf<RestartVm>(answer.actions), (std::vector<RestartVm>{{"web-b-vm", false, RestartMethod::kReset}}));
  EXPECT_EQ(describe(RestartVm{"web-b-vm", false, RestartMethod::kReset}), "reset vm/web-b-vm (operator)");
  EXPECT_EQ(s.vms.at("web-b-vm").presence, PresenceState::kRestarting);
  EXPECT_EQ(assignmentOf(s, "web-si", "web-b"), (Assignment{"web-b", HaState::kStandby, false}));
}

TEST(VmOperations, RebootAndResetAreRefusedUnlessTheVmIsInstantiatedAndNotPaused) {
  for (const char* op : {"reboot", "reset"}) {
    ClusterState s = runningState();
    s.vms.at("web-b-vm").presence = PresenceState::kRestarting;
    expectRefused(s, std::string("vm ") + op + " vm/web-b-vm", "vm/web-b-vm is not instantiated (restarting)");

    s = runningState();
    s.vms.at("web-b-vm").paused = true;
    expectRefused(s, std::string("vm ") + op + " vm/web-b-vm", "vm/web-b-vm is paused; vm resume it first");
  }
}

// ---- vm pause, vm resume -------------------------------------------------------------------------

TEST(VmOperations, PauseOfTheStandbyKeepsItsAssignmentAndTakesTheUnitOutOfService) {
  ClusterState s = runningState();
  const Answer answer = command(s, "vm pause vm/web-b-vm");
  ASSERT_TRUE(answer.ok) << answer.message;
  EXPECT_EQ(answer.message, "vm/web-b-vm paused on n2");
  EXPECT_EQ(actionsOf<SetVmPaused>(answer.actions), (std::vector<SetVmPaused>{{"web-b-vm", "n2", true}}));
  EXPECT_EQ(describe(SetVmPaused{"web-b-vm", "n2", true}), "pause vm/web-b-vm on n2");
  EXPECT_TRUE(s.vms.at("web-b-vm").paused);
  EXPECT_EQ(vmOperatorWord(s.vms.at("web-b-vm")), "paused");
  EXPECT_EQ(suPresence(s, s.sus.at("web-b")), PresenceState::kInstantiated);
  EXPECT_EQ(suReadiness(s, s.sus.at("web-b")), ReadinessState::kOutOfService);
  EXPECT_EQ(s.sus.at("web-b").oper, OperState::kEnabled);

  // Decisions after it leave it alone: no recovery, its standby assignment stays.
  for (int i = 0; i < 3; ++i) {
    const auto actions = decideAndApply(s);
    expectNoRecovery(actions);
    EXPECT_TRUE(actions.empty()) << describeAll(actions);
  }
  EXPECT_EQ(assignmentOf(s, "web-si", "web-b"), (Assignment{"web-b", HaState::kStandby, true}));
}

TEST(VmOperations, APausedStandbyIsNotMadeActiveWhenTheActiveFailsOver) {
  ClusterState s = runningState("  recovery: {defaultAction: failover}\n");
  ASSERT_TRUE(command(s, "vm pause vm/web-b-vm").ok);
  applyReport(s, VmFailed{"web-a-vm", "n1", FailureKind::kCrash});
  std::vector<Action> all;
  for (int i = 0; i < 4; ++i) {
    const auto actions = decideAndApply(s);
    all.insert(all.end(), actions.begin(), actions.end());
    if (i == 0) applyReport(s, VmStopped{"web-a-vm", "n1"});
  }
  EXPECT_EQ(actionsOf<FailoverSu>(all).size(), 1u) << describeAll(all);
  for (const auto& set : actionsOf<SetHa>(all)) EXPECT_NE(set.su, "web-b") << describeAll(all);
  EXPECT_EQ(assignmentOf(s, "web-si", "web-b"), (Assignment{"web-b", HaState::kStandby, true}));
  EXPECT_TRUE(s.vms.at("web-b-vm").paused);
}

TEST(VmOperations, PauseIsRefusedWhileTheUnitMayServeActively) {
  ClusterState s = runningState();
  expectRefused(s, "vm pause vm/web-a-vm",
                "vm/web-a-vm: su/web-a holds si/web-si active; switch over first: si-swap si/web-si, or lock su/web-a");
  EXPECT_FALSE(s.vms.at("web-a-vm").paused);

  // Quiescing, and told to quiesce but not confirmed yet, may still be active.
  s.sis.at("web-si").assignments = {{"web-a", HaState::kQuiescing, false}};
  s.sus.at("web-a").admin = AdminState::kShuttingDown;
  expectRefused(
      s, "vm pause vm/web-a-vm",
      "vm/web-a-vm: su/web-a holds si/web-si quiescing; switch over first: si-swap si/web-si, or lock su/web-a");

  s = runningState();
  s.sis.at("web-si").assignments = {{"web-a", HaState::kQuiesced, false}, {"web-b", HaState::kStandby, true}};
  expectRefused(
      s, "vm pause vm/web-a-vm",
      "vm/web-a-vm: su/web-a holds si/web-si quiesced; switch over first: si-swap si/web-si, or lock su/web-a");

  // Any VM of the unit: app-a-db is not the one serving, but its unit holds app-si active.
  s = runningState();
  expectRefused(s, "vm pause vm/app-a-db",
                "vm/app-a-db: su/app-a holds si/app-si active; switch over first: si-swap si/app-si, or lock su/app-a");
}

TEST(VmOperations, PauseIsRefusedWhenNotInstantiatedOrPausedAlready) {
  ClusterState s = runningState();
  s.vms.at("web-b-vm").presence = PresenceState::kInstantiating;
  expectRefused(s, "vm pause vm/web-b-vm", "vm/web-b-vm is not instantiated (instantiating)");

  s = runningState();
  ASSERT_TRUE(command(s, "vm pause vm/web-b-vm").ok);
  expectRefused(s, "vm pause vm/web-b-vm", "vm/web-b-vm is paused already");
}

TEST(VmOperations, ResumeLetsThePausedVmRunOnInService) {
  ClusterState s = runningState();
  ASSERT_TRUE(command(s, "vm pause vm/web-b-vm").ok);
  const Answer answer = command(s, "vm resume vm/web-b-vm");
  ASSERT_TRUE(answer.ok) << answer.message;
  EXPECT_EQ(answer.message, "vm/web-b-vm resumed on n2");
  EXPECT_EQ(actionsOf<SetVmPaused>(answer.actions), (std::vector<SetVmPaused>{{"web-b-vm", "n2", false}}));
  EXPECT_EQ(describe(SetVmPaused{"web-b-vm", "n2", false}), "resume vm/web-b-vm on n2");
  EXPECT_FALSE(s.vms.at("web-b-vm").paused);
  EXPECT_EQ(suReadiness(s, s.sus.at("web-b")), ReadinessState::kInService);
  EXPECT_EQ(assignmentOf(s, "web-si", "web-b"), (Assignment{"web-b", HaState::kStandby, true}));
}

TEST(VmOperations, ResumeIsRefusedUnlessPaused) {
  ClusterState s = runningState();
  expectRefused(s, "vm resume vm/web-b-vm", "vm/web-b-vm is not paused");
}

TEST(VmOperations, APausedVmThatCrashesIsRecoveredUnpaused) {
  ClusterState s = runningState();
  ASSERT_TRUE(command(s, "vm pause vm/web-b-vm").ok);
  applyReport(s, VmFailed{"web-b-vm", "n2", FailureKind::kCrash});
  EXPECT_FALSE(s.vms.at("web-b-vm").paused);
  const auto actions = decideAndApply(s);
  EXPECT_EQ(actionsOf<RestartVm>(actions), (std::vector<RestartVm>{{"web-b-vm", true}}));
  EXPECT_EQ(vmOperatorWord(s.vms.at("web-b-vm")), "");
}

// ---- vm shutdown, vm destroy, vm suspend ---------------------------------------------------------

TEST(VmOperations, ShutdownOfTheStandbyHoldsItStoppedWithoutRecovery) {
  ClusterState s = runningState();
  const Answer answer = command(s, "vm shutdown vm/web-b-vm");
  ASSERT_TRUE(answer.ok) << answer.message;
  EXPECT_EQ(answer.message, "vm/web-b-vm shutting down on n2");
  EXPECT_EQ(actionsOf<StopVm>(answer.actions), (std::vector<StopVm>{{"web-b-vm", "n2", VmStopMethod::kShutdown}}));
  EXPECT_EQ(describe(StopVm{"web-b-vm", "n2", VmStopMethod::kShutdown}), "shut down vm/web-b-vm on n2 (operator)");
  EXPECT_EQ(s.vms.at("web-b-vm").hold, VmHold::kStopped);
  EXPECT_EQ(s.vms.at("web-b-vm").presence, PresenceState::kTerminating);
  EXPECT_EQ(suReadiness(s, s.sus.at("web-b")), ReadinessState::kOutOfService);

  // Stopping: its standby assignment stays until the VM is certainly stopped.
  auto actions = decideAndApply(s);
  EXPECT_TRUE(actionsOf<RemoveAssignment>(actions).empty()) << describeAll(actions);
  applyReport(s, VmStopped{"web-b-vm", "n2"});
  EXPECT_EQ(s.vms.at("web-b-vm").presence, PresenceState::kUninstantiated);
  EXPECT_EQ(s.sus.at("web-b").node, "");

  actions = decideAndApply(s);
  EXPECT_EQ(actionsOf<RemoveAssignment>(actions), (std::vector<RemoveAssignment>{{"web-b", "web-si"}}));
  expectNoRecovery(actions);
  EXPECT_TRUE(actionsOf<StartSu>(actions).empty()) << describeAll(actions);
  // Later decisions do not start it again, and count nothing.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(decideAndApply(s).empty());
  EXPECT_EQ(s.sus.at("web-b").restarts.count, 0);
  EXPECT_EQ(s.sus.at("web-b").failovers.count, 0);
  EXPECT_EQ(s.vms.at("web-b-vm").restarts.count, 0);
  EXPECT_EQ(s.nodes.at("n2").suFailovers.count, 0);
  EXPECT_EQ(s.sus.at("web-b").oper, OperState::kEnabled);
  EXPECT_EQ(assignmentOf(s, "web-si", "web-a"), (Assignment{"web-a", HaState::kActive, true}));
}

TEST(VmOperations, DestroyStopsAtOnceAndSuspendLeavesAManagedSave) {
  ClusterState s = runningState();
  Answer answer = command(s, "vm destroy vm/web-b-vm");
  ASSERT_TRUE(answer.ok) << answer.message;
  EXPECT_EQ(answer.message, "vm/web-b-vm stopping on n2");
  EXPECT_EQ(actionsOf<StopVm>(answer.actions), (std::vector<StopVm>{{"web-b-vm", "n2", VmStopMethod::kDestroy}}));
  EXPECT_EQ(describe(StopVm{"web-b-vm", "n2", VmStopMethod::kDestroy}), "stop vm/web-b-vm on n2 (operator)");
  EXPECT_EQ(s.vms.at("web-b-vm").hold, VmHold::kStopped);
  EXPECT_EQ(s.vms.at("web-b-vm").savedOn, "");

  s = runningState();
  answer = command(s, "vm suspend vm/web-b-vm");
  ASSERT_TRUE(answer.ok) << answer.message;
  EXPECT_EQ(answer.message, "vm/web-b-vm suspending on n2");
  EXPECT_EQ(actionsOf<StopVm>(answer.actions), (std::vector<StopVm>{{"web-b-vm", "n2", VmStopMethod::kSuspend}}));
  EXPECT_EQ(describe(StopVm{"web-b-vm", "n2", VmStopMethod::kSuspend}), "suspend vm/web-b-vm on n2 (operator)");
  EXPECT_EQ(s.vms.at("web-b-vm").hold, VmHold::kSuspended);
  EXPECT_EQ(s.vms.at("web-b-vm").savedOn, "n2");
  EXPECT_EQ(vmOperatorWord(s.vms.at("web-b-vm")), "suspended");
  EXPECT_EQ(s.vms.at("web-b-vm").presence, PresenceState::kTerminating);
}

TEST(VmOperations, StopsAreRefusedWhileTheUnitMayServeActively) {
  for (const char* op : {"shutdown", "destroy", "suspend"}) {
    ClusterState s = runningState();
    expectRefused(
        s, std::string("vm ") + op + " vm/web-a-vm",
        "vm/web-a-vm: su/web-a holds si/web-si active; switch over first: si-swap si/web-si, or lock su/web-a");
    EXPECT_EQ(s.vms.at("web-a-vm").hold, VmHold::kNone);
  }
}

TEST(VmOperations, AStoppedVmIsNotStoppedAgainAndASuspendedOneOnlyDestroyed) {
  ClusterState s = runningState();
  ASSERT_TRUE(command(s, "vm shutdown vm/web-b-vm").ok);
  for (const char* op : {"shutdown", "destroy", "suspend"}) {
    expectRefused(s, std::string("vm ") + op + " vm/web-b-vm", "vm/web-b-vm is stopped already; vm start starts it");
  }

  s = runningState();
  ASSERT_TRUE(command(s, "vm suspend vm/web-b-vm").ok);
  applyReport(s, VmStopped{"web-b-vm", "n2"});
  decideAndApply(s);  // its standby assignment goes
  for (const char* op : {"shutdown", "suspend"}) {
    expectRefused(s, std::string("vm ") + op + " vm/web-b-vm",
                  "vm/web-b-vm is suspended already; vm start restores it, vm destroy discards its managed save");
  }
  // A destroy discards the managed save (on the host that has it); the VM stays stopped.
  const Answer answer = command(s, "vm destroy vm/web-b-vm");
  ASSERT_TRUE(answer.ok) << answer.message;
  EXPECT_EQ(answer.message, "vm/web-b-vm stopped; its managed save on n2 is discarded");
  EXPECT_EQ(actionsOf<StopVm>(answer.actions), (std::vector<StopVm>{{"web-b-vm", "n2", VmStopMethod::kDestroy}}));
  EXPECT_EQ(s.vms.at("web-b-vm").hold, VmHold::kStopped);
  EXPECT_EQ(s.vms.at("web-b-vm").savedOn, "");
  EXPECT_EQ(s.vms.at("web-b-vm").presence, PresenceState::kUninstantiated);
}

TEST(VmOperations, SuspendIsRefusedUnlessInstantiatedAndNotPaused) {
  ClusterState s = runningState();
  s.vms.at("web-b-vm").presence = PresenceState::kInstantiating;
  expectRefused(s, "vm suspend vm/web-b-vm", "vm/web-b-vm is not instantiated (instantiating)");

  s = runningState();
  ASSERT_TRUE(command(s, "vm pause vm/web-b-vm").ok);
  expectRefused(s, "vm suspend vm/web-b-vm", "vm/web-b-vm is paused; vm resume it first");

  // A paused VM may be shut down or destroyed: it is no longer paused.
  const Answer answer = command(s, "vm destroy vm/web-b-vm");
  ASSERT_TRUE(answer.ok) << answer.message;
  EXPECT_FALSE(s.vms.at("web-b-vm").paused);
  EXPECT_EQ(vmOperatorWord(s.vms.at("web-b-vm")), "stopped");
}

TEST(VmOperations, DestroyOfAFailedVmHoldsItInsteadOfRecoveringIt) {
  ClusterState s = runningState();
  applyReport(s, VmFailed{"web-b-vm", "n2", FailureKind::kCrash});
  const Answer answer = command(s, "vm destroy vm/web-b-vm");
  ASSERT_TRUE(answer.ok) << answer.message;
  EXPECT_EQ(answer.message, "vm/web-b-vm held stopped (it is uninstantiated)");
  EXPECT_EQ(actionsOf<StopVm>(answer.actions), (std::vector<StopVm>{{"web-b-vm", "", VmStopMethod::kDestroy}}));
  EXPECT_EQ(describe(StopVm{"web-b-vm", "", VmStopMethod::kDestroy}), "hold vm/web-b-vm stopped (operator)");
  EXPECT_TRUE(actionsOf<RestartVm>(answer.actions).empty()) << describeAll(answer.actions);
  EXPECT_FALSE(s.vms.at("web-b-vm").failure);
  EXPECT_EQ(s.sus.at("web-b").node, "");
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(actionsOf<StartSu>(decideAndApply(s)).empty());
  EXPECT_EQ(s.vms.at("web-b-vm").restarts.count, 0);
}

// ---- vm start --------------------------------------------------------------------------------------

TEST(VmOperations, StartOfAnUnplacedHeldVmPlacesItsUnitWhereItsManagedSaveIs) {
  ClusterState s = runningState();
  ASSERT_TRUE(command(s, "vm suspend vm/web-b-vm").ok);
  applyReport(s, VmStopped{"web-b-vm", "n2"});
  decideAndApply(s);
  ASSERT_FALSE(assignmentOf(s, "web-si", "web-b"));
  // n3 holds the save (as after a suspend there): preferred over n2, which placement would pick.
  s.vms.at("web-b-vm").savedOn = "n3";

  const Answer answer = command(s, "vm start vm/web-b-vm");
  ASSERT_TRUE(answer.ok) << answer.message;
  EXPECT_EQ(answer.message, "vm/web-b-vm starting with su/web-b (restored from its managed save if placed on n3)");
  EXPECT_EQ(actionsOf<StartVm>(answer.actions), (std::vector<StartVm>{{"web-b-vm", ""}}));
  EXPECT_EQ(describe(StartVm{"web-b-vm", ""}), "start vm/web-b-vm (operator)");
  EXPECT_EQ(actionsOf<StartSu>(answer.actions), (std::vector<StartSu>{{"web-b", "n3"}}));
  EXPECT_EQ(s.vms.at("web-b-vm").hold, VmHold::kNone);
  EXPECT_EQ(s.vms.at("web-b-vm").presence, PresenceState::kInstantiating);
  EXPECT_EQ(s.vms.at("web-b-vm").savedOn, "n3");  // until it runs
  applyReport(s, VmStarted{"web-b-vm", "n3"});
  EXPECT_EQ(s.vms.at("web-b-vm").savedOn, "");
  const auto actions = decideAndApply(s);
  EXPECT_EQ(actionsOf<SetHa>(actions), (std::vector<SetHa>{{"web-b", "web-si", HaState::kStandby}}));
}

TEST(VmOperations, StartOfAHeldVmOfARunningUnitStartsItInPlace) {
  ClusterState s = runningState();
  ASSERT_TRUE(command(s, "vm shutdown vm/app-b-db").ok);
  applyReport(s, VmStopped{"app-b-db", "n2"});
  EXPECT_EQ(s.sus.at("app-b").node, "n2");  // app-b-vm runs on
  EXPECT_EQ(suPresence(s, s.sus.at("app-b")), PresenceState::kInstantiated);
  EXPECT_EQ(suReadiness(s, s.sus.at("app-b")), ReadinessState::kOutOfService);
  // Its standby assignment goes once the VM is stopped, though app-b-vm still runs.
  auto actions = decideAndApply(s);
  EXPECT_EQ(actionsOf<RemoveAssignment>(actions), (std::vector<RemoveAssignment>{{"app-b", "app-si"}}));
  // A restart of the unit leaves the held VM stopped.
  ASSERT_TRUE(command(s, "restart su/app-b").ok);
  EXPECT_EQ(s.vms.at("app-b-vm").presence, PresenceState::kRestarting);
  EXPECT_EQ(s.vms.at("app-b-db").presence, PresenceState::kUninstantiated);
  applyReport(s, VmStarted{"app-b-vm", "n2"});

  const Answer answer = command(s, "vm start vm/app-b-db");
  ASSERT_TRUE(answer.ok) << answer.message;
  EXPECT_EQ(answer.message, "vm/app-b-db starting on n2");
  EXPECT_EQ(actionsOf<StartVm>(answer.actions), (std::vector<StartVm>{{"app-b-db", "n2"}}));
  EXPECT_EQ(describe(StartVm{"app-b-db", "n2"}), "start vm/app-b-db on n2 (operator)");
  EXPECT_EQ(s.vms.at("app-b-db").presence, PresenceState::kInstantiating);
  EXPECT_EQ(s.vms.at("app-b-db").node, "n2");
  applyReport(s, VmStarted{"app-b-db", "n2"});
  EXPECT_EQ(suReadiness(s, s.sus.at("app-b")), ReadinessState::kInService);
  actions = decideAndApply(s);
  EXPECT_EQ(actionsOf<SetHa>(actions), (std::vector<SetHa>{{"app-b", "app-si", HaState::kStandby}}));
}

TEST(VmOperations, StartRestoresOnTheHostOfTheManagedSaveWhenStartedInPlace) {
  ClusterState s = runningState();
  ASSERT_TRUE(command(s, "vm suspend vm/app-b-db").ok);
  applyReport(s, VmStopped{"app-b-db", "n2"});
  const Answer answer = command(s, "vm start vm/app-b-db");
  ASSERT_TRUE(answer.ok) << answer.message;
  EXPECT_EQ(answer.message, "vm/app-b-db restoring on n2");
  EXPECT_EQ(s.vms.at("app-b-db").savedOn, "n2");
}

TEST(VmOperations, StartIsRefusedUnlessHeldAndStopped) {
  ClusterState s = runningState();
  expectRefused(s, "vm start vm/web-b-vm",
                "vm/web-b-vm was not stopped by an operator (vm start follows vm shutdown, destroy or suspend)");

  ASSERT_TRUE(command(s, "vm shutdown vm/web-b-vm").ok);
  // Its shutdown has not ended.
  expectRefused(s, "vm start vm/web-b-vm",
                "vm/web-b-vm is still stopping (terminating); vm start it once it is stopped");
  EXPECT_EQ(s.vms.at("web-b-vm").hold, VmHold::kStopped);
}

TEST(VmOperations, AUnitWhoseVmsAreAllHeldIsNotPlacedNorIsAHeldVmStartedWithItsUnit) {
  ClusterState s = runningState();
  ASSERT_TRUE(command(s, "vm destroy vm/app-b-db").ok);
  ASSERT_TRUE(command(s, "vm destroy vm/app-b-vm").ok);
  applyReport(s, VmStopped{"app-b-db", "n2"});
  applyReport(s, VmStopped{"app-b-vm", "n2"});
  EXPECT_EQ(s.sus.at("app-b").node, "");
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(actionsOf<StartSu>(decideAndApply(s)).empty());

  // One released: the unit is placed and starts that one only.
  const Answer answer = command(s, "vm start vm/app-b-vm");
  ASSERT_TRUE(answer.ok) << answer.message;
  EXPECT_EQ(actionsOf<StartSu>(answer.actions).size(), 1u) << describeAll(answer.actions);
  EXPECT_EQ(s.vms.at("app-b-vm").presence, PresenceState::kInstantiating);
  EXPECT_EQ(s.vms.at("app-b-db").presence, PresenceState::kUninstantiated);
  EXPECT_EQ(s.vms.at("app-b-db").node, "");
  EXPECT_EQ(s.vms.at("app-b-db").hold, VmHold::kStopped);
}

TEST(VmOperations, AFencedHostForgetsPausesButNotHolds) {
  ClusterState s = runningState();
  ASSERT_TRUE(command(s, "vm pause vm/web-b-vm").ok);
  ASSERT_TRUE(command(s, "vm suspend vm/app-b-db").ok);
  applyReport(s, VmStopped{"app-b-db", "n2"});
  applyAction(s, SetNodeStatus{"n2", NodeStatus::kDown, "fenced"}, 40s);
  EXPECT_FALSE(s.vms.at("web-b-vm").paused);
  EXPECT_EQ(s.vms.at("web-b-vm").presence, PresenceState::kUninstantiated);
  EXPECT_EQ(s.vms.at("app-b-db").hold, VmHold::kSuspended);
  EXPECT_EQ(s.vms.at("app-b-db").savedOn, "n2");  // the save is on n2's disk
}

}  // namespace
}  // namespace kvm_amf::engine
