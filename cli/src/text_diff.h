// Line differences between two texts, as `diff -u` shows them, for amf-admin's `diff` and
// `apply --dry-run`.
#pragma once

#include <string>

namespace kvm_amf::cli {

// The hunks of a unified diff of `before` and `after` ("@@ -1,4 +1,5 @@" and the lines, each
// prefixed by ' ', '-' or '+'), with `context` unchanged lines around each change; empty when the
// texts are equal. No file header lines. A text's last line need not end in a newline. Texts whose
// changed middle parts have more than 4,000,000 line pairs are shown as all removed, then all added.
std::string unifiedDiff(const std::string& before, const std::string& after, int context = 3);

}  // namespace kvm_amf::cli
