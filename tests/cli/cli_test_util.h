// Helpers for amf-admin tests: run a verb in-process and capture what it prints.
#pragma once

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "kvm_amf/cli/admin_cli.h"

namespace kvm_amf::cli::testing {

struct Invocation {
  int code;
  std::string out;
  std::string err;
};

inline Invocation admin(const std::vector<std::string>& args) {
  std::ostringstream out;
  std::ostringstream err;
  int code = runAdmin(args, out, err);
  return {code, out.str(), err.str()};
}

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The lines of `text`, without their newlines.
inline std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The path of a file of examples/.
inline std::string example(const std::string& name) {
  return (std::filesystem::path(KVM_AMF_SOURCE_DIR) / "examples" / name).string();
}

}  // namespace kvm_amf::cli::testing
