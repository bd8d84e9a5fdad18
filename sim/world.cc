#include "kvm_amf/sim/world.h"
#include "kvm_amf/common/overloaded.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "kvm_amf/amf/config/scenario_loader.h"
#include "kvm_amf/amf/engine/codec.h"
#include "kvm_amf/amf/model/units.h"
#include "kvm_amf/amf/model/words.h"
#include "kvm_amf/amf/node/node_manager.h"
#include "kvm_amf/cluster/sim_network.h"
#include "kvm_amf/sim/random.h"
#include "kvm_amf/sim/sim_scheduler.h"
#include "kvm_amf/vmm/sim_host.h"

namespace kvm_amf::sim {
namespace {

using json = nlohmann::ordered_json;
using engine::ClusterState;

std::string faultText(const model::ScenarioStep& step) { return step.text; }

class World : public vmm::SimTruthObserver {
 public:
  World(std::shared_ptr<const model::Configuration> config, const model::Scenario& scenario, RunOptions options)
      : config_(std::move(config)), scenario_(scenario), options_(options), random_(scenario.seed) {
    const auto& cluster = *config_->cluster;
    std::set<int> ids;
    for (const auto& n : cluster.nodes) {
      ids.insert(n.id);
      idOf_[n.name] = n.id;
    }
    cluster::SimNetworkTiming netTiming;
    const Duration consensus = cluster.membership.consensus.count() != 0
                                   ? cluster.membership.consensus
                                   : Duration(cluster.membership.token.count() * 12 / 10);
    netTiming.detect = cluster.membership.token + consensus;
    netTiming.latency = scenario.timing.message;
    network_ = std::make_unique<cluster::SimNetwork>(scheduler_, ids, cluster.membership.twoNode, netTiming);
    network_->setTap([this](int sender, const std::string& payload) { observeMessage(sender, payload); });
    vmm::SimHostTiming hostTiming{scenario.timing.vmStart, scenario.timing.vmStop, scenario.timing.guestAck};
    for (const auto& n : cluster.nodes) {
      Host& host = hosts_[n.name];
      host.sim = std::make_unique<vmm::SimHost>(n.name, scheduler_, hostTiming, *this,
                                                [this](std::uint64_t bound) { return random_.below(bound); });
      host.fence = std::make_unique<cluster::SimFenceAgent>(
          scheduler_, scenario.timing.fence, [this](const std::string& target) {
            if (auto& failures = fenceFailures_[target]; failures > 0) {
              --failures;
              event("fence", "fencing " + target + " failed (injected)");
              return false;
            }
            powerCycle(target);
            return true;
          });
      host.disk = engine::initialState(config_, 1);
    }
    for (const auto& sg : config_->serviceGroups) {
      for (const auto& si : sg.serviceInstances) siState_[si.name].sg = sg.name;
    }
  }

  RunResult run() {
    for (const auto& n : config_->cluster->nodes) startAmfd(n.name);
    for (const auto& step : scenario_.steps) {
      scheduler_.at(step.at, [this, &step] { perform(step); });
    }
    scheduler_.runUntil(scenario_.until);
    if (options_.requireRecovery) checkRecovered();
    RunResult result;
    for (auto& [si, s] : siState_) {
      if (s.outageStart) outages_.push_back({si, *s.outageStart, std::nullopt});
    }
    std::stable_sort(outages_.begin(), outages_.end(), [](const Outage& a, const Outage& b) {
      return std::tie(a.start, a.si) < std::tie(b.start, b.si);
    });
    checkExpectations();
    result.report = report();
    result.violations = violations_;
    result.outages = outages_;
    result.unmet = unmet_;
    result.simulatedSeconds = static_cast<double>(scenario_.until.count()) / 1000.0;
    result.events = scheduler_.eventsRun();
    return result;
  }

  // ---- Ground truth (SimTruthObserver) ---------------------------------------------------------

  void onVmRunning(const std::string& vm, const std::string& node, bool running) override {
    auto& nodes = runningOn_[vm];
    if (running) {
      for (const auto& other : nodes) {
        if (other == node) continue;
        const bool unreachable =
            hosts_.at(other).sim->poweredOn() && !network_->membership(idOf_.at(node)).contains(idOf_.at(other));
        violation(unreachable ? "recovered-before-fence" : "vm-on-two-hosts",
                  "vm/" + vm + " started on " + node + " while it still runs on " + other);
      }
      nodes.insert(node);
      if (auto loop = crashLoop_.find(vm); loop != crashLoop_.end() && loop->second > 0) {
        --loop->second;
        scheduler_.after(Duration(1), [this, vm, node] { hosts_.at(node).sim->crashVm(vm); });
      }
    } else {
      nodes.erase(node);
    }
    observeService();
  }

  void onGuestHa(const std::string& vm, const std::string& node, const std::string& si,
                 std::optional<model::HaState> ha) override {
    if (ha) {
      guestHa_[{vm, node}][si] = *ha;
    } else {
      guestHa_[{vm, node}].erase(si);
    }
    observeService();
  }

  void onGuestHung(const std::string& vm, const std::string& node, bool hung) override {
    if (hung) {
      hung_.insert({vm, node});
    } else {
      hung_.erase({vm, node});
    }
    observeService();
  }

 private:
  struct Host {
    std::unique_ptr<vmm::SimHost> sim;
    std::unique_ptr<cluster::SimFenceAgent> fence;
    std::unique_ptr<cluster::GroupChannel> channel;
    std::unique_ptr<node::NodeManager> manager;
    std::optional<ClusterState> disk;  // the state it had when its node manager last stopped
  };
  struct SiTruth {
    std::string sg;
    bool servedEver = false;
    std::optional<TimePoint> outageStart;
    bool dualActive = false;
  };

  // ---- Node managers -----------------------------------------------------------------------------

  void startAmfd(const std::string& name) {
    Host& host = hosts_.at(name);
    if (host.manager || !host.sim->poweredOn() || !network_->hostIsUp(idOf_.at(name))) return;
    host.channel = network_->channel(idOf_.at(name));
    node::NodeManagerDeps deps{&scheduler_, host.channel.get(), host.fence.get(), host.sim.get(), host.sim.get()};
    host.manager = std::make_unique<node::NodeManager>(name, deps, host.disk);
    Status status = host.manager->start();
    (void)status;
  }

  void stopAmfd(const std::string& name) {
    Host& host = hosts_.at(name);
    if (!host.manager) return;
    if (host.manager->state()) host.disk = *host.manager->state();
    host.manager.reset();
    host.channel.reset();  // the process died: the group sees it leave
  }

  void powerOff(const std::string& name, const std::string& why) {
    Host& host = hosts_.at(name);
    if (!host.sim->poweredOn()) return;
    if (why != "crash") event("fence", "power off " + name + " (" + why + ")");
    stopAmfd(name);
    host.sim->powerOff();
    network_->hostDown(idOf_.at(name));
  }

  // Fencing power-cycles a host, as fence agents do by default: off now, booted again later.
  void powerCycle(const std::string& name) {
    powerOff(name, "fenced");
    scheduler_.after(scenario_.timing.boot, [this, name] { boot(name); });
  }

  void boot(const std::string& name) {
    Host& host = hosts_.at(name);
    if (host.sim->poweredOn()) return;
    event("boot", name);
    host.sim->powerOn();
    network_->hostUp(idOf_.at(name));
    // Its node manager starts once the host is back in the membership.
    scheduler_.after(Duration(1), [this, name] { retryStart(name); });
  }

  // ---- Steps ---------------------------------------------------------------------------------------

  std::optional<std::string> hostOf(const std::string& vm) const {
    auto it = runningOn_.find(vm);
    if (it == runningOn_.end() || it->second.empty()) return std::nullopt;
    return *it->second.begin();
  }

  void perform(const model::ScenarioStep& step) {
    std::visit(Overloaded{
                   [&](const model::Fault& f) {
                     event("fault", faultText(step));
                     fault(f);
                   },
                   [&](const model::AdminCommand& c) {
                     event("admin", step.text);
                     admin(c, step.text);
                   },
               },
               step.action);
  }

  void fault(const model::Fault& f) {
    using Kind = model::Fault::Kind;
    switch (f.kind) {
      case Kind::kNodeCrash:
        powerOff(f.node, "crash");
        break;
      case Kind::kNodeStart:
        boot(f.node);
        break;
      case Kind::kVmCrash:
        if (auto host = hostOf(f.vm)) hosts_.at(*host).sim->crashVm(f.vm);
        break;
      case Kind::kGuestHang:
        if (auto host = hostOf(f.vm)) hosts_.at(*host).sim->hangGuest(f.vm);
        break;
      case Kind::kIoError:
        if (auto host = hostOf(f.vm)) hosts_.at(*host).sim->ioError(f.vm);
        break;
      case Kind::kPartition: {
        std::vector<std::set<int>> sides;
        for (const auto& group : f.groups) {
          std::set<int> side;
          for (const auto& n : group) side.insert(idOf_.at(n));
          sides.push_back(side);
        }
        network_->partition(sides);
        break;
      }
      case Kind::kHeal:
        network_->heal();
        break;
      case Kind::kAmfdCrash:
        stopAmfd(f.node);
        break;
      case Kind::kAmfdStart:
        startAmfd(f.node);
        break;
      case Kind::kGuestResume:
        if (auto host = hostOf(f.vm)) hosts_.at(*host).sim->resumeGuest(f.vm);
        break;
      case Kind::kVmCrashLoop:
        // It crashes now and right after each of its next count - 1 starts.
        crashLoop_[f.vm] = f.count - 1;
        if (auto host = hostOf(f.vm)) hosts_.at(*host).sim->crashVm(f.vm);
        break;
      case Kind::kCorosyncCrash:
        // The host leaves the others' membership and its amfd is alone: as if cut off.
        network_->partition({isolatedFrom(f.node), {idOf_.at(f.node)}});
        break;
      case Kind::kCorosyncStart:
        network_->heal();
        break;
      case Kind::kLinkFlap:
        for (int k = 0; k < f.count; ++k) {
          const Duration down = f.period * k;
          scheduler_.after(down, [this, node = f.node] {
            network_->partition({isolatedFrom(node), {idOf_.at(node)}});
          });
          scheduler_.after(down + f.period / 2, [this] { network_->heal(); });
        }
        break;
      case Kind::kAmfdHang:
      case Kind::kAmfdResume:
      case Kind::kLibvirtRestart:
      case Kind::kPacketLoss:
      case Kind::kStateDiskFull:
      case Kind::kStateDiskFree:
      case Kind::kApply:
      case Kind::kHostileFrames:
        // Of the real lab only: the simulation has no such process, daemon, network or disk.
        event("not-simulated", config::formatFault(f));
        break;
      case Kind::kOpFail:
        if (f.op == model::Fault::Op::kStart) hosts_.at(f.node).sim->failNext(vmm::SimHost::Op::kStart, f.count);
        if (f.op == model::Fault::Op::kStop) hosts_.at(f.node).sim->failNext(vmm::SimHost::Op::kStop, f.count);
        if (f.op == model::Fault::Op::kFence) fenceFailures_[f.node] += f.count;
        break;
    }
  }

  // Every host but `node`, as a partition side.
  std::set<int> isolatedFrom(const std::string& node) const {
    std::set<int> others;
    for (const auto& [name, id] : idOf_) {
      if (name != node) others.insert(id);
    }
    return others;
  }

  // A host that came back joins the group once it is in the membership again.
  void retryStart(const std::string& name) {
    Host& host = hosts_.at(name);
    if (host.manager || !host.sim->poweredOn()) return;
    if (network_->membership(idOf_.at(name)).size() > 1 || config_->cluster->nodes.size() == 1) {
      startAmfd(name);
      return;
    }
    scheduler_.after(Duration(50), [this, name] { retryStart(name); });
  }

  void admin(const model::AdminCommand& command, const std::string& text) {
    // Sent through a node manager of the quorate partition, as amf-admin would reach any amfd.
    node::NodeManager* via = nullptr;
    for (auto& [name, host] : hosts_) {
      if (host.manager && host.manager->synced() && host.manager->view().quorate) {
        via = host.manager.get();
        break;
      }
    }
    if (!via) {
      event("admin-reply", text + ": refused: no node manager with quorum");
      return;
    }
    via->submit(command, [this, text](bool ok, std::string message) {
      event("admin-reply", text + ": " + (ok ? "ok: " : "refused: ") + message);
    });
  }

  // ---- Observation -----------------------------------------------------------------------------------

  void event(const std::string& type, const std::string& detail) {
    events_.push_back({{"tMs", scheduler_.now().count()}, {"type", type}, {"detail", detail}});
  }

  void violation(const std::string& invariant, const std::string& detail) {
    violations_.push_back({scheduler_.now(), invariant, detail});
    event("violation", invariant + ": " + detail);
  }

  void observeMessage(int, const std::string& payload) {
    Result<engine::Envelope> message = engine::decode(payload, &known_);
    if (!message.ok()) return;
    std::visit(Overloaded{
                   [&](const engine::Report& r) {
                     if (!std::holds_alternative<engine::HaAcked>(r)) event("report", engine::describe(r));
                   },
                   [&](const engine::Decision& d) {
                     for (const auto& action : d.actions) {
                       if (!std::holds_alternative<engine::AdminReply>(action))
                         event("decision", engine::describe(action));
                     }
                   },
                   [](const auto&) {},
               },
               message.value());
  }

  // A unit serves an SI when every VM of it runs, is not hung, and believes it holds the SI active.
  void observeService() {
    for (auto& [siName, truth] : siState_) {
      const model::ServiceGroupSpec* sg = nullptr;
      for (const auto& g : config_->serviceGroups) {
        if (g.name == truth.sg) sg = &g;
      }
      int believers = 0;
      bool served = false;
      for (const auto& unit : sg->units) {
        bool all = !unit.vms.empty();
        bool any = false;
        for (const auto& vm : unit.vms) {
          bool vmActive = false;
          bool vmServes = false;
          for (const auto& node : runningOn_[vm.name]) {
            auto it = guestHa_.find({vm.name, node});
            const bool active =
                it != guestHa_.end() && it->second.contains(siName) && it->second.at(siName) == model::HaState::kActive;
            vmActive = vmActive || active;
            vmServes = vmServes || (active && !hung_.contains({vm.name, node}));
          }
          any = any || vmActive;
          all = all && vmServes;
        }
        if (any) ++believers;
        served = served || all;
      }
      const int allowed =
          sg->redundancy.model == model::RedundancyModel::kNWayActive ? std::max(1, sg->redundancy.activeUnits) : 1;
      if (believers > allowed && !truth.dualActive) {
        truth.dualActive = true;
        violation("dual-active", "si/" + siName + " is active on " + std::to_string(believers) + " units");
      } else if (believers <= allowed) {
        truth.dualActive = false;
      }
      if (served) {
        truth.servedEver = true;
        if (truth.outageStart) {
          outages_.push_back({siName, *truth.outageStart, scheduler_.now()});
          truth.outageStart.reset();
        }
      } else if (truth.servedEver && !truth.outageStart) {
        truth.outageStart = scheduler_.now();
      }
    }
  }

  // ---- The end ----------------------------------------------------------------------------------------

  const node::NodeManager* reference() const {
    const node::NodeManager* best = nullptr;
    for (const auto& [name, host] : hosts_) {
      const auto* m = host.manager.get();
      if (!m || !m->state()) continue;
      if (m->isDirector()) return m;
      if (!best || m->state()->decisions > best->state()->decisions) best = m;
    }
    return best;
  }

  void checkRecovered() {
    const node::NodeManager* ref = reference();
    for (const auto& [si, truth] : siState_) {
      bool wanted = true;
      if (ref) {
        const ClusterState& s = *ref->state();
        wanted = s.sis.at(si).admin == model::AdminState::kUnlocked &&
                 s.sgs.at(truth.sg).admin == model::AdminState::kUnlocked;
      }
      if (wanted && truth.outageStart) {
        violation("si-not-recovered", "si/" + si + " is not served at the end of the run");
      }
      if (wanted && !truth.servedEver) violation("si-not-recovered", "si/" + si + " was never served");
    }
  }

  std::map<std::string, std::string> finalWords(const std::string& target) const {
    std::map<std::string, std::string> words;
    const node::NodeManager* ref = reference();
    if (!ref) return words;
    const ClusterState& s = *ref->state();
    const auto slash = target.find('/');
    const std::string kind = target.substr(0, slash);
    const std::string name = target.substr(slash + 1);
    if (kind == "su" && s.sus.contains(name)) {
      const auto& su = s.sus.at(name);
      words["node"] = su.node.empty() ? "null" : su.node;
      words["admin"] = model::toWord(su.admin);
      words["oper"] = model::toWord(su.oper);
      words["presence"] = model::toWord(engine::suPresence(s, su));
      words["readiness"] = model::toWord(engine::suReadiness(s, su));
      words["restarts"] = std::to_string(su.restarts.count);
      words["failovers"] = std::to_string(su.failovers.count);
    } else if (kind == "vm" && s.vms.contains(name)) {
      const auto& vm = s.vms.at(name);
      const std::string operatorState = engine::vmOperatorWord(vm);
      words["node"] = vm.node.empty() ? "null" : vm.node;
      words["presence"] = model::toWord(vm.presence);
      words["admin"] = operatorState.empty() ? "null" : operatorState;
      words["failure"] = vm.failure ? engine::failureWord(*vm.failure) : "null";
      words["restarts"] = std::to_string(vm.restarts.count);
    } else if (kind == "si" && s.sis.contains(name)) {
      std::vector<std::string> active;
      std::vector<std::string> standby;
      for (const auto& a : s.sis.at(name).assignments) {
        if (a.ha == model::HaState::kActive) active.push_back(a.su);
        if (a.ha == model::HaState::kStandby) standby.push_back(a.su);
      }
      auto join = [](std::vector<std::string> v) {
        std::sort(v.begin(), v.end());
        std::string out;
        for (const auto& x : v) out += (out.empty() ? "" : ",") + x;
        return out;
      };
      words["active"] = join(active);
      words["standby"] = join(standby);
      words["admin"] = model::toWord(s.sis.at(name).admin);
    } else if (kind == "node" && idOf_.contains(name)) {
      words["member"] = ref->view().group.contains(idOf_.at(name)) ? "true" : "false";
      words["status"] = engine::nodeStatusWord(s.nodes.at(name).status);
      words["admin"] = model::toWord(s.nodes.at(name).admin);
      words["oper"] = model::toWord(s.nodes.at(name).oper);
    }
    return words;
  }

  void checkExpectations() {
    for (const auto& [target, expected] : scenario_.expect.final) {
      const auto actual = finalWords(target);
      for (const auto& [key, value] : expected) {
        auto it = actual.find(key);
        const std::string got = it == actual.end() ? "(none)" : it->second;
        if (got != value) unmet_.push_back(target + " " + key + ": expected " + value + ", got " + got);
      }
    }
    for (const auto& [si, bound] : scenario_.expect.maxOutage) {
      for (const auto& o : outages_) {
        if (o.si != si) continue;
        const TimePoint end = o.end.value_or(scenario_.until);
        if (end - o.start > bound) {
          unmet_.push_back("si/" + si + " outage " + std::to_string((end - o.start).count()) + "ms at " +
                           std::to_string(o.start.count()) + "ms exceeds " + model::formatDuration(bound));
        }
      }
    }
  }

  json report() const {
    json out;
    out["seed"] = scenario_.seed;
    out["events"] = events_;
    json nodes = json::array();
    json sus = json::array();
    json sis = json::array();
    const node::NodeManager* ref = reference();
    for (const auto& n : config_->cluster->nodes) {
      json node = {{"name", n.name}, {"member", ref && ref->view().group.contains(n.id)}};
      if (ref) node["status"] = engine::nodeStatusWord(ref->state()->nodes.at(n.name).status);
      nodes.push_back(node);
    }
    if (ref) {
      const ClusterState& s = *ref->state();
      for (const auto& [name, su] : s.sus) {
        json node = su.node.empty() ? json(nullptr) : json(su.node);
        sus.push_back({{"name", name},
                       {"node", node},
                       {"admin", model::toWord(su.admin)},
                       {"oper", model::toWord(su.oper)},
                       {"presence", model::toWord(engine::suPresence(s, su))},
                       {"readiness", model::toWord(engine::suReadiness(s, su))}});
      }
      for (const auto& [name, si] : s.sis) {
        json assignments = json::array();
        for (const auto& a : si.assignments) assignments.push_back({{"su", a.su}, {"ha", model::toWord(a.ha)}});
        sis.push_back({{"name", name}, {"assignments", assignments}});
      }
    }
    out["final"] = {{"nodes", nodes}, {"sus", sus}, {"sis", sis}};
    json outages = json::array();
    for (const auto& o : outages_) {
      outages.push_back(
          {{"si", o.si}, {"startMs", o.start.count()}, {"endMs", o.end ? json(o.end->count()) : json(nullptr)}});
    }
    out["outages"] = outages;
    json violations = json::array();
    for (const auto& v : violations_) {
      violations.push_back({{"tMs", v.at.count()}, {"invariant", v.invariant}, {"detail", v.detail}});
    }
    out["invariants"] = {{"violations", violations}};
    out["expectations"] = {{"unmet", unmet_}};
    return out;
  }

  std::shared_ptr<const model::Configuration> config_;
  engine::KnownConfiguration known_ = engine::knownConfiguration(config_);
  const model::Scenario& scenario_;
  RunOptions options_;
  Random random_;
  SimScheduler scheduler_;
  std::unique_ptr<cluster::SimNetwork> network_;
  std::map<std::string, Host> hosts_;
  std::map<std::string, int> idOf_;
  std::map<std::string, std::set<std::string>> runningOn_;
  std::map<std::pair<std::string, std::string>, std::map<std::string, model::HaState>> guestHa_;
  std::set<std::pair<std::string, std::string>> hung_;
  std::map<std::string, SiTruth> siState_;
  std::map<std::string, int> fenceFailures_;  // injected failures of fence runs against a node
  std::map<std::string, int> crashLoop_;      // vm-crash-loop: starts of a VM still to end in a crash
  json events_ = json::array();
  std::vector<Violation> violations_;
  std::vector<Outage> outages_;
  std::vector<std::string> unmet_;
};

std::string seconds(std::int64_t ms) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%9.3fs", static_cast<double>(ms) / 1000.0);
  return buffer;
}

}  // namespace

RunResult runScenario(std::shared_ptr<const model::Configuration> config, const model::Scenario& scenario,
                      const RunOptions& options) {
  World world(std::move(config), scenario, options);
  return world.run();
}

std::string reportText(const nlohmann::ordered_json& report) {
  std::ostringstream out;
  out << "seed " << report["seed"].get<std::uint64_t>() << "\n\ntimeline\n";
  for (const auto& e : report["events"]) {
    char type[16];
    std::snprintf(type, sizeof type, "%-11s", e["type"].get<std::string>().c_str());
    out << seconds(e["tMs"].get<std::int64_t>()) << "  " << type << " " << e["detail"].get<std::string>() << "\n";
  }
  out << "\nnodes\n";
  for (const auto& n : report["final"]["nodes"]) {
    out << "  " << n["name"].get<std::string>() << (n["member"].get<bool>() ? "  member" : "  not a member");
    if (n.contains("status")) out << "  " << n["status"].get<std::string>();
    out << "\n";
  }
  out << "\nservice units\n";
  for (const auto& su : report["final"]["sus"]) {
    out << "  " << su["name"].get<std::string>() << "  "
        << (su["node"].is_null() ? std::string("-") : su["node"].get<std::string>()) << "  "
        << su["admin"].get<std::string>() << "  " << su["oper"].get<std::string>() << "  "
        << su["presence"].get<std::string>() << "  " << su["readiness"].get<std::string>() << "\n";
  }
  out << "\nservice instances\n";
  for (const auto& si : report["final"]["sis"]) {
    out << "  " << si["name"].get<std::string>() << " ";
    for (const auto& a : si["assignments"]) {
      out << " " << a["su"].get<std::string>() << "=" << a["ha"].get<std::string>();
    }
    out << "\n";
  }
  out << "\noutages\n";
  if (report["outages"].empty()) out << "  none\n";
  for (const auto& o : report["outages"]) {
    const auto start = o["startMs"].get<std::int64_t>();
    out << "  " << o["si"].get<std::string>() << "  from" << seconds(start);
    if (o["endMs"].is_null()) {
      out << "  not over\n";
    } else {
      out << "  for " << (o["endMs"].get<std::int64_t>() - start) << "ms\n";
    }
  }
  out << "\ninvariant violations\n";
  if (report["invariants"]["violations"].empty()) out << "  none\n";
  for (const auto& v : report["invariants"]["violations"]) {
    out << seconds(v["tMs"].get<std::int64_t>()) << "  " << v["invariant"].get<std::string>() << ": "
        << v["detail"].get<std::string>() << "\n";
  }
  if (!report["expectations"]["unmet"].empty()) {
    out << "\nunmet expectations\n";
    for (const auto& u : report["expectations"]["unmet"]) out << "  " << u.get<std::string>() << "\n";
  }
  return out.str();
}

}  // namespace kvm_amf::sim
