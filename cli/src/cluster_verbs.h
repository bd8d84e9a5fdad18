// amf-admin's verbs that talk to a running amfd over the admin API (docs/cli.md,
// docs/admin-api.md): status, get, the AMF admin and VM operations, events. Each returns an exit
// code of exit_codes.h, writes results to `out` and diagnostics (prefixed "amf-admin: ") to `err`.
#pragma once

#include <iosfwd>
#include <string>

#include "amfd_requests.h"

namespace kvm_amf::cli {

// `status`: the status document as a table (problems first), or as JSON or YAML.
int showStatus(const ClusterOptions& options, std::ostream& out, std::ostream& err);

// `get KIND [NAME]`: one kind's objects of the status document (nodes, sgs, sus, sis, vms, or the
// singular words), or the one named NAME (none: exit 1, "no su/NAME"). An unknown KIND is a usage
// error found before amfd is asked.
int getObjects(const ClusterOptions& options, const std::string& kind, const std::string& name, std::ostream& out,
               std::ostream& err);

// An AMF admin or VM operation, `words` as the operator wrote them after amf-admin's options
// ("lock su/mme-a", "vm destroy vm/x", "migrate su/a --to node/n2"). Checked locally first (a
// wrong one is a usage error and amfd is not contacted); amfd gets the canonical words.
int runOperation(const std::string& words, const ClusterOptions& options, std::ostream& out, std::ostream& err);

// `events`: prints amfd's events one a line. Without `follow`, those that arrive within 1 s of
// subscribing, then returns 0; with `follow`, until the process is interrupted or the stream fails.
int streamEvents(const ClusterOptions& options, bool follow, std::ostream& out, std::ostream& err);

// The events endpoint that goes with the admin endpoint `endpoint`: ipc://DIR/admin.sock gives
// ipc://DIR/events.sock, tcp://HOST:PORT gives tcp://HOST:PORT+1; empty when there is no such
// rule (another file name, a port without a successor).
std::string eventsEndpointFor(const std::string& endpoint);

}  // namespace kvm_amf::cli
