#include "kvm_amf/daemon/checkpoint_requests.h"

#include <nlohmann/json.hpp>

#include "replies.h"

namespace kvm_amf::daemon {
namespace {

using admin::proto::Reply;
using Json = nlohmann::ordered_json;

Reply failed(const ckpt::CheckpointError& error) { return replyWith(replyCodeOf(error.kind), error.message); }

Json optionalTime(const std::optional<TimePoint>& t) { return t ? Json(t->count()) : Json(nullptr); }

Json describe(const ckpt::CheckpointInfo& info) {
  return Json{{"name", info.name},
              {"sectionCount", info.sections},
              {"bytes", info.bytes},
              {"openers", info.openers},
              {"retentionMs", info.attributes.retention ? Json(info.attributes.retention->count()) : Json(nullptr)},
              {"maxSections", info.attributes.maxSections},
              {"maxSectionBytes", info.attributes.maxSectionBytes},
              {"maxBytes", info.attributes.maxBytes},
              {"createdMs", info.created.count()},
              {"removeAtMs", optionalTime(info.removeAt)}};
}

std::string dump(const Json& json) { return json.dump(-1, ' ', false, Json::error_handler_t::replace); }

ckpt::CheckpointAttributes attributesOf(const admin::proto::CheckpointAttributes& a) {
  ckpt::CheckpointAttributes attributes;
  if (a.has_retention_ms()) attributes.retention = Duration(static_cast<Duration::rep>(a.retention_ms()));
  if (a.max_sections() != 0) attributes.maxSections = a.max_sections();
  if (a.max_section_bytes() != 0) attributes.maxSectionBytes = a.max_section_bytes();
  if (a.max_bytes() != 0) attributes.maxBytes = a.max_bytes();
  return attributes;
}

// Calls `reply` with OK and `message` once the write is answered, or with the error.
ckpt::CheckpointService::WriteDone answerWith(std::function<void(Reply)> reply, std::string message) {
  return [reply = std::move(reply), message = std::move(message)](ckpt::CkptResult<std::uint64_t> outcome) {
    reply(outcome.ok() ? replyWith(Reply::OK, message) : failed(outcome.error()));
  };
}

}  // namespace

Reply::Code replyCodeOf(ckpt::ErrorKind kind) {
  switch (kind) {
    case ckpt::ErrorKind::kInvalid:
      return Reply::INVALID;
    case ckpt::ErrorKind::kNoQuorum:
    case ckpt::ErrorKind::kUnavailable:
      return Reply::UNAVAILABLE;
    case ckpt::ErrorKind::kNotFound:
    case ckpt::ErrorKind::kExists:
    case ckpt::ErrorKind::kLimit:
    case ckpt::ErrorKind::kNoSpace:
    case ckpt::ErrorKind::kIo:
    case ckpt::ErrorKind::kInterrupted:
      return Reply::REFUSED;
  }
  return Reply::REFUSED;
}

void CheckpointRequests::serve(const admin::proto::Checkpoint& request, std::function<void(Reply)> reply) {
  using Op = admin::proto::Checkpoint;
  const std::string& name = request.name();
  const std::string& section = request.section();
  switch (request.op()) {
    case Op::LIST: {
      ckpt::CkptResult<std::vector<ckpt::CheckpointInfo>> all = service_.list();
      if (!all.ok()) return reply(failed(all.error()));
      Json list = Json::array();
      for (const auto& info : all.value()) list.push_back(describe(info));
      const std::size_t n = all.value().size();
      return reply(replyWith(Reply::OK, std::to_string(n) + (n == 1 ? " checkpoint" : " checkpoints"),
                             dump(Json{{"node", node_}, {"checkpoints", std::move(list)}})));
    }
    case Op::INFO: {
      ckpt::CkptResult<ckpt::CheckpointInfo> info = service_.info(name);
      if (!info.ok()) return reply(failed(info.error()));
      ckpt::CkptResult<std::vector<ckpt::SectionInfo>> sections = service_.sections(name);
      if (!sections.ok()) return reply(failed(sections.error()));
      Json body = describe(info.value());
      Json list = Json::array();
      for (const auto& s : sections.value()) {
        list.push_back(Json{
            {"id", s.id}, {"bytes", s.bytes}, {"expiresMs", optionalTime(s.expiry)}, {"updatedMs", s.updated.count()}});
      }
      body["sections"] = std::move(list);
      return reply(replyWith(Reply::OK, "checkpoint " + name, dump(body)));
    }
    case Op::READ: {
      ckpt::CkptResult<std::string> data = service_.read(name, section);
      if (!data.ok()) return reply(failed(data.error()));
      Reply answer = replyWith(Reply::OK, std::to_string(data.value().size()) + " bytes",
                               dump(Json{{"name", name}, {"section", section}, {"bytes", data.value().size()}}));
      answer.set_data(std::move(data).value());
      return reply(std::move(answer));
    }
    case Op::CREATE:
      return service_.create(name, attributesOf(request.attributes()),
                             answerWith(std::move(reply), "created: " + name));
    case Op::WRITE: {
      const ckpt::WriteMode mode = request.async() ? ckpt::WriteMode::kAsync : ckpt::WriteMode::kSync;
      std::optional<TimePoint> expiry;
      if (request.expires_in_ms() != 0) {
        expiry = service_.now() + Duration(static_cast<Duration::rep>(request.expires_in_ms()));
      }
      const std::string message = "written: " + name + " " + section + " (" + std::to_string(request.data().size()) +
                                  " bytes, " +
                                  (request.async() ? "applied on " + node_ : std::string("on every host")) + ")";
      return service_.submit(ckpt::OverwriteSection{name, section, request.data(), true, std::nullopt, expiry}, mode,
                             answerWith(std::move(reply), message));
    }
    case Op::DELETE_SECTION:
      return service_.submit(ckpt::DeleteSection{name, section}, ckpt::WriteMode::kSync,
                             answerWith(std::move(reply), "deleted: " + name + " " + section));
    case Op::UNLINK:
      return service_.unlink(name, answerWith(std::move(reply), "unlinked: " + name));
    default:
      return reply(replyWith(Reply::INVALID, "unknown checkpoint op " + std::to_string(request.op())));
  }
}

}  // namespace kvm_amf::daemon
