// Typed reading of YAML values with every problem reported at its line and column.
// Private to amf/config. Reads the located tree of yaml_tree.h.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kvm_amf/amf/config/diagnostic.h"
#include "kvm_amf/amf/model/config.h"
#include "kvm_amf/amf/model/names.h"
#include "kvm_amf/amf/model/words.h"
#include "source_map.h"
#include "yaml_tree.h"

namespace kvm_amf::config {

// Shared by every reader of one load: where errors go, where locations go, and the value budget.
class ReadContext {
 public:
  ReadContext(Diagnostics& errors, SourceMap& where, std::size_t maxValues)
      : errors_(errors), where_(where), budget_(maxValues) {}

  Location at(const std::string& file, const YamlValue& node) const;
  void error(const Location& where, std::string message) { errors_.push_back({where, std::move(message)}); }
  SourceMap& where() { return where_; }

  // Counts one visited value. False once the budget is spent (reported once): stop reading.
  bool spend(const std::string& file, const YamlValue& node);
  bool exhausted() const { return exhausted_; }

 private:
  Diagnostics& errors_;
  SourceMap& where_;
  std::size_t budget_;
  bool exhausted_ = false;
};

// Reads one YAML mapping field by field. Every accessor records the key's location under
// `path.key`, reports wrong types and out-of-range values, and leaves `out` unchanged on error.
// An absent key or an explicit null leaves the default. `finish()` reports keys nobody asked for.
class Fields {
 public:
  enum Need { kOptional, kRequired };

  Fields(ReadContext& ctx, std::string file, const YamlValue& node, std::string path);
  ~Fields() { finish(); }
  Fields(const Fields&) = delete;
  Fields& operator=(const Fields&) = delete;

  bool isMap() const { return isMap_; }
  const std::string& path() const { return path_; }
  const std::string& file() const { return file_; }
  ReadContext& context() { return ctx_; }

  // Each returns true when the key was present and its value was read without error.
  bool str(std::string_view key, std::string& out, Need need = kOptional);
  bool name(std::string_view key, std::string& out, Need need = kOptional);  // a DNS-label name
  bool integer(std::string_view key, int& out, int min, int max, Need need = kOptional);
  bool unsignedInteger(std::string_view key, std::uint64_t& out, std::uint64_t min, std::uint64_t max,
                       Need need = kOptional);
  bool boolean(std::string_view key, bool& out, Need need = kOptional);
  bool duration(std::string_view key, model::Duration& out, model::Duration min, model::Duration max,
                Need need = kOptional);
  bool bytes(std::string_view key, model::Bytes& out, Need need = kOptional);
  bool names(std::string_view key, std::vector<std::string>& out, Need need = kOptional);
  bool strings(std::string_view key, std::vector<std::string>& out, Need need = kOptional);
  bool stringMap(std::string_view key, std::map<std::string, std::string>& out, Need need = kOptional);

  template <typename E>
  bool word(std::string_view key, E& out, Need need = kOptional) {
    auto text = scalar(key, need, "one of " + model::wordList<E>());
    if (!text) return false;
    if (auto value = model::fromWord<E>(*text)) {
      out = *value;
      return true;
    }
    fail(key, "must be one of " + model::wordList<E>() + ", not '" + *text + "'");
    return false;
  }

  // A nested mapping, read by `read` with a Fields of its own.
  bool object(std::string_view key, const std::function<void(Fields&)>& read, Need need = kOptional);
  // A sequence; `read` gets each element (any YAML type) with its path.
  bool list(std::string_view key, const std::function<void(const YamlValue& element, const std::string& path)>& read,
            Need need = kOptional);
  // A sequence of mappings, each read by `read` with a Fields of its own.
  bool objects(std::string_view key, const std::function<void(Fields&, std::size_t index)>& read,
               Need need = kOptional);

  // The mapping's keys in document order, each with its location, for mappings whose keys are
  // data (a name, a target) rather than fields. Non-scalar keys are left out (already reported).
  // Listing marks nothing as consumed: each key must still be read or ignored.
  std::vector<std::pair<std::string, Location>> keys() const;

  // Marks `key` as known without reading it (its document is rejected for another reason).
  void ignore(std::string_view key) { consumed_.insert(std::string(key)); }

  // Reports at `path.key` (or at the mapping when the key is absent).
  void fail(std::string_view key, std::string message);
  void finish();

 private:
  // The value under `key`, marked as consumed; nullptr when absent or null (reported if required).
  const YamlValue* take(std::string_view key, Need need);
  // The scalar text under `key`; reports a non-scalar as "expected <what>".
  std::optional<std::string> scalar(std::string_view key, Need need, const std::string& what);

  ReadContext& ctx_;
  std::string file_;
  std::string path_;
  const YamlValue& node_;
  bool isMap_ = false;
  bool finished_ = false;
  std::map<std::string, const YamlValue*, std::less<>> entries_;
  std::set<std::string, std::less<>> consumed_;
};

// Reads a nested mapping outside of a parent Fields (a document root, a list element).
void readObject(ReadContext& ctx, const std::string& file, const YamlValue& node, const std::string& path,
                const std::function<void(Fields&)>& read);

// A description of a YAML value's kind, for messages: "a map", "a list", "'text'".
std::string describe(const YamlValue& node);

using model::isValidName;

}  // namespace kvm_amf::config
