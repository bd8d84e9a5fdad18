// ZeroMQ as the admin API's server and client use it: a context and sockets that close themselves,
// whole messages read without blocking, and the endpoint and CURVE key checks both sides share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvm_amf/common/result.h"

namespace kvm_amf::admin::detail {

// "what: <zmq_strerror(errno)>".
std::string zmqError(const std::string& what);

// A ZeroMQ context, terminated when destroyed. Termination waits for nothing as long as every
// socket was made by ZmqSocket (ZMQ_LINGER 0) and is closed first.
class ZmqContext {
 public:
  static Result<ZmqContext> create();
  ZmqContext(ZmqContext&& other) noexcept : context_(other.context_) { other.context_ = nullptr; }
  ZmqContext& operator=(ZmqContext&& other) noexcept;
  ZmqContext(const ZmqContext&) = delete;
  ZmqContext& operator=(const ZmqContext&) = delete;
  ~ZmqContext();
  void* get() const { return context_; }

 private:
  explicit ZmqContext(void* context) : context_(context) {}
  void* context_;
};

// A ZeroMQ socket with ZMQ_LINGER 0 (closing it drops what is unsent), closed when destroyed.
// Default-constructed: no socket, until one is moved in.
class ZmqSocket {
 public:
  static Result<ZmqSocket> create(const ZmqContext& context, int type);
  ZmqSocket() = default;
  ZmqSocket(ZmqSocket&& other) noexcept : socket_(other.socket_) { other.socket_ = nullptr; }
  ZmqSocket& operator=(ZmqSocket&& other) noexcept;
  ZmqSocket(const ZmqSocket&) = delete;
  ZmqSocket& operator=(const ZmqSocket&) = delete;
  ~ZmqSocket();
  void* get() const { return socket_; }

  Status setInt(int option, int value, const char* name);
  Status setInt64(int option, std::int64_t value, const char* name);
  Status setString(int option, std::string_view value, const char* name);
  // The descriptor to watch (ZMQ_FD). Edge-triggered in effect: it signals that the socket's state
  // may have changed, so each wake-up must read until hasInput() is false, and any send may use up
  // a signal, after which hasInput() must be checked again.
  Result<int> fd() const;
  // ZMQ_EVENTS has ZMQ_POLLIN: a message can be read without blocking.
  bool hasInput() const;

 private:
  explicit ZmqSocket(void* socket) : socket_(socket) {}
  void* socket_ = nullptr;
};

// One multipart message, read whole.
struct ZmqMessage {
  std::size_t frameCount = 0;
  std::vector<std::string> frames;  // the first frames (as many as asked for), each at most maxFrameBytes
  bool oversized = false;           // a frame among the kept ones was longer than maxFrameBytes (left empty)
  std::size_t largestFrame = 0;
  // Connection metadata (zmq_msg_gets) from the last frame that had it. Only data frames are
  // sure to carry it: a ROUTER's routing id frame sometimes has none.
  std::optional<std::string> peerAddress;  // "Peer-Address"
  std::optional<std::string> userId;       // "User-Id", as the ZAP handler set it
};

// Reads one message without blocking, every frame of it (frames past `keepFrames` are counted,
// not kept). Nothing if none is waiting or the read failed.
std::optional<ZmqMessage> receiveMessage(void* socket, std::size_t keepFrames, std::size_t maxFrameBytes);

// Sends `frames` as one message without blocking. Returns 0, or the errno of the first frame's
// failure (EAGAIN: the peer's queue is full; EHOSTUNREACH: a ROUTER_MANDATORY peer is gone).
int sendMessage(void* socket, const std::vector<std::string_view>& frames);

// The file of "ipc:///abs/path" or "/abs/path"; nothing if it is neither.
std::optional<std::string> ipcFilePath(const std::string& endpoint);
// Connects to the UNIX stream socket at `path` once and closes the connection: 0 if something
// listens there, else the errno (ENOENT, ECONNREFUSED, EACCES, ENAMETOOLONG...).
int probeUnixSocket(const std::string& path);

// A CURVE key in Z85: 40 characters that decode to 32 bytes.
bool isZ85Key(const std::string& key);
// The 32-byte binary key of a Z85 key; REQUIRES isZ85Key(key).
std::string decodeZ85Key(const std::string& key);
// The Z85 text of a 32-byte binary key.
std::string encodeZ85Key(const std::string& binary);

}  // namespace kvm_amf::admin::detail
