// The admin API's requests served by one amfd (docs/admin-api.md): commands go to the director
// through the replicated stream (any host's amfd answers), `status` is read from this host's
// copy of the replicated state; what the node manager applies is published on the event stream.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>
#include <vector>

#include "kvm_amf/admin/admin_server.h"
#include "kvm_amf/amf/node/node_manager.h"
#include "kvm_amf/daemon/checkpoint_requests.h"

namespace kvm_amf::daemon {

// An event as published on the event stream, with its classes for notifications
// (monitor/notifier.h: failure, recovery, fence, membership, config, admin, state).
struct PublishedEvent {
  std::string type;                  // view, synced, report, decision, config
  std::vector<std::string> classes;  // empty for `synced` (this amfd's own news)
  std::string text;
  nlohmann::json data;
};

// The notification classes of a report or a decision (every action's, once each, in the order
// of notifier.h's list).
std::vector<std::string> eventClassesOf(const engine::Report& report);
std::vector<std::string> eventClassesOf(const engine::Decision& decision);

class AdminService : public admin::AdminHandler, public node::NodeObserver {
 public:
  // `log`: where every published event is logged too, as "TYPE TEXT" (optional).
  explicit AdminService(std::string node, std::function<void(const std::string&)> log = {})
      : node_(std::move(node)), log_(std::move(log)) {}

  // REQUIRES: set before the first request or observer call; both outlive this service's use.
  void attach(node::NodeManager* manager, admin::AdminServer* server) {
    manager_ = manager;
    server_ = server;
  }
  // Checkpoint requests go to `checkpoints` (none: UNAVAILABLE). REQUIRES: it outlives its use.
  void attachCheckpoints(CheckpointRequests* checkpoints) { checkpoints_ = checkpoints; }

  // Query{what:"status"}: OK with the status document (engine/status.h) plus "node" and
  // "synced"; UNAVAILABLE while this amfd is not synchronised with a quorate group. Command:
  // parsed (INVALID if it does not parse), then submitted: OK or REFUSED with the director's
  // answer; UNAVAILABLE without quorum. Apply, Delete: carried out by node::applyConfigChange (OK
  // applied, unchanged or a dry run that would be accepted; INVALID with every error; REFUSED with
  // every problem; UNAVAILABLE). Diff: OK when the documents are what runs, DIFFERENT otherwise,
  // INVALID. The replies to these three carry the generation and a JSON body
  // (docs/admin-api.md): outcome, generation, changes (with each document's canonical YAML before
  // and after), errors, problems.
  void onRequest(const admin::proto::Request& request, const admin::Peer& peer,
                 std::function<void(admin::proto::Reply)> reply) override;

  // Called with every event after it is published (notifications). Loop thread.
  void setEventSink(std::function<void(const PublishedEvent&)> sink) { sink_ = std::move(sink); }

  void onView(const engine::View& view) override;
  void onApplied(const engine::Envelope& message, const engine::ClusterState& state) override;
  void onSynced(const engine::ClusterState& state) override;

 private:
  void publish(const std::string& type, const std::string& text, nlohmann::json data, std::vector<std::string> classes);
  void configure(const admin::proto::Request& request, std::function<void(admin::proto::Reply)> reply);
  void diff(const admin::proto::Diff& request, std::function<void(admin::proto::Reply)> reply);
  // Publishes a `config` event when the state's configuration generation is not the one last seen.
  void followConfiguration(const engine::ClusterState& state);

  std::string node_;
  std::function<void(const std::string&)> log_;
  std::function<void(const PublishedEvent&)> sink_;
  node::NodeManager* manager_ = nullptr;
  admin::AdminServer* server_ = nullptr;
  CheckpointRequests* checkpoints_ = nullptr;
  std::shared_ptr<const model::Configuration> lastConfig_;  // the configuration events were last about
  std::uint64_t lastGeneration_ = 0;
};

}  // namespace kvm_amf::daemon
