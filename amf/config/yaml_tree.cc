#include "yaml_tree.h"

#include <yaml.h>

#include <map>

namespace kvm_amf::config {
namespace {

// Owns a libyaml parser for one parse.
class Parser {
 public:
  explicit Parser(const std::string& text) {
    ready_ = yaml_parser_initialize(&parser_) == 1;
    if (ready_) {
      yaml_parser_set_input_string(&parser_, reinterpret_cast<const unsigned char*>(text.data()), text.size());
    }
  }
  ~Parser() {
    if (ready_) yaml_parser_delete(&parser_);
  }
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  bool ready() const { return ready_; }
  yaml_parser_t* get() { return &parser_; }

 private:
  yaml_parser_t parser_{};
  bool ready_ = false;
};

// Owns one event.
struct Event {
  yaml_event_t event{};
  ~Event() { yaml_event_delete(&event); }
};

bool isNull(const yaml_event_t& e) {
  if (e.data.scalar.style != YAML_PLAIN_SCALAR_STYLE || e.data.scalar.tag != nullptr) return false;
  const std::string text(reinterpret_cast<const char*>(e.data.scalar.value), e.data.scalar.length);
  return text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL";
}

std::string anchorOf(const unsigned char* anchor) { return anchor ? reinterpret_cast<const char*>(anchor) : ""; }

// Builds values from events: a stack of open collections, anchors registered when complete.
class TreeBuilder {
 public:
  TreeBuilder(const std::string& name, const YamlLimits& limits) : name_(name), limits_(limits) {}

  // Returns a problem, or nullopt to go on. Sets `done` at the end of the stream.
  std::optional<Diagnostic> add(const yaml_event_t& e, ParsedYaml& out, bool& done) {
    const Location where{name_, static_cast<int>(e.start_mark.line) + 1, static_cast<int>(e.start_mark.column) + 1};
    switch (e.type) {
      case YAML_STREAM_END_EVENT:
        done = true;
        return std::nullopt;
      case YAML_DOCUMENT_START_EVENT:
        anchors_.clear();
        return std::nullopt;
      case YAML_SCALAR_EVENT: {
        auto value = std::make_shared<YamlValue>();
        value->kind = isNull(e) ? YamlValue::Kind::kNull : YamlValue::Kind::kScalar;
        value->text.assign(reinterpret_cast<const char*>(e.data.scalar.value), e.data.scalar.length);
        place(value, where);
        remember(anchorOf(e.data.scalar.anchor), value);
        return attach(value, out);
      }
      case YAML_ALIAS_EVENT: {
        if (++aliases_ > limits_.maxAliases) {
          return Diagnostic{where, "more than " + std::to_string(limits_.maxAliases) + " aliases"};
        }
        auto it = anchors_.find(anchorOf(e.data.alias.anchor));
        if (it == anchors_.end()) {
          return Diagnostic{where, "alias *" + anchorOf(e.data.alias.anchor) +
                                       " names no complete anchor before it (an anchor cannot contain itself)"};
        }
        return attach(it->second, out);
      }
      case YAML_SEQUENCE_START_EVENT:
      case YAML_MAPPING_START_EVENT: {
        if (static_cast<int>(open_.size()) >= limits_.maxDepth) {
          return Diagnostic{where, "nested deeper than " + std::to_string(limits_.maxDepth) + " levels"};
        }
        auto value = std::make_shared<YamlValue>();
        const bool isMap = e.type == YAML_MAPPING_START_EVENT;
        value->kind = isMap ? YamlValue::Kind::kMap : YamlValue::Kind::kSequence;
        place(value, where);
        open_.push_back({value, anchorOf(isMap ? e.data.mapping_start.anchor : e.data.sequence_start.anchor), {}});
        return std::nullopt;
      }
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT: {
        Open closed = std::move(open_.back());
        open_.pop_back();
        remember(closed.anchor, closed.value);
        return attach(closed.value, out);
      }
      default:
        return std::nullopt;
    }
  }

 private:
  struct Open {
    std::shared_ptr<YamlValue> value;
    std::string anchor;
    YamlRef pendingKey;  // maps: a key waiting for its value
  };

  static void place(const std::shared_ptr<YamlValue>& value, const Location& where) {
    value->line = where.line;
    value->column = where.column;
  }

  void remember(const std::string& anchor, const YamlRef& value) {
    if (!anchor.empty()) anchors_[anchor] = value;
  }

  // Adds a complete value to the innermost open collection, or as a document.
  std::optional<Diagnostic> attach(const YamlRef& value, ParsedYaml& out) {
    if (open_.empty()) {
      out.documents.push_back(value);
      return std::nullopt;
    }
    Open& parent = open_.back();
    if (parent.value->kind == YamlValue::Kind::kSequence) {
      parent.value->items.push_back(value);
    } else if (!parent.pendingKey) {
      parent.pendingKey = value;
    } else {
      parent.value->entries.emplace_back(std::move(parent.pendingKey), value);
      parent.pendingKey = nullptr;
    }
    return std::nullopt;
  }

  const std::string& name_;
  const YamlLimits& limits_;
  std::vector<Open> open_;
  std::map<std::string, YamlRef> anchors_;
  std::size_t aliases_ = 0;
};

}  // namespace

ParsedYaml parseYaml(const std::string& name, const std::string& text, const YamlLimits& limits) {
  ParsedYaml out;
  Parser parser(text);
  if (!parser.ready()) {
    out.error = Diagnostic{{name, 0, 0}, "out of memory reading YAML"};
    return out;
  }
  TreeBuilder builder(name, limits);
  for (bool done = false; !done;) {
    Event event;
    if (yaml_parser_parse(parser.get(), &event.event) != 1) {
      const yaml_parser_t& p = *parser.get();
      std::string message = "YAML syntax: ";
      message += p.problem ? p.problem : "malformed input";
      if (p.context) message += std::string(" (") + p.context + ")";
      out.error = Diagnostic{
          {name, static_cast<int>(p.problem_mark.line) + 1, static_cast<int>(p.problem_mark.column) + 1}, message};
      return out;
    }
    if (auto problem = builder.add(event.event, out, done)) {
      out.error = problem;
      return out;
    }
  }
  return out;
}

}  // namespace kvm_amf::config
