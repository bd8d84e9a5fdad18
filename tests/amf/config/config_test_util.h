// Helpers for configuration tests: load YAML text, find diagnostics, a valid base configuration.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "kvm_amf/amf/config/loader.h"

namespace kvm_amf::config::testing {

inline LoadResult loadText(const std::string& text, const std::string& name = "test.yaml") {
  return loadConfiguration({{name, text}});
}

// The errors as "LINE:COLUMN: message" lines, for readable failure output.
inline std::string errorLines(const LoadResult& r) {
  std::string out;
  for (const auto& e : r.errors)
    out += std::to_string(e.where.line) + ":" + std::to_string(e.where.column) + ": " + e.message + "\n";
  return out;
}

// True when some error at `line` (and `column` if non-zero) contains `text`.
inline bool hasError(const LoadResult& r, int line, int column, const std::string& text) {
  for (const auto& e : r.errors) {
    if (e.where.line == line && (column == 0 || e.where.column == column) &&
        e.message.find(text) != std::string::npos) {
      return true;
    }
  }
  return false;
}

// True when some error contains `text`, wherever it is.
inline bool hasError(const LoadResult& r, const std::string& text) {
  for (const auto& e : r.errors) {
    if (e.message.find(text) != std::string::npos) return true;
  }
  return false;
}

// A valid three-node cluster, one document.
inline const char* kCluster = R"(apiVersion: kvm-amf/v1
kind: Cluster
metadata:
  name: c
spec:
  nodes:
    - {name: n1, address: 10.0.0.1}
    - {name: n2, address: 10.0.0.2}
    - {name: n3, address: 10.0.0.3}
  nodeGroups:
    - {name: g12, nodes: [n1, n2]}
)";

// A ServiceGroup document with `units` and `sis` given as YAML flow lists, and extra spec lines.
inline std::string serviceGroup(const std::string& name, const std::string& model, const std::string& units,
                                const std::string& sis, const std::string& extra = "") {
  return "---\napiVersion: kvm-amf/v1\nkind: ServiceGroup\nmetadata: {name: " + name +
         "}\nspec:\n  redundancy: {model: " + model + "}\n" + extra + "  units: " + units +
         "\n  serviceInstances: " + sis + "\n";
}

// A unit with one kernel-booted VM named `<unit>-vm` and a NIC of the given MAC octet.
inline std::string unit(const std::string& name, int macOctet, const std::string& extraVm = "") {
  char mac[32];
  std::snprintf(mac, sizeof mac, "52:54:00:00:00:%02x", macOctet);
  return "{name: " + name + ", vms: [{name: " + name + "-vm, memory: 128Mi, boot: {kernel: /k}, nics: [{mac: \"" + mac +
         "\", bridge: br0}]" + extraVm + "}]}";
}

}  // namespace kvm_amf::config::testing
