#include "checkpoint_verbs.h"

#include <fstream>
#include <iterator>
#include <ostream>
#include <sstream>

#include "kvm_amf/amf/model/units.h"
#include "kvm_amf/cli/exit_codes.h"
#include "kvm_amf/cli/table.h"

namespace kvm_amf::cli {
namespace {

using admin::proto::Checkpoint;
using admin::proto::Reply;
using admin::proto::Request;
using Json = nlohmann::ordered_json;

std::string base64(const std::string& bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    std::uint32_t n = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    if (i + 2 < bytes.size()) n |= static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[n & 63] : '=';
  }
  return out;
}

std::string orDash(const Json& value, const std::function<std::string(const Json&)>& show) {
  return value.is_null() ? "-" : show(value);
}

std::string duration(const Json& ms) { return model::formatDuration(Duration(ms.get<std::int64_t>())); }
std::string time(const Json& ms) { return isoTime(ms.get<std::int64_t>()); }
std::string number(const Json& value) { return std::to_string(value.get<std::uint64_t>()); }

void printList(const Json& body, std::ostream& out) {
  Table table({"NAME", "SECTIONS", "BYTES", "OPENERS", "RETENTION"});
  for (const Json& c : body.value("checkpoints", Json::array())) {
    table.add({c.value("name", ""), number(c["sectionCount"]), number(c["bytes"]), number(c["openers"]),
               orDash(c["retentionMs"], duration)});
  }
  table.print(out);
}

void printInfo(const Json& c, std::ostream& out) {
  out << "checkpoint " << c.value("name", "") << ": " << number(c["sectionCount"]) << " sections, "
      << number(c["bytes"]) << " bytes, " << number(c["openers"]) << " openers\n";
  out << "created " << time(c["createdMs"]) << "; retention "
      << (c["retentionMs"].is_null() ? std::string("none (kept until unlinked)") : duration(c["retentionMs"]));
  if (!c["removeAtMs"].is_null()) out << " (removed at " << time(c["removeAtMs"]) << " unless opened)";
  out << "\nlimits: " << number(c["maxSections"]) << " sections, " << number(c["maxSectionBytes"])
      << " bytes a section, " << number(c["maxBytes"]) << " bytes in all\n";
  const Json sections = c.value("sections", Json::array());
  if (sections.empty()) return;
  out << "\n";
  Table table({"SECTION", "BYTES", "EXPIRES", "UPDATED"});
  for (const Json& s : sections) {
    table.add({s.value("id", ""), number(s["bytes"]), orDash(s["expiresMs"], time), time(s["updatedMs"])});
  }
  table.print(out);
}

Checkpoint::Op opOf(CheckpointVerb::Kind kind) {
  switch (kind) {
    case CheckpointVerb::Kind::kList:
      return Checkpoint::LIST;
    case CheckpointVerb::Kind::kInfo:
      return Checkpoint::INFO;
    case CheckpointVerb::Kind::kCreate:
      return Checkpoint::CREATE;
    case CheckpointVerb::Kind::kRead:
      return Checkpoint::READ;
    case CheckpointVerb::Kind::kWrite:
      return Checkpoint::WRITE;
    case CheckpointVerb::Kind::kDelete:
      return Checkpoint::DELETE_SECTION;
    case CheckpointVerb::Kind::kUnlink:
      return Checkpoint::UNLINK;
  }
  return Checkpoint::LIST;
}

}  // namespace

int runCheckpointVerb(const CheckpointVerb& verb, const ClusterOptions& options, std::ostream& out, std::ostream& err) {
  Request request;
  Checkpoint& checkpoint = *request.mutable_checkpoint();
  checkpoint.set_op(opOf(verb.kind));
  checkpoint.set_name(verb.name);
  checkpoint.set_section(verb.section);
  if (verb.kind == CheckpointVerb::Kind::kWrite) {
    if (verb.file) {
      std::ifstream in(*verb.file, std::ios::binary);
      std::ostringstream bytes;
      if (in.is_open()) bytes << in.rdbuf();
      if (!in.is_open() || in.bad()) {
        err << *verb.file << ": cannot be read\n";
        return kExitDataError;
      }
      checkpoint.set_data(bytes.str());
    } else {
      checkpoint.set_data(verb.data.value_or(""));
    }
    checkpoint.set_async(verb.async);
    if (verb.expiresIn) checkpoint.set_expires_in_ms(static_cast<std::uint64_t>(verb.expiresIn->count()));
  }
  if (verb.kind == CheckpointVerb::Kind::kCreate) {
    admin::proto::CheckpointAttributes& attributes = *checkpoint.mutable_attributes();
    if (verb.retention) attributes.set_retention_ms(static_cast<std::uint64_t>(verb.retention->count()));
    if (verb.maxSections) attributes.set_max_sections(static_cast<std::uint32_t>(*verb.maxSections));
    if (verb.maxSectionBytes) attributes.set_max_section_bytes(*verb.maxSectionBytes);
    if (verb.maxBytes) attributes.set_max_bytes(*verb.maxBytes);
  }
  std::variant<Reply, int> asked = ask(options, std::move(request), err);
  if (const int* code = std::get_if<int>(&asked)) return *code;
  const Reply& reply = std::get<Reply>(asked);
  if (reply.code() != Reply::OK) return reportReply(reply, err);

  const bool machine = options.output == "json" || options.output == "yaml";
  Json body = reply.body().empty() ? Json::object() : Json::parse(reply.body(), nullptr, false);
  if (body.is_discarded()) body = Json::object();
  switch (verb.kind) {
    case CheckpointVerb::Kind::kList:
      machine ? printMachineForm(body, options.output, out) : printList(body, out);
      break;
    case CheckpointVerb::Kind::kInfo:
      machine ? printMachineForm(body, options.output, out) : printInfo(body, out);
      break;
    case CheckpointVerb::Kind::kRead:
      if (machine) {
        body["data"] = base64(reply.data());
        printMachineForm(body, options.output, out);
      } else {
        out << reply.data();
      }
      break;
    default:
      if (machine) {
        printMachineForm(Json{{"outcome", "done"}, {"message", reply.message()}}, options.output, out);
      } else {
        out << reply.message() << '\n';
      }
  }
  return kExitOk;
}

}  // namespace kvm_amf::cli
