#include "config_verbs.h"

#include <charconv>
#include <filesystem>
#include <fstream>
#include <optional>
#include <ostream>
#include <sstream>
#include <utility>

#include "kvm_amf/amf/model/admin_command.h"
#include "kvm_amf/cli/exit_codes.h"
#include "text_diff.h"

namespace kvm_amf::cli {
namespace {

using admin::proto::Reply;
using admin::proto::Request;
using Json = nlohmann::ordered_json;

// The files' contents; on a file that cannot be read, prints every such file as `validate` does
// and returns nullopt.
std::optional<std::vector<std::pair<std::string, std::string>>> readFiles(const std::vector<std::string>& paths,
                                                                          std::ostream& err) {
  std::vector<std::pair<std::string, std::string>> files;
  std::size_t unreadable = 0;
  for (const auto& path : paths) {
    std::error_code ec;
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    // A directory opens, and reading it fails; `<<` turns a failed read into failbit, not a throw.
    if (in && !std::filesystem::is_directory(path, ec)) text << in.rdbuf();
    if (!in || in.bad() || std::filesystem::is_directory(path, ec)) {
      err << path << ": cannot be read\n";
      ++unreadable;
      continue;
    }
    files.emplace_back(path, text.str());
  }
  if (unreadable == 0) return files;
  err << unreadable << (unreadable == 1 ? " error" : " errors") << "; nothing changed\n";
  return std::nullopt;
}

template <typename Body>
bool addFiles(const std::vector<std::string>& paths, Body& body, std::ostream& err) {
  auto files = readFiles(paths, err);
  if (!files) return false;
  for (auto& [name, content] : *files) {
    admin::proto::File* file = body.add_files();
    file->set_name(name);
    file->set_content(std::move(content));
  }
  return true;
}

// The reply's body as JSON; null when it is none.
Json bodyOf(const Reply& reply) {
  Json body = Json::parse(reply.body(), nullptr, /*allow_exceptions=*/false);
  return body.is_object() ? body : Json();
}

std::string text(const Json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// One unified diff per changed document of the body, against the generation it names.
void printDifferences(const Json& body, std::ostream& out) {
  const auto generation = body.find("generation");
  const std::string running = "generation " + (generation != body.end() ? dumpJson(*generation) : std::string("?"));
  const auto changes = body.find("changes");
  if (changes == body.end() || !changes->is_array()) return;
  for (const auto& change : *changes) {
    const std::string object = text(change, "object");
    const std::string before = text(change, "before");
    const std::string after = text(change, "after");
    out << "--- " << object << " (" << (before.empty() ? "not in " : "") << running << ")\n";
    out << "+++ " << object << (after.empty() ? " (removed)" : " (applied)") << '\n';
    out << unifiedDiff(before, after);
  }
}

// Prints each string of body[key] on `err`, prefixed; false when there is none.
bool printLines(const Json& body, const char* key, const char* prefix, std::ostream& err) {
  const auto lines = body.is_object() ? body.find(key) : body.end();
  if (!body.is_object() || lines == body.end() || !lines->is_array() || lines->empty()) return false;
  for (const auto& line : *lines)
    err << prefix << (line.is_string() ? line.get<std::string>() : dumpJson(line)) << '\n';
  return true;
}

// Prints amfd's answer to a configuration request and returns the exit code. `showDifferences`:
// an OK answer is followed by the differences (a dry run); `diff`: the answer to `diff`, which
// prints only the differences.
int printAnswer(const Reply& reply, const ClusterOptions& cluster, bool showDifferences, bool diff, std::ostream& out,
                std::ostream& err) {
  const Json body = bodyOf(reply);
  const int code = exitCodeOf(reply.code());
  if (cluster.output != "table" && !body.is_null()) {
    printMachineForm(body, cluster.output, out);
    if (reply.code() != Reply::OK && reply.code() != Reply::DIFFERENT) err << "amf-admin: " << reply.message() << '\n';
    return code;
  }
  switch (reply.code()) {
    case Reply::OK:
      if (!diff) out << reply.message() << '\n';
      if (showDifferences && !body.is_null()) printDifferences(body, out);
      return code;
    case Reply::DIFFERENT:
      if (body.is_null()) return reportReply(reply, err);
      printDifferences(body, out);
      return code;
    case Reply::INVALID:
      if (!printLines(body, "errors", "", err)) return reportReply(reply, err);
      err << reply.message() << '\n';
      return code;
    case Reply::REFUSED:
      if (!printLines(body, "problems", "amf-admin: ", err)) return reportReply(reply, err);
      return code;
    default:
      return reportReply(reply, err);
  }
}

int send(Request request, const ClusterOptions& cluster, bool showDifferences, bool diff, std::ostream& out,
         std::ostream& err) {
  auto answer = ask(cluster, std::move(request), err);
  if (const int* code = std::get_if<int>(&answer)) return *code;
  return printAnswer(std::get<Reply>(answer), cluster, showDifferences, diff, out, err);
}

}  // namespace

int applyFiles(const ApplyOptions& options, const ClusterOptions& cluster, std::ostream& out, std::ostream& err) {
  Request request;
  admin::proto::Apply& apply = *request.mutable_apply();
  if (!addFiles(options.files, apply, err)) return kExitDataError;
  apply.set_dry_run(options.dryRun);
  apply.set_expected_generation(options.expectedGeneration);
  return send(std::move(request), cluster, options.dryRun, false, out, err);
}

int diffFiles(const std::vector<std::string>& files, const ClusterOptions& cluster, std::ostream& out,
              std::ostream& err) {
  Request request;
  if (!addFiles(files, *request.mutable_diff(), err)) return kExitDataError;
  return send(std::move(request), cluster, true, true, out, err);
}

int deleteObject(const std::string& target, const ClusterOptions& cluster, std::ostream& out, std::ostream& err) {
  Result<model::AdminTarget> parsed = model::parseAdminTarget(target);
  if (!parsed.ok()) {
    err << "amf-admin delete: " << parsed.error().message << '\n';
    return kExitUsage;
  }
  if (parsed.value().kind != model::AdminTarget::Kind::kServiceGroup) {
    err << "amf-admin delete: only service groups are deleted (sg/NAME); a unit, SI or VM changes with its group's "
           "document (apply -f), a host with Corosync's nodelist\n";
    return kExitUsage;
  }
  Request request;
  request.mutable_delete_()->set_target(model::formatAdminTarget(parsed.value()));
  return send(std::move(request), cluster, false, false, out, err);
}

std::uint64_t parseGeneration(const std::string& text) {
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [at, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || at != end) return 0;
  return value;
}

}  // namespace kvm_amf::cli
