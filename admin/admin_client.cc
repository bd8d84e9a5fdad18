#include "kvm_amf/admin/admin_client.h"

#include <zmq.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string_view>

#include "kvm_amf/common/event_loop.h"
#include "zmq_support.h"

namespace kvm_amf::admin {

namespace {

using detail::ZmqContext;
using detail::ZmqSocket;

// Events kept for nextEvent() while the caller does something else; older ones go first.
constexpr std::size_t kMaxQueuedEvents = 10000;

ClientError failed(std::string message) { return ClientError{ClientErrorKind::kFailed, std::move(message)}; }

bool isTcp(const std::string& endpoint) { return endpoint.starts_with("tcp://"); }

// What a plain connect to the ipc endpoint's file says: nothing if something listens there.
std::optional<ClientError> probeIpc(const std::string& endpoint, const std::string& path) {
  int error = detail::probeUnixSocket(path);
  if (error == 0) return std::nullopt;
  std::string reason = std::strerror(error);
  if (error == EACCES || error == EPERM) {
    return ClientError{ClientErrorKind::kRefused, "permission denied: this user may not connect to " + endpoint +
                                                      " (the socket file admits root and the admin group only)"};
  }
  if (error == ENAMETOOLONG) return failed("bad endpoint " + endpoint + ": the path is too long for a UNIX socket");
  return ClientError{ClientErrorKind::kUnreachable, "no amfd at " + endpoint + ": " + reason};
}

}  // namespace

struct AdminClient::Impl {
  // A connected socket and what its monitor has told of the connection.
  struct Link {
    std::string endpoint;
    ZmqSocket socket;
    ZmqSocket monitor;  // PAIR receiving the socket's monitor events
    int fd = -1;
    int monitorFd = -1;
    bool reached = false;                // the transport connected at least once
    bool handshaked = false;             // the ZMTP handshake (and the server's ZAP check) passed at least once
    std::optional<ClientError> failure;  // the connection's state now, if it is a failure
  };

  enum class Waiting { kNothing, kReply, kEvent };

  Impl(std::string endpoint, ClientOptions options, std::unique_ptr<EventLoop> loop, ZmqContext context)
      : endpoint_(std::move(endpoint)),
        options_(std::move(options)),
        loop_(std::move(loop)),
        context_(std::move(context)) {}

  ~Impl() {
    for (Link* link : {dealer_.get(), sub_.get()}) {
      if (link == nullptr) continue;
      if (link->fd >= 0) loop_->unwatch(link->fd);
      if (link->monitorFd >= 0) loop_->unwatch(link->monitorFd);
    }
    dealer_.reset();
    sub_.reset();
  }

  // Makes a socket of `type` connected to `endpoint`, with its monitor, watched on the loop.
  Result<std::unique_ptr<Link>> open(int type, const std::string& endpoint, const std::string& monitorName) {
    auto link = std::make_unique<Link>();
    link->endpoint = endpoint;
    auto socket = ZmqSocket::create(context_, type);
    if (!socket.ok()) return socket.error();
    link->socket = std::move(socket).value();
    if (isTcp(endpoint)) {
      ZmqSocket& s = link->socket;
      if (Status set = s.setString(ZMQ_CURVE_SERVERKEY, options_.curveServerKey, "ZMQ_CURVE_SERVERKEY"); !set) {
        return set.error();
      }
      if (Status set = s.setString(ZMQ_CURVE_PUBLICKEY, options_.curvePublicKey, "ZMQ_CURVE_PUBLICKEY"); !set) {
        return set.error();
      }
      if (Status set = s.setString(ZMQ_CURVE_SECRETKEY, options_.curveSecretKey, "ZMQ_CURVE_SECRETKEY"); !set) {
        return set.error();
      }
    }
    if (type == ZMQ_SUB) {
      if (Status set = link->socket.setString(ZMQ_SUBSCRIBE, "", "ZMQ_SUBSCRIBE"); !set) return set.error();
    }
    // The monitor's PAIR is connected before the socket connects, so that no event is lost.
    std::string monitorUri = "inproc://kvm-amf-admin-monitor-" + monitorName;
    int events = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_CLOSED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
    if (zmq_socket_monitor(link->socket.get(), monitorUri.c_str(), events) != 0) {
      return Error{detail::zmqError("cannot monitor the socket")};
    }
    auto monitor = ZmqSocket::create(context_, ZMQ_PAIR);
    if (!monitor.ok()) return monitor.error();
    link->monitor = std::move(monitor).value();
    if (zmq_connect(link->monitor.get(), monitorUri.c_str()) != 0) {
      return Error{detail::zmqError("cannot monitor the socket")};
    }
    if (zmq_connect(link->socket.get(), endpoint.c_str()) != 0) {
      return Error{detail::zmqError("cannot connect to " + endpoint)};
    }

    Link* raw = link.get();
    auto fd = link->socket.fd();
    if (!fd.ok()) return fd.error();
    if (Status watched = loop_->watch(fd.value(), [this, raw] { onReadable(*raw); }); !watched) return watched.error();
    link->fd = fd.value();
    auto monitorFd = link->monitor.fd();
    if (!monitorFd.ok()) return monitorFd.error();
    if (Status watched = loop_->watch(monitorFd.value(), [this, raw] { onMonitor(*raw); }); !watched) {
      return watched.error();
    }
    link->monitorFd = monitorFd.value();
    return link;
  }

  // --- Loop callbacks: read, then stop the loop if what the caller waits for is there.

  void onReadable(Link& link) {
    drain(link);
    stopIfDone();
  }

  void onMonitor(Link& link) {
    drainMonitor(link);
    stopIfDone();
  }

  // Whether what the caller waits for is there, or a failure that ends the wait.
  bool done() const {
    if (waiting_ == Waiting::kReply) return reply_.has_value() || dealer_->failure.has_value();
    if (waiting_ == Waiting::kEvent) return !events_.empty() || sub_->failure.has_value();
    return false;
  }

  void stopIfDone() {
    if (done()) loop_->stop();
  }

  // Reads every message waiting on `link` (ZMQ_FD only signals a change: read until there is
  // nothing, or a message could stay unread with no further signal).
  void drain(Link& link) {
    while (link.socket.hasInput()) {
      auto message = detail::receiveMessage(link.socket.get(), 1, SIZE_MAX);
      if (!message) break;
      if (message->frameCount != 1) continue;  // not from an amfd: ignored
      if (&link == dealer_.get()) {
        proto::Reply reply;
        // Replies to earlier requests that timed out, and anything unreadable, are dropped.
        if (reply.ParseFromString(message->frames[0]) && waiting_ == Waiting::kReply && reply.id() == waitingId_) {
          reply_ = std::move(reply);
        }
      } else {
        proto::Event event;
        if (!event.ParseFromString(message->frames[0])) continue;
        if (events_.size() == kMaxQueuedEvents) events_.pop_front();
        events_.push_back(std::move(event));
      }
    }
  }

  void drainMonitor(Link& link) {
    while (link.monitor.hasInput()) {
      auto message = detail::receiveMessage(link.monitor.get(), 2, 4096);
      if (!message) break;
      // [event (uint16) + value (uint32), native byte order][endpoint]
      if (message->frames.empty() || message->frames[0].size() != 6) continue;
      std::uint16_t event = 0;
      std::uint32_t value = 0;
      std::memcpy(&event, message->frames[0].data(), sizeof event);
      std::memcpy(&value, message->frames[0].data() + sizeof event, sizeof value);
      onConnectionEvent(link, event, value);
    }
  }

  void onConnectionEvent(Link& link, std::uint16_t event, std::uint32_t value) {
    const std::string& at = link.endpoint;
    switch (event) {
      case ZMQ_EVENT_CONNECTED:
        link.reached = true;
        break;
      case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        link.reached = link.handshaked = true;
        link.failure.reset();
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        link.failure = ClientError{ClientErrorKind::kRefused,
                                   "refused by amfd at " + at + ": " +
                                       (isTcp(at) ? "this client's CURVE key is not allowed"
                                                  : "permission denied (not root or in the admin group)") +
                                       " (ZAP status " + std::to_string(value) + ")"};
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        link.failure = failed("the handshake with " + at + " failed: ZMTP protocol error " + std::to_string(value) +
                              " (is it an amfd endpoint, with matching CURVE keys?)");
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        // The server hung up in the handshake: over CURVE, what a server does that cannot read
        // the client's greeting, sealed for another server's key; over ipc://, an amfd that died
        // with the connection in its backlog, which the file tells if nothing listens any more.
        if (auto path = detail::ipcFilePath(at)) {
          if (auto gone = probeIpc(at, *path); gone && gone->kind == ClientErrorKind::kUnreachable) {
            link.failure = gone;
            break;
          }
        }
        link.failure = failed("the handshake with " + at + " failed (" + std::strerror(static_cast<int>(value)) + ")" +
                              (isTcp(at) ? ": is curveServerKey this server's public key?" : ""));
        break;
      case ZMQ_EVENT_CLOSED:
        // A connect attempt failed (libzmq tries again in a moment). A refusal already seen says
        // more; for ipc:// the file tells why, and whether anything listens again.
        if (link.failure && link.failure->kind == ClientErrorKind::kRefused) break;
        if (isTcp(at)) {
          link.failure = ClientError{ClientErrorKind::kUnreachable, "no amfd at " + at + ": cannot connect"};
        } else if (auto path = detail::ipcFilePath(at)) {
          link.failure = probeIpc(at, *path);
        }
        break;
      default:
        break;
    }
  }

  // Runs the loop until what is awaited is there, a failure shows, or `timeout` passes.
  void wait(Duration timeout) {
    if (!done()) loop_->runFor(timeout);
  }

  ClientResult<proto::Reply> call(proto::Request request, Duration timeout) {
    if (request.id() == 0) request.set_id(nextId_++);
    std::string payload;
    if (!request.SerializeToString(&payload)) return failed("cannot serialize the request");
    if (payload.size() > options_.maxRequestBytes) {
      return failed("the request is " + std::to_string(payload.size()) + " bytes, over the limit of " +
                    std::to_string(options_.maxRequestBytes));
    }
    Link& link = *dealer_;
    drainMonitor(link);
    drain(link);  // stale replies
    if (link.failure) return takeFailure(link);
    if (int error = detail::sendMessage(link.socket.get(), {payload}); error != 0) {
      return failed("cannot send to " + endpoint_ + ": " + zmq_strerror(error));
    }
    reply_.reset();
    waitingId_ = request.id();
    waiting_ = Waiting::kReply;
    drain(link);  // the send may have taken the socket's signal for a reply
    wait(timeout);
    if (!reply_) {
      // A last look: what arrived as the wait ended.
      drainMonitor(link);
      drain(link);
    }
    waiting_ = Waiting::kNothing;
    if (reply_) {
      proto::Reply reply = std::move(*reply_);
      reply_.reset();
      return reply;
    }
    if (link.failure) return takeFailure(link);
    std::string ms = std::to_string(timeout.count()) + " ms";
    if (!link.reached) {
      return ClientError{ClientErrorKind::kUnreachable, "no amfd at " + endpoint_ + ": no connection within " + ms};
    }
    if (!link.handshaked) {
      return ClientError{
          ClientErrorKind::kTimeout,
          "amfd at " + endpoint_ + " accepted the connection but did not complete the handshake within " + ms};
    }
    return ClientError{ClientErrorKind::kTimeout, "no reply from amfd at " + endpoint_ + " within " + ms};
  }

  // Returns the link's failure and forgets it: the next attempt finds out afresh.
  static ClientError takeFailure(Link& link) {
    ClientError error = *link.failure;
    link.failure.reset();
    return error;
  }

  ClientStatus subscribe(const std::string& eventsEndpoint) {
    if (sub_) return failed("already subscribed to " + sub_->endpoint);
    if (auto checked = checkEndpoint(eventsEndpoint, options_)) return *checked;
    auto link = open(ZMQ_SUB, eventsEndpoint, "sub");
    if (!link.ok()) return failed(link.error().message);
    sub_ = std::move(link).value();
    return std::monostate{};
  }

  ClientResult<std::optional<proto::Event>> nextEvent(Duration timeout) {
    if (!sub_) return failed("nextEvent() before subscribe()");
    drainMonitor(*sub_);
    drain(*sub_);
    waiting_ = Waiting::kEvent;
    wait(timeout);
    waiting_ = Waiting::kNothing;
    if (!events_.empty()) {
      proto::Event event = std::move(events_.front());
      events_.pop_front();
      return std::optional<proto::Event>(std::move(event));
    }
    if (sub_->failure) return takeFailure(*sub_);
    return std::optional<proto::Event>();
  }

  // Nothing if `endpoint` can be used with `options`: a supported scheme, the CURVE keys for
  // tcp://, and for ipc:// something listening on the file.
  static std::optional<ClientError> checkEndpoint(const std::string& endpoint, const ClientOptions& options) {
    if (isTcp(endpoint)) {
      for (const std::string* key : {&options.curveServerKey, &options.curvePublicKey, &options.curveSecretKey}) {
        if (!detail::isZ85Key(*key)) {
          return failed(endpoint +
                        " needs CURVE keys: curveServerKey, curvePublicKey and curveSecretKey, 40 Z85 characters each");
        }
      }
      return std::nullopt;
    }
    if (!endpoint.starts_with("ipc://")) {
      return failed("bad endpoint '" + endpoint + "': want ipc:///PATH or tcp://HOST:PORT");
    }
    auto path = detail::ipcFilePath(endpoint);
    if (!path) return failed("bad endpoint '" + endpoint + "': want ipc:///ABSOLUTE/PATH");
    return probeIpc(endpoint, *path);
  }

  std::string endpoint_;
  ClientOptions options_;
  std::unique_ptr<EventLoop> loop_;  // the waits' timer and the sockets' watches; outlives the sockets
  ZmqContext context_;               // terminated after the links' sockets
  std::unique_ptr<Link> dealer_;
  std::unique_ptr<Link> sub_;
  std::uint64_t nextId_ = 1;
  Waiting waiting_ = Waiting::kNothing;
  std::uint64_t waitingId_ = 0;
  std::optional<proto::Reply> reply_;
  std::deque<proto::Event> events_;
};

ClientResult<std::unique_ptr<AdminClient>> AdminClient::connect(const std::string& endpoint, ClientOptions options) {
  if (auto checked = Impl::checkEndpoint(endpoint, options)) return *checked;
  auto loop = EventLoop::create();
  if (!loop.ok()) return failed(loop.error().message);
  auto context = ZmqContext::create();
  if (!context.ok()) return failed(context.error().message);
  auto impl = std::make_unique<Impl>(endpoint, std::move(options), std::move(loop).value(), std::move(context).value());
  auto dealer = impl->open(ZMQ_DEALER, endpoint, "dealer");
  if (!dealer.ok()) return failed(dealer.error().message);
  impl->dealer_ = std::move(dealer).value();
  return std::unique_ptr<AdminClient>(new AdminClient(std::move(impl)));
}

AdminClient::AdminClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AdminClient::~AdminClient() = default;

ClientResult<proto::Reply> AdminClient::call(proto::Request request, Duration timeout) {
  return impl_->call(std::move(request), timeout);
}

ClientStatus AdminClient::subscribe(const std::string& eventsEndpoint) { return impl_->subscribe(eventsEndpoint); }

ClientResult<std::optional<proto::Event>> AdminClient::nextEvent(Duration timeout) { return impl_->nextEvent(timeout); }

const std::string& AdminClient::endpoint() const { return impl_->endpoint_; }

}  // namespace kvm_amf::admin
