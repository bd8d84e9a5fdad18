#include "kvm_amf/amf/engine/codec.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "kvm_amf/amf/config/loader.h"
#include "kvm_amf/amf/config/serialize.h"
#include "kvm_amf/amf/model/words.h"

namespace kvm_amf::engine {
namespace {

// encode() writes ordered objects (fields in declaration order: "v" and "type" first); decode()
// reads into std::map objects, whose inserts cost O(log n) whatever a hostile sender puts in a map.
using OrderedJson = nlohmann::ordered_json;
using Json = nlohmann::json;
using ConfigurationPtr = std::shared_ptr<const model::Configuration>;

// ---- The "type" word of every message and action --------------------------------------------
// A variant alternative without a TypeWord does not compile, so no kind can be left out.

template <typename T>
struct TypeWord;
template <>
struct TypeWord<VmStarted> {
  static constexpr std::string_view word = "vm-started";
};
template <>
struct TypeWord<VmStartFailed> {
  static constexpr std::string_view word = "vm-start-failed";
};
template <>
struct TypeWord<VmStopped> {
  static constexpr std::string_view word = "vm-stopped";
};
template <>
struct TypeWord<VmStopFailed> {
  static constexpr std::string_view word = "vm-stop-failed";
};
template <>
struct TypeWord<VmFailed> {
  static constexpr std::string_view word = "vm-failed";
};
template <>
struct TypeWord<HaAcked> {
  static constexpr std::string_view word = "ha-acked";
};
template <>
struct TypeWord<AgentUp> {
  static constexpr std::string_view word = "agent-up";
};
template <>
struct TypeWord<FenceDone> {
  static constexpr std::string_view word = "fence-done";
};
template <>
struct TypeWord<AdminRequest> {
  static constexpr std::string_view word = "admin-request";
};
template <>
struct TypeWord<ConfigChange> {
  static constexpr std::string_view word = "config-change";
};
template <>
struct TypeWord<SetNodeStatus> {
  static constexpr std::string_view word = "set-node-status";
};
template <>
struct TypeWord<StartFence> {
  static constexpr std::string_view word = "start-fence";
};
template <>
struct TypeWord<StartSu> {
  static constexpr std::string_view word = "start-su";
};
template <>
struct TypeWord<StopSu> {
  static constexpr std::string_view word = "stop-su";
};
template <>
struct TypeWord<RestartVm> {
  static constexpr std::string_view word = "restart-vm";
};
template <>
struct TypeWord<RestartSu> {
  static constexpr std::string_view word = "restart-su";
};
template <>
struct TypeWord<FailoverSu> {
  static constexpr std::string_view word = "failover-su";
};
template <>
struct TypeWord<SetNodeOper> {
  static constexpr std::string_view word = "set-node-oper";
};
template <>
struct TypeWord<DestroyVm> {
  static constexpr std::string_view word = "destroy-vm";
};
template <>
struct TypeWord<RepairSu> {
  static constexpr std::string_view word = "repair-su";
};
template <>
struct TypeWord<SetHa> {
  static constexpr std::string_view word = "set-ha";
};
template <>
struct TypeWord<RemoveAssignment> {
  static constexpr std::string_view word = "remove-assignment";
};
template <>
struct TypeWord<SetAdmin> {
  static constexpr std::string_view word = "set-admin";
};
template <>
struct TypeWord<SetPreferredActive> {
  static constexpr std::string_view word = "set-preferred-active";
};
template <>
struct TypeWord<SetSgAdjust> {
  static constexpr std::string_view word = "set-sg-adjust";
};
template <>
struct TypeWord<AdminReply> {
  static constexpr std::string_view word = "admin-reply";
};
template <>
struct TypeWord<SetConfiguration> {
  static constexpr std::string_view word = "set-configuration";
};
template <>
struct TypeWord<ConfigReply> {
  static constexpr std::string_view word = "config-reply";
};
template <>
struct TypeWord<StopVm> {
  static constexpr std::string_view word = "stop-vm";
};
template <>
struct TypeWord<StartVm> {
  static constexpr std::string_view word = "start-vm";
};
template <>
struct TypeWord<SetVmPaused> {
  static constexpr std::string_view word = "set-vm-paused";
};
template <>
struct TypeWord<Decision> {
  static constexpr std::string_view word = "decision";
};
template <>
struct TypeWord<StateOffer> {
  static constexpr std::string_view word = "state-offer";
};
template <>
struct TypeWord<StateSnapshot> {
  static constexpr std::string_view word = "state-snapshot";
};

// ---- The fields of every struct, in one table each ------------------------------------------
// encode writes and decode reads exactly these, under these names. A member left out of a table
// would not round-trip: the tests give every member a value other than its default and compare
// whole values.

template <typename S, typename M>
struct Field {
  std::string_view name;
  M S::*member;
};

template <typename S, typename M>
constexpr Field<S, M> field(std::string_view name, M S::*member) {
  return {name, member};
}

template <typename S>
using Of = std::type_identity<S>;

constexpr auto fieldsOf(Of<VmStarted>) {
  return std::tuple{field("vm", &VmStarted::vm), field("node", &VmStarted::node)};
}
constexpr auto fieldsOf(Of<VmStartFailed>) {
  return std::tuple{field("vm", &VmStartFailed::vm), field("node", &VmStartFailed::node),
                    field("reason", &VmStartFailed::reason)};
}
constexpr auto fieldsOf(Of<VmStopped>) {
  return std::tuple{field("vm", &VmStopped::vm), field("node", &VmStopped::node)};
}
constexpr auto fieldsOf(Of<VmStopFailed>) {
  return std::tuple{field("vm", &VmStopFailed::vm), field("node", &VmStopFailed::node),
                    field("reason", &VmStopFailed::reason)};
}
constexpr auto fieldsOf(Of<VmFailed>) {
  return std::tuple{field("vm", &VmFailed::vm), field("node", &VmFailed::node), field("kind", &VmFailed::kind)};
}
constexpr auto fieldsOf(Of<HaAcked>) {
  return std::tuple{field("su", &HaAcked::su), field("si", &HaAcked::si), field("ha", &HaAcked::ha)};
}
constexpr auto fieldsOf(Of<AgentUp>) {
  return std::tuple{field("node", &AgentUp::node), field("runningVms", &AgentUp::runningVms)};
}
constexpr auto fieldsOf(Of<FenceDone>) {
  return std::tuple{field("node", &FenceDone::node), field("ok", &FenceDone::ok), field("message", &FenceDone::message),
                    field("at", &FenceDone::at)};
}
constexpr auto fieldsOf(Of<AdminRequest>) {
  return std::tuple{field("id", &AdminRequest::id), field("from", &AdminRequest::from),
                    field("command", &AdminRequest::command)};
}
constexpr auto fieldsOf(Of<ConfigChange>) {
  return std::tuple{field("id", &ConfigChange::id), field("from", &ConfigChange::from),
                    field("baseGeneration", &ConfigChange::baseGeneration), field("config", &ConfigChange::config)};
}
constexpr auto fieldsOf(Of<SetNodeStatus>) {
  return std::tuple{field("node", &SetNodeStatus::node), field("status", &SetNodeStatus::status),
                    field("reason", &SetNodeStatus::reason)};
}
constexpr auto fieldsOf(Of<StartFence>) {
  return std::tuple{field("node", &StartFence::node), field("fencer", &StartFence::fencer)};
}
constexpr auto fieldsOf(Of<StartSu>) { return std::tuple{field("su", &StartSu::su), field("node", &StartSu::node)}; }
constexpr auto fieldsOf(Of<StopSu>) { return std::tuple{field("su", &StopSu::su)}; }
constexpr auto fieldsOf(Of<RestartVm>) {
  return std::tuple{field("vm", &RestartVm::vm), field("counted", &RestartVm::counted),
                    field("method", &RestartVm::method)};
}
constexpr auto fieldsOf(Of<RestartSu>) {
  return std::tuple{field("su", &RestartSu::su), field("counted", &RestartSu::counted)};
}
constexpr auto fieldsOf(Of<FailoverSu>) {
  return std::tuple{field("su", &FailoverSu::su), field("nodeLevel", &FailoverSu::nodeLevel)};
}
constexpr auto fieldsOf(Of<SetNodeOper>) {
  return std::tuple{field("node", &SetNodeOper::node), field("oper", &SetNodeOper::oper)};
}
constexpr auto fieldsOf(Of<DestroyVm>) {
  return std::tuple{field("vm", &DestroyVm::vm), field("node", &DestroyVm::node)};
}
constexpr auto fieldsOf(Of<RepairSu>) { return std::tuple{field("su", &RepairSu::su)}; }
constexpr auto fieldsOf(Of<SetHa>) {
  return std::tuple{field("su", &SetHa::su), field("si", &SetHa::si), field("ha", &SetHa::ha)};
}
constexpr auto fieldsOf(Of<RemoveAssignment>) {
  return std::tuple{field("su", &RemoveAssignment::su), field("si", &RemoveAssignment::si)};
}
constexpr auto fieldsOf(Of<SetAdmin>) {
  return std::tuple{field("target", &SetAdmin::target), field("admin", &SetAdmin::admin)};
}
constexpr auto fieldsOf(Of<SetPreferredActive>) {
  return std::tuple{field("si", &SetPreferredActive::si), field("su", &SetPreferredActive::su)};
}
constexpr auto fieldsOf(Of<SetSgAdjust>) {
  return std::tuple{field("sg", &SetSgAdjust::sg), field("adjust", &SetSgAdjust::adjust)};
}
constexpr auto fieldsOf(Of<AdminReply>) {
  return std::tuple{field("id", &AdminReply::id), field("from", &AdminReply::from), field("ok", &AdminReply::ok),
                    field("message", &AdminReply::message)};
}
constexpr auto fieldsOf(Of<SetConfiguration>) {
  return std::tuple{field("config", &SetConfiguration::config), field("generation", &SetConfiguration::generation)};
}
constexpr auto fieldsOf(Of<ConfigReply>) {
  return std::tuple{field("id", &ConfigReply::id),
                    field("from", &ConfigReply::from),
                    field("ok", &ConfigReply::ok),
                    field("stale", &ConfigReply::stale),
                    field("generation", &ConfigReply::generation),
                    field("problems", &ConfigReply::problems)};
}
constexpr auto fieldsOf(Of<StopVm>) {
  return std::tuple{field("vm", &StopVm::vm), field("node", &StopVm::node), field("method", &StopVm::method)};
}
constexpr auto fieldsOf(Of<StartVm>) { return std::tuple{field("vm", &StartVm::vm), field("node", &StartVm::node)}; }
constexpr auto fieldsOf(Of<SetVmPaused>) {
  return std::tuple{field("vm", &SetVmPaused::vm), field("node", &SetVmPaused::node),
                    field("paused", &SetVmPaused::paused)};
}
constexpr auto fieldsOf(Of<Decision>) {
  return std::tuple{field("director", &Decision::director), field("at", &Decision::at),
                    field("actions", &Decision::actions)};
}
constexpr auto fieldsOf(Of<StateOffer>) {
  return std::tuple{field("node", &StateOffer::node),
                    field("hasState", &StateOffer::hasState),
                    field("generation", &StateOffer::generation),
                    field("decisions", &StateOffer::decisions),
                    field("applied", &StateOffer::applied),
                    field("round", &StateOffer::round)};
}
constexpr auto fieldsOf(Of<StateSnapshot>) {
  return std::tuple{field("node", &StateSnapshot::node), field("state", &StateSnapshot::state),
                    field("round", &StateSnapshot::round)};
}
constexpr auto fieldsOf(Of<Counter>) {
  return std::tuple{field("count", &Counter::count), field("since", &Counter::since)};
}
constexpr auto fieldsOf(Of<NodeRuntime>) {
  return std::tuple{field("name", &NodeRuntime::name),
                    field("id", &NodeRuntime::id),
                    field("admin", &NodeRuntime::admin),
                    field("oper", &NodeRuntime::oper),
                    field("status", &NodeRuntime::status),
                    field("since", &NodeRuntime::since),
                    field("fencer", &NodeRuntime::fencer),
                    field("fenceAttempts", &NodeRuntime::fenceAttempts),
                    field("lastFenceEnd", &NodeRuntime::lastFenceEnd),
                    field("suFailovers", &NodeRuntime::suFailovers),
                    field("alarm", &NodeRuntime::alarm),
                    field("agentReady", &NodeRuntime::agentReady)};
}
constexpr auto fieldsOf(Of<VmRuntime>) {
  return std::tuple{field("name", &VmRuntime::name),         field("su", &VmRuntime::su),
                    field("presence", &VmRuntime::presence), field("node", &VmRuntime::node),
                    field("restarts", &VmRuntime::restarts), field("failure", &VmRuntime::failure),
                    field("paused", &VmRuntime::paused),     field("hold", &VmRuntime::hold),
                    field("savedOn", &VmRuntime::savedOn)};
}
constexpr auto fieldsOf(Of<SuRuntime>) {
  return std::tuple{field("name", &SuRuntime::name),
                    field("sg", &SuRuntime::sg),
                    field("rank", &SuRuntime::rank),
                    field("admin", &SuRuntime::admin),
                    field("oper", &SuRuntime::oper),
                    field("node", &SuRuntime::node),
                    field("restarts", &SuRuntime::restarts),
                    field("failovers", &SuRuntime::failovers),
                    field("avoidNode", &SuRuntime::avoidNode),
                    field("startFailures", &SuRuntime::startFailures),
                    field("instantiationFailed", &SuRuntime::instantiationFailed)};
}
constexpr auto fieldsOf(Of<Assignment>) {
  return std::tuple{field("su", &Assignment::su), field("ha", &Assignment::ha), field("acked", &Assignment::acked)};
}
constexpr auto fieldsOf(Of<SiRuntime>) {
  return std::tuple{field("name", &SiRuntime::name),
                    field("sg", &SiRuntime::sg),
                    field("rank", &SiRuntime::rank),
                    field("admin", &SiRuntime::admin),
                    field("assignments", &SiRuntime::assignments),
                    field("preferredActive", &SiRuntime::preferredActive)};
}
constexpr auto fieldsOf(Of<SgRuntime>) {
  return std::tuple{field("name", &SgRuntime::name), field("admin", &SgRuntime::admin),
                    field("adjust", &SgRuntime::adjust)};
}
constexpr auto fieldsOf(Of<PendingAdmin>) {
  return std::tuple{field("id", &PendingAdmin::id), field("from", &PendingAdmin::from),
                    field("command", &PendingAdmin::command)};
}
constexpr auto fieldsOf(Of<PendingConfigChange>) {
  return std::tuple{field("id", &PendingConfigChange::id), field("from", &PendingConfigChange::from),
                    field("baseGeneration", &PendingConfigChange::baseGeneration),
                    field("config", &PendingConfigChange::config)};
}
// The configuration is the canonical documents (config/serialize.h), or null when there is none.
constexpr auto fieldsOf(Of<ClusterState>) {
  return std::tuple{field("config", &ClusterState::config),
                    field("generation", &ClusterState::generation),
                    field("decisions", &ClusterState::decisions),
                    field("applied", &ClusterState::applied),
                    field("nodes", &ClusterState::nodes),
                    field("sgs", &ClusterState::sgs),
                    field("sus", &ClusterState::sus),
                    field("sis", &ClusterState::sis),
                    field("vms", &ClusterState::vms),
                    field("pendingAdmin", &ClusterState::pendingAdmin),
                    field("pendingConfig", &ClusterState::pendingConfig)};
}

template <typename S>
concept Described = requires {
  fieldsOf(Of<S>{});
};

template <typename T>
inline constexpr bool kIsVariant = false;
template <typename... T>
inline constexpr bool kIsVariant<std::variant<T...>> = true;

// ---- Engine enumerations: the words of messages.h and their reverse ---------------------------

constexpr NodeStatus kNodeStatuses[] = {NodeStatus::kDown, NodeStatus::kUp, NodeStatus::kAmfdDown, NodeStatus::kLost,
                                        NodeStatus::kFencing};
constexpr FailureKind kFailureKinds[] = {FailureKind::kCrash, FailureKind::kWatchdog, FailureKind::kHang,
                                         FailureKind::kIoError, FailureKind::kUnhealthy};

std::optional<NodeStatus> nodeStatusFromWord(std::string_view word) {
  for (NodeStatus status : kNodeStatuses) {
    if (nodeStatusWord(status) == word) return status;
  }
  return std::nullopt;
}

std::optional<FailureKind> failureFromWord(std::string_view word) {
  for (FailureKind kind : kFailureKinds) {
    if (failureWord(kind) == word) return kind;
  }
  return std::nullopt;
}

// "a, b or c" of the words of `values`, for error messages.
template <typename E, std::size_t N, typename WordOf>
std::string wordsOf(const E (&values)[N], WordOf wordOf) {
  std::string out;
  for (std::size_t i = 0; i < N; ++i) {
    if (i > 0) out += (i + 1 == N) ? " or " : ", ";
    out += wordOf(values[i]);
  }
  return out;
}

// ---- Encoding ----------------------------------------------------------------------------------

// Appends key: value to an ordered object without ordered_map's linear search for the key.
// REQUIRES: object is an object without `key`. (Keys come from a std::map, or from a field table,
// whose names are distinct and never "v" or "type".)
void appendUnique(OrderedJson& object, const std::string& key, OrderedJson value) {
  object.get_ref<OrderedJson::object_t&>().emplace_back(key, std::move(value));
}

OrderedJson toJson(const std::string& value) { return value; }
OrderedJson toJson(bool value) { return value; }
OrderedJson toJson(std::chrono::milliseconds value) { return static_cast<std::int64_t>(value.count()); }
OrderedJson toJson(NodeStatus value) { return nodeStatusWord(value); }
OrderedJson toJson(FailureKind value) { return failureWord(value); }
OrderedJson toJson(const model::AdminCommand& value) { return model::formatAdminCommand(value); }
OrderedJson toJson(const model::AdminTarget& value) { return model::formatAdminTarget(value); }
OrderedJson toJson(const ConfigurationPtr& value) {
  if (!value) return nullptr;
  return config::toDocuments(*value);
}
template <std::integral I>
OrderedJson toJson(I value);
template <typename E>
requires std::is_enum_v<E> OrderedJson toJson(E value);
template <typename T>
OrderedJson toJson(const std::optional<T>& value);
template <typename T>
OrderedJson toJson(const std::vector<T>& values);
template <typename T>
OrderedJson toJson(const std::map<std::string, T>& values);
template <typename... T>
OrderedJson toJson(const std::variant<T...>& value);
template <Described S>
OrderedJson toJson(const S& value);

// Writes the fields of `value` into `object`.
template <Described S>
void writeFields(OrderedJson& object, const S& value) {
  std::apply([&](const auto&... f) { (appendUnique(object, std::string(f.name), toJson(value.*f.member)), ...); },
             fieldsOf(Of<S>{}));
}

// Writes "type" and the fields of the alternative `value` holds into `object`; an alternative that
// is itself a variant (a Report inside an Envelope) is written flat, by its own alternative's type.
template <typename... T>
void writeTyped(OrderedJson& object, const std::variant<T...>& value) {
  std::visit(
      [&object](const auto& alternative) {
        using A = std::decay_t<decltype(alternative)>;
        if constexpr (kIsVariant<A>) {
          writeTyped(object, alternative);
        } else {
          object["type"] = TypeWord<A>::word;
          writeFields(object, alternative);
        }
      },
      value);
}

template <std::integral I>
OrderedJson toJson(I value) {
  return value;
}
template <typename E>
requires std::is_enum_v<E> OrderedJson toJson(E value) { return model::toWord(value); }
template <typename T>
OrderedJson toJson(const std::optional<T>& value) {
  if (!value) return nullptr;
  return toJson(*value);
}
template <typename T>
OrderedJson toJson(const std::vector<T>& values) {
  OrderedJson out = OrderedJson::array();
  for (const auto& value : values) out.push_back(toJson(value));
  return out;
}
template <typename T>
OrderedJson toJson(const std::map<std::string, T>& values) {
  OrderedJson out = OrderedJson::object();
  for (const auto& [key, value] : values) appendUnique(out, key, toJson(value));
  return out;
}
template <typename... T>
OrderedJson toJson(const std::variant<T...>& value) {
  OrderedJson out = OrderedJson::object();
  writeTyped(out, value);
  return out;
}
template <Described S>
OrderedJson toJson(const S& value) {
  OrderedJson out = OrderedJson::object();
  writeFields(out, value);
  return out;
}

// ---- Decoding ----------------------------------------------------------------------------------

// Thrown inside decode() only, and caught there: what is wrong, and where.
struct DecodeError {
  std::string message;
};

// `text` quoted for an error message, cut short if long.
std::string shown(std::string_view text) {
  constexpr std::size_t kShown = 40;
  if (text.size() <= kShown) return "\"" + std::string(text) + "\"";
  return "\"" + std::string(text.substr(0, kShown)) + "...\"";
}

// `name` appended to a field path: "state.nodes.node1". Long names are cut short.
std::string join(const std::string& path, std::string_view name) {
  constexpr std::size_t kShown = 40;
  std::string part(name.substr(0, kShown));
  if (name.size() > kShown) part += "...";
  return path.empty() ? part : path + "." + part;
}

// One value of a decoded message and its field path ("" for the message itself).
struct Value {
  const Json& json;
  std::string path;
  const KnownConfiguration* known = nullptr;  // a configuration the receiver already holds

  [[noreturn]] void fail(const std::string& what) const { throw DecodeError{path.empty() ? what : path + ": " + what}; }
  // Fails unless the value has the type `expected` ("a string") says.
  void expect(bool ok, const char* expected) const {
    if (!ok) fail("expected " + std::string(expected) + ", found " + json.type_name());
  }
};

// The fields of one map of a decoded message: each is looked up once, and done() refuses any field
// left over, so a message this decoder only partly understands is refused.
class Fields {
 public:
  explicit Fields(const Value& value) : object_(value.json), path_(value.path), known_(value.known) {
    value.expect(object_.is_object(), "a map");
  }

  // The field `name`. Fails when it is missing.
  Value operator[](std::string_view name) {
    const auto it = object_.find(std::string(name));
    if (it == object_.end()) Value{object_, path_}.fail("missing field " + shown(name));
    read_.push_back(name);
    return Value{*it, join(path_, name), known_};
  }

  // Fails on a field no operator[] asked for.
  void done() const {
    if (read_.size() == object_.size()) return;
    for (const auto& [key, value] : object_.items()) {
      if (std::find(read_.begin(), read_.end(), key) == read_.end()) {
        Value{object_, path_}.fail("unknown field " + shown(key));
      }
    }
  }

 private:
  const Json& object_;
  std::string path_;
  const KnownConfiguration* known_;
  std::vector<std::string_view> read_;
};

void read(const Value& in, std::string& out) {
  in.expect(in.json.is_string(), "a string");
  const auto& text = in.json.get_ref<const std::string&>();
  if (text.size() > kMaxStringBytes) in.fail("a string longer than " + std::to_string(kMaxStringBytes) + " bytes");
  out = text;
}

void read(const Value& in, bool& out) {
  in.expect(in.json.is_boolean(), "true or false");
  out = in.json.get<bool>();
}

template <std::integral I>
void read(const Value& in, I& out) {
  in.expect(in.json.is_number_integer(), "an integer");
  if (in.json.is_number_unsigned()) {
    const auto value = in.json.get<std::uint64_t>();
    if (!std::in_range<I>(value)) in.fail("integer " + std::to_string(value) + " out of range");
    out = static_cast<I>(value);
  } else {
    const auto value = in.json.get<std::int64_t>();
    if (!std::in_range<I>(value)) in.fail("integer " + std::to_string(value) + " out of range");
    out = static_cast<I>(value);
  }
}

void read(const Value& in, std::chrono::milliseconds& out) {
  std::int64_t count = 0;
  read(in, count);
  out = std::chrono::milliseconds(count);
}

// A word of the value's type, looked up by `fromWord`; `words` lists them for the error.
template <typename E, typename FromWord>
E readWord(const Value& in, FromWord fromWord, const std::string& words) {
  std::string word;
  read(in, word);
  const std::optional<E> value = fromWord(word);
  if (!value) in.fail(shown(word) + " is not one of " + words);
  return *value;
}

void read(const Value& in, NodeStatus& out) {
  out = readWord<NodeStatus>(in, nodeStatusFromWord, wordsOf(kNodeStatuses, nodeStatusWord));
}

void read(const Value& in, FailureKind& out) {
  out = readWord<FailureKind>(in, failureFromWord, wordsOf(kFailureKinds, failureWord));
}

template <typename E>
requires std::is_enum_v<E>
void read(const Value& in, E& out) { out = readWord<E>(in, model::fromWord<E>, model::wordList<E>()); }

void read(const Value& in, model::AdminCommand& out) {
  std::string words;
  read(in, words);
  auto command = model::parseAdminCommand(words);
  if (!command) in.fail("not an admin command: " + command.error().message);
  out = std::move(command).value();
}

void read(const Value& in, model::AdminTarget& out) {
  std::string words;
  read(in, words);
  auto target = model::parseAdminTarget(words);
  if (!target) in.fail("not an admin target: " + target.error().message);
  out = std::move(target).value();
}

// A decoded configuration document as the ordered JSON config::toYaml takes.
OrderedJson toOrdered(const Value& in) {
  switch (in.json.type()) {
    case Json::value_t::object: {
      OrderedJson out = OrderedJson::object();
      for (const auto& [key, value] : in.json.items())
        appendUnique(out, key, toOrdered(Value{value, join(in.path, key)}));
      return out;
    }
    case Json::value_t::array: {
      OrderedJson out = OrderedJson::array();
      for (std::size_t i = 0; i < in.json.size(); ++i) {
        out.push_back(toOrdered(Value{in.json[i], in.path + "[" + std::to_string(i) + "]"}));
      }
      return out;
    }
    case Json::value_t::null:
      return nullptr;
    case Json::value_t::string:
      return in.json.get_ref<const std::string&>();
    case Json::value_t::boolean:
      return in.json.get<bool>();
    case Json::value_t::number_integer:
      return in.json.get<std::int64_t>();
    case Json::value_t::number_unsigned:
      return in.json.get<std::uint64_t>();
    case Json::value_t::number_float:
      return in.json.get<double>();
    case Json::value_t::binary:
    case Json::value_t::discarded:
      break;
  }
  in.fail(std::string("a ") + in.json.type_name() + " value in a configuration document");
}

// The configuration's canonical documents, loaded as a configuration file would be.
void read(const Value& in, ConfigurationPtr& out) {
  if (in.json.is_null()) {
    out = nullptr;
    return;
  }
  in.expect(in.json.is_array(), "a list of configuration documents or null");
  if (in.known && in.known->config && in.json == in.known->documents) {
    out = in.known->config;  // the same documents: no need to load them again
    return;
  }
  const std::string yaml = config::toYaml(toOrdered(in));
  config::LoadResult loaded = config::loadConfiguration({{"snapshot", yaml}});
  if (!loaded.ok()) {
    std::string what = "the configuration does not load: " + loaded.errors.front().str();
    if (loaded.errors.size() > 1) what += " (and " + std::to_string(loaded.errors.size() - 1) + " more errors)";
    in.fail(what);
  }
  out = std::make_shared<const model::Configuration>(std::move(loaded.config));
}

template <typename T>
void read(const Value& in, std::optional<T>& out);
template <typename T>
void read(const Value& in, std::vector<T>& out);
template <typename T>
void read(const Value& in, std::map<std::string, T>& out);
template <typename... T>
void read(const Value& in, std::variant<T...>& out);
template <Described S>
void read(const Value& in, S& out);

template <Described S>
void readFields(Fields& in, S& out) {
  std::apply([&](const auto&... f) { (read(in[f.name], out.*f.member), ...); }, fieldsOf(Of<S>{}));
}

// Reads the fields of the alternative whose type word is `type` into `out`, flattening an
// alternative that is itself a variant as writeTyped does. False when no alternative has that word.
template <typename... T>
bool readTyped(std::string_view type, Fields& in, std::variant<T...>& out) {
  bool found = false;
  const auto tryAlternative = [&]<typename A>(Of<A>) {
    if (found) return;
    if constexpr (kIsVariant<A>) {
      A inner;
      if (readTyped(type, in, inner)) {
        out = std::move(inner);
        found = true;
      }
    } else if (type == TypeWord<A>::word) {
      A alternative;
      readFields(in, alternative);
      out = std::move(alternative);
      found = true;
    }
  };
  (tryAlternative(Of<T>{}), ...);
  return found;
}

template <typename T>
void read(const Value& in, std::optional<T>& out) {
  if (in.json.is_null()) {
    out.reset();
    return;
  }
  read(in, out.emplace());
}

template <typename T>
void read(const Value& in, std::vector<T>& out) {
  in.expect(in.json.is_array(), "a list");
  if (in.json.size() > kMaxItems) in.fail("a list of more than " + std::to_string(kMaxItems) + " items");
  out.clear();
  out.reserve(in.json.size());
  for (std::size_t i = 0; i < in.json.size(); ++i) {
    read(Value{in.json[i], in.path + "[" + std::to_string(i) + "]", in.known}, out.emplace_back());
  }
}

template <typename T>
void read(const Value& in, std::map<std::string, T>& out) {
  in.expect(in.json.is_object(), "a map");
  if (in.json.size() > kMaxItems) in.fail("a map of more than " + std::to_string(kMaxItems) + " entries");
  out.clear();
  for (const auto& [key, value] : in.json.items()) {
    if (key.size() > kMaxStringBytes) in.fail("a key longer than " + std::to_string(kMaxStringBytes) + " bytes");
    read(Value{value, join(in.path, key), in.known}, out[key]);
  }
}

template <typename... T>
void read(const Value& in, std::variant<T...>& out) {
  Fields fields(in);
  std::string type;
  const Value typeValue = fields["type"];
  read(typeValue, type);
  if (!readTyped(type, fields, out)) typeValue.fail("unknown type " + shown(type));
  fields.done();
}

template <Described S>
void read(const Value& in, S& out) {
  Fields fields(in);
  readFields(fields, out);
  fields.done();
}

// The parse of untrusted CBOR: refuses nesting, strings and containers beyond the bounds before
// nlohmann's recursive parser descends into them, and builds the DOM of what passes, in one pass.
class BoundedDomParser final : public nlohmann::json_sax<Json> {
 public:
  explicit BoundedDomParser(Json& root) : dom_(root, /*allow_exceptions=*/false) {}
  // Why the input was refused; meaningful after sax_parse returned false.
  const std::string& problem() const { return problem_; }

  bool null() override { return item() && dom_.null(); }
  bool boolean(bool value) override { return item() && dom_.boolean(value); }
  bool number_integer(number_integer_t value) override { return item() && dom_.number_integer(value); }
  bool number_unsigned(number_unsigned_t value) override { return item() && dom_.number_unsigned(value); }
  bool number_float(number_float_t value, const string_t& text) override {
    return item() && dom_.number_float(value, text);
  }
  bool string(string_t& value) override {
    return item() && shortEnough(value.size(), "a string") && dom_.string(value);
  }
  bool binary(binary_t& value) override {
    return item() && shortEnough(value.size(), "a byte string") && dom_.binary(value);
  }
  bool start_object(std::size_t size) override { return item() && open(size, true) && dom_.start_object(size); }
  bool key(string_t& value) override { return counted() && shortEnough(value.size(), "a map key") && dom_.key(value); }
  bool end_object() override { return close() && dom_.end_object(); }
  bool start_array(std::size_t size) override { return item() && open(size, false) && dom_.start_array(size); }
  bool end_array() override { return close() && dom_.end_array(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& error) override {
    return refuse(std::string("not a valid CBOR message: ") + error.what());
  }

 private:
  struct Container {
    bool isMap = false;
    std::size_t items = 0;
  };

  bool refuse(std::string why) {
    problem_ = std::move(why);
    return false;
  }
  // A value: an item of the enclosing list (a map's items are counted by their keys).
  bool item() { return open_.empty() || open_.back().isMap || counted(); }
  bool counted() {
    if (++open_.back().items <= kMaxItems) return true;
    return refuse("a list or map of more than " + std::to_string(kMaxItems) + " items");
  }
  bool shortEnough(std::size_t size, const char* what) {
    if (size <= kMaxStringBytes) return true;
    return refuse(std::string(what) + " longer than " + std::to_string(kMaxStringBytes) + " bytes");
  }
  // `size` is -1 (as std::size_t) for an indefinite-length container.
  bool open(std::size_t size, bool isMap) {
    if (open_.size() >= static_cast<std::size_t>(kMaxNesting)) {
      return refuse("lists and maps nested deeper than " + std::to_string(kMaxNesting) + " levels");
    }
    if (size != static_cast<std::size_t>(-1) && size > kMaxItems) {
      return refuse("a list or map of more than " + std::to_string(kMaxItems) + " items");
    }
    open_.push_back({isMap, 0});
    return true;
  }
  bool close() {
    if (!open_.empty()) open_.pop_back();
    return true;
  }

  nlohmann::detail::json_sax_dom_parser<Json> dom_;
  std::vector<Container> open_;
  std::string problem_;
};

// Older versions are read as the current one, each step adding what its version added with the
// values that mean "as before". Anything else not as that version wrote it is left for the reader
// to refuse.
//
// Version 1 had no configuration changes: its state has none pending.
void upgradeFromVersion1(Json& root) {
  const auto type = root.find("type");
  if (type == root.end() || *type != TypeWord<StateSnapshot>::word) return;
  const auto state = root.find("state");
  if (state != root.end() && state->is_object() && !state->contains("pendingConfig")) {
    (*state)["pendingConfig"] = Json::array();
  }
}

// Version 2 had no VM operations: no VM paused or held by an operator, no managed save to restore,
// and every VM restart a destroy and start.
void upgradeFromVersion2(Json& root) {
  const auto type = root.find("type");
  if (type == root.end()) return;
  if (*type == TypeWord<StateSnapshot>::word) {
    const auto state = root.find("state");
    if (state == root.end() || !state->is_object()) return;
    const auto vms = state->find("vms");
    if (vms == state->end() || !vms->is_object()) return;
    for (auto& vm : *vms) {
      if (!vm.is_object()) continue;
      if (!vm.contains("paused")) vm["paused"] = false;
      if (!vm.contains("hold")) vm["hold"] = model::toWord(VmHold::kNone);
      if (!vm.contains("savedOn")) vm["savedOn"] = "";
    }
  } else if (*type == TypeWord<Decision>::word) {
    const auto actions = root.find("actions");
    if (actions == root.end() || !actions->is_array()) return;
    for (auto& action : *actions) {
      if (!action.is_object() || action.contains("method")) continue;
      const auto actionType = action.find("type");
      if (actionType != action.end() && *actionType == TypeWord<RestartVm>::word) {
        action["method"] = model::toWord(RestartMethod::kRecreate);
      }
    }
  }
}

void upgrade(Json& root) {
  if (!root.is_object()) return;
  const auto version = root.find("v");
  if (version == root.end() || !version->is_number_integer()) return;
  if (*version == 1) {
    upgradeFromVersion1(root);
    *version = 2;
  }
  if (*version == 2) {
    upgradeFromVersion2(root);
    *version = kCodecVersion;
  }
}

Envelope decodeMessage(std::string_view bytes, const KnownConfiguration* known) {
  if (bytes.empty()) throw DecodeError{"an empty message"};
  if (bytes.size() > kMaxMessageBytes) {
    throw DecodeError{"a message of " + std::to_string(bytes.size()) + " bytes; the limit is " +
                      std::to_string(kMaxMessageBytes)};
  }
  Json root;
  BoundedDomParser parser(root);
  if (!Json::sax_parse(bytes.begin(), bytes.end(), &parser, nlohmann::json::input_format_t::cbor, /*strict=*/true)) {
    throw DecodeError{parser.problem().empty() ? std::string("not a valid CBOR message") : parser.problem()};
  }
  if (root.is_discarded()) throw DecodeError{"not a valid CBOR message"};
  upgrade(root);

  const Value message{root, "", known};
  Fields fields(message);
  int version = 0;
  const Value versionValue = fields["v"];
  read(versionValue, version);
  if (version != kCodecVersion) {
    versionValue.fail("version " + std::to_string(version) + " is not the version this decoder reads (" +
                      std::to_string(kCodecVersion) + ")");
  }
  std::string type;
  const Value typeValue = fields["type"];
  read(typeValue, type);
  Envelope envelope;
  if (!readTyped(type, fields, envelope)) typeValue.fail("unknown message type " + shown(type));
  fields.done();
  return envelope;
}

}  // namespace

std::string encode(const Envelope& message) {
  OrderedJson object = OrderedJson::object();
  object["v"] = kCodecVersion;
  writeTyped(object, message);
  std::string bytes;
  OrderedJson::to_cbor(object, bytes);
  return bytes;
}

KnownConfiguration knownConfiguration(std::shared_ptr<const model::Configuration> config) {
  KnownConfiguration known;
  if (config) known.documents = Json::parse(config::toDocuments(*config).dump());
  known.config = std::move(config);
  return known;
}

Result<Envelope> decode(std::string_view bytes, const KnownConfiguration* known) {
  try {
    return decodeMessage(bytes, known);
  } catch (const DecodeError& error) {
    return Error{"cannot decode message: " + error.message};
  } catch (const std::exception& error) {
    return Error{std::string("cannot decode message: ") + error.what()};
  } catch (...) {
    return Error{"cannot decode message: an unexpected error"};
  }
}

}  // namespace kvm_amf::engine
