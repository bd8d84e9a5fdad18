// A small YAML emitter for JSON values, for amf-admin's `-o yaml` of what amfd sends (the status
// document, its objects, events). Block style; keys keep the value's order.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace kvm_amf::cli {

// `value` as one YAML document (no "---"), ending in a newline, that a YAML 1.1 or 1.2 loader reads
// back as the same JSON value. Strings are written plain only when they cannot be read as anything
// else (they start with a letter, hold only letters, digits and `_ . / + -`, and are no null or
// boolean word such as `no` or `null`); every other string is double-quoted, with control and
// line-breaking characters escaped. Empty objects and arrays are `{}` and `[]`.
std::string toYamlDocument(const nlohmann::ordered_json& value);

// One scalar as toYamlDocument writes it: a string plain or double-quoted, a number as JSON writes
// it, true, false or null. REQUIRES: value is not an object or array.
std::string yamlScalar(const nlohmann::ordered_json& value);

}  // namespace kvm_amf::cli
