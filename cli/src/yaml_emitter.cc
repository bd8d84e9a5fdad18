#include "kvm_amf/cli/yaml_emitter.h"

#include <array>
#include <cstdio>
#include <string_view>

namespace kvm_amf::cli {
namespace {

using Json = nlohmann::ordered_json;

bool isLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isDigit(char c) { return c >= '0' && c <= '9'; }

// Words a YAML 1.1 loader reads as null or a boolean (1.2 has fewer; quoting them does no harm).
bool isReservedWord(std::string_view text) {
  static constexpr std::array<std::string_view, 9> kWords = {"null", "true", "false", "yes", "no",
                                                             "on",   "off",  "y",     "n"};
  std::string lower(text);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  for (std::string_view word : kWords) {
    if (lower == word) return true;
  }
  return false;
}

// A string that every YAML loader reads back as that same string when written plain.
bool isPlainSafe(std::string_view text) {
  if (text.empty() || !isLetter(text.front())) return false;
  for (char c : text) {
    if (!isLetter(c) && !isDigit(c) && c != '_' && c != '.' && c != '/' && c != '+' && c != '-') return false;
  }
  return !isReservedWord(text);
}

void appendHexEscape(std::string& out, const char* prefix, unsigned value, int digits) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "%s%0*x", prefix, digits, value);
  out += buffer;
}

// A YAML double-quoted scalar. Bytes of UTF-8 pass through, except the characters YAML does not
// allow unescaped (C0 and C1 controls, DEL) and those it reads as line breaks (NEL, U+2028, U+2029).
std::string doubleQuoted(std::string_view text) {
  std::string out = "\"";
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    switch (byte) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\r':
        out += "\\r";
        continue;
      default:
        break;
    }
    if (byte < 0x20 || byte == 0x7f) {
      appendHexEscape(out, "\\x", byte, 2);
    } else if (byte == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
      appendHexEscape(out, "\\u", static_cast<unsigned char>(text[i + 1]), 4);  // U+0080..U+009F
      ++i;
    } else if (byte == 0xe2 && i + 2 < text.size() && static_cast<unsigned char>(text[i + 1]) == 0x80 &&
               (static_cast<unsigned char>(text[i + 2]) == 0xa8 || static_cast<unsigned char>(text[i + 2]) == 0xa9)) {
      appendHexEscape(out, "\\u", 0x2000u + static_cast<unsigned char>(text[i + 2]) - 0x80u, 4);  // U+2028, U+2029
      i += 2;
    } else {
      out += static_cast<char>(byte);
    }
  }
  out += '"';
  return out;
}

std::string keyText(const std::string& key) { return isPlainSafe(key) ? key : doubleQuoted(key); }

// Written on the line of its key or dash: scalars, {} and [].
bool isInline(const Json& value) { return !value.is_structured() || value.empty(); }

std::string inlineText(const Json& value) {
  if (value.is_object()) return "{}";
  if (value.is_array()) return "[]";
  return yamlScalar(value);
}

// REQUIRES: value is a non-empty object or array. Appends its lines, each indented by `indent`.
void emitBlock(const Json& value, std::size_t indent, std::string& out) {
  const std::string pad(indent, ' ');
  if (value.is_object()) {
    for (const auto& [key, child] : value.items()) {
      out += pad + keyText(key) + ":";
      if (isInline(child)) {
        out += " " + inlineText(child) + "\n";
      } else {
        out += "\n";
        emitBlock(child, indent + 2, out);
      }
    }
    return;
  }
  for (const auto& child : value) {
    if (isInline(child)) {
      out += pad + "- " + inlineText(child) + "\n";
      continue;
    }
    // The child's block at indent + 2, its first line's indentation replaced by "- ".
    std::string block;
    emitBlock(child, indent + 2, block);
    out += pad + "- " + block.substr(indent + 2);
  }
}

}  // namespace

std::string yamlScalar(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return value.get<bool>() ? "true" : "false";
    case Json::value_t::string: {
      const auto& text = value.get_ref<const std::string&>();
      return isPlainSafe(text) ? text : doubleQuoted(text);
    }
    case Json::value_t::number_float: {
      // YAML 1.1 reads a float only with a dot: 1e+20 becomes 1.0e+20. Infinities and NaN are
      // null, as in JSON.
      std::string text = value.dump();
      if (text != "null" && text.find('.') == std::string::npos) {
        const auto e = text.find_first_of("eE");
        text.insert(e == std::string::npos ? text.size() : e, ".0");
      }
      return text;
    }
    default:
      return value.dump();  // integers
  }
}

std::string toYamlDocument(const Json& value) {
  if (isInline(value)) return inlineText(value) + "\n";
  std::string out;
  emitBlock(value, 0, out);
  return out;
}

}  // namespace kvm_amf::cli
