// amf-admin's checkpoint verbs (docs/cli.md, `ckpt`): list, info, create, read, write, delete and
// unlink of the cluster's checkpoints over the admin API. Results go to `out`, diagnostics
// (prefixed "amf-admin: ") to `err`; each returns an exit code of exit_codes.h.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>

#include "amfd_requests.h"

namespace kvm_amf::cli {

struct CheckpointVerb {
  enum class Kind { kList, kInfo, kCreate, kRead, kWrite, kDelete, kUnlink } kind = Kind::kList;
  std::string name;
  std::string section;
  // write: exactly one of the data given as text and a file to read it from.
  std::optional<std::string> data;
  std::optional<std::string> file;
  bool async = false;
  std::optional<Duration> expiresIn;
  // create: the attributes (nullopt: the service's default).
  std::optional<Duration> retention;
  std::optional<std::uint64_t> maxSections;
  std::optional<std::uint64_t> maxSectionBytes;
  std::optional<std::uint64_t> maxBytes;
};

// Runs one verb. A write whose file cannot be read exits 65 before amfd is asked.
int runCheckpointVerb(const CheckpointVerb& verb, const ClusterOptions& options, std::ostream& out, std::ostream& err);

}  // namespace kvm_amf::cli
