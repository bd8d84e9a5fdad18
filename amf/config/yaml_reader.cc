#include "yaml_reader.h"

#include <charconv>

#include "kvm_amf/amf/model/units.h"

namespace kvm_amf::config {

Location ReadContext::at(const std::string& file, const YamlValue& value) const {
  return {file, value.line, value.column};
}

bool ReadContext::spend(const std::string& file, const YamlValue& node) {
  if (exhausted_) return false;
  if (budget_ == 0) {
    exhausted_ = true;
    error(at(file, node), "too many values (aliases count each time they are used); reading stopped here");
    return false;
  }
  --budget_;
  return true;
}

std::string describe(const YamlValue& node) {
  switch (node.kind) {
    case YamlValue::Kind::kMap:
      return "a map";
    case YamlValue::Kind::kSequence:
      return "a list";
    case YamlValue::Kind::kNull:
      return "nothing";
    case YamlValue::Kind::kScalar:
      break;
  }
  std::string text = node.text;
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return "'" + text + "'";
}

Fields::Fields(ReadContext& ctx, std::string file, const YamlValue& node, std::string path)
    : ctx_(ctx), file_(std::move(file)), path_(std::move(path)), node_(node) {
  ctx_.where().record(path_, ctx_.at(file_, node_));
  if (!ctx_.spend(file_, node_)) {
    finished_ = true;
    return;
  }
  if (node_.kind != YamlValue::Kind::kMap) {
    ctx_.error(ctx_.at(file_, node_), "expected a map, found " + describe(node_));
    finished_ = true;
    return;
  }
  isMap_ = true;
  for (const auto& [key, value] : node_.entries) {
    if (key->kind != YamlValue::Kind::kScalar) {
      ctx_.error(ctx_.at(file_, *key), "a key must be a plain word, found " + describe(*key));
      continue;
    }
    if (!entries_.emplace(key->text, value.get()).second) {
      ctx_.error(ctx_.at(file_, *key), "duplicate key '" + key->text + "'");
    }
  }
}

void Fields::finish() {
  if (finished_) return;
  finished_ = true;
  for (const auto& [key, value] : node_.entries) {
    if (key->kind != YamlValue::Kind::kScalar) continue;
    if (!consumed_.contains(key->text)) ctx_.error(ctx_.at(file_, *key), "unknown key '" + key->text + "'");
    consumed_.insert(key->text);  // a duplicate key is reported once, as a duplicate
  }
}

std::vector<std::pair<std::string, Location>> Fields::keys() const {
  std::vector<std::pair<std::string, Location>> out;
  for (const auto& [key, value] : node_.entries) {
    if (key->kind == YamlValue::Kind::kScalar) out.emplace_back(key->text, ctx_.at(file_, *key));
  }
  return out;
}

void Fields::fail(std::string_view key, std::string message) {
  auto it = entries_.find(key);
  Location where = it != entries_.end() ? ctx_.at(file_, *it->second) : ctx_.at(file_, node_);
  std::string prefix = it != entries_.end() ? std::string(key) + ": " : "";
  ctx_.error(where, prefix + message);
}

const YamlValue* Fields::take(std::string_view key, Need need) {
  if (!isMap_) return nullptr;
  consumed_.insert(std::string(key));
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second->kind == YamlValue::Kind::kNull) {
    if (need == kRequired) ctx_.error(ctx_.at(file_, node_), "missing required key '" + std::string(key) + "'");
    return nullptr;
  }
  if (!ctx_.spend(file_, *it->second)) return nullptr;
  ctx_.where().record(field(path_, key), ctx_.at(file_, *it->second));
  return it->second;
}

std::optional<std::string> Fields::scalar(std::string_view key, Need need, const std::string& what) {
  const YamlValue* node = take(key, need);
  if (!node) return std::nullopt;
  if (node->kind != YamlValue::Kind::kScalar) {
    fail(key, "expected " + what + ", found " + describe(*node));
    return std::nullopt;
  }
  return node->text;
}

bool Fields::str(std::string_view key, std::string& out, Need need) {
  auto text = scalar(key, need, "a string");
  if (!text) return false;
  if (text->size() > 4096) {
    fail(key, "longer than 4096 characters");
    return false;
  }
  out = *text;
  return true;
}

bool Fields::name(std::string_view key, std::string& out, Need need) {
  auto text = scalar(key, need, "a name");
  if (!text) return false;
  if (!isValidName(*text)) {
    fail(key, "'" + text->substr(0, 64) +
                  "' is not a valid name (1-63 lower-case letters, digits and '-', starting and ending with a "
                  "letter or digit)");
    return false;
  }
  out = *text;
  return true;
}

bool Fields::integer(std::string_view key, int& out, int min, int max, Need need) {
  auto text = scalar(key, need, "an integer");
  if (!text) return false;
  long long value = 0;
  const char* end = text->data() + text->size();
  auto [p, ec] = std::from_chars(text->data(), end, value);
  if (ec == std::errc::result_out_of_range || (ec == std::errc() && p == end && (value < min || value > max))) {
    fail(key, "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", not " + *text);
    return false;
  }
  if (ec != std::errc() || p != end) {
    fail(key, "expected an integer, found '" + text->substr(0, 40) + "'");
    return false;
  }
  out = static_cast<int>(value);
  return true;
}

bool Fields::unsignedInteger(std::string_view key, std::uint64_t& out, std::uint64_t min, std::uint64_t max,
                             Need need) {
  auto text = scalar(key, need, "an integer");
  if (!text) return false;
  const bool negative = text->size() > 1 && text->front() == '-';
  std::uint64_t value = 0;
  const char* begin = text->data() + (negative ? 1 : 0);
  const char* end = text->data() + text->size();
  auto [p, ec] = std::from_chars(begin, end, value);
  const bool digits = p == end && (ec == std::errc() || ec == std::errc::result_out_of_range);
  if (digits && (negative || ec == std::errc::result_out_of_range || value < min || value > max)) {
    fail(key,
         "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", not " + text->substr(0, 40));
    return false;
  }
  if (ec != std::errc() || p != end) {
    fail(key, "expected an integer, found '" + text->substr(0, 40) + "'");
    return false;
  }
  out = value;
  return true;
}

bool Fields::boolean(std::string_view key, bool& out, Need need) {
  auto text = scalar(key, need, "true or false");
  if (!text) return false;
  if (*text == "true") {
    out = true;
  } else if (*text == "false") {
    out = false;
  } else {
    fail(key, "expected true or false, not '" + text->substr(0, 40) + "'");
    return false;
  }
  return true;
}

bool Fields::duration(std::string_view key, model::Duration& out, model::Duration min, model::Duration max, Need need) {
  auto text = scalar(key, need, "a duration");
  if (!text) return false;
  auto value = model::parseDuration(*text);
  if (!value) {
    fail(key,
         "'" + text->substr(0, 40) + "' is not a duration: a number with a unit ms, s, m or h (e.g. 300ms, 5s, 10m)");
    return false;
  }
  if (*value < min || *value > max) {
    fail(key,
         "must be between " + model::formatDuration(min) + " and " + model::formatDuration(max) + ", not " + *text);
    return false;
  }
  out = *value;
  return true;
}

bool Fields::bytes(std::string_view key, model::Bytes& out, Need need) {
  auto text = scalar(key, need, "a size");
  if (!text) return false;
  auto value = model::parseBytes(*text);
  if (!value) {
    fail(key, "'" + text->substr(0, 40) +
                  "' is not a size: a whole number with an optional unit Ki, Mi, Gi or Ti (e.g. 512Mi), at most "
                  "1024Ti");
    return false;
  }
  out = *value;
  return true;
}

bool Fields::list(std::string_view key,
                  const std::function<void(const YamlValue& element, const std::string& path)>& read, Need need) {
  const YamlValue* node = take(key, need);
  if (!node) return false;
  if (node->kind != YamlValue::Kind::kSequence) {
    fail(key, "expected a list, found " + describe(*node));
    return false;
  }
  const std::string listPath = field(path_, key);
  std::size_t index = 0;
  for (const YamlRef& element : node->items) {
    if (!ctx_.spend(file_, *element)) return false;
    const std::string elementPath = item(listPath, index++);
    ctx_.where().record(elementPath, ctx_.at(file_, *element));
    read(*element, elementPath);
  }
  return true;
}

bool Fields::names(std::string_view key, std::vector<std::string>& out, Need need) {
  std::vector<std::string> values;
  bool clean = true;
  bool present = list(
      key,
      [&](const YamlValue& element, const std::string&) {
        if (element.kind != YamlValue::Kind::kScalar || !isValidName(element.text)) {
          ctx_.error(ctx_.at(file_, element), std::string(key) + ": expected a name, found " + describe(element));
          clean = false;
          return;
        }
        values.push_back(element.text);
      },
      need);
  if (!present || !clean) return false;
  out = std::move(values);
  return true;
}

bool Fields::strings(std::string_view key, std::vector<std::string>& out, Need need) {
  std::vector<std::string> values;
  bool clean = true;
  bool present = list(
      key,
      [&](const YamlValue& element, const std::string&) {
        if (element.kind != YamlValue::Kind::kScalar) {
          ctx_.error(ctx_.at(file_, element), std::string(key) + ": expected a string, found " + describe(element));
          clean = false;
          return;
        }
        values.push_back(element.text);
      },
      need);
  if (!present || !clean) return false;
  out = std::move(values);
  return true;
}

bool Fields::stringMap(std::string_view key, std::map<std::string, std::string>& out, Need need) {
  const YamlValue* node = take(key, need);
  if (!node) return false;
  if (node->kind != YamlValue::Kind::kMap) {
    fail(key, "expected a map of strings, found " + describe(*node));
    return false;
  }
  std::map<std::string, std::string> values;
  bool clean = true;
  for (const auto& [k, v] : node->entries) {
    if (!ctx_.spend(file_, *v)) return false;
    if (k->kind != YamlValue::Kind::kScalar || k->text.empty() || k->text.size() > 253) {
      ctx_.error(ctx_.at(file_, *k), std::string(key) + ": a key must be a plain word, found " + describe(*k));
      clean = false;
      continue;
    }
    if (v->kind != YamlValue::Kind::kScalar || v->text.size() > 4096) {
      ctx_.error(ctx_.at(file_, *v), std::string(key) + "." + k->text +
                                         ": expected a string of at most 4096 characters, found " + describe(*v));
      clean = false;
      continue;
    }
    if (!values.emplace(k->text, v->text).second) {
      ctx_.error(ctx_.at(file_, *k), std::string(key) + ": duplicate key '" + k->text + "'");
      clean = false;
    }
  }
  if (!clean) return false;
  out = std::move(values);
  return true;
}

bool Fields::object(std::string_view key, const std::function<void(Fields&)>& read, Need need) {
  const YamlValue* node = take(key, need);
  if (!node) return false;
  Fields nested(ctx_, file_, *node, field(path_, key));
  if (!nested.isMap()) return false;
  read(nested);
  return true;
}

bool Fields::objects(std::string_view key, const std::function<void(Fields&, std::size_t index)>& read, Need need) {
  std::size_t index = 0;
  return list(
      key,
      [&](const YamlValue& element, const std::string& elementPath) {
        Fields nested(ctx_, file_, element, elementPath);
        if (nested.isMap()) read(nested, index);
        ++index;
      },
      need);
}

void readObject(ReadContext& ctx, const std::string& file, const YamlValue& node, const std::string& path,
                const std::function<void(Fields&)>& read) {
  Fields fields(ctx, file, node, path);
  if (fields.isMap()) read(fields);
}

}  // namespace kvm_amf::config
