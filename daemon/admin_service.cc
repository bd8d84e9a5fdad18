#include "kvm_amf/daemon/admin_service.h"

#include <array>
#include <nlohmann/json.hpp>
#include <set>

#include "replies.h"

#include "kvm_amf/amf/config/merge.h"
#include "kvm_amf/amf/engine/status.h"
#include "kvm_amf/amf/model/admin_command.h"
#include "kvm_amf/amf/node/config_change.h"
#include "kvm_amf/common/overloaded.h"

namespace kvm_amf::daemon {

using admin::proto::Reply;
using nlohmann::json;

namespace {

using node::ConfigOutcome;
using node::ConfigResult;
using OrderedJson = nlohmann::ordered_json;

std::string joined(const std::vector<std::string>& lines, const char* separator) {
  std::string out;
  for (const auto& line : lines) out += (out.empty() ? "" : separator) + line;
  return out;
}

std::string countOf(std::size_t n, const char* what) { return std::to_string(n) + " " + what + (n == 1 ? "" : "s"); }

// The body of a configuration reply (docs/admin-api.md).
std::string bodyOf(const ConfigResult& result, std::string_view outcome) {
  OrderedJson changes = OrderedJson::array();
  for (const auto& change : result.changes) {
    changes.push_back({{"object", change.object()},
                       {"kind", change.key.kind},
                       {"name", change.key.name},
                       {"change", change.changeWord()},
                       {"before", change.before},
                       {"after", change.after}});
  }
  OrderedJson errors = OrderedJson::array();
  for (const auto& error : result.errors) errors.push_back(error.str());
  return OrderedJson{{"outcome", outcome},
                     {"generation", result.generation},
                     {"changes", std::move(changes)},
                     {"errors", std::move(errors)},
                     {"problems", result.problems}}
      .dump(-1, ' ', false, OrderedJson::error_handler_t::replace);
}

// The reply to an apply (`dryRun`) or a delete (`deleting`).
Reply configReply(const ConfigResult& result, bool dryRun, bool deleting) {
  const std::string summary = config::summarize(result.changes);
  const std::string generation = "generation " + std::to_string(result.generation);
  Reply reply;
  switch (result.outcome) {
    case ConfigOutcome::kApplied:
      if (dryRun) {
        reply = replyWith(Reply::OK,
                          "dry run: " + generation + " would become " + std::to_string(result.generation + 1) + " (" +
                              summary + "); nothing changed",
                          bodyOf(result, "dry-run"));
      } else {
        reply =
            replyWith(Reply::OK, std::string(deleting ? "deleted: " : "applied: ") + generation + " (" + summary + ")",
                      bodyOf(result, "applied"));
      }
      break;
    case ConfigOutcome::kUnchanged:
      reply = replyWith(Reply::OK, "unchanged: " + generation + " (the documents are what runs)",
                        bodyOf(result, "unchanged"));
      break;
    case ConfigOutcome::kInvalid:
      reply = replyWith(Reply::INVALID, countOf(result.errors.size(), "error") + "; nothing changed",
                        bodyOf(result, "invalid"));
      break;
    case ConfigOutcome::kRefused:
      reply = replyWith(Reply::REFUSED, joined(result.problems, "; "), bodyOf(result, "refused"));
      break;
    case ConfigOutcome::kUnavailable:
      reply = replyWith(Reply::UNAVAILABLE, joined(result.problems, "; "), bodyOf(result, "unavailable"));
      break;
  }
  reply.set_generation(result.generation);
  return reply;
}

std::vector<config::Source> sourcesOf(const google::protobuf::RepeatedPtrField<admin::proto::File>& files) {
  std::vector<config::Source> sources;
  for (const auto& file : files) sources.push_back({file.name(), file.content()});
  return sources;
}

}  // namespace

void AdminService::onRequest(const admin::proto::Request& request, const admin::Peer& /*peer*/,
                             std::function<void(Reply)> reply) {
  if (request.has_checkpoint()) {
    if (checkpoints_ == nullptr) {
      return reply(replyWith(Reply::UNAVAILABLE, "amfd on " + node_ + " has no checkpoint service"));
    }
    return checkpoints_->serve(request.checkpoint(), std::move(reply));
  }
  const engine::ClusterState* state = manager_->state();
  if (request.has_query()) {
    if (request.query().what() != "status") {
      return reply(replyWith(Reply::INVALID, "unknown query '" + request.query().what() + "' (known: status)"));
    }
    if (state == nullptr) {
      return reply(replyWith(Reply::UNAVAILABLE,
                             "amfd on " + node_ + " is not synchronised with the cluster yet (no quorate group)"));
    }
    json document = engine::statusDocument(*state, manager_->view());
    document["node"] = node_;
    document["synced"] = true;
    return reply(replyWith(Reply::OK, "", document.dump()));
  }
  if (request.has_command()) {
    Result<model::AdminCommand> command = model::parseAdminCommand(request.command().words());
    if (!command.ok()) return reply(replyWith(Reply::INVALID, command.error().message));
    if (state == nullptr || !manager_->view().quorate) {
      return reply(replyWith(Reply::UNAVAILABLE, "amfd on " + node_ + " has no quorate cluster to send '" +
                                                     request.command().words() + "' to"));
    }
    manager_->submit(command.value(), [reply](bool ok, std::string message) {
      reply(replyWith(ok ? Reply::OK : Reply::REFUSED, std::move(message)));
    });
    return;
  }
  if (request.has_apply() || request.has_delete_()) return configure(request, std::move(reply));
  if (request.has_diff()) return diff(request.diff(), std::move(reply));
  reply(replyWith(Reply::INVALID, "the request has no body"));
}

void AdminService::configure(const admin::proto::Request& request, std::function<void(Reply)> reply) {
  node::ConfigRequest change;
  bool deleting = false;
  if (request.has_apply()) {
    if (request.apply().files().empty()) return reply(replyWith(Reply::INVALID, "apply: no documents given"));
    change.files = sourcesOf(request.apply().files());
    change.dryRun = request.apply().dry_run();
    change.expectedGeneration = request.apply().expected_generation();
  } else {
    Result<model::AdminTarget> target = model::parseAdminTarget(request.delete_().target());
    if (!target.ok()) return reply(replyWith(Reply::INVALID, "delete: " + target.error().message));
    if (target.value().kind != model::AdminTarget::Kind::kServiceGroup) {
      return reply(replyWith(Reply::INVALID,
                             "delete takes sg/NAME; units, SIs and VMs change with their group's "
                             "document (apply), hosts with Corosync's"));
    }
    change.removeServiceGroup = target.value().name;
    deleting = true;
  }
  const bool dryRun = change.dryRun;
  node::applyConfigChange(*manager_, std::move(change), [reply, dryRun, deleting](const ConfigResult& result) {
    reply(configReply(result, dryRun, deleting));
  });
}

void AdminService::diff(const admin::proto::Diff& request, std::function<void(Reply)> reply) {
  const engine::ClusterState* state = manager_->state();
  if (state == nullptr) {
    return reply(replyWith(Reply::UNAVAILABLE,
                           "amfd on " + node_ + " is not synchronised with the cluster yet (no quorate group)"));
  }
  if (request.files().empty()) return reply(replyWith(Reply::INVALID, "diff: no documents given"));
  node::ConfigRequest change;
  change.files = sourcesOf(request.files());
  change.dryRun = true;
  const ConfigResult result = node::planConfigChange(*state, change).result;
  const std::string generation = "generation " + std::to_string(result.generation);
  Reply answer;
  if (result.outcome == ConfigOutcome::kInvalid) {
    answer = configReply(result, true, false);
  } else if (result.changes.empty()) {
    answer = replyWith(Reply::OK, "no differences from " + generation, bodyOf(result, "equal"));
  } else {
    answer = replyWith(Reply::DIFFERENT, config::summarize(result.changes) + " (against " + generation + ")",
                       bodyOf(result, "different"));
  }
  answer.set_generation(result.generation);
  reply(std::move(answer));
}

namespace {

// The classes in notifier.h's order.
constexpr std::array<const char*, 7> kClassOrder = {"failure", "recovery", "fence", "membership",
                                                    "config",  "admin",    "state"};

std::vector<std::string> ordered(const std::set<std::string>& classes) {
  std::vector<std::string> out;
  for (const char* c : kClassOrder) {
    if (classes.contains(c)) out.emplace_back(c);
  }
  return out;
}

const char* classOf(const engine::Action& action) {
  using engine::NodeStatus;
  return std::visit(
      Overloaded{
          [](const engine::SetNodeStatus& a) {
            return a.status == NodeStatus::kLost || a.status == NodeStatus::kAmfdDown ? "failure" : "state";
          },
          [](const engine::StartFence&) { return "fence"; }, [](const engine::RestartVm&) { return "recovery"; },
          [](const engine::RestartSu&) { return "recovery"; }, [](const engine::FailoverSu&) { return "recovery"; },
          [](const engine::SetNodeOper& a) { return a.oper == model::OperState::kDisabled ? "recovery" : "admin"; },
          [](const engine::RepairSu&) { return "recovery"; }, [](const engine::DestroyVm&) { return "recovery"; },
          [](const engine::SetAdmin&) { return "admin"; }, [](const engine::SetPreferredActive&) { return "admin"; },
          [](const engine::SetSgAdjust&) { return "admin"; }, [](const engine::AdminReply&) { return "admin"; },
          [](const engine::SetConfiguration&) { return "config"; }, [](const engine::ConfigReply&) { return "config"; },
          [](const auto&) { return "state"; },  // starts, stops, assignments
      },
      action);
}

}  // namespace

std::vector<std::string> eventClassesOf(const engine::Report& report) {
  const char* c = std::visit(Overloaded{
                                 [](const engine::VmFailed&) { return "failure"; },
                                 [](const engine::VmStartFailed&) { return "failure"; },
                                 [](const engine::VmStopFailed&) { return "failure"; },
                                 [](const engine::FenceDone&) { return "fence"; },
                                 [](const engine::AdminRequest&) { return "admin"; },
                                 [](const engine::ConfigChange&) { return "config"; },
                                 [](const auto&) { return "state"; },
                             },
                             report);
  return {c};
}

std::vector<std::string> eventClassesOf(const engine::Decision& decision) {
  std::set<std::string> classes;
  for (const auto& action : decision.actions) classes.insert(classOf(action));
  return ordered(classes);
}

void AdminService::publish(const std::string& type, const std::string& text, json data,
                           std::vector<std::string> classes) {
  if (log_) log_(type + " " + text);
  if (server_ != nullptr) {
    admin::proto::Event event;
    event.set_type(type);
    event.set_text(text);
    if (!data.is_null()) event.set_json(data.dump());
    server_->publish(event);
  }
  if (sink_) sink_(PublishedEvent{type, std::move(classes), text, std::move(data)});
}

void AdminService::onView(const engine::View& view) {
  json members = json::array();
  for (int id : view.group) members.push_back(id);
  json hosts = json::array();
  for (int id : view.hosts) hosts.push_back(id);
  const json data = {
      {"amfds", members}, {"hosts", hosts}, {"quorate", view.quorate}, {"director", engine::directorOf(view)}};
  publish("view",
          "membership: amfd on nodes " + members.dump() + ", hosts " + hosts.dump() +
              (view.quorate ? ", quorate" : ", not quorate"),
          data, {"membership"});
}

void AdminService::onApplied(const engine::Envelope& message, const engine::ClusterState& state) {
  std::visit(
      Overloaded{
          [&](const engine::Decision& decision) {
            json actions = json::array();
            for (const auto& action : decision.actions) actions.push_back(engine::describe(action));
            std::string text;
            for (const auto& action : actions) text += (text.empty() ? "" : "; ") + action.get<std::string>();
            publish("decision", text,
                    json{{"seq", state.decisions}, {"director", decision.director}, {"actions", actions}},
                    eventClassesOf(decision));
            followConfiguration(state);
          },
          [&](const engine::Report& report) {
            const std::string what = engine::describe(report);
            // Its place in the cluster's total order: every amfd applies it after the same decisions.
            publish("report", what, json{{"what", what}, {"afterDecision", state.decisions}}, eventClassesOf(report));
          },
          [](const auto&) {},
      },
      message);
}

void AdminService::onSynced(const engine::ClusterState& state) {
  publish("synced", "state synchronised with the group (" + std::to_string(state.decisions) + " decisions)", nullptr,
          {});
  followConfiguration(state);
}

void AdminService::followConfiguration(const engine::ClusterState& state) {
  if (lastConfig_ && state.generation != lastGeneration_) {
    const std::vector<config::DocumentChange> changes = config::compareConfigurations(*lastConfig_, *state.config);
    json list = json::array();
    for (const auto& change : changes) list.push_back({{"object", change.object()}, {"change", change.changeWord()}});
    publish("config",
            "configuration generation " + std::to_string(state.generation) +
                (changes.empty() ? "" : ": " + config::summarize(changes)),
            json{{"generation", state.generation}, {"changes", std::move(list)}}, {"config"});
  }
  lastConfig_ = state.config;
  lastGeneration_ = state.generation;
}

}  // namespace kvm_amf::daemon
