#include "kvm_amf/amf/node/disk_state_store.h"

#include <cstdio>
#include <memory>

#include "kvm_amf/amf/engine/codec.h"
#include "kvm_amf/common/durable_file.h"

namespace kvm_amf::node {
namespace {

constexpr std::string_view kMagic = "KVMAMFST";

}  // namespace

std::string encodeState(const engine::ClusterState& state) {
  return engine::encode(engine::Envelope(engine::StateSnapshot{0, state, 0}));
}

Result<engine::ClusterState> decodeState(std::string_view bytes) {
  Result<engine::Envelope> message = engine::decode(bytes);
  if (!message.ok()) return Error{"undecodable state: " + message.error().message};
  const auto* snapshot = std::get_if<engine::StateSnapshot>(&message.value());
  if (!snapshot) return Error{"undecodable state: not a state snapshot"};
  return snapshot->state;
}

DiskStateStore::DiskStateStore(EventLoop& loop, std::string path)
    : path_(std::move(path)), worker_(std::make_unique<Worker>(loop)) {}

DiskStateStore::~DiskStateStore() {
  // The worker finishes the write in progress; the pending one is written here, synchronously.
  worker_.reset();
  if (pending_) {
    Status status = writeDurableFile(path_, kMagic, *pending_);
    if (!status.ok()) std::fprintf(stderr, "kvm-amf: %s\n", status.error().message.c_str());
  }
}

void DiskStateStore::save(std::string encoded, std::function<void(bool ok)> durable) {
  pending_ = std::move(encoded);
  if (durable) pendingDone_.push_back(std::move(durable));
  if (!writing_) startWrite();
}

void DiskStateStore::startWrite() {
  writing_ = true;
  auto bytes = std::make_shared<std::string>(std::move(*pending_));
  pending_.reset();
  auto done = std::make_shared<std::vector<std::function<void(bool)>>>(std::move(pendingDone_));
  pendingDone_.clear();
  auto status = std::make_shared<Status>();
  worker_->run([path = path_, bytes, status] { *status = writeDurableFile(path, kMagic, *bytes); },
               [this, done, status] {
                 writing_ = false;
                 if (status->ok()) {
                   ++saves_;
                 } else {
                   ++failures_;
                   if (lastError_ != status->error().message) {
                     std::fprintf(stderr, "kvm-amf: cannot save the state: %s\n", status->error().message.c_str());
                   }
                   lastError_ = status->error().message;
                 }
                 for (auto& callback : *done) callback(status->ok());
                 if (pending_) startWrite();
               });
}

Result<std::optional<engine::ClusterState>> DiskStateStore::load(const std::string& path) {
  Result<std::optional<std::string>> bytes = readDurableFile(path, kMagic);
  if (!bytes.ok()) return bytes.error();
  if (!bytes.value()) return std::optional<engine::ClusterState>();
  Result<engine::ClusterState> state = decodeState(*bytes.value());
  if (!state.ok()) return Error{path + ": " + state.error().message};
  return std::optional<engine::ClusterState>(std::move(state.value()));
}

}  // namespace kvm_amf::node
