// What both benchmarks share: configurations built in memory (and proven valid by the real loader),
// the real clock, and the figures printed. Benchmarks are programs: they may read the real clock.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "kvm_amf/amf/config/loader.h"
#include "kvm_amf/amf/config/serialize.h"
#include "kvm_amf/amf/model/config.h"

namespace kvm_amf::bench {

// Seconds on the real, monotonic clock.
inline double wallSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Seconds of CPU time this process used: unlike wall time, not inflated by other programs
// competing for the cores.
inline double cpuSeconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

// A cluster of `hosts` hosts node1..nodeN (ids 1..N), Corosync token 300ms, fenced by an agent.
inline model::ClusterSpec agentFencedCluster(const std::string& name, int hosts) {
  model::ClusterSpec cluster;
  cluster.name = name;
  for (int i = 1; i <= hosts; ++i) {
    model::NodeSpec node;
    node.name = "node" + std::to_string(i);
    node.id = i;
    node.address = "10.88.0." + std::to_string(i);
    node.libvirtUri = "qemu:///system";
    cluster.nodes.push_back(node);
  }
  cluster.membership.token = std::chrono::milliseconds(300);
  cluster.fencing.mode = model::FencingMode::kAgent;
  cluster.fencing.agent.command = "/usr/lib/kvm-amf/fence-lab {node}";
  cluster.fencing.agent.timeout = std::chrono::seconds(5);
  return cluster;
}

// One small VM (1 vCPU, 256Mi, direct kernel boot) with one NIC. `index` makes its MAC and IP
// unique: give every VM of a configuration its own. REQUIRES: index < 65536.
inline model::VmSpec smallVm(const std::string& name, int index) {
  model::VmSpec vm;
  vm.name = name;
  vm.vcpus = 1;
  vm.memory = model::Bytes{256} << 20;
  vm.boot.kernel = "/var/lib/kvm-amf/images/vmlinux";
  vm.boot.initrd = "/var/lib/kvm-amf/images/guest-initrd.cpio.gz";
  vm.boot.cmdline = "console=ttyS0 quiet";
  model::NicSpec nic;
  char mac[18];
  std::snprintf(mac, sizeof mac, "52:54:00:01:%02x:%02x", (index >> 8) & 0xff, index & 0xff);
  nic.mac = mac;
  nic.bridge = "br-svc";
  nic.vlan = 100;
  nic.ip = "10.90." + std::to_string(index / 250) + "." + std::to_string(index % 250 + 1) + "/16";
  vm.nics.push_back(nic);
  return vm;
}

// The configuration as the real loader reads it back from its canonical YAML: proof that it is
// valid, with every default filled in as the loader fills it. Exits with the loader's errors when
// it does not load.
inline std::shared_ptr<const model::Configuration> validated(const model::Configuration& config) {
  const std::string yaml = config::toYaml(config::toDocuments(config));
  config::LoadResult loaded = config::loadConfiguration({{"bench.yaml", yaml}});
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.str().c_str());
    std::fprintf(stderr, "the benchmark's configuration is invalid (%zu errors)\n", loaded.errors.size());
    std::exit(2);
  }
  return std::make_shared<const model::Configuration>(std::move(loaded.config));
}

// The value at quantile q (0..1) of `values`, nearest rank. REQUIRES: values not empty.
inline double quantile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<std::size_t>(q * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(rank, values.size() - 1)];
}

}  // namespace kvm_amf::bench
