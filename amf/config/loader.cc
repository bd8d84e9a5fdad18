// Reads `Cluster` and `ServiceGroup` documents into the typed model; then validate.cc checks the
// whole set. Every read records its location so that later checks can point at the file.
#include "kvm_amf/amf/config/loader.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "validate.h"
#include "yaml_reader.h"

namespace kvm_amf::config {
namespace {

using model::Duration;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
constexpr Fields::Need kRequired = Fields::kRequired;

void readCapacity(Fields& f, model::NodeCapacity& c) {
  f.integer("vcpus", c.vcpus, 1, 4096);
  f.bytes("memory", c.memory);
}

void readClusterSpec(Fields& f, model::ClusterSpec& spec) {
  f.objects(
      "nodes",
      [&](Fields& n, std::size_t index) {
        model::NodeSpec node;
        node.id = static_cast<int>(index) + 1;
        node.libvirtUri = "qemu:///system";
        n.name("name", node.name, kRequired);
        n.integer("id", node.id, 1, 0x7fffffff);
        n.str("address", node.address, kRequired);
        n.str("libvirtUri", node.libvirtUri);
        n.object("capacity", [&](Fields& c) { readCapacity(c, node.capacity); });
        spec.nodes.push_back(std::move(node));
      },
      kRequired);
  f.objects("nodeGroups", [&](Fields& g, std::size_t) {
    model::NodeGroupSpec group;
    g.name("name", group.name, kRequired);
    g.names("nodes", group.nodes, kRequired);
    spec.nodeGroups.push_back(std::move(group));
  });
  f.object("membership", [&](Fields& m) {
    auto& s = spec.membership;
    m.duration("token", s.token, milliseconds(200), seconds(60));
    m.duration("consensus", s.consensus, milliseconds(0), seconds(120));
    m.duration("amfdRestartGrace", s.amfdRestartGrace, milliseconds(0), hours(1));
    m.boolean("twoNode", s.twoNode);
    m.boolean("waitForAll", s.waitForAll);
    m.boolean("crypto", s.crypto);
  });
  f.object("fencing", [&](Fields& fe) {
    auto& s = spec.fencing;
    fe.word("mode", s.mode, kRequired);
    fe.object("agent", [&](Fields& a) {
      a.str("command", s.agent.command, kRequired);
      a.duration("timeout", s.agent.timeout, milliseconds(100), minutes(10));
      a.duration("retryInterval", s.agent.retryInterval, milliseconds(0), minutes(10));
    });
    fe.object("self", [&](Fields& sf) {
      sf.duration("timeout", s.self.timeout, milliseconds(100), minutes(5));
      sf.duration("margin", s.self.margin, milliseconds(0), minutes(1));
    });
  });
  f.object("escalation", [&](Fields& e) {
    e.integer("suFailoverMax", spec.escalation.suFailoverMax, 0, 1000);
    e.duration("suFailoverProbation", spec.escalation.suFailoverProbation, milliseconds(0), hours(24 * 30));
  });
}

void readVm(Fields& f, model::VmSpec& vm) {
  f.name("name", vm.name, kRequired);
  f.integer("bootOrder", vm.bootOrder, 0, 1000);
  f.integer("vcpus", vm.vcpus, 1, 512);
  f.bytes("memory", vm.memory, kRequired);
  f.bytes("maxMemory", vm.maxMemory);
  f.object(
      "boot",
      [&](Fields& b) {
        b.word("firmware", vm.boot.firmware);
        b.str("kernel", vm.boot.kernel);
        b.str("initrd", vm.boot.initrd);
        b.str("cmdline", vm.boot.cmdline);
        b.str("disk", vm.boot.disk);
        b.boolean("network", vm.boot.network);
      },
      kRequired);
  f.object("cpu", [&](Fields& c) {
    c.strings("pinning", vm.cpu.pinning);
    c.str("emulatorPinning", vm.cpu.emulatorPinning);
    c.object("realtime", [&](Fields& r) {
      model::RealtimeSpec rt;
      r.word("policy", rt.policy);
      r.integer("priority", rt.priority, 1, 99);
      vm.cpu.realtime = rt;
    });
    c.object("topology", [&](Fields& t) {
      t.integer("sockets", vm.cpu.topology.sockets, 1, 64, kRequired);
      t.integer("cores", vm.cpu.topology.cores, 1, 256, kRequired);
      t.integer("threads", vm.cpu.topology.threads, 1, 8, kRequired);
    });
  });
  f.object("memoryBacking", [&](Fields& m) {
    m.bytes("hugepages", vm.memoryBacking.hugepages);
    m.boolean("locked", vm.memoryBacking.locked);
  });
  f.objects("disks", [&](Fields& d, std::size_t) {
    model::DiskSpec disk;
    d.str("source", disk.source, kRequired);
    d.word("format", disk.format);
    d.str("target", disk.target, kRequired);
    d.word("bus", disk.bus);
    d.word("cache", disk.cache);
    d.boolean("readonly", disk.readonly);
    d.boolean("shared", disk.shared);
    vm.disks.push_back(std::move(disk));
  });
  f.objects("nics", [&](Fields& n, std::size_t) {
    model::NicSpec nic;
    n.str("mac", nic.mac, kRequired);
    std::transform(nic.mac.begin(), nic.mac.end(), nic.mac.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    n.str("bridge", nic.bridge, kRequired);
    n.integer("vlan", nic.vlan, 0, 4094);
    n.str("ip", nic.ip);
    n.str("gateway", nic.gateway);
    n.str("model", nic.model);
    vm.nics.push_back(std::move(nic));
  });
  f.objects("hostdevs", [&](Fields& h, std::size_t) {
    model::HostdevSpec dev;
    h.str("pci", dev.pci, kRequired);
    h.str("mac", dev.mac);
    std::transform(dev.mac.begin(), dev.mac.end(), dev.mac.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    h.integer("vlan", dev.vlan, 0, 4094);
    vm.hostdevs.push_back(std::move(dev));
  });
  f.object("console", [&](Fields& c) {
    c.word("type", vm.console.type);
    c.str("path", vm.console.path);
  });
}

void readServiceGroupSpec(Fields& f, model::ServiceGroupSpec& sg) {
  f.object(
      "redundancy",
      [&](Fields& r) {
        auto& s = sg.redundancy;
        r.word("model", s.model, kRequired);
        r.integer("activeUnits", s.activeUnits, 1, 1000);
        r.integer("standbyUnits", s.standbyUnits, 1, 1000);
        r.integer("maxActiveSIsPerUnit", s.maxActiveSIsPerUnit, 1, 1000);
        r.integer("maxStandbySIsPerUnit", s.maxStandbySIsPerUnit, 1, 1000);
      },
      kRequired);
  f.name("nodeGroup", sg.nodeGroup);
  f.boolean("failback", sg.failback);
  f.boolean("autoRepair", sg.autoRepair);
  f.names("dependsOn", sg.dependsOn);
  f.object("recovery", [&](Fields& r) {
    auto& s = sg.recovery;
    r.integer("vmRestartMax", s.vmRestartMax, 0, 1000);
    r.duration("vmRestartProbation", s.vmRestartProbation, milliseconds(0), hours(24));
    r.integer("suRestartMax", s.suRestartMax, 0, 1000);
    r.duration("suRestartProbation", s.suRestartProbation, milliseconds(0), hours(24));
    r.word("defaultAction", s.defaultAction);
  });
  f.object("health", [&](Fields& h) {
    h.object("watchdog", [&](Fields& w) {
      model::WatchdogSpec wd;
      w.word("model", wd.model);
      w.word("action", wd.action);
      w.duration("timeout", wd.timeout, seconds(1), minutes(10));
      sg.health.watchdog = wd;
    });
    h.object("heartbeat", [&](Fields& b) {
      model::HeartbeatSpec hb;
      b.duration("interval", hb.interval, milliseconds(50), minutes(1));
      b.duration("timeout", hb.timeout, milliseconds(100), minutes(10));
      sg.health.heartbeat = hb;
    });
  });
  f.object("snapshots", [&](Fields& s) {
    s.duration("interval", sg.snapshots.interval, minutes(1), hours(24 * 30), kRequired);
    s.integer("keep", sg.snapshots.keep, 1, 1000);
  });
  f.object("migration", [&](Fields& m) {
    m.duration("maxDowntime", sg.migration.maxDowntime, milliseconds(1), minutes(1));
    m.duration("timeout", sg.migration.timeout, seconds(1), hours(24));
    m.integer("maxParallel", sg.migration.maxParallel, 1, 64);
  });
  f.objects(
      "units",
      [&](Fields& u, std::size_t index) {
        model::ServiceUnitSpec unit;
        unit.rank = static_cast<int>(index) + 1;
        u.name("name", unit.name, kRequired);
        u.integer("rank", unit.rank, 1, 1'000'000);
        u.names("nodes", unit.nodes);
        u.objects(
            "vms",
            [&](Fields& v, std::size_t) {
              model::VmSpec vm;
              readVm(v, vm);
              unit.vms.push_back(std::move(vm));
            },
            kRequired);
        sg.units.push_back(std::move(unit));
      },
      kRequired);
  f.objects(
      "serviceInstances",
      [&](Fields& s, std::size_t index) {
        model::ServiceInstanceSpec si;
        si.rank = static_cast<int>(index) + 1;
        s.name("name", si.name, kRequired);
        s.integer("rank", si.rank, 1, 1'000'000);
        s.stringMap("attributes", si.attributes);
        sg.serviceInstances.push_back(std::move(si));
      },
      kRequired);
}

struct Metadata {
  std::string name;
  std::map<std::string, std::string> labels;
};

void readDocument(Fields& d, model::Configuration& config, Provenance& provenance) {
  std::string apiVersion;
  if (d.str("apiVersion", apiVersion, kRequired) && apiVersion != model::kApiVersion) {
    d.fail("apiVersion", "must be " + std::string(model::kApiVersion) + ", not '" + apiVersion.substr(0, 40) + "'");
  }
  std::string kind;
  d.str("kind", kind, kRequired);
  Metadata meta;
  d.object(
      "metadata",
      [&](Fields& m) {
        m.name("name", meta.name, kRequired);
        m.stringMap("labels", meta.labels);
      },
      kRequired);

  if (kind == "Cluster") {
    model::ClusterSpec cluster;
    cluster.name = meta.name;
    cluster.labels = meta.labels;
    d.object(
        "spec", [&](Fields& s) { readClusterSpec(s, cluster); }, kRequired);
    provenance.clusterPaths.push_back(d.path());
    if (!config.cluster) config.cluster = std::move(cluster);
  } else if (kind == "ServiceGroup") {
    model::ServiceGroupSpec sg;
    sg.name = meta.name;
    sg.labels = meta.labels;
    d.object(
        "spec", [&](Fields& s) { readServiceGroupSpec(s, sg); }, kRequired);
    provenance.serviceGroupPaths.push_back(d.path());
    config.serviceGroups.push_back(std::move(sg));
  } else {
    if (!kind.empty()) d.fail("kind", "must be Cluster or ServiceGroup, not '" + kind.substr(0, 40) + "'");
    d.ignore("spec");
  }
}

// Model counts the operator left out get the model's defaults (after validation saw what was given).
void fillRedundancyDefaults(model::RedundancySpec& r, std::size_t units) {
  auto orDefault = [](int& value, int fallback) {
    if (value == 0) value = fallback;
  };
  switch (r.model) {
    case model::RedundancyModel::k2N:
      r.activeUnits = 1;
      r.standbyUnits = 1;
      orDefault(r.maxActiveSIsPerUnit, 1000);
      orDefault(r.maxStandbySIsPerUnit, 1000);
      break;
    case model::RedundancyModel::kNPlusM:
      orDefault(r.activeUnits, std::max(1, static_cast<int>(units) - 1));
      orDefault(r.standbyUnits, 1);
      orDefault(r.maxActiveSIsPerUnit, 1);
      orDefault(r.maxStandbySIsPerUnit, r.activeUnits);
      break;
    case model::RedundancyModel::kNWay:
      orDefault(r.standbyUnits, 1);
      orDefault(r.maxActiveSIsPerUnit, 1000);
      orDefault(r.maxStandbySIsPerUnit, 1000);
      break;
    case model::RedundancyModel::kNWayActive:
      orDefault(r.activeUnits, static_cast<int>(units));
      orDefault(r.maxActiveSIsPerUnit, 1000);
      break;
    case model::RedundancyModel::kNoRedundancy:
      r.activeUnits = 1;
      r.maxActiveSIsPerUnit = 1;
      break;
  }
}

int sourceIndex(const std::vector<Source>& sources, const std::string& file) {
  for (std::size_t i = 0; i < sources.size(); ++i) {
    if (sources[i].name == file) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace

LoadResult loadConfiguration(const std::vector<Source>& sources, const LoadLimits& limits) {
  LoadResult result;
  Provenance provenance;
  ReadContext ctx(result.errors, provenance.where, limits.maxValues);
  std::size_t documentCount = 0;

  for (const Source& source : sources) {
    if (source.text.size() > limits.maxSourceBytes) {
      ctx.error({source.name, 0, 0}, "larger than " + std::to_string(limits.maxSourceBytes) + " bytes; not read");
      continue;
    }
    ParsedYaml parsed = parseYaml(source.name, source.text);
    if (parsed.error) {
      result.errors.push_back(*parsed.error);
      continue;
    }
    for (const YamlRef& document : parsed.documents) {
      if (ctx.exhausted()) break;
      if (document->kind == YamlValue::Kind::kNull) continue;  // an empty document between two "---"
      readObject(ctx, source.name, *document, "doc" + std::to_string(documentCount++),
                 [&](Fields& d) { readDocument(d, result.config, provenance); });
    }
  }

  if (!ctx.exhausted()) validate(result.config, provenance, result.errors);

  std::stable_sort(result.errors.begin(), result.errors.end(), [&](const Diagnostic& a, const Diagnostic& b) {
    auto key = [&](const Diagnostic& d) {
      return std::tuple(sourceIndex(sources, d.where.file), d.where.line, d.where.column);
    };
    return key(a) < key(b);
  });
  result.errors.erase(std::unique(result.errors.begin(), result.errors.end()), result.errors.end());

  if (result.ok()) {
    for (auto& sg : result.config.serviceGroups) fillRedundancyDefaults(sg.redundancy, sg.units.size());
  }
  return result;
}

LoadResult loadConfigurationFiles(const std::vector<std::string>& paths, const LoadLimits& limits) {
  std::vector<Source> sources;
  Diagnostics unreadable;
  for (const std::string& path : paths) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      unreadable.push_back({{path, 0, 0}, "cannot be read"});
      continue;
    }
    in.seekg(0, std::ios::end);
    const auto size = in.tellg();
    if (size < 0) {
      unreadable.push_back({{path, 0, 0}, "cannot be read (not a regular file?)"});
      continue;
    }
    if (static_cast<std::size_t>(size) > limits.maxSourceBytes) {
      unreadable.push_back({{path, 0, 0}, "larger than " + std::to_string(limits.maxSourceBytes) + " bytes; not read"});
      continue;
    }
    in.seekg(0);
    std::ostringstream text;
    text << in.rdbuf();
    sources.push_back({path, text.str()});
  }
  LoadResult result = loadConfiguration(sources, limits);
  result.errors.insert(result.errors.begin(), unreadable.begin(), unreadable.end());
  return result;
}

}  // namespace kvm_amf::config
