// amf-hostile-peer ENDPOINT: sends amfd's admin endpoint the malformed frames of
// docs/admin-api.md ("Limits and malformed input") and prints one line per frame sent. Exits 0
// once they are out and the one frame amfd answers (a Request with no body: INVALID) was answered;
// 1 otherwise. For the real-lab test of amfd (tests/lab/amfd_test.py, case admin-api).
#include <zmq.h>

#include <cstdio>
#include <string>
#include <vector>

#include "kvm_amf/admin/admin.pb.h"

namespace {

int run(const char* endpoint) {
  void* context = zmq_ctx_new();
  void* socket = zmq_socket(context, ZMQ_DEALER);
  int zero = 0;
  zmq_setsockopt(socket, ZMQ_LINGER, &zero, sizeof zero);
  if (zmq_connect(socket, endpoint) != 0) {
    std::fprintf(stderr, "connect %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
    return 1;
  }
  auto send = [&](const char* what, const std::vector<std::string>& frames) {
    for (std::size_t i = 0; i < frames.size(); ++i) {
      zmq_send(socket, frames[i].data(), frames[i].size(), i + 1 < frames.size() ? ZMQ_SNDMORE : 0);
    }
    std::printf("sent %s\n", what);
  };
  send("a frame that is not a Request", {std::string("\x12\x7fshort", 7)});
  send("an empty frame", {""});
  send("three frames", {"a", "b", "c"});
  send("5 MiB of garbage (over the 4 MiB limit)", {std::string(5u << 20, 'x')});
  kvm_amf::admin::proto::Request noBody;
  noBody.set_id(7);
  send("a Request with no body", {noBody.SerializeAsString()});
  zmq_pollitem_t item{socket, 0, ZMQ_POLLIN, 0};
  int answered = 1;
  if (zmq_poll(&item, 1, 10000) > 0) {
    zmq_msg_t message;
    zmq_msg_init(&message);
    kvm_amf::admin::proto::Reply reply;
    if (zmq_msg_recv(&message, socket, 0) >= 0 &&
        reply.ParseFromArray(zmq_msg_data(&message), static_cast<int>(zmq_msg_size(&message))) && reply.id() == 7 &&
        reply.code() == kvm_amf::admin::proto::Reply::INVALID) {
      std::printf("request 7 answered INVALID: %s\n", reply.message().c_str());
      answered = 0;
    }
    zmq_msg_close(&message);
  }
  zmq_close(socket);
  zmq_ctx_term(context);
  return answered;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: amf-hostile-peer ENDPOINT\n");
    return 64;
  }
  return run(argv[1]);
}
