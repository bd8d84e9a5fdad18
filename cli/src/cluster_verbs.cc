#include "cluster_verbs.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <sstream>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "kvm_amf/admin/admin_client.h"
#include "kvm_amf/amf/model/admin_command.h"
#include "kvm_amf/cli/exit_codes.h"
#include "kvm_amf/cli/table.h"
#include "kvm_amf/cli/yaml_emitter.h"
#include "kvm_amf/common/event_loop.h"

namespace kvm_amf::cli {
namespace {

using admin::proto::Reply;
using admin::proto::Request;
using Json = nlohmann::ordered_json;

// How long `events` without --follow listens.
constexpr Duration kEventsWindow{1000};

// --- Reading what amfd sent: the status document is amfd's, so every access tolerates a missing
// key or a value of another type (shown as "-") rather than trusting its shape.

const Json& nullJson() {
  static const Json kNull;
  return kNull;
}

// obj[key]; null when obj is not an object or lacks the key.
const Json& member(const Json& obj, const char* key) {
  if (!obj.is_object()) return nullJson();
  auto it = obj.find(key);
  return it == obj.end() ? nullJson() : *it;
}

// obj[key] when it is an array; an empty array otherwise.
const Json& items(const Json& obj, const char* key) {
  static const Json kEmpty = Json::array();
  const Json& value = member(obj, key);
  return value.is_array() ? value : kEmpty;
}

// A table cell: a string as it is, null "-", a boolean yes/no, anything else as JSON.
std::string cell(const Json& value) {
  if (value.is_string()) {
    const auto& text = value.get_ref<const std::string&>();
    return text.empty() ? "-" : text;
  }
  if (value.is_null()) return "-";
  if (value.is_boolean()) return value.get<bool>() ? "yes" : "no";
  return dumpJson(value);
}

std::string field(const Json& obj, const char* key) { return cell(member(obj, key)); }

bool isTrue(const Json& value) { return value.is_boolean() && value.get<bool>(); }

std::string join(const std::vector<std::string>& parts, const char* separator = ", ") {
  std::string out;
  for (const auto& part : parts) out += (out.empty() ? "" : separator) + part;
  return out;
}

// "-" for no parts.
std::string joinOrDash(const std::vector<std::string>& parts) { return parts.empty() ? "-" : join(parts); }

// "mme-si=active, sgw-si-2=standby" from a unit's "ha" object.
std::string haStates(const Json& su) {
  std::vector<std::string> parts;
  const Json& ha = member(su, "ha");
  if (ha.is_object()) {
    for (const auto& [si, state] : ha.items()) parts.push_back(si + "=" + cell(state));
  }
  return joinOrDash(parts);
}

// "mme-a=active, mme-b=standby (unconfirmed)" from an SI's assignments.
std::string assignments(const Json& si) {
  std::vector<std::string> parts;
  for (const auto& a : items(si, "assignments")) {
    parts.push_back(field(a, "su") + "=" + field(a, "ha") + (isTrue(member(a, "acked")) ? "" : " (unconfirmed)"));
  }
  return joinOrDash(parts);
}

// A host's admin and operational states when they are not the usual unlocked and enabled.
std::string unusualStates(const Json& node) {
  std::vector<std::string> parts;
  if (std::string admin = field(node, "admin"); admin != "unlocked") parts.push_back(admin);
  if (std::string oper = field(node, "oper"); oper != "enabled") parts.push_back(oper);
  return joinOrDash(parts);
}

void printIndented(const Table& table, std::ostream& out) {
  std::ostringstream text;
  table.print(text);
  std::istringstream lines(text.str());
  for (std::string line; std::getline(lines, line);) out << "  " << line << '\n';
}

// The status document, or the exit code of a failure already reported on `err`.
std::variant<Json, int> fetchStatus(const ClusterOptions& options, std::ostream& err) {
  Request request;
  request.mutable_query()->set_what("status");
  auto answer = ask(options, std::move(request), err);
  if (const int* code = std::get_if<int>(&answer)) return *code;
  const Reply& reply = std::get<Reply>(answer);
  if (reply.code() != Reply::OK) return reportReply(reply, err);
  Json document = Json::parse(reply.body(), nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded() || !document.is_object()) {
    err << "amf-admin: amfd at " << options.endpoint << " sent a status document that is not a JSON object\n";
    return kExitRefused;
  }
  return document;
}

// --- status

void printStatusTable(const Json& doc, std::ostream& out) {
  const Json& director = member(doc, "director");
  out << "Cluster: " << (isTrue(member(doc, "quorate")) ? "quorate" : "NOT QUORATE") << ", "
      << (director.is_string() ? "director " + director.get<std::string>() : std::string("no director"));
  if (const Json& node = member(doc, "node"); node.is_string())
    out << "; answered by amfd on " << node.get<std::string>();
  out << '\n';
  const Json& nodes = items(doc, "nodes");
  std::size_t members = 0;
  std::size_t amfds = 0;
  for (const auto& node : nodes) {
    members += isTrue(member(node, "member")) ? 1 : 0;
    amfds += isTrue(member(node, "amfd")) ? 1 : 0;
  }
  out << "Hosts: " << members << " of " << nodes.size() << " members, amfd on " << amfds
      << "; configuration generation " << field(doc, "generation") << ", " << field(doc, "decisions") << " decisions\n";

  if (const Json& problems = items(doc, "problems"); !problems.empty()) {
    out << "\nPROBLEMS\n";
    for (const auto& problem : problems) out << "  " << cell(problem) << '\n';
  }

  if (!nodes.empty()) {
    out << "\nHOSTS\n";
    Table hosts({"NODE", "ID", "MEMBER", "AMFD", "STATUS", "STATE"});
    for (const auto& node : nodes) {
      hosts.add({field(node, "name"), field(node, "id"), field(node, "member"), field(node, "amfd"),
                 field(node, "status"), unusualStates(node)});
    }
    printIndented(hosts, out);
  }

  std::map<std::string, const Json*> sus;
  for (const auto& su : items(doc, "sus")) sus[field(su, "name")] = &su;
  for (const auto& sg : items(doc, "sgs")) {
    std::string heading = field(sg, "model");
    if (std::string admin = field(sg, "admin"); admin != "unlocked") heading += ", " + admin;
    out << "\nSG " << field(sg, "name") << " (" << heading << ")\n";
    Table units({"SU", "HOST", "ADMIN", "OPER", "PRESENCE", "READINESS", "HA"});
    for (const auto& name : items(sg, "units")) {
      auto it = sus.find(cell(name));
      if (it == sus.end()) continue;
      const Json& su = *it->second;
      units.add({field(su, "name"), field(su, "node"), field(su, "admin"), field(su, "oper"), field(su, "presence"),
                 field(su, "readiness"), haStates(su)});
    }
    printIndented(units, out);
  }

  if (const Json& sis = items(doc, "sis"); !sis.empty()) {
    out << "\nSIS\n";
    Table table({"SI", "SG", "ADMIN", "ASSIGNMENTS"});
    for (const auto& si : sis) table.add({field(si, "name"), field(si, "sg"), field(si, "admin"), assignments(si)});
    printIndented(table, out);
  }

  // VMs an operator paused or stopped (VM operations), only when there are any.
  Table held({"VM", "SU", "HOST", "PRESENCE", "ADMIN"});
  bool anyHeld = false;
  for (const auto& vm : items(doc, "vms")) {
    if (!member(vm, "admin").is_string()) continue;
    anyHeld = true;
    held.add({field(vm, "name"), field(vm, "su"), field(vm, "node"), field(vm, "presence"), field(vm, "admin")});
  }
  if (anyHeld) {
    out << "\nVMS HELD BY AN OPERATOR\n";
    printIndented(held, out);
  }
}

// --- get

struct KindWords {
  const char* plural;  // the status document's key
  const char* singular;
};

constexpr std::array<KindWords, 5> kKinds = {{
    {"nodes", "node"},
    {"sgs", "sg"},
    {"sus", "su"},
    {"sis", "si"},
    {"vms", "vm"},
}};

const KindWords* kindOf(const std::string& word) {
  for (const KindWords& kind : kKinds) {
    if (word == kind.plural || word == kind.singular) return &kind;
  }
  return nullptr;
}

// One kind's objects as a table, one row each.
Table tableOf(const KindWords& kind, const std::vector<const Json*>& objects) {
  const std::string_view plural = kind.plural;
  if (plural == "nodes") {
    Table table({"NAME", "ID", "MEMBER", "AMFD", "STATUS", "ADMIN", "OPER", "ALARM"});
    for (const Json* n : objects) {
      table.add({field(*n, "name"), field(*n, "id"), field(*n, "member"), field(*n, "amfd"), field(*n, "status"),
                 field(*n, "admin"), field(*n, "oper"), field(*n, "alarm")});
    }
    return table;
  }
  if (plural == "sgs") {
    Table table({"NAME", "MODEL", "ADMIN", "UNITS"});
    for (const Json* sg : objects) {
      std::vector<std::string> units;
      for (const auto& unit : items(*sg, "units")) units.push_back(cell(unit));
      table.add({field(*sg, "name"), field(*sg, "model"), field(*sg, "admin"), joinOrDash(units)});
    }
    return table;
  }
  if (plural == "sus") {
    Table table({"NAME", "SG", "RANK", "HOST", "ADMIN", "OPER", "PRESENCE", "READINESS", "HA"});
    for (const Json* su : objects) {
      table.add({field(*su, "name"), field(*su, "sg"), field(*su, "rank"), field(*su, "node"), field(*su, "admin"),
                 field(*su, "oper"), field(*su, "presence"), field(*su, "readiness"), haStates(*su)});
    }
    return table;
  }
  if (plural == "sis") {
    Table table({"NAME", "SG", "ADMIN", "ASSIGNMENTS"});
    for (const Json* si : objects) {
      table.add({field(*si, "name"), field(*si, "sg"), field(*si, "admin"), assignments(*si)});
    }
    return table;
  }
  Table table({"NAME", "SU", "HOST", "PRESENCE", "FAILURE", "ADMIN"});
  for (const Json* vm : objects) {
    table.add({field(*vm, "name"), field(*vm, "su"), field(*vm, "node"), field(*vm, "presence"), field(*vm, "failure"),
               field(*vm, "admin")});
  }
  return table;
}

// --- events

// The event's JSON form: its json parsed when it is JSON, kept as a string otherwise, null if empty.
Json eventJson(const admin::proto::Event& event) {
  Json data;
  if (!event.json().empty()) {
    data = Json::parse(event.json(), nullptr, /*allow_exceptions=*/false);
    if (data.is_discarded()) data = event.json();
  }
  return Json{{"timeMs", event.time_ms()},
              {"seq", event.seq()},
              {"type", event.type()},
              {"text", event.text()},
              {"data", std::move(data)}};
}

void printEvent(const admin::proto::Event& event, const std::string& output, std::ostream& out) {
  if (output == "json") {
    out << dumpJson(eventJson(event)) << '\n';
  } else if (output == "yaml") {
    out << "---\n" << toYamlDocument(eventJson(event));
  } else {
    std::string type = event.type();
    if (type.size() < 8) type.resize(8, ' ');
    std::string text = event.text();
    for (char& c : text) {
      if (c == '\n' || c == '\r') c = ' ';  // one line per event
    }
    out << isoTime(event.time_ms()) << "  " << type << "  " << text << '\n';
  }
  out.flush();  // a reader of --follow sees each event as it comes
}

}  // namespace

int showStatus(const ClusterOptions& options, std::ostream& out, std::ostream& err) {
  auto status = fetchStatus(options, err);
  if (const int* code = std::get_if<int>(&status)) return *code;
  const Json& document = std::get<Json>(status);
  if (options.output == "table") {
    printStatusTable(document, out);
  } else {
    printMachineForm(document, options.output, out);
  }
  return kExitOk;
}

int getObjects(const ClusterOptions& options, const std::string& kindWord, const std::string& name, std::ostream& out,
               std::ostream& err) {
  const KindWords* kind = kindOf(kindWord);
  if (kind == nullptr) {
    err << "amf-admin get: unknown kind '" << kindWord << "'; expected nodes, sgs, sus, sis or vms\n";
    return kExitUsage;
  }
  auto status = fetchStatus(options, err);
  if (const int* code = std::get_if<int>(&status)) return *code;
  const Json& all = items(std::get<Json>(status), kind->plural);

  std::vector<const Json*> objects;
  for (const auto& object : all) {
    if (name.empty() || field(object, "name") == name) objects.push_back(&object);
  }
  if (!name.empty() && objects.empty()) {
    err << "amf-admin: no " << kind->singular << "/" << name << '\n';
    return kExitRefused;
  }
  if (options.output == "table") {
    tableOf(*kind, objects).print(out);
  } else {
    printMachineForm(name.empty() ? all : *objects.front(), options.output, out);
  }
  return kExitOk;
}

int runOperation(const std::string& words, const ClusterOptions& options, std::ostream& out, std::ostream& err) {
  Result<model::AdminCommand> command = model::parseAdminCommand(words);
  if (!command.ok()) {
    err << "amf-admin: " << command.error().message << '\n';
    return kExitUsage;
  }
  const std::string canonical = model::formatAdminCommand(command.value());
  Request request;
  request.mutable_command()->set_words(canonical);
  auto answer = ask(options, std::move(request), err);
  if (const int* code = std::get_if<int>(&answer)) return *code;
  const Reply& reply = std::get<Reply>(answer);
  if (reply.code() != Reply::OK) return reportReply(reply, err);
  out << (reply.message().empty() ? "done: " + canonical : reply.message()) << '\n';
  return kExitOk;
}

int streamEvents(const ClusterOptions& options, bool follow, std::ostream& out, std::ostream& err) {
  const std::string eventsEndpoint =
      options.eventsEndpoint.empty() ? eventsEndpointFor(options.endpoint) : options.eventsEndpoint;
  if (eventsEndpoint.empty()) {
    err << "amf-admin events: the events endpoint does not follow from " << options.endpoint
        << " (not .../admin.sock or tcp://HOST:PORT); give it with --events URI\n";
    return kExitUsage;
  }
  auto client = admin::AdminClient::connect(options.endpoint);
  if (!client.ok()) return reportClientError(client.error(), options.endpoint, err);
  admin::AdminClient& events = *client.value();
  if (auto subscribed = events.subscribe(eventsEndpoint); !subscribed.ok()) {
    return reportClientError(subscribed.error(), eventsEndpoint, err);
  }

  if (follow) {
    for (;;) {
      auto next = events.nextEvent(kEventsWindow);
      if (!next.ok()) return reportClientError(next.error(), eventsEndpoint, err);
      if (next.value()) printEvent(*next.value(), options.output, out);
    }
  }

  // The real clock, for the window's end (the client's waits are on it too).
  auto clock = EventLoop::create();
  if (!clock.ok()) {
    err << "amf-admin: " << clock.error().message << '\n';
    return kExitRefused;
  }
  const TimePoint end = clock.value()->now() + kEventsWindow;
  for (;;) {
    // Bounded by the window, should the real clock step back meanwhile.
    const Duration left = std::min(kEventsWindow, end - clock.value()->now());
    if (left <= Duration(0)) break;
    auto next = events.nextEvent(left);
    if (!next.ok()) return reportClientError(next.error(), eventsEndpoint, err);
    if (!next.value()) break;  // nothing more within the window
    printEvent(*next.value(), options.output, out);
  }
  return kExitOk;
}

std::string eventsEndpointFor(const std::string& endpoint) {
  static constexpr std::string_view kAdminFile = "admin.sock";
  if (endpoint.starts_with("ipc://")) {
    const std::string_view path = std::string_view(endpoint).substr(6);
    if (!path.ends_with(kAdminFile)) return "";
    const std::string_view dir = path.substr(0, path.size() - kAdminFile.size());
    if (!dir.empty() && !dir.ends_with('/')) return "";  // e.g. ipc:///run/my-admin.sock
    return "ipc://" + std::string(dir) + "events.sock";
  }
  if (endpoint.starts_with("tcp://")) {
    const auto colon = endpoint.rfind(':');
    if (colon < 6) return "";
    const std::string port = endpoint.substr(colon + 1);
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return "";
    const int number = std::stoi(port);
    if (number < 1 || number >= 65535) return "";
    return endpoint.substr(0, colon + 1) + std::to_string(number + 1);
  }
  return "";
}

}  // namespace kvm_amf::cli
