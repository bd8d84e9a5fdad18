#include "kvm_amf/amf/config/serialize.h"

#include <yaml-cpp/yaml.h>

#include "kvm_amf/amf/model/units.h"
#include "kvm_amf/amf/model/words.h"

namespace kvm_amf::config {
namespace {

using json = nlohmann::ordered_json;
using model::formatBytes;
using model::formatDuration;
using model::toWord;

json document(std::string_view kind, const std::string& name, const std::map<std::string, std::string>& labels,
              json spec) {
  json metadata = {{"name", name}};
  if (!labels.empty()) metadata["labels"] = labels;
  return {{"apiVersion", model::kApiVersion}, {"kind", kind}, {"metadata", metadata}, {"spec", std::move(spec)}};
}

json clusterSpec(const model::ClusterSpec& c) {
  json nodes = json::array();
  for (const auto& n : c.nodes) {
    json node = {{"name", n.name}, {"id", n.id}, {"address", n.address}, {"libvirtUri", n.libvirtUri}};
    json capacity = json::object();
    if (n.capacity.vcpus != 0) capacity["vcpus"] = n.capacity.vcpus;
    if (n.capacity.memory != 0) capacity["memory"] = formatBytes(n.capacity.memory);
    if (!capacity.empty()) node["capacity"] = capacity;
    nodes.push_back(node);
  }
  json groups = json::array();
  for (const auto& g : c.nodeGroups) groups.push_back({{"name", g.name}, {"nodes", g.nodes}});

  const auto& m = c.membership;
  json membership = {{"token", formatDuration(m.token)},
                     {"amfdRestartGrace", formatDuration(m.amfdRestartGrace)},
                     {"twoNode", m.twoNode},
                     {"waitForAll", m.waitForAll},
                     {"crypto", m.crypto}};
  if (m.consensus.count() != 0) membership["consensus"] = formatDuration(m.consensus);

  const auto& f = c.fencing;
  json fencing = {{"mode", toWord(f.mode)}};
  if (f.mode == model::FencingMode::kAgent) {
    fencing["agent"] = {{"command", f.agent.command},
                        {"timeout", formatDuration(f.agent.timeout)},
                        {"retryInterval", formatDuration(f.agent.retryInterval)}};
  }
  if (f.mode == model::FencingMode::kSelf) {
    fencing["self"] = {{"timeout", formatDuration(f.self.timeout)}, {"margin", formatDuration(f.self.margin)}};
  }
  json spec = {{"nodes", nodes},
               {"membership", membership},
               {"fencing", fencing},
               {"escalation",
                {{"suFailoverMax", c.escalation.suFailoverMax},
                 {"suFailoverProbation", formatDuration(c.escalation.suFailoverProbation)}}}};
  if (!groups.empty()) spec["nodeGroups"] = groups;
  return spec;
}

json vmSpec(const model::VmSpec& vm) {
  json boot = {{"firmware", toWord(vm.boot.firmware)}};
  if (!vm.boot.kernel.empty()) boot["kernel"] = vm.boot.kernel;
  if (!vm.boot.initrd.empty()) boot["initrd"] = vm.boot.initrd;
  if (!vm.boot.cmdline.empty()) boot["cmdline"] = vm.boot.cmdline;
  if (!vm.boot.disk.empty()) boot["disk"] = vm.boot.disk;
  if (vm.boot.network) boot["network"] = true;

  json out = {{"name", vm.name},
              {"bootOrder", vm.bootOrder},
              {"vcpus", vm.vcpus},
              {"memory", formatBytes(vm.memory)},
              {"boot", boot}};
  if (vm.maxMemory != 0) out["maxMemory"] = formatBytes(vm.maxMemory);

  json cpu = json::object();
  if (!vm.cpu.pinning.empty()) cpu["pinning"] = vm.cpu.pinning;
  if (!vm.cpu.emulatorPinning.empty()) cpu["emulatorPinning"] = vm.cpu.emulatorPinning;
  if (vm.cpu.realtime) {
    cpu["realtime"] = {{"policy", toWord(vm.cpu.realtime->policy)}, {"priority", vm.cpu.realtime->priority}};
  }
  if (vm.cpu.topology.sockets != 0) {
    cpu["topology"] = {
        {"sockets", vm.cpu.topology.sockets}, {"cores", vm.cpu.topology.cores}, {"threads", vm.cpu.topology.threads}};
  }
  if (!cpu.empty()) out["cpu"] = cpu;

  json backing = {{"locked", vm.memoryBacking.locked}};
  if (vm.memoryBacking.hugepages != 0) backing["hugepages"] = formatBytes(vm.memoryBacking.hugepages);
  out["memoryBacking"] = backing;

  json disks = json::array();
  for (const auto& d : vm.disks) {
    disks.push_back({{"source", d.source},
                     {"format", toWord(d.format)},
                     {"target", d.target},
                     {"bus", toWord(d.bus)},
                     {"cache", toWord(d.cache)},
                     {"readonly", d.readonly},
                     {"shared", d.shared}});
  }
  if (!disks.empty()) out["disks"] = disks;

  json nics = json::array();
  for (const auto& n : vm.nics) {
    json nic = {{"mac", n.mac}, {"bridge", n.bridge}, {"vlan", n.vlan}, {"model", n.model}};
    if (!n.ip.empty()) nic["ip"] = n.ip;
    if (!n.gateway.empty()) nic["gateway"] = n.gateway;
    nics.push_back(nic);
  }
  if (!nics.empty()) out["nics"] = nics;

  json hostdevs = json::array();
  for (const auto& h : vm.hostdevs) {
    json dev = {{"pci", h.pci}, {"vlan", h.vlan}};
    if (!h.mac.empty()) dev["mac"] = h.mac;
    hostdevs.push_back(dev);
  }
  if (!hostdevs.empty()) out["hostdevs"] = hostdevs;

  json console = {{"type", toWord(vm.console.type)}};
  if (!vm.console.path.empty()) console["path"] = vm.console.path;
  out["console"] = console;
  return out;
}

// Only the counts the model uses: the loader rejects the others.
json redundancy(const model::RedundancySpec& r) {
  json out = {{"model", toWord(r.model)}};
  using M = model::RedundancyModel;
  const bool active = r.model == M::kNPlusM || r.model == M::kNWayActive;
  const bool standby = r.model == M::kNPlusM || r.model == M::kNWay;
  const bool maxActive = r.model != M::kNoRedundancy;
  const bool maxStandby = r.model == M::k2N || r.model == M::kNPlusM || r.model == M::kNWay;
  if (active && r.activeUnits != 0) out["activeUnits"] = r.activeUnits;
  if (standby && r.standbyUnits != 0) out["standbyUnits"] = r.standbyUnits;
  if (maxActive && r.maxActiveSIsPerUnit != 0) out["maxActiveSIsPerUnit"] = r.maxActiveSIsPerUnit;
  if (maxStandby && r.maxStandbySIsPerUnit != 0) out["maxStandbySIsPerUnit"] = r.maxStandbySIsPerUnit;
  return out;
}

json serviceGroupSpec(const model::ServiceGroupSpec& sg) {
  const auto& r = sg.recovery;
  json spec = {{"redundancy", redundancy(sg.redundancy)},
               {"failback", sg.failback},
               {"autoRepair", sg.autoRepair},
               {"recovery",
                {{"vmRestartMax", r.vmRestartMax},
                 {"vmRestartProbation", formatDuration(r.vmRestartProbation)},
                 {"suRestartMax", r.suRestartMax},
                 {"suRestartProbation", formatDuration(r.suRestartProbation)},
                 {"defaultAction", toWord(r.defaultAction)}}},
               {"migration",
                {{"maxDowntime", formatDuration(sg.migration.maxDowntime)},
                 {"timeout", formatDuration(sg.migration.timeout)},
                 {"maxParallel", sg.migration.maxParallel}}}};
  if (!sg.nodeGroup.empty()) spec["nodeGroup"] = sg.nodeGroup;
  if (!sg.dependsOn.empty()) spec["dependsOn"] = sg.dependsOn;

  json health = json::object();
  if (const auto& w = sg.health.watchdog) {
    health["watchdog"] = {
        {"model", toWord(w->model)}, {"action", toWord(w->action)}, {"timeout", formatDuration(w->timeout)}};
  }
  if (const auto& h = sg.health.heartbeat) {
    health["heartbeat"] = {{"interval", formatDuration(h->interval)}, {"timeout", formatDuration(h->timeout)}};
  }
  if (!health.empty()) spec["health"] = health;
  if (sg.snapshots.interval.count() != 0) {
    spec["snapshots"] = {{"interval", formatDuration(sg.snapshots.interval)}, {"keep", sg.snapshots.keep}};
  }

  json units = json::array();
  for (const auto& u : sg.units) {
    json unit = {{"name", u.name}, {"rank", u.rank}};
    if (!u.nodes.empty()) unit["nodes"] = u.nodes;
    json vms = json::array();
    for (const auto& vm : u.vms) vms.push_back(vmSpec(vm));
    unit["vms"] = vms;
    units.push_back(unit);
  }
  spec["units"] = units;

  json sis = json::array();
  for (const auto& si : sg.serviceInstances) {
    json out = {{"name", si.name}, {"rank", si.rank}};
    if (!si.attributes.empty()) out["attributes"] = si.attributes;
    sis.push_back(out);
  }
  spec["serviceInstances"] = sis;
  return spec;
}

void emit(YAML::Emitter& out, const json& value) {
  switch (value.type()) {
    case json::value_t::object:
      out << YAML::BeginMap;
      for (const auto& [key, v] : value.items()) {
        out << YAML::Key << key << YAML::Value;
        emit(out, v);
      }
      out << YAML::EndMap;
      break;
    case json::value_t::array:
      out << YAML::BeginSeq;
      for (const auto& v : value) emit(out, v);
      out << YAML::EndSeq;
      break;
    case json::value_t::string:
      out << value.get<std::string>();
      break;
    case json::value_t::boolean:
      out << (value.get<bool>() ? "true" : "false");
      break;
    case json::value_t::null:
      out << YAML::Null;
      break;
    default:
      out << value.dump();  // numbers
      break;
  }
}

}  // namespace

json toDocuments(const model::Configuration& config) {
  json documents = json::array();
  if (config.cluster) {
    documents.push_back(
        document("Cluster", config.cluster->name, config.cluster->labels, clusterSpec(*config.cluster)));
  }
  for (const auto& sg : config.serviceGroups) {
    documents.push_back(document("ServiceGroup", sg.name, sg.labels, serviceGroupSpec(sg)));
  }
  return documents;
}

std::string toYaml(const json& documents) {
  std::string out;
  for (const auto& doc : documents) {
    YAML::Emitter emitter;
    emit(emitter, doc);
    out += "---\n";
    out += emitter.c_str();
    out += "\n";
  }
  return out;
}

}  // namespace kvm_amf::config
