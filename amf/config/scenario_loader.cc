// Reads `amf-sim` scenario files with the configuration reader's Fields, then loads the
// configuration they name and checks every name the steps and expectations use against it.
#include "kvm_amf/amf/config/scenario_loader.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>
#include <vector>

#include "kvm_amf/amf/model/units.h"
#include "yaml_reader.h"

namespace kvm_amf::config {
namespace {

using model::AdminTarget;
using model::Duration;
using model::Fault;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using TargetKind = AdminTarget::Kind;
constexpr Fields::Need kRequired = Fields::kRequired;

// The longest simulated time a scenario may describe.
constexpr Duration kMaxScenarioTime = hours(24 * 30);

// What one fault key names: a node, a VM, or something of its own.
enum class FaultValue { kNode, kVm, kPartition, kHeal, kOpFail, kCrashLoop, kFlap, kLoss, kFile };

struct FaultWord {
  Fault::Kind kind;
  std::string_view word;
  FaultValue value;
};

constexpr std::array<FaultWord, 23> kFaultWords = {{
    {Fault::Kind::kNodeCrash, "node-crash", FaultValue::kNode},
    {Fault::Kind::kNodeStart, "node-start", FaultValue::kNode},
    {Fault::Kind::kVmCrash, "vm-crash", FaultValue::kVm},
    {Fault::Kind::kGuestHang, "guest-hang", FaultValue::kVm},
    {Fault::Kind::kPartition, "partition", FaultValue::kPartition},
    {Fault::Kind::kHeal, "heal", FaultValue::kHeal},
    {Fault::Kind::kAmfdCrash, "amfd-crash", FaultValue::kNode},
    {Fault::Kind::kAmfdStart, "amfd-start", FaultValue::kNode},
    {Fault::Kind::kIoError, "io-error", FaultValue::kVm},
    {Fault::Kind::kOpFail, "op-fail", FaultValue::kOpFail},
    {Fault::Kind::kGuestResume, "guest-resume", FaultValue::kVm},
    {Fault::Kind::kVmCrashLoop, "vm-crash-loop", FaultValue::kCrashLoop},
    {Fault::Kind::kAmfdHang, "amfd-hang", FaultValue::kNode},
    {Fault::Kind::kAmfdResume, "amfd-resume", FaultValue::kNode},
    {Fault::Kind::kLibvirtRestart, "libvirt-restart", FaultValue::kNode},
    {Fault::Kind::kCorosyncCrash, "corosync-crash", FaultValue::kNode},
    {Fault::Kind::kCorosyncStart, "corosync-start", FaultValue::kNode},
    {Fault::Kind::kLinkFlap, "link-flap", FaultValue::kFlap},
    {Fault::Kind::kPacketLoss, "packet-loss", FaultValue::kLoss},
    {Fault::Kind::kStateDiskFull, "state-disk-full", FaultValue::kNode},
    {Fault::Kind::kStateDiskFree, "state-disk-free", FaultValue::kNode},
    {Fault::Kind::kApply, "apply", FaultValue::kFile},
    {Fault::Kind::kHostileFrames, "hostile-frames", FaultValue::kNode},
}};

constexpr std::array<std::pair<Fault::Op, std::string_view>, 4> kOpWords = {{
    {Fault::Op::kStart, "start"},
    {Fault::Op::kStop, "stop"},
    {Fault::Op::kMigrate, "migrate"},
    {Fault::Op::kFence, "fence"},
}};

const FaultWord* findFault(std::string_view word) {
  for (const FaultWord& f : kFaultWords) {
    if (f.word == word) return &f;
  }
  return nullptr;
}

std::string_view faultWord(Fault::Kind kind) {
  for (const FaultWord& f : kFaultWords) {
    if (f.kind == kind) return f.word;
  }
  return "?";
}

std::string_view opWordOf(Fault::Op op) {
  for (const auto& [o, word] : kOpWords) {
    if (o == op) return word;
  }
  return "?";
}

std::string faultList() {
  std::string out;
  for (std::size_t i = 0; i < kFaultWords.size(); ++i) {
    if (i > 0) out += (i + 1 == kFaultWords.size()) ? " or " : ", ";
    out += kFaultWords[i].word;
  }
  return out;
}

FaultValue faultValueOf(Fault::Kind kind) {
  for (const FaultWord& f : kFaultWords) {
    if (f.kind == kind) return f.value;
  }
  return FaultValue::kNode;
}

std::string faultTextOf(const Fault& fault) {
  std::string out(faultWord(fault.kind));
  switch (faultValueOf(fault.kind)) {
    case FaultValue::kNode:
      return out + " " + fault.node;
    case FaultValue::kVm:
      return out + " " + fault.vm;
    case FaultValue::kCrashLoop:
      return out + " " + fault.vm + " " + std::to_string(fault.count);
    case FaultValue::kFlap:
      return out + " " + fault.node + " " + std::to_string(fault.count) + " " + model::formatDuration(fault.period);
    case FaultValue::kLoss:
      return out + " " + fault.node + " " + std::to_string(fault.percent) + "%" +
             (fault.delay.count() > 0 ? " +" + model::formatDuration(fault.delay) : "");
    case FaultValue::kFile:
      return out + " " + std::filesystem::path(fault.file).filename().string();
    case FaultValue::kPartition: {
      out += " ";
      for (std::size_t side = 0; side < fault.groups.size(); ++side) {
        if (side > 0) out += "|";
        for (std::size_t i = 0; i < fault.groups[side].size(); ++i) {
          if (i > 0) out += ",";
          out += fault.groups[side][i];
        }
      }
      return out;
    }
    case FaultValue::kHeal:
      return out;
    case FaultValue::kOpFail:
      return out + " " + fault.node + " " + std::string(opWordOf(fault.op)) + " " + std::to_string(fault.count);
  }
  return out;
}

std::string_view kindNoun(TargetKind kind) {
  switch (kind) {
    case TargetKind::kNode:
      return "node";
    case TargetKind::kNodeGroup:
      return "node group";
    case TargetKind::kServiceGroup:
      return "service group";
    case TargetKind::kServiceUnit:
      return "service unit";
    case TargetKind::kServiceInstance:
      return "service instance";
    case TargetKind::kVm:
      return "VM";
  }
  return "object";
}

// A name a step or expectation uses, to be found in the configuration once it is loaded.
struct Reference {
  AdminTarget target;
  Location where;
  std::string context;  // the key that used it, as messages start: "node-crash", "admin", ...
};

// One configuration file named under `config:`.
struct ConfigEntry {
  std::string resolved;  // the path the file is read from
  std::string written;   // as the scenario writes it
  Location where;
};

// A step read without error, with where its `at` was written.
struct ReadStep {
  model::ScenarioStep step;
  Location at;
};

std::string resolvePath(const std::string& baseDir, const std::string& path) {
  const std::filesystem::path p(path);
  if (p.is_absolute() || baseDir.empty()) return path;
  return (std::filesystem::path(baseDir) / p).string();
}

// Reads one scenario document. Problems go to `errors` through the ReadContext.
class ScenarioReader {
 public:
  ScenarioReader(ReadContext& ctx, Diagnostics& errors, std::string file, std::string baseDir)
      : ctx_(ctx), errors_(errors), file_(std::move(file)), baseDir_(std::move(baseDir)) {}

  void read(Fields& f) {
    readConfig(f);
    f.unsignedInteger("seed", scenario_.seed, 0, std::numeric_limits<std::uint64_t>::max());
    f.object("timing", [&](Fields& t) {
      auto& timing = scenario_.timing;
      t.duration("vmStart", timing.vmStart, milliseconds(0), hours(1));
      t.duration("vmStop", timing.vmStop, milliseconds(0), hours(1));
      t.duration("migrate", timing.migrate, milliseconds(0), hours(1));
      t.duration("fence", timing.fence, milliseconds(0), hours(1));
      t.duration("guestAck", timing.guestAck, milliseconds(0), minutes(1));
      t.duration("message", timing.message, milliseconds(0), minutes(1));
      t.duration("boot", timing.boot, milliseconds(0), hours(1));
    });
    f.duration("until", scenario_.until, milliseconds(1), kMaxScenarioTime);
    f.objects("steps", [&](Fields& s, std::size_t) { readStep(s); });
    f.object("expect", [&](Fields& e) {
      e.object("final", [&](Fields& fin) { readFinal(fin); });
      e.object("maxOutage", [&](Fields& m) { readMaxOutage(m); });
    });
  }

  // After read(): the steps in time order, each no later than `until`.
  void finishSteps() {
    std::stable_sort(steps_.begin(), steps_.end(),
                     [](const ReadStep& a, const ReadStep& b) { return a.step.at < b.step.at; });
    for (ReadStep& s : steps_) {
      if (s.step.at > scenario_.until) {
        ctx_.error(s.at, "at: " + model::formatDuration(s.step.at) + " is after until (" +
                             model::formatDuration(scenario_.until) + "); the step would never run");
      }
      scenario_.steps.push_back(std::move(s.step));
    }
  }

  model::Scenario& scenario() { return scenario_; }
  const std::vector<ConfigEntry>& configEntries() const { return configEntries_; }
  const std::vector<Reference>& references() const { return references_; }
  // True when `config:` was given and every entry in it is a usable path.
  bool configComplete() const { return configComplete_; }

 private:
  Location located(const Fields& f, std::string_view key) const { return ctx_.where().locate(field(f.path(), key)); }

  // Runs `read` on a key known to be present; a null value (which the accessors take as absent)
  // is reported as "expected <what>". True when the value was read without error.
  bool readPresent(Fields& f, std::string_view key, const std::string& what, const std::function<bool()>& read) {
    const std::size_t before = errors_.size();
    if (read()) return true;
    if (errors_.size() == before) f.fail(key, "expected " + what);
    return false;
  }

  void readConfig(Fields& f) {
    std::set<std::string> seen;
    bool clean = true;
    const bool present = f.list(
        "config",
        [&](const YamlValue& entry, const std::string&) {
          const Location where = ctx_.at(file_, entry);
          if (entry.kind != YamlValue::Kind::kScalar || entry.text.empty()) {
            ctx_.error(where, "config: expected a file path, found " + describe(entry));
            clean = false;
            return;
          }
          std::string resolved = resolvePath(baseDir_, entry.text);
          if (!seen.insert(resolved).second) {
            ctx_.error(where, "config: '" + entry.text.substr(0, 200) + "' is listed twice");
            clean = false;
            return;
          }
          scenario_.config.push_back(resolved);
          configEntries_.push_back({std::move(resolved), entry.text, where});
        },
        kRequired);
    if (present && clean && configEntries_.empty()) f.fail("config", "needs at least one configuration file");
    configComplete_ = present && clean && !configEntries_.empty();
  }

  void readStep(Fields& s) {
    const std::size_t before = errors_.size();
    ReadStep read;
    s.duration("at", read.step.at, milliseconds(0), kMaxScenarioTime, kRequired);
    read.at = located(s, "at");

    std::optional<std::pair<std::string, Location>> fault;
    std::optional<std::pair<std::string, Location>> admin;
    for (const auto& key : s.keys()) {
      if (key.first == "fault" && !fault) fault = key;
      if (key.first == "admin" && !admin) admin = key;
    }
    if (fault && admin) {
      const Location later =
          std::tie(fault->second.line, fault->second.column) < std::tie(admin->second.line, admin->second.column)
              ? admin->second
              : fault->second;
      ctx_.error(later, "a step has either a fault or an admin command, not both");
      s.ignore("fault");
      s.ignore("admin");
    } else if (fault) {
      Fault value;
      if (readPresent(s, "fault", "a map with one fault: " + faultList(),
                      [&] { return s.object("fault", [&](Fields& f) { readFault(f, value); }); })) {
        read.step.text = faultTextOf(value);
        read.step.action = std::move(value);
      }
    } else if (admin) {
      std::string text;
      if (readPresent(s, "admin", "an admin command (e.g. \"lock su/NAME\")", [&] { return s.str("admin", text); })) {
        auto command = model::parseAdminCommand(text);
        if (!command) {
          s.fail("admin", command.error().message);
        } else {
          const Location where = located(s, "admin");
          references_.push_back({command.value().target, where, "admin"});
          if (command.value().to) references_.push_back({*command.value().to, where, "admin"});
          read.step.text = model::formatAdminCommand(command.value());
          read.step.action = std::move(command).value();
        }
      }
    } else {
      s.fail("fault", "a step needs a fault or an admin command");
    }
    if (errors_.size() == before) steps_.push_back(std::move(read));
  }

  // `fault:` is a map with exactly one key, the fault's kind.
  void readFault(Fields& f, Fault& fault) {
    const FaultWord* chosen = nullptr;
    for (const auto& [key, where] : f.keys()) {
      const FaultWord* word = findFault(key);
      if (!word) {
        ctx_.error(where, "unknown fault '" + key.substr(0, 64) + "'; expected one of " + faultList());
        f.ignore(key);
      } else if (chosen && chosen != word) {
        ctx_.error(where, "a step has exactly one fault; found " + std::string(chosen->word) + " and " + key);
        f.ignore(key);
      } else {
        chosen = word;
      }
    }
    if (!chosen) {
      if (f.keys().empty()) ctx_.error(ctx_.where().locate(f.path()), "expected one fault: " + faultList());
      return;
    }
    fault.kind = chosen->kind;
    const std::string key(chosen->word);
    switch (chosen->value) {
      case FaultValue::kNode:
        if (readPresent(f, key, "a node name", [&] { return f.name(key, fault.node); })) {
          references_.push_back({{TargetKind::kNode, fault.node}, located(f, key), key});
        }
        break;
      case FaultValue::kVm:
        if (readPresent(f, key, "a VM name", [&] { return f.name(key, fault.vm); })) {
          references_.push_back({{TargetKind::kVm, fault.vm}, located(f, key), key});
        }
        break;
      case FaultValue::kPartition:
        readPresent(f, key, "a list of at least two lists of node names", [&] { return readPartition(f, fault); });
        break;
      case FaultValue::kHeal: {
        bool heal = false;
        if (readPresent(f, key, "true", [&] { return f.boolean(key, heal); }) && !heal) {
          f.fail(key, "must be true (heal: true ends the partition)");
        }
        break;
      }
      case FaultValue::kOpFail:
        readPresent(f, key, "a map {node: NODE, op: start|stop|migrate|fence, count: N}",
                    [&] { return f.object(key, [&](Fields& o) { readOpFail(o, fault); }); });
        break;
      case FaultValue::kCrashLoop:
        readPresent(f, key, "a map {vm: VM, count: N}", [&] {
          return f.object(key, [&](Fields& o) {
            if (o.name("vm", fault.vm, kRequired)) {
              references_.push_back({{TargetKind::kVm, fault.vm}, located(o, "vm"), key});
            }
            fault.count = 3;
            o.integer("count", fault.count, 1, 100);
          });
        });
        break;
      case FaultValue::kFlap:
        readPresent(f, key, "a map {node: NODE, count: N, period: D}", [&] {
          return f.object(key, [&](Fields& o) {
            if (o.name("node", fault.node, kRequired)) {
              references_.push_back({{TargetKind::kNode, fault.node}, located(o, "node"), key});
            }
            fault.count = 3;
            o.integer("count", fault.count, 1, 100);
            fault.period = Duration(2000);
            o.duration("period", fault.period, Duration(100), hours(1));
          });
        });
        break;
      case FaultValue::kLoss:
        readPresent(f, key, "a map {node: NODE, percent: P, delay: D} (0 and 0, the defaults, end it)", [&] {
          return f.object(key, [&](Fields& o) {
            if (o.name("node", fault.node, kRequired)) {
              references_.push_back({{TargetKind::kNode, fault.node}, located(o, "node"), key});
            }
            o.integer("percent", fault.percent, 0, 100);
            o.duration("delay", fault.delay, Duration(0), Duration(10000));
          });
        });
        break;
      case FaultValue::kFile:
        readPresent(f, key, "a configuration file (a path relative to the scenario)", [&] {
          std::string path;
          if (!f.str(key, path)) return false;
          fault.file = resolvePath(baseDir_, path);
          if (!std::filesystem::is_regular_file(fault.file)) f.fail(key, "no file " + path);
          return true;
        });
        break;
    }
  }

  // partition: [[N...], [N...], ...]: at least two non-empty sides, no node twice.
  bool readPartition(Fields& f, Fault& fault) {
    std::set<std::string> seen;
    std::size_t sides = 0;
    const std::size_t before = errors_.size();
    const bool present = f.list("partition", [&](const YamlValue& side, const std::string& sidePath) {
      ++sides;
      if (side.kind != YamlValue::Kind::kSequence) {
        ctx_.error(ctx_.at(file_, side), "partition: a side must be a list of node names, found " + describe(side));
        return;
      }
      if (side.items.empty()) {
        ctx_.error(ctx_.at(file_, side), "partition: a side must name at least one node");
        return;
      }
      std::vector<std::string> nodes;
      std::size_t index = 0;
      for (const YamlRef& node : side.items) {
        if (!ctx_.spend(file_, *node)) return;
        const Location where = ctx_.at(file_, *node);
        ctx_.where().record(item(sidePath, index++), where);
        if (node->kind != YamlValue::Kind::kScalar || !isValidName(node->text)) {
          ctx_.error(where, "partition: expected a node name, found " + describe(*node));
          continue;
        }
        if (!seen.insert(node->text).second) {
          ctx_.error(where, "partition: node '" + node->text + "' is named twice; the sides must not overlap");
          continue;
        }
        references_.push_back({{TargetKind::kNode, node->text}, where, "partition"});
        nodes.push_back(node->text);
      }
      fault.groups.push_back(std::move(nodes));
    });
    if (!present) return false;
    if (sides < 2) f.fail("partition", "needs at least two sides, found " + std::to_string(sides));
    return errors_.size() == before;
  }

  void readOpFail(Fields& o, Fault& fault) {
    if (o.name("node", fault.node, kRequired)) {
      references_.push_back({{TargetKind::kNode, fault.node}, located(o, "node"), "op-fail"});
    }
    std::string op;
    if (o.str("op", op, kRequired)) {
      bool known = false;
      for (const auto& [value, word] : kOpWords) {
        if (word == op) {
          fault.op = value;
          known = true;
        }
      }
      if (!known) o.fail("op", "must be one of start, stop, migrate or fence, not '" + op.substr(0, 40) + "'");
    }
    o.integer("count", fault.count, 1, 1000);
  }

  // expect.final: {"su/NAME": {word: value, ...}, ...}
  void readFinal(Fields& fin) {
    std::set<std::string> seen;
    for (const auto& entry : fin.keys()) {
      const std::string& key = entry.first;
      const Location& where = entry.second;
      if (!seen.insert(key).second) continue;  // a duplicate key, already reported
      auto target = model::parseAdminTarget(key);
      if (!target) {
        ctx_.error(where, "expect.final: " + target.error().message);
        fin.ignore(key);
        continue;
      }
      std::map<std::string, std::string> states;
      if (readPresent(fin, key, "a map of state words", [&] { return fin.stringMap(key, states); })) {
        scenario_.expect.final[key] = std::move(states);
      }
      references_.push_back({target.value(), where, "expect.final"});
    }
  }

  // expect.maxOutage: {SI: duration, ...}
  void readMaxOutage(Fields& m) {
    std::set<std::string> seen;
    for (const auto& entry : m.keys()) {
      const std::string& key = entry.first;
      const Location& where = entry.second;
      if (!seen.insert(key).second) continue;  // a duplicate key, already reported
      if (!isValidName(key)) {
        ctx_.error(where, "expect.maxOutage: '" + key.substr(0, 64) +
                              "' is not a service instance name (1-63 lower-case letters, digits and '-', starting "
                              "and ending with a letter or digit)");
        m.ignore(key);
        continue;
      }
      Duration bound{0};
      if (readPresent(m, key, "a duration",
                      [&] { return m.duration(key, bound, milliseconds(0), kMaxScenarioTime); })) {
        scenario_.expect.maxOutage[key] = bound;
      }
      references_.push_back({{TargetKind::kServiceInstance, key}, where, "expect.maxOutage"});
    }
  }

  ReadContext& ctx_;
  Diagnostics& errors_;
  std::string file_;
  std::string baseDir_;
  model::Scenario scenario_;
  std::vector<ReadStep> steps_;
  std::vector<ConfigEntry> configEntries_;
  std::vector<Reference> references_;
  bool configComplete_ = false;
};

// Every name of each kind the configuration declares.
std::map<TargetKind, std::set<std::string>> declaredNames(const model::Configuration& config) {
  std::map<TargetKind, std::set<std::string>> names;
  if (config.cluster) {
    for (const auto& node : config.cluster->nodes) names[TargetKind::kNode].insert(node.name);
    for (const auto& group : config.cluster->nodeGroups) names[TargetKind::kNodeGroup].insert(group.name);
  }
  for (const auto& sg : config.serviceGroups) {
    names[TargetKind::kServiceGroup].insert(sg.name);
    for (const auto& unit : sg.units) {
      names[TargetKind::kServiceUnit].insert(unit.name);
      for (const auto& vm : unit.vms) names[TargetKind::kVm].insert(vm.name);
    }
    for (const auto& si : sg.serviceInstances) names[TargetKind::kServiceInstance].insert(si.name);
  }
  return names;
}

}  // namespace

ScenarioLoadResult loadScenario(const Source& source, const std::string& baseDir) {
  ScenarioLoadResult result;
  const LoadLimits limits;
  if (source.text.size() > limits.maxSourceBytes) {
    result.errors.push_back(
        {{source.name, 0, 0}, "larger than " + std::to_string(limits.maxSourceBytes) + " bytes; not read"});
    return result;
  }
  ParsedYaml parsed = parseYaml(source.name, source.text);
  if (parsed.error) {
    result.errors.push_back(*parsed.error);
    return result;
  }
  std::vector<YamlRef> documents;
  for (const YamlRef& document : parsed.documents) {
    if (document->kind != YamlValue::Kind::kNull) documents.push_back(document);
  }
  if (documents.empty()) {
    result.errors.push_back({{source.name, 1, 1}, "empty scenario; expected a map with config and steps"});
    return result;
  }
  for (std::size_t i = 1; i < documents.size(); ++i) {
    result.errors.push_back({{source.name, documents[i]->line, documents[i]->column},
                             "a scenario file holds one document; this is another"});
  }

  SourceMap where;
  ReadContext ctx(result.errors, where, limits.maxValues);
  ScenarioReader reader(ctx, result.errors, source.name, baseDir);
  readObject(ctx, source.name, *documents.front(), "scenario", [&](Fields& f) { reader.read(f); });
  reader.finishSteps();
  result.scenario = std::move(reader.scenario());

  const auto& entries = reader.configEntries();
  bool configUsable = false;
  if (!entries.empty()) {
    LoadResult loaded = loadConfigurationFiles(result.scenario.config, limits);
    for (Diagnostic& d : loaded.errors) {
      // A file that could not be read is the scenario's mistake: report it where the scenario names it.
      auto entry = std::find_if(entries.begin(), entries.end(),
                                [&](const ConfigEntry& e) { return d.where.line == 0 && e.resolved == d.where.file; });
      if (entry != entries.end()) {
        d = {entry->where,
             "config: '" + entry->written.substr(0, 200) + "' (" + entry->resolved.substr(0, 200) + ") " + d.message};
      }
      result.errors.push_back(std::move(d));
    }
    configUsable = loaded.ok() && reader.configComplete() && !ctx.exhausted();
    result.config = std::move(loaded.config);
  }

  if (configUsable && !result.config.cluster) {
    ctx.error(where.locate("scenario.config"),
              "config: the files declare no Cluster document; a scenario needs one among its config files");
  } else if (configUsable) {
    const auto names = declaredNames(result.config);
    for (const Reference& ref : reader.references()) {
      auto it = names.find(ref.target.kind);
      if (it != names.end() && it->second.contains(ref.target.name)) continue;
      ctx.error(ref.where, ref.context + ": " + std::string(kindNoun(ref.target.kind)) + " '" + ref.target.name +
                               "' is not in the configuration");
    }
  }

  // File order: the scenario first, then its config files in the order it lists them.
  auto fileRank = [&](const std::string& file) {
    if (file == source.name) return std::size_t{0};
    for (std::size_t i = 0; i < entries.size(); ++i) {
      if (entries[i].resolved == file) return i + 1;
    }
    return entries.size() + 1;
  };
  std::stable_sort(result.errors.begin(), result.errors.end(), [&](const Diagnostic& a, const Diagnostic& b) {
    return std::tuple(fileRank(a.where.file), a.where.line, a.where.column) <
           std::tuple(fileRank(b.where.file), b.where.line, b.where.column);
  });
  return result;
}

ScenarioLoadResult loadScenarioFile(const std::string& path) {
  const LoadLimits limits;
  ScenarioLoadResult unreadable;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    unreadable.errors.push_back({{path, 0, 0}, "cannot be read"});
    return unreadable;
  }
  in.seekg(0, std::ios::end);
  const auto size = in.tellg();
  if (size < 0) {
    unreadable.errors.push_back({{path, 0, 0}, "cannot be read (not a regular file?)"});
    return unreadable;
  }
  if (static_cast<std::size_t>(size) > limits.maxSourceBytes) {
    unreadable.errors.push_back(
        {{path, 0, 0}, "larger than " + std::to_string(limits.maxSourceBytes) + " bytes; not read"});
    return unreadable;
  }
  in.seekg(0);
  std::ostringstream text;
  text << in.rdbuf();
  return loadScenario({path, text.str()}, std::filesystem::path(path).parent_path().string());
}

std::string formatFault(const model::Fault& fault) { return faultTextOf(fault); }

std::string faultYaml(const model::Fault& fault) {
  const std::string word(faultWord(fault.kind));
  switch (faultValueOf(fault.kind)) {
    case FaultValue::kNode:
      return word + ": " + fault.node;
    case FaultValue::kVm:
      return word + ": " + fault.vm;
    case FaultValue::kPartition: {
      std::string out = word + ": [";
      for (std::size_t g = 0; g < fault.groups.size(); ++g) {
        out += g ? ", [" : "[";
        for (std::size_t k = 0; k < fault.groups[g].size(); ++k) out += (k ? ", " : "") + fault.groups[g][k];
        out += "]";
      }
      return out + "]";
    }
    case FaultValue::kHeal:
      return word + ": true";
    case FaultValue::kOpFail:
      return word + ": {node: " + fault.node + ", op: " + std::string(opWordOf(fault.op)) +
             ", count: " + std::to_string(fault.count) + "}";
    case FaultValue::kCrashLoop:
      return word + ": {vm: " + fault.vm + ", count: " + std::to_string(fault.count) + "}";
    case FaultValue::kFlap:
      return word + ": {node: " + fault.node + ", count: " + std::to_string(fault.count) +
             ", period: " + model::formatDuration(fault.period) + "}";
    case FaultValue::kLoss:
      return word + ": {node: " + fault.node + ", percent: " + std::to_string(fault.percent) +
             (fault.delay.count() > 0 ? ", delay: " + model::formatDuration(fault.delay) : "") + "}";
    case FaultValue::kFile:
      return word + ": \"" + fault.file + "\"";
  }
  return word;
}

std::string_view faultOpWord(model::Fault::Op op) { return opWordOf(op); }

}  // namespace kvm_amf::config
