#include "kvm_amf/admin/admin_server.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <set>
#include <string_view>
#include <utility>

#include "permission.h"
#include "zmq_support.h"

namespace kvm_amf::admin {

namespace {

using detail::ZmqContext;
using detail::ZmqMessage;
using detail::ZmqSocket;

// ZAP (ZeroMQ RFC 27): libzmq asks the socket bound here whether to accept a connection.
constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
// The events' IPC socket sets this ZAP domain: without a domain libzmq does not consult ZAP for
// the NULL mechanism (plain IPC), and its subscribers must be checked.
constexpr const char* kEventsDomain = "kvm-amf-events";
constexpr const char* kTcpDomain = "kvm-amf-admin";
// Messages read per wake-up before the rest is left to a posted drain, so that a flood from one
// socket does not keep the loop from everything else.
constexpr int kDrainBatch = 64;
// Peers whose connection refusals were logged, remembered at most (then forgotten all at once).
constexpr std::size_t kMaxQuietRefusals = 1000;
// Subscribers send only subscriptions, a few bytes; anything larger ends their connection.
constexpr std::int64_t kMaxSubscriptionBytes = 64 * 1024;

std::string errnoText(int error) { return std::strerror(error); }

// Host and port of "tcp://HOST:PORT" with an explicit port below 65535 (the events use PORT + 1).
std::optional<std::pair<std::string, int>> parseTcpEndpoint(const std::string& endpoint) {
  static constexpr std::string_view kScheme = "tcp://";
  if (!endpoint.starts_with(kScheme)) return std::nullopt;
  std::size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon <= kScheme.size()) return std::nullopt;
  std::string host = endpoint.substr(kScheme.size(), colon - kScheme.size());
  std::string_view portText(endpoint.data() + colon + 1, endpoint.size() - colon - 1);
  int port = 0;
  auto [end, error] = std::from_chars(portText.data(), portText.data() + portText.size(), port);
  if (error != std::errc() || end != portText.data() + portText.size() || port < 1 || port > 65534) {
    return std::nullopt;
  }
  return std::pair(host, port);
}

// Creates the missing directories of `dir`, each 0755.
Status makeDirectories(const std::string& dir) {
  for (std::size_t slash = dir.find('/', 1);; slash = dir.find('/', slash + 1)) {
    std::string prefix = dir.substr(0, slash);
    if (!prefix.empty() && mkdir(prefix.c_str(), 0755) == 0) {
      chmod(prefix.c_str(), 0755);  // whatever the umask
    } else if (!prefix.empty() && errno != EEXIST) {
      return Error{"cannot create directory " + prefix + ": " + errnoText(errno)};
    }
    if (slash == std::string::npos) return Status::success();
  }
}

}  // namespace

std::string Peer::describe() const {
  if (transport == Transport::kTcp) {
    return "tcp " + (address.empty() ? std::string("?") : address) + " key " +
           (curveKey.empty() ? std::string("?") : curveKey);
  }
  if (!uid) return "ipc peer without credentials";
  return "uid " + std::to_string(*uid) + " gid " + std::to_string(gid.value_or(0)) + " pid " +
         std::to_string(pid.value_or(0));
}

struct AdminServer::Impl {
  enum class Which { kIpc, kTcp };

  // A bound socket, and whether a drain of it is already posted.
  struct Endpoint {
    ZmqSocket socket;
    std::string uri;
    int fd = -1;
    bool drainPosted = false;
    // IPC: the socket file as bound (libzmq 4.3 leaves it behind when it closes the socket).
    std::string file;
    dev_t device = 0;
    ino_t inode = 0;
  };

  Impl(EventLoop& loop, AdminServerOptions options, AdminHandler& handler, detail::Permission permission,
       ZmqContext context)
      : loop_(loop),
        options_(std::move(options)),
        handler_(handler),
        permission_(std::move(permission)),
        context_(std::move(context)) {}

  ~Impl() {
    for (Endpoint* endpoint : {ipc_.get(), tcp_.get(), zap_.get()}) {
      if (endpoint != nullptr && endpoint->fd >= 0) loop_.unwatch(endpoint->fd);
    }
    // The files go first, if they are still the ones bound (not replaced by anyone since).
    for (Endpoint* endpoint : {ipc_.get(), eventsIpc_.get()}) {
      struct stat now {};
      if (endpoint != nullptr && !endpoint->file.empty() && lstat(endpoint->file.c_str(), &now) == 0 &&
          now.st_dev == endpoint->device && now.st_ino == endpoint->inode) {
        unlink(endpoint->file.c_str());
      }
    }
    // Sockets next (ZMQ_LINGER 0: nothing is waited for), then the context (a member declared
    // before them) terminates at once.
    ipc_.reset();
    tcp_.reset();
    eventsIpc_.reset();
    eventsTcp_.reset();
    zap_.reset();
  }

  // --- Setting up.

  Status start() {
    auto ipcFile = detail::ipcFilePath(options_.ipcPath);
    if (!ipcFile) {
      return Error{"ipcPath must be ipc:///ABSOLUTE/PATH or an absolute path, not '" + options_.ipcPath + "'"};
    }
    std::optional<std::string> eventsFile;
    if (!options_.eventsPath.empty()) {
      eventsFile = detail::ipcFilePath(options_.eventsPath);
      if (!eventsFile) {
        return Error{"eventsPath must be ipc:///ABSOLUTE/PATH or an absolute path, not '" + options_.eventsPath + "'"};
      }
    }
    std::optional<std::pair<std::string, int>> tcp;
    if (!options_.tcpEndpoint.empty()) {
      tcp = parseTcpEndpoint(options_.tcpEndpoint);
      if (!tcp) {
        return Error{"tcpEndpoint must be tcp://ADDRESS:PORT with PORT 1-65534, not '" + options_.tcpEndpoint + "'"};
      }
      if (options_.curveSecretKey.empty() || options_.curveClientKeys.empty()) {
        return Error{"tcpEndpoint " + options_.tcpEndpoint +
                     " needs CURVE: curveSecretKey and at least one key in curveClientKeys (TCP is never served "
                     "without encryption and client keys)"};
      }
      if (!detail::isZ85Key(options_.curveSecretKey)) {
        return Error{"curveSecretKey is not a Z85 CURVE key (40 characters)"};
      }
      for (const std::string& key : options_.curveClientKeys) {
        if (!detail::isZ85Key(key)) {
          return Error{"curveClientKeys: '" + key + "' is not a Z85 CURVE key (40 characters)"};
        }
        clientKeys_.insert(detail::decodeZ85Key(key));
      }
    }
    if (options_.maxRequestBytes == 0) return Error{"maxRequestBytes must be positive"};

    if (tcp || eventsFile) {
      // Bound before any socket that consults it, so that no connection is ever let in unasked.
      auto zap = makeEndpoint(ZMQ_ROUTER);
      if (!zap.ok()) return zap.error();
      zap_ = std::move(zap).value();
      if (zmq_bind(zap_->socket.get(), kZapEndpoint) != 0) {
        return Error{detail::zmqError("cannot bind the ZAP handler")};
      }
      zap_->uri = kZapEndpoint;
    }

    auto ipc = makeRouter();
    if (!ipc.ok()) return ipc.error();
    ipc_ = std::move(ipc).value();
    if (Status bound = bindIpc(*ipc_, *ipcFile); !bound) return bound;

    if (tcp) {
      auto router = makeRouter();
      if (!router.ok()) return router.error();
      tcp_ = std::move(router).value();
      if (Status bound = bindTcp(*tcp_, options_.tcpEndpoint, kTcpDomain); !bound) return bound;
    }
    if (eventsFile) {
      auto pub = makeEndpoint(ZMQ_PUB);
      if (!pub.ok()) return pub.error();
      eventsIpc_ = std::move(pub).value();
      if (Status set = eventsIpc_->socket.setInt64(ZMQ_MAXMSGSIZE, kMaxSubscriptionBytes, "ZMQ_MAXMSGSIZE"); !set) {
        return set;
      }
      if (Status set = eventsIpc_->socket.setString(ZMQ_ZAP_DOMAIN, kEventsDomain, "ZMQ_ZAP_DOMAIN"); !set) return set;
      if (Status bound = bindIpc(*eventsIpc_, *eventsFile); !bound) return bound;
      if (tcp) {
        auto tcpPub = makeEndpoint(ZMQ_PUB);
        if (!tcpPub.ok()) return tcpPub.error();
        eventsTcp_ = std::move(tcpPub).value();
        if (Status set = eventsTcp_->socket.setInt64(ZMQ_MAXMSGSIZE, kMaxSubscriptionBytes, "ZMQ_MAXMSGSIZE"); !set) {
          return set;
        }
        std::string uri = "tcp://" + tcp->first + ":" + std::to_string(tcp->second + 1);
        if (Status bound = bindTcp(*eventsTcp_, uri, kTcpDomain); !bound) return bound;
      }
    }

    if (zap_) {
      if (Status watched = watch(*zap_, [this] { drainZap(); }); !watched) return watched;
    }
    if (Status watched = watch(*ipc_, [this] { drainRouter(Which::kIpc); }); !watched) return watched;
    if (tcp_) {
      if (Status watched = watch(*tcp_, [this] { drainRouter(Which::kTcp); }); !watched) return watched;
    }
    return Status::success();
  }

  Result<std::unique_ptr<Endpoint>> makeEndpoint(int type) {
    auto socket = ZmqSocket::create(context_, type);
    if (!socket.ok()) return socket.error();
    auto endpoint = std::make_unique<Endpoint>();
    endpoint->socket = std::move(socket).value();
    return endpoint;
  }

  Result<std::unique_ptr<Endpoint>> makeRouter() {
    auto made = makeEndpoint(ZMQ_ROUTER);
    if (!made.ok()) return made;
    ZmqSocket& socket = made.value()->socket;
    // Mandatory routing: a reply to a peer that has gone fails (and is counted) instead of
    // vanishing. A frame over twice the request limit makes libzmq drop the connection before
    // the frame is read: nothing that large is held in memory.
    if (Status set = socket.setInt(ZMQ_ROUTER_MANDATORY, 1, "ZMQ_ROUTER_MANDATORY"); !set) return set.error();
    auto limit = static_cast<std::int64_t>(options_.maxRequestBytes);
    if (Status set = socket.setInt64(ZMQ_MAXMSGSIZE, 2 * limit, "ZMQ_MAXMSGSIZE"); !set) return set.error();
    return made;
  }

  Status bindIpc(Endpoint& endpoint, const std::string& path) {
    std::string dir = path.substr(0, path.rfind('/'));
    if (!dir.empty()) {
      if (Status made = makeDirectories(dir); !made) return made;
    }
    // libzmq unlinks whatever is at the path before binding: make sure that is a stale socket.
    struct stat existing {};
    if (lstat(path.c_str(), &existing) == 0) {
      if (!S_ISSOCK(existing.st_mode)) return Error{"cannot serve ipc://" + path + ": it exists and is not a socket"};
      if (detail::probeUnixSocket(path) == 0) {
        return Error{"cannot serve ipc://" + path + ": another server is listening there"};
      }
    }
    std::string uri = "ipc://" + path;
    if (zmq_bind(endpoint.socket.get(), uri.c_str()) != 0) return Error{detail::zmqError("cannot bind " + uri)};
    endpoint.uri = uri;
    struct stat bound {};
    if (lstat(path.c_str(), &bound) == 0) {
      endpoint.file = path;
      endpoint.device = bound.st_dev;
      endpoint.inode = bound.st_ino;
    }
    // Until the mode is set the file has the umask's: the credential check (per request, and per
    // subscriber through ZAP) is what keeps others out, the mode is a second fence.
    std::optional<gid_t> gid = permission_.gid();
    if (gid && chown(path.c_str(), static_cast<uid_t>(-1), *gid) != 0) {
      return Error{"cannot give " + path + " to group " + options_.group + ": " + errnoText(errno)};
    }
    if (chmod(path.c_str(), gid ? 0660 : 0600) != 0) return Error{"cannot chmod " + path + ": " + errnoText(errno)};
    return Status::success();
  }

  Status bindTcp(Endpoint& endpoint, const std::string& uri, const char* domain) {
    ZmqSocket& socket = endpoint.socket;
    if (Status set = socket.setInt(ZMQ_CURVE_SERVER, 1, "ZMQ_CURVE_SERVER"); !set) return set;
    if (Status set = socket.setString(ZMQ_CURVE_SECRETKEY, options_.curveSecretKey, "ZMQ_CURVE_SECRETKEY"); !set) {
      return set;
    }
    if (Status set = socket.setString(ZMQ_ZAP_DOMAIN, domain, "ZMQ_ZAP_DOMAIN"); !set) return set;
    if (zmq_bind(socket.get(), uri.c_str()) != 0) return Error{detail::zmqError("cannot bind " + uri)};
    endpoint.uri = uri;
    return Status::success();
  }

  Status watch(Endpoint& endpoint, std::function<void()> onReady) {
    auto fd = endpoint.socket.fd();
    if (!fd.ok()) return fd.error();
    if (Status watched = loop_.watch(fd.value(), std::move(onReady)); !watched) return watched;
    endpoint.fd = fd.value();
    return Status::success();
  }

  // --- Requests.

  Endpoint* router(Which which) const { return which == Which::kIpc ? ipc_.get() : tcp_.get(); }

  // Reads what `which` holds, at most kDrainBatch messages, then leaves the rest to a posted
  // drain. Returns at once if a handler destroyed the server.
  void drainRouter(Which which) {
    std::weak_ptr<bool> alive = alive_;
    Endpoint& endpoint = *router(which);
    for (int n = 0; endpoint.socket.hasInput(); ++n) {
      if (n == kDrainBatch) return postDrain(which);
      // Two frames are expected; a third kept one shows the count is wrong without reading it.
      auto message = detail::receiveMessage(endpoint.socket.get(), 2, options_.maxRequestBytes);
      if (!message) break;
      onMessage(which, *message);
      if (alive.expired()) return;
    }
  }

  void postDrain(Which which) {
    Endpoint* endpoint = router(which);
    if (endpoint == nullptr || endpoint->drainPosted) return;
    endpoint->drainPosted = true;
    loop_.post([this, which, alive = std::weak_ptr<bool>(alive_)] {
      if (alive.expired()) return;
      router(which)->drainPosted = false;
      drainRouter(which);
    });
  }

  Peer peerOf(Which which, const ZmqMessage& message) const {
    Peer peer;
    if (which == Which::kIpc) {
      peer.transport = Peer::Transport::kIpc;
      if (message.peerAddress) detail::readIpcCredentials(*message.peerAddress, peer);
    } else {
      peer.transport = Peer::Transport::kTcp;
      peer.address = message.peerAddress.value_or("");
      peer.curveKey = message.userId.value_or("");  // the ZAP handler's answer: the client's key
    }
    return peer;
  }

  void onMessage(Which which, const ZmqMessage& message) {
    Peer peer = peerOf(which, message);
    // [routing id][request]: the client's DEALER sends the request as its only frame.
    if (message.frameCount != 2) {
      return malformed(peer, "expected one frame, got " + std::to_string(message.frameCount - 1));
    }
    const std::string& routing = message.frames[0];
    const std::string& payload = message.frames[1];
    if (which == Which::kIpc) {
      if (auto refusal = permission_.refusal(peer)) {
        return refuse(which, routing, peer, payload, *refusal, message.oversized);
      }
    } else if (peer.curveKey.empty()) {
      // Cannot happen: CURVE with ZAP sets the key. Refuse rather than serve an unknown peer.
      return refuse(which, routing, peer, payload, "permission denied: no CURVE key", message.oversized);
    }
    if (message.oversized) {
      return malformed(peer, "request of " + std::to_string(message.largestFrame) + " bytes is over the limit of " +
                                 std::to_string(options_.maxRequestBytes));
    }
    if (payload.empty()) return malformed(peer, "empty request");
    proto::Request request;
    if (!request.ParseFromString(payload)) {
      return malformed(peer, "not a Request (" + std::to_string(payload.size()) + " bytes)");
    }
    if (request.body_case() == proto::Request::BODY_NOT_SET) {
      malformed(peer, "request " + std::to_string(request.id()) + " has no body this server knows");
      proto::Reply reply;
      reply.set_id(request.id());
      reply.set_code(proto::Reply::INVALID);
      reply.set_message("the request has no body this server knows (a newer client?)");
      return send(which, routing, peer.describe(), reply);
    }
    ++stats_.requests;
    auto done = std::make_shared<bool>(false);
    handler_.onRequest(request, peer,
                       [this, alive = std::weak_ptr<bool>(alive_), done, which, routing, id = request.id(),
                        who = peer.describe()](proto::Reply reply) {
                         if (alive.expired() || *done) return;
                         *done = true;
                         reply.set_id(id);
                         send(which, routing, who, reply);
                         // The send may have taken the socket's signal for a request that came
                         // meanwhile: look again, from the loop (never inside `reply`).
                         postDrain(which);
                       });
  }

  void malformed(const Peer& peer, const std::string& why) {
    ++stats_.malformed;
    log("dropped a malformed request from " + peer.describe() + ": " + why);
  }

  void refuse(Which which, const std::string& routing, const Peer& peer, const std::string& payload,
              const std::string& why, bool oversized) {
    ++stats_.refused;
    log("refused a request from " + peer.describe() + ": " + why);
    proto::Request request;
    proto::Reply reply;
    if (!oversized && request.ParseFromString(payload)) reply.set_id(request.id());
    reply.set_code(proto::Reply::REFUSED);
    reply.set_message(why);
    send(which, routing, peer.describe(), reply);
  }

  void send(Which which, const std::string& routing, const std::string& who, const proto::Reply& reply) {
    Endpoint* endpoint = router(which);
    std::string payload;
    if (endpoint == nullptr || !reply.SerializeToString(&payload)) return;
    int error = detail::sendMessage(endpoint->socket.get(), {routing, payload});
    if (error == 0) {
      ++stats_.replies;
      return;
    }
    ++stats_.undelivered;
    std::string why = error == EHOSTUNREACH ? "the peer has gone"
                      : error == EAGAIN     ? "the peer's queue is full"
                                            : zmq_strerror(error);
    log("dropped the reply to request " + std::to_string(reply.id()) + " from " + who + ": " + why);
  }

  // --- ZAP: who may connect to the TCP sockets (CURVE key) and subscribe to the IPC events.

  void drainZap() {
    for (int n = 0; zap_->socket.hasInput(); ++n) {
      if (n == kDrainBatch) {
        // The rest later: ZAP requests hold handshakes, not the loop.
        loop_.post([this, alive = std::weak_ptr<bool>(alive_)] {
          if (!alive.expired()) drainZap();
        });
        return;
      }
      auto message = detail::receiveMessage(zap_->socket.get(), 9, 4096);
      if (!message) break;
      onZapRequest(*message);
    }
  }

  // [routing id][""][version][request id][domain][address][identity][mechanism][credentials...]
  void onZapRequest(const ZmqMessage& request) {
    const auto& f = request.frames;
    if (f.size() < 8 || !f[1].empty() || f[2] != "1.0") {
      log("ignored a malformed ZAP request");  // only libzmq itself talks to this socket
      return;
    }
    const std::string& domain = f[4];
    const std::string& address = f[5];
    const std::string& mechanism = f[7];
    std::string status = "400";
    std::string text;
    std::string user;
    if (mechanism == "CURVE" && f.size() >= 9 && domain == kTcpDomain) {
      std::string key = detail::encodeZ85Key(f[8]);
      if (clientKeys_.contains(f[8])) {
        status = "200";
        user = key;
      } else {
        text = "CURVE key not allowed";
        logRefusal("tcp " + address + " key " + key,
                   "refused a connection from tcp " + address + " key " + key + ": the key is not in curveClientKeys");
      }
    } else if (mechanism == "NULL" && domain == kEventsDomain) {
      Peer peer;
      detail::readIpcCredentials(address, peer);
      if (auto refusal = permission_.refusal(peer)) {
        text = *refusal;
        logRefusal(peer.uid ? "uid " + std::to_string(*peer.uid) : "unknown",
                   "refused a subscriber (" + peer.describe() + "): " + *refusal);
      } else {
        status = "200";
        user = peer.describe();
      }
    } else {
      text = "mechanism " + mechanism + " not accepted";
      logRefusal(address + " " + mechanism,
                 "refused a connection from " + address + ": mechanism " + mechanism + " in domain " + domain);
    }
    if (status != "200") ++stats_.refused;
    if (status == "200") text = "OK";
    int error = detail::sendMessage(zap_->socket.get(), {f[0], "", "1.0", f[3], status, text, user, ""});
    if (error != 0) log(std::string("cannot answer a ZAP request: ") + zmq_strerror(error));
  }

  // A refused client reconnects every 100 ms or so, each time refused again: only the first
  // refusal of each `who` is logged (all are counted).
  void logRefusal(const std::string& who, const std::string& line) {
    if (quietRefusals_.size() >= kMaxQuietRefusals) quietRefusals_.clear();
    if (!quietRefusals_.insert(who).second) return;
    log(line + " (further refusals of it are counted, not logged)");
  }

  // --- Events.

  void publish(const proto::Event& event) {
    if (!eventsIpc_) return;
    proto::Event out = event;
    out.set_seq(nextSeq_++);
    if (out.time_ms() == 0) out.set_time_ms(loop_.now().count());
    std::string payload;
    if (!out.SerializeToString(&payload)) return;
    ++stats_.events;
    // A PUB socket drops a message for a subscriber whose queue is full; it never blocks.
    for (Endpoint* endpoint : {eventsIpc_.get(), eventsTcp_.get()}) {
      if (endpoint != nullptr) detail::sendMessage(endpoint->socket.get(), {payload});
    }
  }

  void log(const std::string& line) {
    if (options_.logger) {
      options_.logger(line);
    } else {
      std::fprintf(stderr, "kvm-amf: admin: %s\n", line.c_str());
    }
  }

  EventLoop& loop_;
  AdminServerOptions options_;
  AdminHandler& handler_;
  detail::Permission permission_;
  std::set<std::string> clientKeys_;     // binary, 32 bytes each
  std::set<std::string> quietRefusals_;  // refused connections logged once: logRefusal()
  ZmqContext context_;                   // destroyed after the sockets below
  std::unique_ptr<Endpoint> zap_;
  std::unique_ptr<Endpoint> ipc_;
  std::unique_ptr<Endpoint> tcp_;
  std::unique_ptr<Endpoint> eventsIpc_;
  std::unique_ptr<Endpoint> eventsTcp_;
  AdminServerStats stats_;
  std::uint64_t nextSeq_ = 1;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // replies and posted drains hold it weakly
};

Result<std::unique_ptr<AdminServer>> AdminServer::create(EventLoop& loop, AdminServerOptions options,
                                                         AdminHandler& handler) {
  auto permission = detail::Permission::create(options.group);
  if (!permission.ok()) return permission.error();
  auto context = ZmqContext::create();
  if (!context.ok()) return context.error();
  auto impl = std::make_unique<Impl>(loop, std::move(options), handler, std::move(permission).value(),
                                     std::move(context).value());
  if (Status started = impl->start(); !started) return started.error();  // ~Impl closes what was bound
  return std::unique_ptr<AdminServer>(new AdminServer(std::move(impl)));
}

AdminServer::AdminServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AdminServer::~AdminServer() = default;

void AdminServer::publish(const proto::Event& event) { impl_->publish(event); }

AdminServerStats AdminServer::stats() const { return impl_->stats_; }

std::vector<std::string> AdminServer::endpoints() const {
  std::vector<std::string> out;
  for (const auto* endpoint :
       {impl_->ipc_.get(), impl_->tcp_.get(), impl_->eventsIpc_.get(), impl_->eventsTcp_.get()}) {
    if (endpoint != nullptr) out.push_back(endpoint->uri);
  }
  return out;
}

}  // namespace kvm_amf::admin
