#include "validate.h"

#include <arpa/inet.h>

#include <charconv>
#include <functional>
#include <map>
#include <set>

#include "kvm_amf/amf/model/units.h"
#include "kvm_amf/amf/model/words.h"

namespace kvm_amf::config {
namespace {

using model::Bytes;
using model::RedundancyModel;

// A source-map path built step by step: (Path{"doc0"} / "spec").at("units", 2).
struct Path {
  std::string text;
  Path operator/(std::string_view key) const { return {field(text, key)}; }
  Path operator[](std::size_t index) const { return {item(text, index)}; }
  Path at(std::string_view key, std::size_t index) const { return (*this / key)[index]; }
};

bool parseIp(std::string_view text, bool& v6) {
  std::string s(text);
  unsigned char buffer[16];
  if (inet_pton(AF_INET, s.c_str(), buffer) == 1) {
    v6 = false;
    return true;
  }
  if (inet_pton(AF_INET6, s.c_str(), buffer) == 1) {
    v6 = true;
    return true;
  }
  return false;
}

bool isIp(std::string_view text) {
  bool v6 = false;
  return parseIp(text, v6);
}

// "10.0.0.5/24" or "fd00::5/64": the address part on success.
std::optional<std::string> parseCidr(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  std::string_view address = text.substr(0, slash);
  std::string_view prefix = text.substr(slash + 1);
  bool v6 = false;
  if (!parseIp(address, v6)) return std::nullopt;
  int bits = -1;
  auto [p, ec] = std::from_chars(prefix.data(), prefix.data() + prefix.size(), bits);
  if (ec != std::errc() || p != prefix.data() + prefix.size() || bits < 0 || bits > (v6 ? 128 : 32)) {
    return std::nullopt;
  }
  return std::string(address);
}

bool isHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// Six lower-case hex octets separated by ':' (the loader lower-cases MACs).
bool isMac(std::string_view mac) {
  if (mac.size() != 17) return false;
  for (std::size_t i = 0; i < mac.size(); ++i) {
    if (i % 3 == 2 ? mac[i] != ':' : !isHex(mac[i])) return false;
  }
  return true;
}

bool isMulticastMac(std::string_view mac) {
  int first = std::stoi(std::string(mac.substr(0, 2)), nullptr, 16);
  return (first & 1) != 0;
}

// "0-3,6": host CPU numbers and ranges, each below 4096.
bool isCpuSet(std::string_view set) {
  if (set.empty()) return false;
  std::size_t start = 0;
  while (start <= set.size()) {
    std::size_t comma = set.find(',', start);
    std::string_view part = set.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    std::size_t dash = part.find('-');
    auto number = [](std::string_view digits, int& out) {
      auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out);
      return !digits.empty() && ec == std::errc() && p == digits.data() + digits.size() && out >= 0 && out < 4096;
    };
    int low = 0;
    int high = 0;
    if (dash == std::string_view::npos) {
      if (!number(part, low)) return false;
    } else if (!number(part.substr(0, dash), low) || !number(part.substr(dash + 1), high) || low > high) {
      return false;
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return true;
}

// "0000:03:10.2": domain, bus, slot (< 0x20) and function (< 8).
bool isPciAddress(std::string_view pci) {
  if (pci.size() != 12 || pci[4] != ':' || pci[7] != ':' || pci[10] != '.') return false;
  for (std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9, 11}) {
    if (!isHex(pci[i])) return false;
  }
  int slot = std::stoi(std::string(pci.substr(8, 2)), nullptr, 16);
  return slot < 0x20 && pci[11] >= '0' && pci[11] <= '7';
}

bool isAbsolutePath(std::string_view path) { return !path.empty() && path.front() == '/'; }

class Validator {
 public:
  Validator(const model::Configuration& config, const Provenance& provenance, Diagnostics& errors)
      : config_(config), provenance_(provenance), errors_(errors) {}

  void run() {
    for (std::size_t i = 1; i < provenance_.clusterPaths.size(); ++i) {
      report(Path{provenance_.clusterPaths[i]} / "kind",
             "a configuration has one Cluster document; another one is at " +
                 where(Path{provenance_.clusterPaths[0]} / "kind"));
    }
    if (config_.cluster) checkCluster(*config_.cluster, Path{provenance_.clusterPaths[0]});
    for (std::size_t i = 0; i < config_.serviceGroups.size(); ++i) {
      checkServiceGroup(config_.serviceGroups[i], Path{provenance_.serviceGroupPaths[i]});
    }
    checkDependencyCycles();
  }

 private:
  void report(const Path& at, std::string message) {
    errors_.push_back({provenance_.where.locate(at.text), std::move(message)});
  }
  std::string where(const Path& at) const {
    Location l = provenance_.where.locate(at.text);
    return l.file + ":" + std::to_string(l.line) + ":" + std::to_string(l.column);
  }

  // Reports `what` named `name` at `at` when the same (kind, name) was already seen.
  void unique(std::map<std::string, Path>& seen, const std::string& name, const Path& at, std::string_view what) {
    if (name.empty()) return;
    auto [it, fresh] = seen.emplace(name, at);
    if (!fresh) report(at, "duplicate " + std::string(what) + " '" + name + "' (first at " + where(it->second) + ")");
  }

  void checkCluster(const model::ClusterSpec& cluster, const Path& doc) {
    const Path spec = doc / "spec";
    if (cluster.nodes.empty()) report(spec / "nodes", "a cluster needs at least one node");
    std::map<std::string, Path> names;
    std::map<std::string, Path> ids;
    std::map<std::string, Path> addresses;
    for (std::size_t i = 0; i < cluster.nodes.size(); ++i) {
      const auto& node = cluster.nodes[i];
      const Path at = spec.at("nodes", i);
      unique(names, node.name, at / "name", "node name");
      unique(ids, std::to_string(node.id), at / "id", "node id");
      if (!node.address.empty() && !isIp(node.address)) {
        report(at / "address", "'" + node.address + "' is not an IPv4 or IPv6 address");
      } else {
        unique(addresses, node.address, at / "address", "node address");
      }
      if (node.libvirtUri.find(":/") == std::string::npos) {
        report(at / "libvirtUri", "'" + node.libvirtUri + "' is not a libvirt URI (e.g. qemu:///system)");
      }
      nodes_.insert(node.name);
    }
    std::map<std::string, Path> groupNames;
    for (std::size_t g = 0; g < cluster.nodeGroups.size(); ++g) {
      const auto& group = cluster.nodeGroups[g];
      const Path at = spec.at("nodeGroups", g);
      unique(groupNames, group.name, at / "name", "node group name");
      if (group.nodes.empty()) report(at / "nodes", "a node group needs at least one node");
      std::map<std::string, Path> members;
      for (std::size_t n = 0; n < group.nodes.size(); ++n) {
        const Path member = at.at("nodes", n);
        unique(members, group.nodes[n], member, "node in group");
        if (!nodes_.contains(group.nodes[n])) report(member, "no node named '" + group.nodes[n] + "' in the cluster");
      }
      nodeGroups_[group.name] = std::set<std::string>(group.nodes.begin(), group.nodes.end());
    }
    const auto& m = cluster.membership;
    if (m.consensus.count() != 0 && m.consensus <= m.token) {
      report(spec / "membership" / "consensus", "must be longer than the token (" + model::formatDuration(m.token) +
                                                    "); Corosync's default is 1.2 x token");
    }
    if (m.twoNode && cluster.nodes.size() != 2) {
      report(spec / "membership" / "twoNode",
             "twoNode needs exactly 2 nodes, the cluster has " + std::to_string(cluster.nodes.size()));
    }
    const auto& f = cluster.fencing;
    const Path fencing = spec / "fencing";
    if (f.mode == model::FencingMode::kAgent && f.agent.command.empty()) {
      report(fencing / "mode", "mode agent needs fencing.agent.command");
    }
    if (f.mode != model::FencingMode::kAgent && !f.agent.command.empty()) {
      report(fencing / "agent", "fencing.agent is used only with mode: agent");
    }
    if (f.mode != model::FencingMode::kSelf && f.self != model::SelfFencingSpec{}) {
      report(fencing / "self", "fencing.self is used only with mode: self");
    }
  }

  // The hosts a unit of `sg` may run on, or nullopt when unknown (no Cluster document).
  std::optional<std::set<std::string>> groupNodes(const model::ServiceGroupSpec& sg) const {
    if (!config_.cluster) return std::nullopt;
    if (sg.nodeGroup.empty()) return nodes_;
    auto it = nodeGroups_.find(sg.nodeGroup);
    if (it == nodeGroups_.end()) return std::nullopt;
    return it->second;
  }

  void checkServiceGroup(const model::ServiceGroupSpec& sg, const Path& doc) {
    const Path spec = doc / "spec";
    unique(serviceGroups_, sg.name, doc / "metadata" / "name", "service group name");
    if (config_.cluster && !sg.nodeGroup.empty() && !nodeGroups_.contains(sg.nodeGroup)) {
      report(spec / "nodeGroup", "no node group named '" + sg.nodeGroup + "' in the cluster");
    }
    std::map<std::string, Path> deps;
    for (std::size_t d = 0; d < sg.dependsOn.size(); ++d) {
      const Path at = spec.at("dependsOn", d);
      unique(deps, sg.dependsOn[d], at, "dependency");
      if (sg.dependsOn[d] == sg.name) report(at, "a service group cannot depend on itself");
      bool known = false;
      for (const auto& other : config_.serviceGroups) known = known || other.name == sg.dependsOn[d];
      if (!known) report(at, "no service group named '" + sg.dependsOn[d] + "'");
    }
    if (sg.health.heartbeat && sg.health.heartbeat->timeout <= sg.health.heartbeat->interval) {
      report(spec / "health" / "heartbeat" / "timeout", "must be longer than the heartbeat interval (" +
                                                            model::formatDuration(sg.health.heartbeat->interval) + ")");
    }

    const auto allowed = groupNodes(sg);
    if (sg.units.empty()) report(spec / "units", "a service group needs at least one service unit");
    for (std::size_t u = 0; u < sg.units.size(); ++u) {
      checkUnit(sg.units[u], spec.at("units", u), allowed, sg.nodeGroup);
    }
    if (sg.serviceInstances.empty()) {
      report(spec / "serviceInstances", "a service group needs at least one service instance");
    }
    for (std::size_t s = 0; s < sg.serviceInstances.size(); ++s) {
      const auto& si = sg.serviceInstances[s];
      unique(serviceInstances_, si.name, spec.at("serviceInstances", s) / "name", "service instance name");
    }
    checkRedundancy(sg, spec);
  }

  void checkRedundancy(const model::ServiceGroupSpec& sg, const Path& spec) {
    const auto& r = sg.redundancy;
    const Path at = spec / "redundancy";
    const std::string model(model::toWord(r.model));
    const int units = static_cast<int>(sg.units.size());
    const int sis = static_cast<int>(sg.serviceInstances.size());
    auto unused = [&](int value, std::string_view key) {
      if (value != 0) report(at / key, std::string(key) + " is not used by the " + model + " model");
    };
    auto count = [](int value, int fallback) { return value != 0 ? value : fallback; };
    switch (r.model) {
      case RedundancyModel::k2N:
        if (r.activeUnits > 1) report(at / "activeUnits", "2N has exactly one active unit");
        if (r.standbyUnits > 1) report(at / "standbyUnits", "2N has exactly one standby unit");
        if (units < 2) report(spec / "units", "2N needs at least 2 service units, has " + std::to_string(units));
        if (sis > count(r.maxActiveSIsPerUnit, sis)) {
          report(at / "maxActiveSIsPerUnit", "the active unit can take " + std::to_string(r.maxActiveSIsPerUnit) +
                                                 " service instances, but the group has " + std::to_string(sis));
        }
        break;
      case RedundancyModel::kNPlusM: {
        const int n = count(r.activeUnits, std::max(1, units - 1));
        const int m = count(r.standbyUnits, 1);
        if (units < n + m) {
          report(spec / "units", "N+M with " + std::to_string(n) + " active and " + std::to_string(m) +
                                     " standby units needs at least " + std::to_string(n + m) + " service units, has " +
                                     std::to_string(units));
        }
        if (sis > n * count(r.maxActiveSIsPerUnit, 1)) {
          report(at, std::to_string(n) + " active units taking " + std::to_string(count(r.maxActiveSIsPerUnit, 1)) +
                         " service instance(s) each cannot hold the group's " + std::to_string(sis));
        }
        if (sis > m * count(r.maxStandbySIsPerUnit, n)) {
          report(at, std::to_string(m) + " standby units protecting " +
                         std::to_string(count(r.maxStandbySIsPerUnit, n)) +
                         " service instance(s) each cannot protect the group's " + std::to_string(sis));
        }
        break;
      }
      case RedundancyModel::kNWay: {
        unused(r.activeUnits, "activeUnits");
        const int standbys = count(r.standbyUnits, 1);
        if (units < standbys + 1) {
          report(spec / "units", "N-Way with " + std::to_string(standbys) +
                                     " standby assignment(s) per service instance needs at least " +
                                     std::to_string(standbys + 1) + " service units, has " + std::to_string(units));
        }
        if (sis > units * count(r.maxActiveSIsPerUnit, sis)) {
          report(at / "maxActiveSIsPerUnit",
                 "the units cannot hold the group's " + std::to_string(sis) + " service instances");
        }
        break;
      }
      case RedundancyModel::kNWayActive: {
        unused(r.standbyUnits, "standbyUnits");
        unused(r.maxStandbySIsPerUnit, "maxStandbySIsPerUnit");
        const int actives = count(r.activeUnits, units);
        if (actives > units) {
          report(at / "activeUnits", "N-Way-Active with " + std::to_string(actives) +
                                         " active assignments per service instance needs at least " +
                                         std::to_string(actives) + " service units, has " + std::to_string(units));
        }
        if (sis * actives > units * count(r.maxActiveSIsPerUnit, sis)) {
          report(at / "maxActiveSIsPerUnit", "the units cannot hold " + std::to_string(actives) +
                                                 " active assignments of each of the group's " + std::to_string(sis) +
                                                 " service instances");
        }
        break;
      }
      case RedundancyModel::kNoRedundancy:
        unused(r.activeUnits, "activeUnits");
        unused(r.standbyUnits, "standbyUnits");
        unused(r.maxActiveSIsPerUnit, "maxActiveSIsPerUnit");
        unused(r.maxStandbySIsPerUnit, "maxStandbySIsPerUnit");
        if (sis > units) {
          report(spec / "units", "No-Redundancy gives each service instance a unit of its own: " + std::to_string(sis) +
                                     " service instances need " + std::to_string(sis) +
                                     " service units, the group has " + std::to_string(units));
        }
        break;
    }
  }

  void checkUnit(const model::ServiceUnitSpec& unit, const Path& at,
                 const std::optional<std::set<std::string>>& allowed, const std::string& nodeGroup) {
    unique(serviceUnits_, unit.name, at / "name", "service unit name");
    std::map<std::string, Path> seen;
    for (std::size_t n = 0; n < unit.nodes.size(); ++n) {
      const Path node = at.at("nodes", n);
      unique(seen, unit.nodes[n], node, "node of the unit");
      if (config_.cluster && !nodes_.contains(unit.nodes[n])) {
        report(node, "no node named '" + unit.nodes[n] + "' in the cluster");
      } else if (allowed && !allowed->contains(unit.nodes[n])) {
        report(node, "node '" + unit.nodes[n] + "' is not in the service group's node group '" + nodeGroup + "'");
      }
    }
    if (unit.vms.empty()) report(at / "vms", "a service unit needs at least one VM");
    int vcpus = 0;
    Bytes memory = 0;
    for (std::size_t v = 0; v < unit.vms.size(); ++v) {
      checkVm(unit.vms[v], at.at("vms", v));
      vcpus += unit.vms[v].vcpus;
      memory += std::max(unit.vms[v].memory, unit.vms[v].maxMemory);
    }
    checkCapacity(unit, at, allowed, vcpus, memory);
  }

  // The unit's VMs together must fit on at least one host it may run on (where capacity is declared).
  void checkCapacity(const model::ServiceUnitSpec& unit, const Path& at,
                     const std::optional<std::set<std::string>>& allowed, int vcpus, Bytes memory) {
    if (!config_.cluster || !allowed) return;
    bool anyHost = false;
    for (const auto& node : config_.cluster->nodes) {
      bool mayRun = unit.nodes.empty() ? allowed->contains(node.name)
                                       : std::find(unit.nodes.begin(), unit.nodes.end(), node.name) != unit.nodes.end();
      if (!mayRun) continue;
      anyHost = true;
      bool fits = (node.capacity.vcpus == 0 || vcpus <= node.capacity.vcpus) &&
                  (node.capacity.memory == 0 || memory <= node.capacity.memory);
      if (fits) return;
    }
    if (anyHost) {
      report(at / "vms", "the unit's VMs (" + std::to_string(vcpus) + " vCPUs, " + model::formatBytes(memory) +
                             ") fit on none of the hosts it may run on");
    }
  }

  void checkVm(const model::VmSpec& vm, const Path& at) {
    unique(vms_, vm.name, at / "name", "VM name");
    constexpr Bytes kMinMemory = 16ULL << 20;
    if (vm.memory != 0 && vm.memory < kMinMemory) report(at / "memory", "must be at least 16Mi");
    if (vm.maxMemory != 0 && vm.maxMemory < vm.memory) {
      report(at / "maxMemory", "must be at least memory (" + model::formatBytes(vm.memory) + ")");
    }
    const auto& mb = vm.memoryBacking;
    const bool dynamic = vm.maxMemory > vm.memory;
    if (dynamic && mb.locked) {
      report(at / "maxMemory", "dynamic memory (maxMemory above memory) cannot be used with memoryBacking.locked");
    }
    if (mb.hugepages != 0) {
      if (mb.hugepages != (2ULL << 20) && mb.hugepages != (1ULL << 30)) {
        report(at / "memoryBacking" / "hugepages", "huge page size must be 2Mi or 1Gi");
      } else if (vm.memory % mb.hugepages != 0) {
        report(at / "memory", "must be a whole number of huge pages (" + model::formatBytes(mb.hugepages) + ")");
      }
      if (dynamic) report(at / "maxMemory", "dynamic memory (maxMemory above memory) cannot use huge pages");
    }
    checkBoot(vm, at);
    checkCpu(vm, at / "cpu");

    std::map<std::string, Path> targets;
    for (std::size_t d = 0; d < vm.disks.size(); ++d) {
      const auto& disk = vm.disks[d];
      const Path dp = at.at("disks", d);
      unique(targets, disk.target, dp / "target", "disk target");
      const std::string prefix = disk.bus == model::DiskBus::kVirtio ? "vd" : "sd";
      bool targetOk = disk.target.size() >= 3 && disk.target.size() <= 4 && disk.target.starts_with(prefix);
      for (std::size_t c = 2; c < disk.target.size(); ++c)
        targetOk = targetOk && disk.target[c] >= 'a' && disk.target[c] <= 'z';
      if (!targetOk) {
        report(dp / "target", "'" + disk.target + "' is not a " + std::string(model::toWord(disk.bus)) +
                                  " disk name (e.g. " + prefix + "a)");
      }
      if (!isAbsolutePath(disk.source)) report(dp / "source", "must be an absolute path");
      checkSharedDisk(disk, dp);
    }
    for (std::size_t n = 0; n < vm.nics.size(); ++n) checkNic(vm.nics[n], at.at("nics", n));
    std::map<std::string, Path> pcis;
    for (std::size_t h = 0; h < vm.hostdevs.size(); ++h) {
      const auto& dev = vm.hostdevs[h];
      const Path hp = at.at("hostdevs", h);
      if (!isPciAddress(dev.pci)) {
        report(hp / "pci", "'" + dev.pci + "' is not a PCI address (DDDD:BB:SS.F, e.g. 0000:03:10.2)");
      }
      unique(pcis, dev.pci, hp / "pci", "PCI device");
      if (!dev.mac.empty()) checkMac(dev.mac, hp / "mac");
    }
    if (vm.console.type == model::ConsoleType::kFile && !isAbsolutePath(vm.console.path)) {
      report(at / "console" / "path", "a file console needs an absolute path");
    }
    if (vm.console.type != model::ConsoleType::kFile && !vm.console.path.empty()) {
      report(at / "console" / "path", "path is used only with type: file");
    }
  }

  void checkBoot(const model::VmSpec& vm, const Path& at) {
    const auto& b = vm.boot;
    const Path bp = at / "boot";
    const int methods = int{!b.kernel.empty()} + int{!b.disk.empty()} + int{b.network};
    if (methods != 1) report(bp, "choose exactly one boot method: kernel, disk or network");
    if (!b.kernel.empty() && !isAbsolutePath(b.kernel)) report(bp / "kernel", "must be an absolute path");
    if (!b.initrd.empty() && !isAbsolutePath(b.initrd)) report(bp / "initrd", "must be an absolute path");
    if (b.kernel.empty() && !b.initrd.empty()) report(bp / "initrd", "initrd is used only with kernel");
    if (b.kernel.empty() && !b.cmdline.empty()) report(bp / "cmdline", "cmdline is used only with kernel");
    if (!b.disk.empty()) {
      bool found = false;
      for (const auto& disk : vm.disks) found = found || disk.target == b.disk;
      if (!found) report(bp / "disk", "the VM has no disk with target '" + b.disk + "'");
    }
    if (b.network && vm.nics.empty()) report(bp / "network", "network boot needs at least one NIC");
  }

  void checkCpu(const model::VmSpec& vm, const Path& at) {
    const auto& cpu = vm.cpu;
    if (!cpu.pinning.empty() && static_cast<int>(cpu.pinning.size()) != vm.vcpus) {
      report(at / "pinning", "has " + std::to_string(cpu.pinning.size()) + " entries for " + std::to_string(vm.vcpus) +
                                 " vCPUs; give one host CPU set per vCPU");
    }
    for (std::size_t i = 0; i < cpu.pinning.size(); ++i) {
      if (!isCpuSet(cpu.pinning[i])) {
        report(at.at("pinning", i), "'" + cpu.pinning[i] + "' is not a host CPU set (e.g. 2, 4-5 or 1,3)");
      }
    }
    if (!cpu.emulatorPinning.empty() && !isCpuSet(cpu.emulatorPinning)) {
      report(at / "emulatorPinning", "'" + cpu.emulatorPinning + "' is not a host CPU set (e.g. 0 or 0-1)");
    }
    if (cpu.realtime && cpu.pinning.empty()) {
      report(at / "realtime", "realtime vCPUs need cpu.pinning (each vCPU on host CPUs of its own)");
    }
    const auto& t = cpu.topology;
    if (t.sockets != 0 && t.sockets * t.cores * t.threads != vm.vcpus) {
      report(at / "topology", "sockets x cores x threads = " + std::to_string(t.sockets * t.cores * t.threads) +
                                  ", but the VM has " + std::to_string(vm.vcpus) + " vCPUs");
    }
  }

  void checkMac(const std::string& mac, const Path& at) {
    if (!isMac(mac)) {
      report(at, "'" + mac + "' is not a MAC address (six hex octets, e.g. 52:54:00:12:34:56)");
    } else if (isMulticastMac(mac) || mac == "00:00:00:00:00:00") {
      report(at, "'" + mac + "' is not a unicast MAC address");
    } else {
      unique(macs_, mac, at, "MAC address");
    }
  }

  void checkNic(const model::NicSpec& nic, const Path& at) {
    checkMac(nic.mac, at / "mac");
    if (nic.bridge.empty() || nic.bridge.size() > 15 || nic.bridge.find_first_of("/ \t") != std::string::npos) {
      report(at / "bridge", "'" + nic.bridge + "' is not a bridge name (1-15 characters, no '/' or spaces)");
    }
    if (!nic.ip.empty()) {
      if (auto address = parseCidr(nic.ip)) {
        unique(ips_, *address, at / "ip", "IP address");
      } else {
        report(at / "ip", "'" + nic.ip + "' is not an address with a prefix length (e.g. 10.0.0.5/24)");
      }
    }
    if (!nic.gateway.empty()) {
      if (!isIp(nic.gateway)) report(at / "gateway", "'" + nic.gateway + "' is not an IP address");
      if (nic.ip.empty()) report(at / "gateway", "a gateway needs the NIC's ip");
    }
    static const std::set<std::string> kModels = {"virtio", "e1000", "e1000e", "rtl8139"};
    if (!kModels.contains(nic.model)) {
      report(at / "model", "must be one of virtio, e1000, e1000e or rtl8139, not '" + nic.model + "'");
    }
  }

  // An image written by two VMs at once is corrupted: sharing must be declared, or the disk read-only.
  void checkSharedDisk(const model::DiskSpec& disk, const Path& at) {
    if (disk.source.empty()) return;
    auto [it, fresh] = diskSources_.emplace(disk.source, std::pair(at, disk.shared || disk.readonly));
    if (!fresh && !(it->second.second && (disk.shared || disk.readonly))) {
      report(at / "source", "image '" + disk.source + "' is also used at " + where(it->second.first) +
                                "; mark both uses shared or readonly");
    }
  }

  void checkDependencyCycles() {
    std::map<std::string, const model::ServiceGroupSpec*> byName;
    for (const auto& sg : config_.serviceGroups) byName.emplace(sg.name, &sg);
    enum class Mark { kNone, kActive, kDone };
    std::map<std::string, Mark> mark;
    std::vector<std::string> stack;
    std::set<std::string> reported;
    std::function<void(const std::string&)> visit = [&](const std::string& name) {
      mark[name] = Mark::kActive;
      stack.push_back(name);
      for (const auto& dep : byName[name]->dependsOn) {
        if (!byName.contains(dep) || dep == name) continue;
        if (mark[dep] == Mark::kActive) {
          auto from = std::find(stack.begin(), stack.end(), dep);
          std::string cycle;
          for (auto it = from; it != stack.end(); ++it) cycle += *it + " -> ";
          cycle += dep;
          if (reported.insert(dep).second) reportCycle(name, dep, cycle);
        } else if (mark[dep] == Mark::kNone) {
          visit(dep);
        }
      }
      stack.pop_back();
      mark[name] = Mark::kDone;
    };
    for (const auto& sg : config_.serviceGroups) {
      if (!sg.name.empty() && mark[sg.name] == Mark::kNone) visit(sg.name);
    }
  }

  void reportCycle(const std::string& from, const std::string& to, const std::string& cycle) {
    for (std::size_t i = 0; i < config_.serviceGroups.size(); ++i) {
      const auto& sg = config_.serviceGroups[i];
      if (sg.name != from) continue;
      for (std::size_t d = 0; d < sg.dependsOn.size(); ++d) {
        if (sg.dependsOn[d] == to) {
          report((Path{provenance_.serviceGroupPaths[i]} / "spec").at("dependsOn", d),
                 "dependsOn forms a cycle: " + cycle);
          return;
        }
      }
    }
  }

  const model::Configuration& config_;
  const Provenance& provenance_;
  Diagnostics& errors_;
  std::set<std::string> nodes_;
  std::map<std::string, std::set<std::string>> nodeGroups_;
  std::map<std::string, Path> serviceGroups_;
  std::map<std::string, Path> serviceUnits_;
  std::map<std::string, Path> serviceInstances_;
  std::map<std::string, Path> vms_;
  std::map<std::string, Path> macs_;
  std::map<std::string, Path> ips_;
  std::map<std::string, std::pair<Path, bool>> diskSources_;
};

}  // namespace

void validate(const model::Configuration& config, const Provenance& provenance, Diagnostics& errors) {
  Validator(config, provenance, errors).run();
}

}  // namespace kvm_amf::config
