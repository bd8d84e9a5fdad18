#include "kvm_amf/amf/config/diagnostic.h"

namespace kvm_amf::config {

std::string Diagnostic::str() const {
  if (where.line == 0) return where.file + ": " + message;
  return where.file + ":" + std::to_string(where.line) + ":" + std::to_string(where.column) + ": " + message;
}

}  // namespace kvm_amf::config
