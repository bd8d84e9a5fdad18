// The state store on this host's disk: one file, replaced atomically and synced on a worker
// thread (never on the event loop), framed so that a truncated or corrupt file is refused.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvm_amf/amf/engine/cluster_state.h"
#include "kvm_amf/amf/node/state_store.h"
#include "kvm_amf/common/worker.h"

namespace kvm_amf::node {

// The bytes a StateStore keeps for `state`, and back.
std::string encodeState(const engine::ClusterState& state);
Result<engine::ClusterState> decodeState(std::string_view bytes);

class DiskStateStore : public StateStore {
 public:
  // REQUIRES: loop outlives the store. The file's directory must exist.
  DiskStateStore(EventLoop& loop, std::string path);
  // Waits for the save in progress and writes the one pending, so no state given to save() is
  // lost; their durable callbacks no longer run.
  ~DiskStateStore() override;

  // Saves coalesce: while one write is in progress only the newest pending state is kept, and
  // every durable callback given meanwhile runs after that newest one is written.
  void save(std::string encoded, std::function<void(bool ok)> durable) override;

  // The state stored at `path`: nullopt when there is no file; an error naming the file and what
  // is wrong when it is truncated, corrupt or undecodable (the caller then takes the state from
  // its peers).
  static Result<std::optional<engine::ClusterState>> load(const std::string& path);

  const std::string& path() const { return path_; }
  std::uint64_t saves() const { return saves_; }        // writes completed
  std::uint64_t failures() const { return failures_; }  // writes that failed
  const std::string& lastError() const { return lastError_; }

 private:
  void startWrite();

  std::string path_;
  std::unique_ptr<Worker> worker_;
  bool writing_ = false;
  std::optional<std::string> pending_;
  std::vector<std::function<void(bool)>> pendingDone_;
  std::uint64_t saves_ = 0;
  std::uint64_t failures_ = 0;
  std::string lastError_;
};

}  // namespace kvm_amf::node
