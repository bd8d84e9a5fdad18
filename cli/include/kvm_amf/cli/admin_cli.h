// amf-admin: the operator's command line (verbs of docs/cli.md).
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace kvm_amf::cli {

// Runs one amf-admin invocation. `args` excludes the program name. Writes results to `out` and
// diagnostics to `err`; returns an exit code of exit_codes.h. Reads AMF_ENDPOINT from `endpointEnv`
// (empty: not set): the admin endpoint when --endpoint is not given, instead of the local amfd's.
// The verbs that talk to amfd block until it answers or --timeout passes (`events --follow`: until
// the process is interrupted).
int runAdmin(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
             const std::string& endpointEnv = "");

}  // namespace kvm_amf::cli
