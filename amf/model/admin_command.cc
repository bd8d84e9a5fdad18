#include "kvm_amf/amf/model/admin_command.h"

#include "kvm_amf/amf/model/names.h"

#include <array>
#include <chrono>
#include <utility>
#include <vector>

#include "kvm_amf/amf/model/units.h"

namespace kvm_amf::model {
namespace {

using Kind = AdminTarget::Kind;

constexpr std::array<std::pair<Kind, std::string_view>, 6> kKindWords = {{
    {Kind::kNode, "node"},
    {Kind::kNodeGroup, "ng"},
    {Kind::kServiceGroup, "sg"},
    {Kind::kServiceUnit, "su"},
    {Kind::kServiceInstance, "si"},
    {Kind::kVm, "vm"},
}};

// Bit sets of target kinds, for what each verb applies to.
constexpr unsigned bit(Kind kind) { return 1u << static_cast<unsigned>(kind); }
constexpr unsigned kAdminKinds = bit(Kind::kNode) | bit(Kind::kNodeGroup) | bit(Kind::kServiceGroup) |
                                 bit(Kind::kServiceUnit) | bit(Kind::kServiceInstance);

// One verb: its words ("lock"; "vm" + "start" for VM operations) and the target kinds it takes.
struct VerbSpec {
  AdminVerb verb;
  std::string_view word;     // the first word
  std::string_view subWord;  // the second word of `vm` operations; empty otherwise
  unsigned kinds;
};

constexpr std::array<VerbSpec, 18> kVerbs = {{
    {AdminVerb::kLock, "lock", "", kAdminKinds},
    {AdminVerb::kUnlock, "unlock", "", kAdminKinds},
    {AdminVerb::kLockInstantiation, "lock-in", "", kAdminKinds},
    {AdminVerb::kUnlockInstantiation, "unlock-in", "", kAdminKinds},
    {AdminVerb::kShutdown, "shutdown", "", kAdminKinds},
    {AdminVerb::kRestart, "restart", "", bit(Kind::kServiceUnit) | bit(Kind::kVm)},
    {AdminVerb::kRepaired, "repaired", "", bit(Kind::kNode) | bit(Kind::kServiceUnit)},
    {AdminVerb::kSiSwap, "si-swap", "", bit(Kind::kServiceInstance)},
    {AdminVerb::kSgAdjust, "sg-adjust", "", bit(Kind::kServiceGroup)},
    {AdminVerb::kVmStart, "vm", "start", bit(Kind::kVm)},
    {AdminVerb::kVmShutdown, "vm", "shutdown", bit(Kind::kVm)},
    {AdminVerb::kVmDestroy, "vm", "destroy", bit(Kind::kVm)},
    {AdminVerb::kVmPause, "vm", "pause", bit(Kind::kVm)},
    {AdminVerb::kVmResume, "vm", "resume", bit(Kind::kVm)},
    {AdminVerb::kVmSuspend, "vm", "suspend", bit(Kind::kVm)},
    {AdminVerb::kVmReboot, "vm", "reboot", bit(Kind::kVm)},
    {AdminVerb::kVmReset, "vm", "reset", bit(Kind::kVm)},
    {AdminVerb::kMigrate, "migrate", "", bit(Kind::kServiceUnit)},
}};

// Bounds of the migration options, as for a service group's `migration` settings.
constexpr Duration kMinMaxDowntime{1};
constexpr Duration kMaxMaxDowntime = std::chrono::minutes(1);
constexpr Duration kMinTimeout = std::chrono::seconds(1);
constexpr Duration kMaxTimeout = std::chrono::hours(24);

// "a, b or c".
std::string joinWords(const std::vector<std::string>& words, std::string_view last = " or ") {
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (i > 0) out += (i + 1 == words.size()) ? std::string(last) : ", ";
    out += words[i];
  }
  return out;
}

std::string_view kindWord(Kind kind) {
  for (const auto& [k, word] : kKindWords) {
    if (k == kind) return word;
  }
  return "?";
}

// "node/NAME, su/NAME or si/NAME" for the kinds in `kinds`.
std::string kindPatterns(unsigned kinds) {
  std::vector<std::string> words;
  for (const auto& [kind, word] : kKindWords) {
    if (kinds & bit(kind)) words.push_back(std::string(word) + "/NAME");
  }
  return joinWords(words);
}

std::string verbList() {
  std::vector<std::string> words;
  for (const VerbSpec& spec : kVerbs) {
    if (words.empty() || words.back() != spec.word) words.emplace_back(spec.word);
  }
  return joinWords(words);
}

std::string vmOperationList() {
  std::vector<std::string> words;
  for (const VerbSpec& spec : kVerbs) {
    if (!spec.subWord.empty()) words.emplace_back(spec.subWord);
  }
  return joinWords(words);
}

const VerbSpec& specOf(AdminVerb verb) {
  for (const VerbSpec& spec : kVerbs) {
    if (spec.verb == verb) return spec;
  }
  return kVerbs.front();  // unreachable: every verb has a row
}

// The words of a verb as written: "lock", "vm start".
std::string verbWords(const VerbSpec& spec) {
  std::string out(spec.word);
  if (!spec.subWord.empty()) out += " " + std::string(spec.subWord);
  return out;
}

std::vector<std::string_view> splitWords(std::string_view text) {
  std::vector<std::string_view> words;
  auto isSpace = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && isSpace(text[i])) ++i;
    const std::size_t start = i;
    while (i < text.size() && !isSpace(text[i])) ++i;
    if (i > start) words.push_back(text.substr(start, i - start));
  }
  return words;
}

// Long words are cut in messages so that hostile input stays readable.
std::string quoted(std::string_view word) {
  std::string text(word.substr(0, 64));
  if (word.size() > 64) text += "...";
  return "'" + text + "'";
}

// The target of `verb`: parsed, then checked to be of a kind the verb applies to.
Result<AdminTarget> parseTargetFor(const VerbSpec& spec, std::string_view word) {
  auto target = parseAdminTarget(word);
  if (!target) return Error{verbWords(spec) + ": " + target.error().message};
  if (!(spec.kinds & bit(target.value().kind))) {
    return Error{verbWords(spec) + " applies to " + kindPatterns(spec.kinds) + ", not " + std::string(word)};
  }
  return target;
}

Result<Duration> parseOptionDuration(std::string_view option, std::string_view value, Duration min, Duration max) {
  auto d = parseDuration(value);
  if (!d) {
    return Error{std::string(option) + ": " + quoted(value) +
                 " is not a duration: a number with a unit ms, s, m or h (e.g. 300ms, 5s, 10m)"};
  }
  if (*d < min || *d > max) {
    return Error{std::string(option) + " must be between " + formatDuration(min) + " and " + formatDuration(max) +
                 ", not " + std::string(value)};
  }
  return *d;
}

// The options of `migrate` after its verb, in any order around the unit: --to (required),
// --max-downtime, --timeout, each as "--opt VALUE" or "--opt=VALUE", each at most once.
Result<AdminCommand> parseMigrate(const VerbSpec& spec, const std::vector<std::string_view>& words) {
  AdminCommand command;
  command.verb = spec.verb;
  bool haveTarget = false;
  for (std::size_t i = 1; i < words.size(); ++i) {
    std::string_view word = words[i];
    if (!word.starts_with("--")) {
      if (haveTarget)
        return Error{"unexpected word " + quoted(word) + " after migrate " + formatAdminTarget(command.target)};
      auto target = parseTargetFor(spec, word);
      if (!target) return target.error();
      command.target = std::move(target).value();
      haveTarget = true;
      continue;
    }
    std::string_view option = word;
    std::string_view value;
    bool haveValue = false;
    if (auto eq = word.find('='); eq != std::string_view::npos) {
      option = word.substr(0, eq);
      value = word.substr(eq + 1);
      haveValue = true;
    } else if (i + 1 < words.size()) {
      value = words[++i];
      haveValue = true;
    }
    if (option != "--to" && option != "--max-downtime" && option != "--timeout") {
      return Error{"unknown option " + quoted(option) + " for migrate; expected --to, --max-downtime or --timeout"};
    }
    if (!haveValue || value.empty()) return Error{std::string(option) + " needs a value"};
    if (option == "--to") {
      if (command.to) return Error{"--to given twice"};
      auto to = parseAdminTarget(value);
      if (!to) return Error{"--to: " + to.error().message};
      if (to.value().kind != Kind::kNode) return Error{"--to applies to node/NAME, not " + std::string(value)};
      command.to = std::move(to).value();
    } else if (option == "--max-downtime") {
      if (command.maxDowntime) return Error{"--max-downtime given twice"};
      auto d = parseOptionDuration(option, value, kMinMaxDowntime, kMaxMaxDowntime);
      if (!d) return d.error();
      command.maxDowntime = d.value();
    } else {
      if (command.timeout) return Error{"--timeout given twice"};
      auto d = parseOptionDuration(option, value, kMinTimeout, kMaxTimeout);
      if (!d) return d.error();
      command.timeout = d.value();
    }
  }
  if (!haveTarget) return Error{"migrate needs a target: su/NAME"};
  if (!command.to) return Error{"migrate needs a destination: --to node/NAME"};
  return command;
}

}  // namespace

Result<AdminTarget> parseAdminTarget(std::string_view text) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) {
    return Error{quoted(text) + " is not a target: expected KIND/NAME with KIND one of node, ng, sg, su, si or vm"};
  }
  const std::string_view kind = text.substr(0, slash);
  const std::string_view name = text.substr(slash + 1);
  AdminTarget target;
  bool known = false;
  for (const auto& [k, word] : kKindWords) {
    if (word == kind) {
      target.kind = k;
      known = true;
    }
  }
  if (!known) {
    return Error{"unknown target kind " + quoted(kind) + " in " + quoted(text) +
                 "; expected node, ng, sg, su, si or vm"};
  }
  if (!isValidName(name)) {
    return Error{quoted(name) + " in " + quoted(text) +
                 " is not a valid name (1-63 lower-case letters, digits and '-', starting and ending with a letter "
                 "or digit)"};
  }
  target.name = std::string(name);
  return target;
}

std::string formatAdminTarget(const AdminTarget& target) {
  return std::string(kindWord(target.kind)) + "/" + target.name;
}

Result<AdminCommand> parseAdminCommand(std::string_view text) {
  const std::vector<std::string_view> words = splitWords(text);
  if (words.empty()) return Error{"empty command; expected a verb: one of " + verbList()};

  const VerbSpec* spec = nullptr;
  std::size_t next = 1;  // the index of the word after the verb
  if (words[0] == "vm") {
    if (words.size() < 2) return Error{"vm needs an operation: one of " + vmOperationList()};
    for (const VerbSpec& s : kVerbs) {
      if (s.word == "vm" && s.subWord == words[1]) spec = &s;
    }
    if (!spec) return Error{"unknown vm operation " + quoted(words[1]) + "; expected one of " + vmOperationList()};
    next = 2;
  } else {
    for (const VerbSpec& s : kVerbs) {
      if (s.subWord.empty() && s.word == words[0]) spec = &s;
    }
    if (!spec) return Error{"unknown verb " + quoted(words[0]) + "; expected one of " + verbList()};
  }

  if (spec->verb == AdminVerb::kMigrate) return parseMigrate(*spec, words);

  if (words.size() <= next) return Error{verbWords(*spec) + " needs a target: " + kindPatterns(spec->kinds)};
  auto target = parseTargetFor(*spec, words[next]);
  if (!target) return target.error();
  if (words.size() > next + 1) {
    return Error{"unexpected word " + quoted(words[next + 1]) + " after " + verbWords(*spec) + " " +
                 std::string(words[next])};
  }
  AdminCommand command;
  command.verb = spec->verb;
  command.target = std::move(target).value();
  return command;
}

std::string formatAdminCommand(const AdminCommand& command) {
  std::string out = verbWords(specOf(command.verb)) + " " + formatAdminTarget(command.target);
  if (command.verb != AdminVerb::kMigrate) return out;
  if (command.to) out += " --to " + formatAdminTarget(*command.to);
  if (command.maxDowntime) out += " --max-downtime " + formatDuration(*command.maxDowntime);
  if (command.timeout) out += " --timeout " + formatDuration(*command.timeout);
  return out;
}

}  // namespace kvm_amf::model
