// amf-admin's configuration verbs (docs/cli.md): `apply`, `diff` and `delete` against a running
// cluster. amfd merges the documents onto the running configuration, validates and checks them
// (docs/admin-api.md); these send the files, print what amfd found, and return an exit code of
// exit_codes.h. Results go to `out`, diagnostics to `err`.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "amfd_requests.h"

namespace kvm_amf::cli {

struct ApplyOptions {
  std::vector<std::string> files;
  bool dryRun = false;
  std::uint64_t expectedGeneration = 0;  // --generation N; 0: none
};

// `apply -f FILE... [--dry-run] [--generation N]`: prints amfd's line ("applied: generation 3
// (sg/web added)"), and with --dry-run the differences. A file that cannot be read: 65 before amfd
// is asked.
int applyFiles(const ApplyOptions& options, const ClusterOptions& cluster, std::ostream& out, std::ostream& err);

// `diff -f FILE...`: the differences between the running configuration and what applying the
// files would make of it, one unified diff per document; exit 0 when there are none, 1 otherwise.
int diffFiles(const std::vector<std::string>& files, const ClusterOptions& cluster, std::ostream& out,
              std::ostream& err);

// `delete sg/NAME`: removes a service group. Another kind of target, or a malformed one, is a usage
// error found before amfd is asked.
int deleteObject(const std::string& target, const ClusterOptions& cluster, std::ostream& out, std::ostream& err);

// The generation --generation names: a whole number from 1; 0 when `text` is not one.
std::uint64_t parseGeneration(const std::string& text);

}  // namespace kvm_amf::cli
