// How amf-admin's verbs that talk to a running amfd send one request and turn its outcome into an
// exit code of exit_codes.h (docs/cli.md): failures are printed to `err`, prefixed "amf-admin: ".
#pragma once

#include <cstdint>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>

#include "kvm_amf/admin/admin.pb.h"
#include "kvm_amf/admin/admin_client.h"
#include "kvm_amf/common/time.h"

namespace kvm_amf::cli {

struct ClusterOptions {
  std::string endpoint;        // amfd's admin endpoint, resolved (--endpoint, AMF_ENDPOINT or the default)
  std::string eventsEndpoint;  // --events; empty: derived from `endpoint` (eventsEndpointFor)
  std::string output = "table";
  Duration timeout{30000};  // for each request's reply
};

// amf-admin's exit code for a reply of amfd (a code it does not know: 1).
int exitCodeOf(admin::proto::Reply::Code code);

// Prints the client's failure to reach `endpoint` and returns its exit code.
int reportClientError(const admin::ClientError& error, const std::string& endpoint, std::ostream& err);

// Prints a reply that is not OK and returns its exit code.
int reportReply(const admin::proto::Reply& reply, std::ostream& err);

// Sends `request` and returns amfd's reply (whatever its code), or the exit code of a failure
// already reported on `err`.
std::variant<admin::proto::Reply, int> ask(const ClusterOptions& options, admin::proto::Request request,
                                           std::ostream& err);

// "2023-11-14T22:13:20.123Z" for milliseconds since the Unix epoch.
std::string isoTime(std::int64_t ms);

// JSON as text that never throws: invalid UTF-8 is replaced.
std::string dumpJson(const nlohmann::ordered_json& value, int indent = -1);

// Prints `value` as -o json (indented) or -o yaml ask.
void printMachineForm(const nlohmann::ordered_json& value, const std::string& output, std::ostream& out);

}  // namespace kvm_amf::cli
