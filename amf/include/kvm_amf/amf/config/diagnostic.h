// Where in the operator's files a problem is, and what it is.
#pragma once

#include <string>
#include <vector>

namespace kvm_amf::config {

// 1-based line and column; line 0 means "the file as a whole" (it could not be read).
struct Location {
  std::string file;
  int line = 0;
  int column = 0;
  bool operator==(const Location&) const = default;
};

struct Diagnostic {
  Location where;
  std::string message;

  // "FILE:LINE:COLUMN: message" (or "FILE: message" for line 0).
  std::string str() const;
  bool operator==(const Diagnostic&) const = default;
};

using Diagnostics = std::vector<Diagnostic>;

}  // namespace kvm_amf::config
