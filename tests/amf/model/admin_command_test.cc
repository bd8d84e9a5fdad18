#include "kvm_amf/amf/model/admin_command.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace kvm_amf::model {
namespace {

using namespace std::chrono_literals;
using Kind = AdminTarget::Kind;

AdminCommand command(AdminVerb verb, Kind kind, const std::string& name) {
  AdminCommand c;
  c.verb = verb;
  c.target = {kind, name};
  return c;
}

// The parse error of `text`, or a note that it parsed.
std::string errorOf(const std::string& text) {
  auto r = parseAdminCommand(text);
  if (r) return "(parsed as: " + formatAdminCommand(r.value()) + ")";
  return r.error().message;
}

TEST(AdminTarget, ParsesAndFormatsEveryKind) {
  const std::vector<std::pair<std::string, AdminTarget>> cases = {
      {"node/node1", {Kind::kNode, "node1"}},
      {"ng/core", {Kind::kNodeGroup, "core"}},
      {"sg/mme", {Kind::kServiceGroup, "mme"}},
      {"su/mme-a", {Kind::kServiceUnit, "mme-a"}},
      {"si/mme-si", {Kind::kServiceInstance, "mme-si"}},
      {"vm/mme-a-vm", {Kind::kVm, "mme-a-vm"}},
  };
  for (const auto& [text, target] : cases) {
    auto parsed = parseAdminTarget(text);
    ASSERT_TRUE(parsed) << text << ": " << parsed.error().message;
    EXPECT_EQ(parsed.value(), target) << text;
    EXPECT_EQ(formatAdminTarget(target), text);
  }
}

TEST(AdminTarget, RejectsMalformedTargets) {
  auto noSlash = parseAdminTarget("mme-a");
  ASSERT_FALSE(noSlash);
  EXPECT_EQ(noSlash.error().message,
            "'mme-a' is not a target: expected KIND/NAME with KIND one of node, ng, sg, su, si or vm");
  auto badKind = parseAdminTarget("unit/mme-a");
  ASSERT_FALSE(badKind);
  EXPECT_EQ(badKind.error().message, "unknown target kind 'unit' in 'unit/mme-a'; expected node, ng, sg, su, si or vm");
  for (const std::string& name :
       std::vector<std::string>{"", "Mme", "mme_a", "-mme", "mme-", std::string(64, 'a'), "a/b"}) {
    auto bad = parseAdminTarget("su/" + name);
    ASSERT_FALSE(bad) << name;
    EXPECT_NE(bad.error().message.find("is not a valid name"), std::string::npos) << bad.error().message;
  }
  EXPECT_TRUE(parseAdminTarget("su/" + std::string(63, 'a')));
  EXPECT_TRUE(parseAdminTarget("su/0"));
}

// Every verb with every kind of target it applies to: the parse gives the command, the command
// formats back to the same canonical words.
TEST(AdminCommand, EveryVerbRoundTrips) {
  struct Case {
    std::string text;
    AdminCommand expected;
  };
  std::vector<Case> cases;
  const std::vector<std::pair<std::string, AdminVerb>> lifecycle = {
      {"lock", AdminVerb::kLock},
      {"unlock", AdminVerb::kUnlock},
      {"lock-in", AdminVerb::kLockInstantiation},
      {"unlock-in", AdminVerb::kUnlockInstantiation},
      {"shutdown", AdminVerb::kShutdown},
  };
  for (const auto& [word, verb] : lifecycle) {
    cases.push_back({word + " node/n1", command(verb, Kind::kNode, "n1")});
    cases.push_back({word + " ng/core", command(verb, Kind::kNodeGroup, "core")});
    cases.push_back({word + " sg/mme", command(verb, Kind::kServiceGroup, "mme")});
    cases.push_back({word + " su/mme-a", command(verb, Kind::kServiceUnit, "mme-a")});
    cases.push_back({word + " si/mme-si", command(verb, Kind::kServiceInstance, "mme-si")});
  }
  cases.push_back({"restart su/mme-a", command(AdminVerb::kRestart, Kind::kServiceUnit, "mme-a")});
  cases.push_back({"restart vm/mme-a-vm", command(AdminVerb::kRestart, Kind::kVm, "mme-a-vm")});
  cases.push_back({"repaired node/n1", command(AdminVerb::kRepaired, Kind::kNode, "n1")});
  cases.push_back({"repaired su/mme-a", command(AdminVerb::kRepaired, Kind::kServiceUnit, "mme-a")});
  cases.push_back({"si-swap si/mme-si", command(AdminVerb::kSiSwap, Kind::kServiceInstance, "mme-si")});
  cases.push_back({"sg-adjust sg/mme", command(AdminVerb::kSgAdjust, Kind::kServiceGroup, "mme")});
  const std::vector<std::pair<std::string, AdminVerb>> vmOps = {
      {"start", AdminVerb::kVmStart},   {"shutdown", AdminVerb::kVmShutdown}, {"destroy", AdminVerb::kVmDestroy},
      {"pause", AdminVerb::kVmPause},   {"resume", AdminVerb::kVmResume},     {"suspend", AdminVerb::kVmSuspend},
      {"reboot", AdminVerb::kVmReboot}, {"reset", AdminVerb::kVmReset},
  };
  for (const auto& [word, verb] : vmOps) {
    cases.push_back({"vm " + word + " vm/x1", command(verb, Kind::kVm, "x1")});
  }
  AdminCommand migrate = command(AdminVerb::kMigrate, Kind::kServiceUnit, "mme-a");
  migrate.to = AdminTarget{Kind::kNode, "n2"};
  cases.push_back({"migrate su/mme-a --to node/n2", migrate});
  migrate.maxDowntime = 200ms;
  cases.push_back({"migrate su/mme-a --to node/n2 --max-downtime 200ms", migrate});
  migrate.timeout = 90s;
  cases.push_back({"migrate su/mme-a --to node/n2 --max-downtime 200ms --timeout 90s", migrate});
  migrate.maxDowntime.reset();
  cases.push_back({"migrate su/mme-a --to node/n2 --timeout 90s", migrate});

  std::set<AdminVerb> covered;
  for (const Case& c : cases) {
    auto parsed = parseAdminCommand(c.text);
    ASSERT_TRUE(parsed) << c.text << ": " << parsed.error().message;
    EXPECT_EQ(parsed.value(), c.expected) << c.text;
    EXPECT_EQ(formatAdminCommand(c.expected), c.text);
    auto again = parseAdminCommand(formatAdminCommand(parsed.value()));
    ASSERT_TRUE(again) << c.text;
    EXPECT_EQ(again.value(), parsed.value()) << c.text;
    covered.insert(c.expected.verb);
  }
  EXPECT_EQ(covered.size(), static_cast<std::size_t>(AdminVerb::kMigrate) + 1);  // every verb
}

TEST(AdminCommand, AcceptsAnySpacingAndOptionOrder) {
  auto lock = parseAdminCommand("  lock\t su/mme-a \n");
  ASSERT_TRUE(lock) << lock.error().message;
  EXPECT_EQ(lock.value(), command(AdminVerb::kLock, Kind::kServiceUnit, "mme-a"));

  auto migrate = parseAdminCommand("migrate --timeout=2m --to node/n3 su/mme-b --max-downtime=1.5s");
  ASSERT_TRUE(migrate) << migrate.error().message;
  EXPECT_EQ(migrate.value().target, (AdminTarget{Kind::kServiceUnit, "mme-b"}));
  EXPECT_EQ(migrate.value().to, (AdminTarget{Kind::kNode, "n3"}));
  EXPECT_EQ(migrate.value().maxDowntime, 1500ms);
  EXPECT_EQ(migrate.value().timeout, 120s);
  EXPECT_EQ(formatAdminCommand(migrate.value()), "migrate su/mme-b --to node/n3 --max-downtime 1500ms --timeout 2m");
}

TEST(AdminCommand, NamesTheBadWordInEveryError) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"",
       "empty command; expected a verb: one of lock, unlock, lock-in, unlock-in, shutdown, restart, repaired, "
       "si-swap, sg-adjust, vm or migrate"},
      {"   ",
       "empty command; expected a verb: one of lock, unlock, lock-in, unlock-in, shutdown, restart, repaired, "
       "si-swap, sg-adjust, vm or migrate"},
      {"frob su/a",
       "unknown verb 'frob'; expected one of lock, unlock, lock-in, unlock-in, shutdown, restart, "
       "repaired, si-swap, sg-adjust, vm or migrate"},
      {"LOCK su/a",
       "unknown verb 'LOCK'; expected one of lock, unlock, lock-in, unlock-in, shutdown, restart, "
       "repaired, si-swap, sg-adjust, vm or migrate"},
      {"si-swap su/mme-a", "si-swap applies to si/NAME, not su/mme-a"},
      {"sg-adjust su/mme-a", "sg-adjust applies to sg/NAME, not su/mme-a"},
      {"lock vm/x", "lock applies to node/NAME, ng/NAME, sg/NAME, su/NAME or si/NAME, not vm/x"},
      {"shutdown vm/x", "shutdown applies to node/NAME, ng/NAME, sg/NAME, su/NAME or si/NAME, not vm/x"},
      {"restart node/n1", "restart applies to su/NAME or vm/NAME, not node/n1"},
      {"repaired si/s", "repaired applies to node/NAME or su/NAME, not si/s"},
      {"vm start su/a", "vm start applies to vm/NAME, not su/a"},
      {"vm", "vm needs an operation: one of start, shutdown, destroy, pause, resume, suspend, reboot or reset"},
      {"vm frob vm/a",
       "unknown vm operation 'frob'; expected one of start, shutdown, destroy, pause, resume, suspend, reboot or "
       "reset"},
      {"vm vm/a",
       "unknown vm operation 'vm/a'; expected one of start, shutdown, destroy, pause, resume, suspend, reboot or "
       "reset"},
      {"lock", "lock needs a target: node/NAME, ng/NAME, sg/NAME, su/NAME or si/NAME"},
      {"vm reset", "vm reset needs a target: vm/NAME"},
      {"lock su/a su/b", "unexpected word 'su/b' after lock su/a"},
      {"lock su/a --to node/n1", "unexpected word '--to' after lock su/a"},
      {"lock mme-a", "lock: 'mme-a' is not a target: expected KIND/NAME with KIND one of node, ng, sg, su, si or vm"},
      {"lock unit/a", "lock: unknown target kind 'unit' in 'unit/a'; expected node, ng, sg, su, si or vm"},
      {"lock su/Mme",
       "lock: 'Mme' in 'su/Mme' is not a valid name (1-63 lower-case letters, digits and '-', "
       "starting and ending with a letter or digit)"},
      {"migrate su/a", "migrate needs a destination: --to node/NAME"},
      {"migrate --to node/n1", "migrate needs a target: su/NAME"},
      {"migrate node/n1 --to node/n2", "migrate applies to su/NAME, not node/n1"},
      {"migrate su/a --to su/b", "--to applies to node/NAME, not su/b"},
      {"migrate su/a --to n2",
       "--to: 'n2' is not a target: expected KIND/NAME with KIND one of node, ng, sg, su, "
       "si or vm"},
      {"migrate su/a --to", "--to needs a value"},
      {"migrate su/a --to=", "--to needs a value"},
      {"migrate su/a --to node/n1 --to node/n2", "--to given twice"},
      {"migrate su/a --to node/n1 --timeout 1m --timeout 2m", "--timeout given twice"},
      {"migrate su/a --to node/n1 --speed 3",
       "unknown option '--speed' for migrate; expected --to, --max-downtime "
       "or --timeout"},
      {"migrate su/a --to node/n1 --max-downtime fast",
       "--max-downtime: 'fast' is not a duration: a number with a unit ms, s, m or h (e.g. 300ms, 5s, 10m)"},
      {"migrate su/a --to node/n1 --max-downtime 2m", "--max-downtime must be between 1ms and 1m, not 2m"},
      {"migrate su/a --to node/n1 --timeout 500ms", "--timeout must be between 1s and 24h, not 500ms"},
      {"migrate su/a su/b --to node/n1", "unexpected word 'su/b' after migrate su/a"},
  };
  for (const auto& [text, message] : cases) EXPECT_EQ(errorOf(text), message) << "input: '" << text << "'";
}

TEST(AdminCommand, CutsHostileWordsInMessages) {
  const std::string longWord(10'000, 'x');
  const std::string message = errorOf(longWord + " su/a");
  EXPECT_LT(message.size(), 300u);
  EXPECT_NE(message.find("unknown verb 'xxxx"), std::string::npos) << message;
}

}  // namespace
}  // namespace kvm_amf::model
