// The admin API's client side, blocking, for amf-admin (docs/admin-api.md): requests to amfd's
// ZeroMQ endpoint and its event stream. Failures say which kind they are, so that amf-admin can
// tell "no amfd" (exit 69) from "timed out" (75) from "refused" (1).
#pragma once

#include <cassert>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "kvm_amf/admin/admin.pb.h"
#include "kvm_amf/common/result.h"
#include "kvm_amf/common/time.h"

namespace kvm_amf::admin {

// The local amfd's endpoints.
inline constexpr const char* kDefaultAdminEndpoint = "ipc:///run/kvm-amf/admin.sock";
inline constexpr const char* kDefaultEventsEndpoint = "ipc:///run/kvm-amf/events.sock";

enum class ClientErrorKind {
  kUnreachable,  // no amfd at the endpoint: no socket file, nobody listening, connection refused
  kTimeout,      // connected, but no answer in time
  kRefused,      // amfd (or the socket file's mode) does not let this client in
  kFailed,       // anything else: a bad endpoint or key, a failed handshake, a request too large
};

struct ClientError {
  ClientErrorKind kind = ClientErrorKind::kFailed;
  std::string message;  // e.g. "no amfd at ipc:///run/kvm-amf/admin.sock: No such file or directory"
};

// Either a value of T or a ClientError.
template <typename T>
using ClientResult = Result<T, ClientError>;

// Success (an empty value), or a ClientError.
using ClientStatus = ClientResult<std::monostate>;

struct ClientOptions {
  // For tcp:// endpoints only (all three required there), Z85 (40 characters each): the server's
  // public key, and this client's key pair, whose public key the server must allow.
  std::string curveServerKey;
  std::string curvePublicKey;
  std::string curveSecretKey;
  // A request larger than this fails at once (kFailed) instead of being sent: amfd drops larger
  // requests (its maxRequestBytes, the same by default) and the call would only time out.
  std::size_t maxRequestBytes = 4 * 1024 * 1024;
};

// One thread at a time; not for use on an event loop (it blocks).
class AdminClient {
 public:
  // Prepares requests to `endpoint` ("ipc://PATH" or "tcp://HOST:PORT"). For ipc:// it first
  // connects to the socket file once, so that a missing file or nobody listening fails here
  // (kUnreachable) and a file this user may not open fails kRefused. For tcp:// nobody listening
  // shows in call().
  static ClientResult<std::unique_ptr<AdminClient>> connect(const std::string& endpoint, ClientOptions options = {});
  ~AdminClient();
  AdminClient(const AdminClient&) = delete;
  AdminClient& operator=(const AdminClient&) = delete;

  // Sends `request` and waits up to `timeout` for its reply. An id of 0 is replaced with the
  // client's next id. Replies to earlier requests that timed out are dropped. If the connection
  // is lost after the request went out, its outcome is unknown and the call times out. Fails
  //   kUnreachable: the connection could not be made (or was lost and cannot be made again),
  //   kRefused:     the server refused the connection (CURVE key or credentials not allowed),
  //   kTimeout:     connected, but no reply within `timeout`.
  // A reply whose code is REFUSED (e.g. "permission denied: uid N ...") is a reply, not an error.
  ClientResult<proto::Reply> call(proto::Request request, Duration timeout);

  // Subscribes to every event on `eventsEndpoint` (same schemes and checks as connect(), the
  // CURVE keys of the options given there). Events published before the subscription reached
  // the server are not received.
  ClientStatus subscribe(const std::string& eventsEndpoint);
  // The next event, or nothing if none came within `timeout`. Fails kRefused if the server
  // refused the subscription, kUnreachable if it cannot be connected, kFailed before subscribe().
  ClientResult<std::optional<proto::Event>> nextEvent(Duration timeout);

  const std::string& endpoint() const;

 private:
  struct Impl;
  explicit AdminClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvm_amf::admin
