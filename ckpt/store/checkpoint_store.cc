#include "kvm_amf/ckpt/checkpoint_store.h"

#include <algorithm>

#include "kvm_amf/common/overloaded.h"

namespace kvm_amf::ckpt {
namespace {

CheckpointError error(ErrorKind kind, std::string message) { return CheckpointError{kind, std::move(message)}; }

std::string quoted(const std::string& text) { return "'" + text + "'"; }

std::string ofCheckpoint(const std::string& section, const std::string& name) {
  return "section " + quoted(section) + " of checkpoint " + quoted(name);
}

std::optional<CheckpointError> checkName(const std::string& name, const char* what) {
  if (isValidCheckpointName(name)) return std::nullopt;
  std::string shown = name.size() > 64 ? name.substr(0, 64) + "..." : name;
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return error(ErrorKind::kInvalid, std::string(what) + " " + quoted(shown) + " (" + std::to_string(name.size()) +
                                        " bytes) is not 1 to " + std::to_string(kMaxNameBytes) +
                                        " bytes of letters, digits and . _ / -");
}

std::optional<CheckpointError> checkAttributes(const CheckpointAttributes& a, const StoreLimits& limits) {
  if (a.retention && (*a.retention < Duration(0) || *a.retention > kMaxRetention)) {
    return error(ErrorKind::kInvalid, "retention " + std::to_string(a.retention->count()) +
                                          " ms is not between 0 and " + std::to_string(kMaxRetention.count()) +
                                          " ms (ten years)");
  }
  auto bound = [](std::uint64_t value, std::uint64_t max, const char* what) -> std::optional<CheckpointError> {
    if (value >= 1 && value <= max) return std::nullopt;
    return error(ErrorKind::kLimit, std::string(what) + " " + std::to_string(value) + " is not between 1 and " +
                                        std::to_string(max) + " (the store's limit)");
  };
  if (auto e = bound(a.maxSections, limits.maxSectionsPerCheckpoint, "maxSections")) return e;
  if (auto e = bound(a.maxSectionBytes, limits.maxSectionBytes, "maxSectionBytes")) return e;
  if (auto e = bound(a.maxBytes, limits.maxCheckpointBytes, "maxBytes")) return e;
  return std::nullopt;
}

std::optional<CheckpointError> checkData(const std::string& data, const StoreLimits& limits) {
  if (data.size() <= limits.maxSectionBytes) return std::nullopt;
  return error(ErrorKind::kLimit, "the data is " + std::to_string(data.size()) + " bytes; a section holds at most " +
                                      std::to_string(limits.maxSectionBytes) + " bytes (the store's maxSectionBytes)");
}

std::string describe(const CheckpointAttributes& a) {
  return "retention " + (a.retention ? std::to_string(a.retention->count()) + " ms" : std::string("none")) +
         ", maxSections " + std::to_string(a.maxSections) + ", maxSectionBytes " + std::to_string(a.maxSectionBytes) +
         ", maxBytes " + std::to_string(a.maxBytes);
}

}  // namespace

bool isValidCheckpointName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '/' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string_view errorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalid:
      return "invalid";
    case ErrorKind::kNotFound:
      return "not-found";
    case ErrorKind::kExists:
      return "exists";
    case ErrorKind::kLimit:
      return "limit";
    case ErrorKind::kNoQuorum:
      return "no-quorum";
    case ErrorKind::kUnavailable:
      return "unavailable";
    case ErrorKind::kNoSpace:
      return "no-space";
    case ErrorKind::kIo:
      return "io";
    case ErrorKind::kInterrupted:
      return "interrupted";
  }
  return "unknown";
}

std::string_view opName(const OpBody& body) {
  return std::visit(Overloaded{
                        [](const CreateCheckpoint&) { return std::string_view("create"); },
                        [](const OpenCheckpoint&) { return std::string_view("open"); },
                        [](const CloseCheckpoint&) { return std::string_view("close"); },
                        [](const UnlinkCheckpoint&) { return std::string_view("unlink"); },
                        [](const CreateSection&) { return std::string_view("create-section"); },
                        [](const WriteSection&) { return std::string_view("write"); },
                        [](const OverwriteSection&) { return std::string_view("overwrite"); },
                        [](const DeleteSection&) { return std::string_view("delete-section"); },
                        [](const SetSectionExpiry&) { return std::string_view("set-expiry"); },
                        [](const CloseOpeners&) { return std::string_view("close-openers"); },
                        [](const Expire&) { return std::string_view("expire"); },
                    },
                    body);
}

std::uint64_t opDataBytes(const OpBody& body) {
  return std::visit(Overloaded{
                        [](const CreateSection& b) -> std::uint64_t { return b.data.size(); },
                        [](const WriteSection& b) -> std::uint64_t { return b.data.size(); },
                        [](const OverwriteSection& b) -> std::uint64_t { return b.data.size(); },
                        [](const auto&) -> std::uint64_t { return 0; },
                    },
                    body);
}

std::optional<std::string> inconsistency(const StoreState& state) {
  for (const auto& [name, checkpoint] : state.checkpoints) {
    if (!isValidCheckpointName(name)) return "a checkpoint name is not valid";
    std::uint64_t bytes = 0;
    for (const auto& [id, section] : checkpoint.sections) {
      if (!isValidCheckpointName(id)) return "checkpoint " + name + " has a section id that is not valid";
      bytes += section.data.size();
    }
    if (bytes != checkpoint.bytes) return "checkpoint " + name + " does not hold the bytes it counts";
  }
  return std::nullopt;
}

CheckpointStore::CheckpointStore(StoreLimits limits) : limits_(limits) {}

CheckpointStore::CheckpointStore(StoreLimits limits, StoreState state) : limits_(limits), state_(std::move(state)) {
  for (const auto& [name, checkpoint] : state_.checkpoints) totalBytes_ += checkpoint.bytes;
}

bool CheckpointStore::includes(const Op& op) const {
  auto it = state_.origins.find(op.node);
  if (it == state_.origins.end()) return false;
  const OriginMark& mark = it->second;
  return op.session < mark.session || (op.session == mark.session && op.counter <= mark.counter);
}

std::optional<CheckpointError> CheckpointStore::check(const OpBody& body, const StoreLimits& limits) {
  return std::visit(Overloaded{
                        [&](const CreateCheckpoint& b) -> std::optional<CheckpointError> {
                          if (auto e = checkName(b.name, "checkpoint name")) return e;
                          return checkAttributes(b.attributes, limits);
                        },
                        [&](const OpenCheckpoint& b) -> std::optional<CheckpointError> {
                          if (auto e = checkName(b.name, "checkpoint name")) return e;
                          if (b.client.empty() || b.client.size() > kMaxNameBytes) {
                            return error(ErrorKind::kInvalid, "an opener's client id is 1 to 255 bytes");
                          }
                          return b.create ? checkAttributes(*b.create, limits) : std::nullopt;
                        },
                        [&](const CloseCheckpoint& b) -> std::optional<CheckpointError> {
                          return checkName(b.name, "checkpoint name");
                        },
                        [&](const UnlinkCheckpoint& b) -> std::optional<CheckpointError> {
                          return checkName(b.name, "checkpoint name");
                        },
                        [&](const CreateSection& b) -> std::optional<CheckpointError> {
                          if (auto e = checkName(b.name, "checkpoint name")) return e;
                          if (auto e = checkName(b.section, "section id")) return e;
                          return checkData(b.data, limits);
                        },
                        [&](const WriteSection& b) -> std::optional<CheckpointError> {
                          if (auto e = checkName(b.name, "checkpoint name")) return e;
                          if (auto e = checkName(b.section, "section id")) return e;
                          if (b.offset > limits.maxSectionBytes || b.offset + b.data.size() > limits.maxSectionBytes) {
                            return error(ErrorKind::kLimit, "a write ending at byte " +
                                                                std::to_string(b.offset + b.data.size()) +
                                                                " is beyond the store's maxSectionBytes " +
                                                                std::to_string(limits.maxSectionBytes));
                          }
                          return std::nullopt;
                        },
                        [&](const OverwriteSection& b) -> std::optional<CheckpointError> {
                          if (auto e = checkName(b.name, "checkpoint name")) return e;
                          if (auto e = checkName(b.section, "section id")) return e;
                          if (b.createCheckpoint) {
                            if (auto e = checkAttributes(*b.createCheckpoint, limits)) return e;
                          }
                          return checkData(b.data, limits);
                        },
                        [&](const DeleteSection& b) -> std::optional<CheckpointError> {
                          if (auto e = checkName(b.name, "checkpoint name")) return e;
                          return checkName(b.section, "section id");
                        },
                        [&](const SetSectionExpiry& b) -> std::optional<CheckpointError> {
                          if (auto e = checkName(b.name, "checkpoint name")) return e;
                          return checkName(b.section, "section id");
                        },
                        [](const CloseOpeners&) -> std::optional<CheckpointError> { return std::nullopt; },
                        [](const Expire&) -> std::optional<CheckpointError> { return std::nullopt; },
                    },
                    body);
}

// The rules of each op, against the store. Each first checks everything, then changes the state;
// a refusal returns before any change.
struct CheckpointStore::Apply {
  CheckpointStore& store;
  const Op& op;
  StoreState& s = store.state_;

  std::optional<CheckpointError> notFound(const std::string& name) const {
    return error(ErrorKind::kNotFound, "no checkpoint " + quoted(name));
  }

  // Whether a checkpoint with these attributes can be created (the name is free).
  std::optional<CheckpointError> canCreate(const std::string& name) const {
    if (s.checkpoints.size() >= store.limits_.maxCheckpoints) {
      return error(ErrorKind::kLimit, "cannot create checkpoint " + quoted(name) + ": the store holds " +
                                          std::to_string(s.checkpoints.size()) +
                                          " checkpoints, its limit (maxCheckpoints)");
    }
    return std::nullopt;
  }

  Checkpoint& create(const std::string& name, const CheckpointAttributes& attributes) {
    Checkpoint& checkpoint = s.checkpoints[name];
    checkpoint.attributes = attributes;
    checkpoint.created = s.streamTime;
    checkpoint.lastClosed = s.streamTime;
    return checkpoint;
  }

  // Whether `checkpoint` (nullptr: one about to be created with `attributes`) can take section
  // `id` holding `size` bytes in place of `oldSize` bytes; `added`: the section is new.
  std::optional<CheckpointError> canHold(const std::string& name, const Checkpoint* checkpoint,
                                         const CheckpointAttributes& attributes, const std::string& id,
                                         std::uint64_t oldSize, std::uint64_t size, bool added) const {
    const std::size_t sections = checkpoint ? checkpoint->sections.size() : 0;
    if (added && sections >= attributes.maxSections) {
      return error(ErrorKind::kLimit, "cannot create " + ofCheckpoint(id, name) + ": it holds " +
                                          std::to_string(sections) + " sections, its limit (maxSections " +
                                          std::to_string(attributes.maxSections) + ")");
    }
    if (size > attributes.maxSectionBytes) {
      return error(ErrorKind::kLimit, ofCheckpoint(id, name) + " would hold " + std::to_string(size) +
                                          " bytes; the checkpoint's limit is " +
                                          std::to_string(attributes.maxSectionBytes) + " (maxSectionBytes)");
    }
    const std::uint64_t bytes = (checkpoint ? checkpoint->bytes : 0) - oldSize + size;
    if (bytes > attributes.maxBytes) {
      return error(ErrorKind::kLimit, "checkpoint " + quoted(name) + " would hold " + std::to_string(bytes) +
                                          " bytes; its limit is " + std::to_string(attributes.maxBytes) +
                                          " (maxBytes)");
    }
    const std::uint64_t total = store.totalBytes_ - oldSize + size;
    if (size > oldSize && total > store.limits_.maxTotalBytes) {
      return error(ErrorKind::kLimit, "the store would hold " + std::to_string(total) + " bytes; its limit is " +
                                          std::to_string(store.limits_.maxTotalBytes) + " (maxTotalBytes)");
    }
    return std::nullopt;
  }

  void resize(Checkpoint& checkpoint, std::uint64_t oldSize, std::uint64_t size) {
    checkpoint.bytes = checkpoint.bytes - oldSize + size;
    store.totalBytes_ = store.totalBytes_ - oldSize + size;
  }

  void remove(std::map<std::string, Checkpoint>::iterator it) {
    store.totalBytes_ -= it->second.bytes;
    s.checkpoints.erase(it);
  }

  Opener opener(const std::string& client) const { return Opener{op.node, op.session, client}; }

  std::optional<CheckpointError> operator()(const CreateCheckpoint& b) {
    if (auto it = s.checkpoints.find(b.name); it != s.checkpoints.end()) {
      if (it->second.attributes == b.attributes) return std::nullopt;
      return error(ErrorKind::kExists, "checkpoint " + quoted(b.name) + " exists with other attributes (" +
                                           describe(it->second.attributes) + ")");
    }
    if (auto e = canCreate(b.name)) return e;
    create(b.name, b.attributes);
    return std::nullopt;
  }

  std::optional<CheckpointError> operator()(const OpenCheckpoint& b) {
    auto it = s.checkpoints.find(b.name);
    if (it == s.checkpoints.end()) {
      if (!b.create) return notFound(b.name);
      if (auto e = canCreate(b.name)) return e;
      create(b.name, *b.create).openers.insert(opener(b.client));
      return std::nullopt;
    }
    if (b.create && !(it->second.attributes == *b.create)) {
      return error(ErrorKind::kExists, "checkpoint " + quoted(b.name) + " exists with other attributes (" +
                                           describe(it->second.attributes) + ")");
    }
    it->second.openers.insert(opener(b.client));
    return std::nullopt;
  }

  std::optional<CheckpointError> operator()(const CloseCheckpoint& b) {
    auto it = s.checkpoints.find(b.name);
    if (it == s.checkpoints.end()) return notFound(b.name);
    if (it->second.openers.erase(opener(b.client)) == 0) {
      return error(ErrorKind::kNotFound,
                   "checkpoint " + quoted(b.name) + " is not open by client " + quoted(b.client) + " of this host");
    }
    if (it->second.openers.empty()) it->second.lastClosed = s.streamTime;
    return std::nullopt;
  }

  std::optional<CheckpointError> operator()(const UnlinkCheckpoint& b) {
    auto it = s.checkpoints.find(b.name);
    if (it == s.checkpoints.end()) return notFound(b.name);
    remove(it);
    return std::nullopt;
  }

  std::optional<CheckpointError> operator()(const CreateSection& b) {
    auto it = s.checkpoints.find(b.name);
    if (it == s.checkpoints.end()) return notFound(b.name);
    Checkpoint& checkpoint = it->second;
    if (checkpoint.sections.contains(b.section)) {
      return error(ErrorKind::kExists, ofCheckpoint(b.section, b.name) + " exists");
    }
    if (auto e = canHold(b.name, &checkpoint, checkpoint.attributes, b.section, 0, b.data.size(), true)) return e;
    checkpoint.sections[b.section] = Section{b.data, b.expiry, s.streamTime};
    resize(checkpoint, 0, b.data.size());
    return std::nullopt;
  }

  std::optional<CheckpointError> operator()(const WriteSection& b) {
    auto it = s.checkpoints.find(b.name);
    if (it == s.checkpoints.end()) return notFound(b.name);
    Checkpoint& checkpoint = it->second;
    auto section = checkpoint.sections.find(b.section);
    if (section == checkpoint.sections.end()) {
      return error(ErrorKind::kNotFound, "no " + ofCheckpoint(b.section, b.name));
    }
    const std::uint64_t oldSize = section->second.data.size();
    if (b.offset > oldSize) {
      return error(ErrorKind::kInvalid, "offset " + std::to_string(b.offset) + " is beyond the end of " +
                                            ofCheckpoint(b.section, b.name) + " (" + std::to_string(oldSize) +
                                            " bytes)");
    }
    const std::uint64_t size = std::max<std::uint64_t>(oldSize, b.offset + b.data.size());
    if (auto e = canHold(b.name, &checkpoint, checkpoint.attributes, b.section, oldSize, size, false)) return e;
    std::string& data = section->second.data;
    data.resize(size);
    data.replace(b.offset, b.data.size(), b.data);
    section->second.updated = s.streamTime;
    resize(checkpoint, oldSize, size);
    return std::nullopt;
  }

  std::optional<CheckpointError> operator()(const OverwriteSection& b) {
    auto it = s.checkpoints.find(b.name);
    Checkpoint* checkpoint = it == s.checkpoints.end() ? nullptr : &it->second;
    if (!checkpoint) {
      if (!b.createCheckpoint) return notFound(b.name);
      if (auto e = canCreate(b.name)) return e;
    }
    const CheckpointAttributes& attributes = checkpoint ? checkpoint->attributes : *b.createCheckpoint;
    const Section* section = nullptr;
    if (checkpoint) {
      auto found = checkpoint->sections.find(b.section);
      if (found != checkpoint->sections.end()) section = &found->second;
    }
    if (!section && !b.createSection) return error(ErrorKind::kNotFound, "no " + ofCheckpoint(b.section, b.name));
    const std::uint64_t oldSize = section ? section->data.size() : 0;
    if (auto e = canHold(b.name, checkpoint, attributes, b.section, oldSize, b.data.size(), section == nullptr)) {
      return e;
    }
    if (!checkpoint) checkpoint = &create(b.name, *b.createCheckpoint);
    Section& target = checkpoint->sections[b.section];
    target.data = b.data;
    target.updated = s.streamTime;
    if (b.expiry) target.expiry = b.expiry;
    resize(*checkpoint, oldSize, b.data.size());
    return std::nullopt;
  }

  std::optional<CheckpointError> operator()(const DeleteSection& b) {
    auto it = s.checkpoints.find(b.name);
    if (it == s.checkpoints.end()) return notFound(b.name);
    auto section = it->second.sections.find(b.section);
    if (section == it->second.sections.end()) {
      return error(ErrorKind::kNotFound, "no " + ofCheckpoint(b.section, b.name));
    }
    resize(it->second, section->second.data.size(), 0);
    it->second.sections.erase(section);
    return std::nullopt;
  }

  std::optional<CheckpointError> operator()(const SetSectionExpiry& b) {
    auto it = s.checkpoints.find(b.name);
    if (it == s.checkpoints.end()) return notFound(b.name);
    auto section = it->second.sections.find(b.section);
    if (section == it->second.sections.end()) {
      return error(ErrorKind::kNotFound, "no " + ofCheckpoint(b.section, b.name));
    }
    section->second.expiry = b.expiry;
    return std::nullopt;
  }

  std::optional<CheckpointError> operator()(const CloseOpeners& b) {
    for (auto& [name, checkpoint] : s.checkpoints) {
      if (checkpoint.openers.empty()) continue;
      std::erase_if(checkpoint.openers, [&](const Opener& o) {
        return std::find(b.sessions.begin(), b.sessions.end(), std::pair(o.node, o.session)) != b.sessions.end();
      });
      if (checkpoint.openers.empty()) checkpoint.lastClosed = s.streamTime;
    }
    return std::nullopt;
  }

  std::optional<CheckpointError> operator()(const Expire&) {
    for (auto it = s.checkpoints.begin(); it != s.checkpoints.end();) {
      Checkpoint& checkpoint = it->second;
      if (checkpoint.openers.empty() && checkpoint.attributes.retention &&
          checkpoint.lastClosed + *checkpoint.attributes.retention <= s.streamTime) {
        auto gone = it++;
        remove(gone);
        continue;
      }
      for (auto section = checkpoint.sections.begin(); section != checkpoint.sections.end();) {
        if (section->second.expiry && *section->second.expiry <= s.streamTime) {
          resize(checkpoint, section->second.data.size(), 0);
          section = checkpoint.sections.erase(section);
        } else {
          ++section;
        }
      }
      ++it;
    }
    return std::nullopt;
  }
};

CkptResult<std::uint64_t> CheckpointStore::apply(const Op& op) {
  state_.seq += 1;
  state_.origins[op.node] = OriginMark{op.session, op.counter};
  state_.streamTime = std::max(state_.streamTime, op.at);
  if (auto e = check(op.body, limits_)) return *e;
  Apply apply{*this, op};
  if (auto e = std::visit(apply, op.body)) return *e;
  return state_.seq;
}

CkptResult<std::string> CheckpointStore::read(const std::string& name, const std::string& section, std::uint64_t offset,
                                              std::uint64_t length) const {
  if (auto e = checkName(name, "checkpoint name")) return *e;
  if (auto e = checkName(section, "section id")) return *e;
  auto it = state_.checkpoints.find(name);
  if (it == state_.checkpoints.end()) return error(ErrorKind::kNotFound, "no checkpoint " + quoted(name));
  auto found = it->second.sections.find(section);
  if (found == it->second.sections.end()) return error(ErrorKind::kNotFound, "no " + ofCheckpoint(section, name));
  const std::string& data = found->second.data;
  if (offset >= data.size()) return std::string();
  return data.substr(offset, length == 0 ? std::string::npos : length);
}

namespace {

CheckpointInfo infoOf(const std::string& name, const Checkpoint& checkpoint) {
  CheckpointInfo info{name,
                      checkpoint.attributes,
                      checkpoint.created,
                      checkpoint.sections.size(),
                      checkpoint.bytes,
                      checkpoint.openers.size(),
                      std::nullopt};
  if (checkpoint.openers.empty() && checkpoint.attributes.retention) {
    info.removeAt = checkpoint.lastClosed + *checkpoint.attributes.retention;
  }
  return info;
}

}  // namespace

CkptResult<CheckpointInfo> CheckpointStore::info(const std::string& name) const {
  if (auto e = checkName(name, "checkpoint name")) return *e;
  auto it = state_.checkpoints.find(name);
  if (it == state_.checkpoints.end()) return error(ErrorKind::kNotFound, "no checkpoint " + quoted(name));
  return infoOf(name, it->second);
}

CkptResult<std::vector<SectionInfo>> CheckpointStore::sections(const std::string& name) const {
  if (auto e = checkName(name, "checkpoint name")) return *e;
  auto it = state_.checkpoints.find(name);
  if (it == state_.checkpoints.end()) return error(ErrorKind::kNotFound, "no checkpoint " + quoted(name));
  std::vector<SectionInfo> out;
  for (const auto& [id, section] : it->second.sections) {
    out.push_back(SectionInfo{id, section.data.size(), section.expiry, section.updated});
  }
  return out;
}

std::vector<CheckpointInfo> CheckpointStore::list() const {
  std::vector<CheckpointInfo> out;
  for (const auto& [name, checkpoint] : state_.checkpoints) out.push_back(infoOf(name, checkpoint));
  return out;
}

std::optional<TimePoint> CheckpointStore::nextDeadline() const {
  std::optional<TimePoint> next;
  auto consider = [&next](TimePoint t) {
    if (!next || t < *next) next = t;
  };
  for (const auto& [name, checkpoint] : state_.checkpoints) {
    if (checkpoint.openers.empty() && checkpoint.attributes.retention) {
      consider(checkpoint.lastClosed + *checkpoint.attributes.retention);
    }
    for (const auto& [id, section] : checkpoint.sections) {
      if (section.expiry) consider(*section.expiry);
    }
  }
  return next;
}

}  // namespace kvm_amf::ckpt
