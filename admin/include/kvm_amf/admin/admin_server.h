// The admin API's server side: amfd's endpoints for amf-admin, on amfd's event loop
// (docs/admin-api.md). ZeroMQ ROUTER sockets receive requests (one frame, a serialized
// proto::Request) and hand them to the AdminHandler; its replies go back to the peer that asked.
// PUB sockets carry the events amfd publishes.
//
// Endpoints:
// - ipcPath (required): a UNIX socket file, mode 0660 owned by the server's user (root) and
//   `group` (0600 without a group). Every request's sender is checked by its kernel credentials:
//   only uid 0, the server's own uid, and members of `group` are served; others get a REFUSED
//   reply naming their uid.
// - tcpEndpoint (optional): only with CURVE; the client's public key must be in curveClientKeys.
// - eventsPath (optional): the events' PUB socket file, same permissions, checked when a
//   subscriber connects; with TCP also a CURVE PUB on the TCP port + 1.
//
// Malformed input (a wrong frame count, an empty, oversized or unparseable request) is counted,
// logged with the sender and dropped; nothing a peer sends harms the server.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvm_amf/admin/admin.pb.h"
#include "kvm_amf/common/event_loop.h"
#include "kvm_amf/common/result.h"

namespace kvm_amf::admin {

struct AdminServerOptions {
  // The requests' socket: "ipc:///run/kvm-amf/admin.sock" or the absolute path alone. Its
  // directory is created (mode 0755) if missing. Refused if another server listens there; a
  // stale file left by a server that died is replaced.
  std::string ipcPath;
  // The group whose members may use the API besides root (and the server's own user); empty:
  // root only. Must exist.
  std::string group;
  // The events' socket ("ipc://..." or an absolute path); empty: no events endpoint.
  std::string eventsPath;
  // "tcp://ADDR:PORT" (ADDR an IP address or *, PORT explicit); empty: no TCP. Needs
  // curveSecretKey and at least one client key; with eventsPath, events go out on PORT + 1 too.
  std::string tcpEndpoint;
  std::string curveSecretKey;                // Z85 (40 characters): the server's secret key
  std::vector<std::string> curveClientKeys;  // Z85 public keys of the clients allowed over TCP
  // A request frame larger than this is dropped as malformed. ZeroMQ cuts the connection of a
  // peer sending a frame over twice this (ZMQ_MAXMSGSIZE) before it is read at all.
  std::size_t maxRequestBytes = 4 * 1024 * 1024;
  // Receives one line per notable event (refused or malformed input, undeliverable reply).
  // Empty: lines go to stderr. Must not call into the server.
  std::function<void(const std::string& line)> logger;
};

// Who sent a request, as the transport knows it.
struct Peer {
  enum class Transport { kIpc, kTcp };
  Transport transport = Transport::kIpc;
  // IPC: the sender's credentials when it connected (SO_PEERCRED); empty if the kernel gave none.
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;  // its primary group
  std::optional<pid_t> pid;
  // TCP: the client's CURVE public key (Z85) and its IP address.
  std::string curveKey;
  std::string address;

  // "uid 0 gid 0 pid 123" or "tcp 10.0.0.5 key Z85...": for log lines and messages.
  std::string describe() const;
};

// What the server has seen since it started.
struct AdminServerStats {
  std::uint64_t requests = 0;     // handed to the handler
  std::uint64_t replies = 0;      // sent (the handler's and the server's own REFUSED/INVALID)
  std::uint64_t malformed = 0;    // dropped: frame count, empty, oversized, unparseable, no body
  std::uint64_t refused = 0;      // senders without permission: requests and connections
  std::uint64_t undelivered = 0;  // replies dropped because their peer had gone (or was full)
  std::uint64_t events = 0;       // published
};

// amfd's side. Called on the loop thread, one request at a time.
class AdminHandler {
 public:
  virtual ~AdminHandler() = default;
  // Handles `request`. `reply` sends the answer; the server sets its id to the request's. Call
  // it once, on the loop thread, now or later (a second call, or one after the server is gone,
  // does nothing); never calling it is allowed (the client times out). onRequest is never called
  // from inside `reply`. A request without a body never reaches the handler (INVALID).
  virtual void onRequest(const proto::Request& request, const Peer& peer, std::function<void(proto::Reply)> reply) = 0;
};

// Loop thread only: create, call and destroy it on the thread that runs `loop`. `loop` and
// `handler` must outlive it.
class AdminServer {
 public:
  // Binds every configured endpoint. Fails, binding nothing, on a bad option (TCP without CURVE
  // keys, a malformed key or endpoint, an unknown group), an endpoint in use, or a file that
  // cannot be given its owner and mode.
  static Result<std::unique_ptr<AdminServer>> create(EventLoop& loop, AdminServerOptions options,
                                                     AdminHandler& handler);
  // Stops watching, closes every socket at once (outstanding replies are dropped; a `reply`
  // called later does nothing) and removes the socket files.
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Sends `event` to every subscriber; fills in seq, and time_ms with the loop's time when 0.
  // Subscribers that cannot keep up lose events (their seq shows the gap). Does nothing without
  // an events endpoint.
  void publish(const proto::Event& event);

  AdminServerStats stats() const;
  // The endpoints as bound, e.g. "ipc:///run/kvm-amf/admin.sock", "tcp://0.0.0.0:7780".
  std::vector<std::string> endpoints() const;

 private:
  struct Impl;
  explicit AdminServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvm_amf::admin
