#include "kvm_amf/daemon/admin_service.h"

#include <nlohmann/json.hpp>

#include "kvm_amf/amf/engine/status.h"
#include "kvm_amf/amf/model/admin_command.h"
#include "kvm_amf/common/overloaded.h"

namespace kvm_amf::daemon {

using admin::proto::Reply;
using nlohmann::json;

namespace {

Reply replyWith(Reply::Code code, std::string message, std::string body = "") {
  Reply reply;
  reply.set_code(code);
  reply.set_message(std::move(message));
  reply.set_body(std::move(body));
  return reply;
}

}  // namespace

void AdminService::onRequest(const admin::proto::Request& request, const admin::Peer& /*peer*/,
                             std::function<void(Reply)> reply) {
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
  if (request.has_apply() || request.has_diff() || request.has_delete_()) {
    return reply(replyWith(Reply::REFUSED, "configuration changes through the admin API are not supported yet"));
  }
  reply(replyWith(Reply::INVALID, "the request has no body"));
}

void AdminService::publish(const std::string& type, const std::string& text, const std::string& data) {
  if (server_ == nullptr) return;
  admin::proto::Event event;
  event.set_type(type);
  event.set_text(text);
  event.set_json(data);
  server_->publish(event);
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
          data.dump());
}

void AdminService::onApplied(const engine::Envelope& message, const engine::ClusterState& state) {
  std::visit(Overloaded{
                 [&](const engine::Decision& decision) {
                   json actions = json::array();
                   for (const auto& action : decision.actions) actions.push_back(engine::describe(action));
                   std::string text;
                   for (const auto& action : actions) text += (text.empty() ? "" : "; ") + action.get<std::string>();
                   publish(
                       "decision", text,
                       json{{"seq", state.decisions}, {"director", decision.director}, {"actions", actions}}.dump());
                 },
                 [&](const engine::Report& report) {
                   const std::string what = engine::describe(report);
                   publish("report", what, json{{"what", what}}.dump());
                 },
                 [](const auto&) {},
             },
             message);
}

void AdminService::onSynced(const engine::ClusterState& state) {
  publish("synced", "state synchronised with the group (" + std::to_string(state.decisions) + " decisions)");
}

}  // namespace kvm_amf::daemon
