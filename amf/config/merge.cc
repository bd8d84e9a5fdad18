#include "kvm_amf/amf/config/merge.h"

#include <algorithm>
#include <map>
#include <optional>
#include <tuple>

#include "kvm_amf/amf/config/serialize.h"
#include "yaml_tree.h"

namespace kvm_amf::config {
namespace {

using json = nlohmann::ordered_json;

constexpr std::string_view kCluster = "Cluster";

// The scalar text under `key` of a map; nullopt when absent or not a scalar.
std::optional<std::string> scalarAt(const YamlValue& map, std::string_view key) {
  for (const auto& [k, v] : map.entries) {
    if (k->kind == YamlValue::Kind::kScalar && k->text == key) {
      if (v->kind == YamlValue::Kind::kScalar) return v->text;
      return std::nullopt;
    }
  }
  return std::nullopt;
}

const YamlValue* mapAt(const YamlValue& map, std::string_view key) {
  for (const auto& [k, v] : map.entries) {
    if (k->kind == YamlValue::Kind::kScalar && k->text == key) {
      return v->kind == YamlValue::Kind::kMap ? v.get() : nullptr;
    }
  }
  return nullptr;
}

DocumentKey keyOf(const json& document) {
  return {document["kind"].get<std::string>(), document["metadata"]["name"].get<std::string>()};
}

// A configuration's documents by key: the Cluster under its kind alone (there is one), service
// groups by name.
std::map<DocumentKey, json> documentsOf(const model::Configuration& config) {
  std::map<DocumentKey, json> documents;
  for (const auto& document : toDocuments(config)) {
    DocumentKey key = keyOf(document);
    if (key.kind == kCluster) key.name.clear();
    documents.emplace(std::move(key), document);
  }
  return documents;
}

// One document as canonical YAML, without the stream's "---" line.
std::string yamlOf(const json& document) {
  std::string text = toYaml(json::array({document}));
  constexpr std::string_view kSeparator = "---\n";
  if (text.starts_with(kSeparator)) text.erase(0, kSeparator.size());
  return text;
}

}  // namespace

std::vector<DocumentKey> documentKeys(const std::vector<Source>& sources) {
  std::vector<DocumentKey> keys;
  const LoadLimits limits;
  for (const Source& source : sources) {
    if (source.text.size() > limits.maxSourceBytes) continue;
    const ParsedYaml parsed = parseYaml(source.name, source.text);
    for (const YamlRef& document : parsed.documents) {
      if (document->kind != YamlValue::Kind::kMap) continue;
      std::optional<std::string> kind = scalarAt(*document, "kind");
      const YamlValue* metadata = mapAt(*document, "metadata");
      std::optional<std::string> name = metadata ? scalarAt(*metadata, "name") : std::nullopt;
      if (kind && name) keys.push_back({std::move(*kind), std::move(*name)});
    }
  }
  return keys;
}

LoadResult loadOnto(const model::Configuration& running, const std::vector<Source>& changes,
                    const std::vector<DocumentKey>& removed) {
  std::vector<DocumentKey> replaced = documentKeys(changes);
  replaced.insert(replaced.end(), removed.begin(), removed.end());
  auto isReplaced = [&](const DocumentKey& key) {
    return std::any_of(replaced.begin(), replaced.end(), [&](const DocumentKey& r) {
      return r.kind == key.kind && (key.kind == kCluster || r.name == key.name);
    });
  };
  json kept = json::array();
  for (const auto& document : toDocuments(running)) {
    if (!isReplaced(keyOf(document))) kept.push_back(document);
  }
  std::vector<Source> sources = changes;
  if (!kept.empty()) sources.push_back({std::string(kRunningConfigurationName), toYaml(kept)});
  LoadResult result = loadConfiguration(sources);
  if (!result.ok()) return result;

  std::vector<model::ServiceGroupSpec> loaded = std::move(result.config.serviceGroups);
  std::vector<bool> taken(loaded.size(), false);
  auto& ordered = result.config.serviceGroups;
  ordered.clear();
  for (const auto& sg : running.serviceGroups) {
    for (std::size_t i = 0; i < loaded.size(); ++i) {
      if (!taken[i] && loaded[i].name == sg.name) {
        ordered.push_back(std::move(loaded[i]));
        taken[i] = true;
        break;
      }
    }
  }
  for (std::size_t i = 0; i < loaded.size(); ++i) {
    if (!taken[i]) ordered.push_back(std::move(loaded[i]));
  }
  return result;
}

std::string DocumentChange::object() const { return (key.kind == kCluster ? "cluster/" : "sg/") + key.name; }

std::string_view DocumentChange::changeWord() const {
  switch (change) {
    case Kind::kAdded:
      return "added";
    case Kind::kChanged:
      return "changed";
    case Kind::kRemoved:
      break;
  }
  return "removed";
}

std::vector<DocumentChange> compareConfigurations(const model::Configuration& before,
                                                  const model::Configuration& after) {
  const std::map<DocumentKey, json> was = documentsOf(before);
  const std::map<DocumentKey, json> is = documentsOf(after);
  std::vector<DocumentChange> changes;
  auto add = [&](const json* from, const json* to) {
    DocumentChange change;
    change.key = keyOf(to ? *to : *from);
    change.change = !from ? DocumentChange::Kind::kAdded
                    : !to ? DocumentChange::Kind::kRemoved
                          : DocumentChange::Kind::kChanged;
    if (from) change.before = yamlOf(*from);
    if (to) change.after = yamlOf(*to);
    changes.push_back(std::move(change));
  };
  // std::map's order: "Cluster" before "ServiceGroup", then by name.
  for (const auto& [key, document] : is) {
    auto old = was.find(key);
    if (old == was.end()) {
      add(nullptr, &document);
    } else if (old->second != document) {
      add(&old->second, &document);
    }
  }
  for (const auto& [key, document] : was) {
    if (!is.contains(key)) add(&document, nullptr);
  }
  std::stable_sort(changes.begin(), changes.end(), [](const DocumentChange& a, const DocumentChange& b) {
    return std::tie(a.key.kind, a.key.name) < std::tie(b.key.kind, b.key.name);
  });
  return changes;
}

std::string summarize(const std::vector<DocumentChange>& changes) {
  std::string text;
  for (const auto& change : changes) {
    text += (text.empty() ? "" : ", ") + change.object() + " " + std::string(change.changeWord());
  }
  return text;
}

}  // namespace kvm_amf::config
