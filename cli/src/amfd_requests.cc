#include "amfd_requests.h"

#include <cstdio>
#include <ctime>
#include <ostream>
#include <utility>

#include "kvm_amf/cli/exit_codes.h"
#include "kvm_amf/cli/yaml_emitter.h"

namespace kvm_amf::cli {

using admin::ClientError;
using admin::ClientErrorKind;
using admin::proto::Reply;
using admin::proto::Request;
using Json = nlohmann::ordered_json;

int exitCodeOf(Reply::Code code) {
  switch (code) {
    case Reply::OK:
      return kExitOk;
    case Reply::REFUSED:
      return kExitRefused;
    case Reply::INVALID:
      return kExitDataError;
    case Reply::UNAVAILABLE:
      return kExitUnavailable;
    case Reply::TIMEOUT:
      return kExitTimeout;
    case Reply::DIFFERENT:
      return kExitRefused;
    default:
      return kExitRefused;  // a code of a newer amfd
  }
}

int reportClientError(const ClientError& error, const std::string& endpoint, std::ostream& err) {
  err << "amf-admin: " << error.message;
  switch (error.kind) {
    case ClientErrorKind::kUnreachable:
      err << (endpoint.starts_with("tcp://") ? " (is amfd running there, serving TCP?)"
                                             : " (is amfd running on this host?)")
          << '\n';
      return kExitUnavailable;
    case ClientErrorKind::kTimeout:
      err << '\n';
      return kExitTimeout;
    case ClientErrorKind::kRefused:
    case ClientErrorKind::kFailed:
      break;
  }
  err << '\n';
  return kExitRefused;
}

int reportReply(const Reply& reply, std::ostream& err) {
  err << "amf-admin: "
      << (reply.message().empty() ? "amfd answered " + Reply::Code_Name(reply.code()) : reply.message()) << '\n';
  return exitCodeOf(reply.code());
}

std::variant<Reply, int> ask(const ClusterOptions& options, Request request, std::ostream& err) {
  auto client = admin::AdminClient::connect(options.endpoint);
  if (!client.ok()) return reportClientError(client.error(), options.endpoint, err);
  auto reply = client.value()->call(std::move(request), options.timeout);
  if (!reply.ok()) return reportClientError(reply.error(), options.endpoint, err);
  return std::move(reply).value();
}

std::string isoTime(std::int64_t ms) {
  std::int64_t seconds = ms / 1000;
  std::int64_t millis = ms % 1000;
  if (millis < 0) {
    millis += 1000;
    seconds -= 1;
  }
  const auto t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  if (::gmtime_r(&t, &tm) == nullptr) return std::to_string(ms) + "ms";
  char text[64];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(millis));
  return text;
}

std::string dumpJson(const Json& value, int indent) {
  return value.dump(indent, ' ', false, Json::error_handler_t::replace);
}

void printMachineForm(const Json& value, const std::string& output, std::ostream& out) {
  if (output == "yaml") {
    out << toYamlDocument(value);
  } else {
    out << dumpJson(value, 2) << '\n';
  }
}

}  // namespace kvm_amf::cli
