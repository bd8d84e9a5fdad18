// The replies amfd's admin requests are answered with (docs/admin-api.md).
#pragma once

#include <string>
#include <utility>

#include "kvm_amf/admin/admin.pb.h"

namespace kvm_amf::daemon {

// A reply with its code, one line for a person and, if any, the output (`body`).
inline admin::proto::Reply replyWith(admin::proto::Reply::Code code, std::string message, std::string body = "") {
  admin::proto::Reply reply;
  reply.set_code(code);
  reply.set_message(std::move(message));
  reply.set_body(std::move(body));
  return reply;
}

}  // namespace kvm_amf::daemon
