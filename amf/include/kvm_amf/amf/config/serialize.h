// The configuration as documents again: the canonical form `amf-admin` prints (-o json|yaml) and
// that loadConfiguration reads back to an equal model. Defaults are written out explicitly.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "kvm_amf/amf/model/config.h"

namespace kvm_amf::config {

// A JSON array of documents (apiVersion, kind, metadata, spec): the Cluster first, then each
// ServiceGroup in order.
nlohmann::ordered_json toDocuments(const model::Configuration& config);

// The same documents as a YAML stream, separated by "---".
std::string toYaml(const nlohmann::ordered_json& documents);

}  // namespace kvm_amf::config
