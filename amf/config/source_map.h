// Where each configuration value came from, so checks made on the typed model can point at the
// operator's file. Keys are paths: a document's root ("doc3"), then ".key" and "[index]" steps.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>

#include "kvm_amf/amf/config/diagnostic.h"

namespace kvm_amf::config {

inline std::string field(const std::string& path, std::string_view key) { return path + "." + std::string(key); }
inline std::string item(const std::string& path, std::size_t index) { return path + "[" + std::to_string(index) + "]"; }

class SourceMap {
 public:
  void record(const std::string& path, const Location& where) { where_.emplace(path, where); }

  // The location of `path`, or of its nearest recorded ancestor.
  Location locate(std::string path) const {
    for (;;) {
      if (auto it = where_.find(path); it != where_.end()) return it->second;
      auto cut = path.find_last_of(".[");
      if (cut == std::string::npos) return {};
      path.resize(cut);
    }
  }

 private:
  std::unordered_map<std::string, Location> where_;
};

}  // namespace kvm_amf::config
