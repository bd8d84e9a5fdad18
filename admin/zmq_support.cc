#include "zmq_support.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>

namespace kvm_amf::admin::detail {

std::string zmqError(const std::string& what) { return what + ": " + zmq_strerror(zmq_errno()); }

Result<ZmqContext> ZmqContext::create() {
  void* context = zmq_ctx_new();
  if (context == nullptr) return Error{zmqError("cannot create a ZeroMQ context")};
  return ZmqContext(context);
}

ZmqContext& ZmqContext::operator=(ZmqContext&& other) noexcept {
  if (this != &other) {
    if (context_ != nullptr) zmq_ctx_term(context_);
    context_ = other.context_;
    other.context_ = nullptr;
  }
  return *this;
}

ZmqContext::~ZmqContext() {
  if (context_ == nullptr) return;
  while (zmq_ctx_term(context_) != 0 && zmq_errno() == EINTR) {
  }
}

Result<ZmqSocket> ZmqSocket::create(const ZmqContext& context, int type) {
  void* socket = zmq_socket(context.get(), type);
  if (socket == nullptr) return Error{zmqError("cannot create a ZeroMQ socket")};
  ZmqSocket made(socket);
  if (Status set = made.setInt(ZMQ_LINGER, 0, "ZMQ_LINGER"); !set) return set.error();
  return made;
}

ZmqSocket& ZmqSocket::operator=(ZmqSocket&& other) noexcept {
  if (this != &other) {
    if (socket_ != nullptr) zmq_close(socket_);
    socket_ = other.socket_;
    other.socket_ = nullptr;
  }
  return *this;
}

ZmqSocket::~ZmqSocket() {
  if (socket_ != nullptr) zmq_close(socket_);
}

Status ZmqSocket::setInt(int option, int value, const char* name) {
  if (zmq_setsockopt(socket_, option, &value, sizeof value) != 0) return Error{zmqError(name)};
  return Status::success();
}

Status ZmqSocket::setInt64(int option, std::int64_t value, const char* name) {
  if (zmq_setsockopt(socket_, option, &value, sizeof value) != 0) return Error{zmqError(name)};
  return Status::success();
}

Status ZmqSocket::setString(int option, std::string_view value, const char* name) {
  if (zmq_setsockopt(socket_, option, value.data(), value.size()) != 0) return Error{zmqError(name)};
  return Status::success();
}

Result<int> ZmqSocket::fd() const {
  int fd = -1;
  size_t size = sizeof fd;
  if (zmq_getsockopt(socket_, ZMQ_FD, &fd, &size) != 0) return Error{zmqError("ZMQ_FD")};
  return fd;
}

bool ZmqSocket::hasInput() const {
  int events = 0;
  size_t size = sizeof events;
  while (zmq_getsockopt(socket_, ZMQ_EVENTS, &events, &size) != 0) {
    if (zmq_errno() != EINTR) return false;
  }
  return (events & ZMQ_POLLIN) != 0;
}

std::optional<ZmqMessage> receiveMessage(void* socket, std::size_t keepFrames, std::size_t maxFrameBytes) {
  ZmqMessage message;
  bool more = true;
  while (more) {
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    // The first frame may not be there yet (nothing waiting); the rest of a message arrives
    // with its first frame, so they never block.
    int flags = message.frameCount == 0 ? ZMQ_DONTWAIT : 0;
    int got;
    while ((got = zmq_msg_recv(&frame, socket, flags)) < 0 && zmq_errno() == EINTR) {
    }
    if (got < 0) {
      zmq_msg_close(&frame);
      return std::nullopt;
    }
    std::size_t size = zmq_msg_size(&frame);
    if (size > message.largestFrame) message.largestFrame = size;
    if (message.frames.size() < keepFrames) {
      if (size > maxFrameBytes) {
        message.oversized = true;
        message.frames.emplace_back();
      } else {
        message.frames.emplace_back(static_cast<const char*>(zmq_msg_data(&frame)), size);
      }
    }
    if (const char* address = zmq_msg_gets(&frame, "Peer-Address")) message.peerAddress = address;
    if (const char* user = zmq_msg_gets(&frame, "User-Id")) message.userId = user;
    ++message.frameCount;
    more = zmq_msg_more(&frame) != 0;
    zmq_msg_close(&frame);
  }
  return message;
}

int sendMessage(void* socket, const std::vector<std::string_view>& frames) {
  for (std::size_t i = 0; i < frames.size(); ++i) {
    int flags = ZMQ_DONTWAIT | (i + 1 < frames.size() ? ZMQ_SNDMORE : 0);
    int sent;
    while ((sent = zmq_send(socket, frames[i].data(), frames[i].size(), flags)) < 0 && zmq_errno() == EINTR) {
    }
    // Only the first frame can fail for want of room or of the peer: once it is accepted, the
    // rest of the message is too.
    if (sent < 0) return zmq_errno();
  }
  return 0;
}

std::optional<std::string> ipcFilePath(const std::string& endpoint) {
  static constexpr std::string_view kScheme = "ipc://";
  std::string path = endpoint.starts_with(kScheme) ? endpoint.substr(kScheme.size()) : endpoint;
  if (path.empty() || path.front() != '/') return std::nullopt;
  return path;
}

int probeUnixSocket(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) return ENAMETOOLONG;
  std::memcpy(address.sun_path, path.data(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  int result = 0;
  while (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    if (errno == EINTR) continue;
    result = errno;
    break;
  }
  close(fd);
  return result;
}

bool isZ85Key(const std::string& key) {
  if (key.size() != 40 || key.find('\0') != std::string::npos) return false;
  std::uint8_t binary[32];
  return zmq_z85_decode(binary, key.c_str()) != nullptr;
}

std::string decodeZ85Key(const std::string& key) {
  std::uint8_t binary[32] = {};
  zmq_z85_decode(binary, key.c_str());
  return std::string(reinterpret_cast<const char*>(binary), sizeof binary);
}

std::string encodeZ85Key(const std::string& binary) {
  if (binary.size() != 32) return "";
  char text[41] = {};
  zmq_z85_encode(text, reinterpret_cast<const std::uint8_t*>(binary.data()), binary.size());
  return text;
}

}  // namespace kvm_amf::admin::detail
