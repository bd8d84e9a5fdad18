// amf-admin's exit codes (sysexits), fixed by the user-facing contract.
#pragma once

namespace kvm_amf::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRefused = 1;       // the operation was refused or failed; also "diff: different"
inline constexpr int kExitUsage = 64;        // EX_USAGE
inline constexpr int kExitDataError = 65;    // EX_DATAERR: invalid YAML or campaign file
inline constexpr int kExitUnavailable = 69;  // EX_UNAVAILABLE: no amfd reachable, or no quorum
inline constexpr int kExitTimeout = 75;      // EX_TEMPFAIL: --wait timed out

}  // namespace kvm_amf::cli
