#include "kvm_amf/vmm/socket_guest_channel.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <variant>
#include <vector>

#include "kvm_amf/common/overloaded.h"
#include "kvm_amf/vmm/guest_protocol.h"

namespace kvm_amf::vmm {

namespace {

// A write the socket did not take is tried again after this long (the loop reports readability
// only; lines are small, so the socket's buffer is rarely full).
constexpr Duration kWriteRetry{10};
// More output than this waiting for the socket: the other end is not reading; reconnect.
constexpr std::size_t kMaxPendingOutput = 256 * 1024;
constexpr std::size_t kReadChunk = 8192;
// The interval told to an agent whose VM is not watched.
constexpr std::uint32_t kUnwatchedIntervalMs = 1000;

std::string errnoText(int error) { return std::strerror(error); }

GuestHaState guestState(model::HaState ha) {
  switch (ha) {
    case model::HaState::kActive:
      return GuestHaState::kActive;
    case model::HaState::kStandby:
      return GuestHaState::kStandby;
    case model::HaState::kQuiescing:
    case model::HaState::kQuiesced:
      return GuestHaState::kQuiesced;
  }
  return GuestHaState::kQuiesced;
}

// Text from the guest, made safe for a log line: control bytes become '?'.
std::string printable(std::string text) {
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return text;
}

std::string ms(Duration d) { return std::to_string(d.count()) + " ms"; }

}  // namespace

struct SocketGuestChannel::Impl {
  // An ASSIGN or REMOVE not yet acknowledged.
  struct Request {
    std::string line;  // the message, with its '\n'
    std::string what;  // for messages: "ASSIGN si active"
    Done done;
    bool written = false;  // at least once, on some connection
    TimerId ackTimer = 0;  // runs from the first write
  };

  struct Vm {
    std::uint64_t key = 0;                          // tells this entry from a later one of the same name
    std::optional<model::HeartbeatSpec> heartbeat;  // present: watched
    GuestStats stats;
    int fd = -1;
    std::uint64_t connection = 0;  // tells this connection from a later one
    bool helloSeen = false;        // on this connection
    std::uint32_t version = kGuestProtocolVersion;
    std::uint32_t welcomedIntervalMs = 0;  // told in the last WELCOME on this connection
    GuestLineReader reader;
    std::uint64_t droppedCounted = 0;  // reader.droppedLines() already in stats
    std::string output;                // not yet taken by the socket
    std::string lastConnectError;      // logged once until it changes
    TimerId connectTimer = 0;
    TimerId writeTimer = 0;
    TimerId hangTimer = 0;
    bool firstHeartbeat = true;                 // none since watch(): the grace applies
    bool hung = false;                          // reported, no heartbeat since
    bool unhealthy = false;                     // reported, no `HB ok` since
    std::map<std::uint64_t, Request> requests;  // by id: the order they were made

    bool wanted() const { return heartbeat.has_value() || !requests.empty(); }
  };

  Impl(EventLoop& loop, SocketGuestChannelOptions options) : loop_(loop), options_(std::move(options)) {}

  ~Impl() {
    for (auto& [name, vm] : vms_) teardown(vm);
  }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // --- The public calls.

  void watch(const std::string& name, const model::HeartbeatSpec& heartbeat) {
    Vm& vm = entry(name);
    vm.heartbeat = heartbeat;
    vm.hung = false;
    vm.unhealthy = false;
    vm.firstHeartbeat = true;
    armHang(name, vm, options_.firstHeartbeatTimeout);
    log(name, "watching: heartbeat every " + ms(heartbeat.interval) + ", hung after " + ms(heartbeat.timeout) +
                  " without one (" + ms(options_.firstHeartbeatTimeout) + " for the first)");
    if (vm.fd >= 0 && vm.helloSeen && vm.welcomedIntervalMs != intervalMs(vm)) sendWelcome(name, vm);
    ensureConnecting(name, vm);
  }

  void unwatch(const std::string& name) {
    auto it = vms_.find(name);
    if (it == vms_.end()) return;
    std::vector<Done> failed;
    for (auto& [id, request] : it->second.requests) failed.push_back(std::move(request.done));
    log(name,
        "unwatched" + (failed.empty() ? std::string()
                                      : ", failing " + std::to_string(failed.size()) + " outstanding request(s)"));
    teardown(it->second);
    vms_.erase(it);
    for (Done& done : failed) failLater(std::move(done), "VM stopped");
  }

  void assign(const std::string& name, const std::string& si, model::HaState ha,
              const std::map<std::string, std::string>& attributes, Done done) {
    if (si.empty()) return failLater(std::move(done), "cannot assign to the guest of " + name + ": no SI name");
    for (const auto& [key, value] : attributes) {
      if (key.empty()) {
        return failLater(std::move(done),
                         "cannot assign " + si + " to the guest of " + name + ": empty attribute name");
      }
    }
    std::uint64_t id = nextRequest_++;
    GuestHaState state = guestState(ha);
    request(name, id, formatHostMessage(AssignMessage{id, si, state, attributes}),
            "ASSIGN " + si + " " + std::string(guestHaStateName(state)), std::move(done));
  }

  void unassign(const std::string& name, const std::string& si, Done done) {
    if (si.empty()) return failLater(std::move(done), "cannot remove from the guest of " + name + ": no SI name");
    std::uint64_t id = nextRequest_++;
    request(name, id, formatHostMessage(RemoveMessage{id, si}), "REMOVE " + si, std::move(done));
  }

  std::optional<GuestStats> stats(const std::string& name) const {
    auto it = vms_.find(name);
    if (it == vms_.end()) return std::nullopt;
    return it->second.stats;
  }

  GuestListener* listener_ = nullptr;
  GuestObserver* observer_ = nullptr;
  GuestCheckpoints* checkpoints_ = nullptr;

 private:
  // --- Entries.

  Vm& entry(const std::string& name) {
    auto [it, added] = vms_.try_emplace(name);
    if (added) it->second.key = nextKey_++;
    return it->second;
  }

  Vm* find(const std::string& name, std::uint64_t key) {
    auto it = vms_.find(name);
    return it != vms_.end() && it->second.key == key ? &it->second : nullptr;
  }

  // Releases everything the entry holds on the loop; calls nothing.
  void teardown(Vm& vm) {
    closeSocket(vm);
    cancelTimer(vm.connectTimer);
    cancelTimer(vm.hangTimer);
    for (auto& [id, request] : vm.requests) cancelTimer(request.ackTimer);
  }

  void cancelTimer(TimerId& timer) {
    if (timer != 0) loop_.cancel(timer);
    timer = 0;
  }

  // --- Calls out.

  void log(const std::string& name, const std::string& line) {
    if (options_.logger) options_.logger(name, line);
  }

  // Runs `call` (a call into the listener, the observer or a `done`); returns whether the channel
  // still exists after it. When it does not, the caller must return at once, touching nothing.
  template <typename Call>
  bool survives(Call&& call) {
    std::weak_ptr<bool> alive = alive_;
    std::forward<Call>(call)();
    return !alive.expired();
  }

  // Fails `done` from the loop, never inside the call that made the request. Not called if the
  // channel is destroyed first.
  void failLater(Done done, std::string message) {
    loop_.post([alive = std::weak_ptr<bool>(alive_), done = std::move(done), message = std::move(message)] {
      if (!alive.expired()) done(Error{message});
    });
  }

  // --- The connection.

  std::string socketPath(const std::string& name) const { return options_.socketDir + "/" + name + ".agent"; }

  // Connects now unless connected or a retry is already scheduled.
  void ensureConnecting(const std::string& name, Vm& vm) {
    if (vm.fd < 0 && vm.connectTimer == 0) connect(name, vm);
  }

  void connect(const std::string& name, Vm& vm) {
    std::string path = socketPath(name);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof address.sun_path) return connectFailed(name, vm, "socket path too long: " + path);
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return connectFailed(name, vm, "socket: " + errnoText(errno));
    // A UNIX stream connect completes or fails at once (EAGAIN: the listener's backlog is full).
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
      int error = errno;
      close(fd);
      return connectFailed(name, vm, "cannot connect to " + path + ": " + errnoText(error));
    }
    std::uint64_t connection = nextConnection_++;
    Status watched = loop_.watch(fd, [this, name, key = vm.key, connection] { onReadable(name, key, connection); });
    if (!watched) {
      close(fd);
      return connectFailed(name, vm, "cannot watch the socket: " + watched.error().message);
    }
    vm.fd = fd;
    vm.connection = connection;
    vm.helloSeen = false;
    vm.welcomedIntervalMs = 0;
    vm.reader.reset();
    vm.output.clear();
    vm.lastConnectError.clear();
    vm.stats.connected = true;
    vm.stats.agent.reset();
    ++vm.stats.connects;
    log(name, "connected to " + path);
  }

  void connectFailed(const std::string& name, Vm& vm, const std::string& error) {
    if (error != vm.lastConnectError) log(name, error + " (retrying every " + ms(options_.connectRetry) + ")");
    vm.lastConnectError = error;
    scheduleConnect(name, vm);
  }

  void scheduleConnect(const std::string& name, Vm& vm) {
    if (!vm.wanted() || vm.fd >= 0 || vm.connectTimer != 0) return;
    vm.connectTimer = loop_.after(options_.connectRetry, [this, name, key = vm.key] {
      Vm* v = find(name, key);
      if (v == nullptr) return;
      v->connectTimer = 0;
      if (v->wanted() && v->fd < 0) connect(name, *v);
    });
  }

  // Closes the socket; requests stay (written again after the next HELLO).
  void closeSocket(Vm& vm) {
    cancelTimer(vm.writeTimer);
    if (vm.fd < 0) return;
    loop_.unwatch(vm.fd);
    close(vm.fd);
    vm.fd = -1;
    vm.helloSeen = false;
    vm.output.clear();
    vm.stats.connected = false;
    vm.stats.agent.reset();
  }

  // The connection ended or broke: reconnect while the VM is wanted.
  void lost(const std::string& name, Vm& vm, const std::string& why) {
    closeSocket(vm);
    log(name, "connection lost: " + why);
    scheduleConnect(name, vm);
  }

  // Called after a request ended: no reason left to stay connected.
  void closeIfIdle(const std::string& name, std::uint64_t key) {
    Vm* vm = find(name, key);
    if (vm == nullptr || vm->wanted() || vm->fd < 0) return;
    closeSocket(*vm);
    log(name, "disconnected: not watched and nothing outstanding");
  }

  // --- Writing.

  void send(const std::string& name, Vm& vm, const std::string& bytes) {
    if (vm.fd < 0) return;
    if (vm.output.size() + bytes.size() > kMaxPendingOutput) {
      return lost(name, vm, std::to_string(vm.output.size()) + " bytes not taken: the other end is not reading");
    }
    vm.output += bytes;
    flush(name, vm);
  }

  void flush(const std::string& name, Vm& vm) {
    while (vm.fd >= 0 && !vm.output.empty()) {
      ssize_t wrote = ::send(vm.fd, vm.output.data(), vm.output.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (wrote > 0) {
        vm.output.erase(0, static_cast<std::size_t>(wrote));
        continue;
      }
      if (wrote < 0 && errno == EINTR) continue;
      if (wrote < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (vm.writeTimer == 0) {
          vm.writeTimer = loop_.after(kWriteRetry, [this, name, key = vm.key] {
            Vm* v = find(name, key);
            if (v == nullptr) return;
            v->writeTimer = 0;
            flush(name, *v);
          });
        }
        return;
      }
      return lost(name, vm, wrote < 0 ? "write: " + errnoText(errno) : "write took nothing");
    }
  }

  std::uint32_t intervalMs(const Vm& vm) const {
    if (!vm.heartbeat) return kUnwatchedIntervalMs;
    return static_cast<std::uint32_t>(
        std::clamp<Duration::rep>(vm.heartbeat->interval.count(), 1, Duration::rep{kMaxHeartbeatIntervalMs}));
  }

  void sendWelcome(const std::string& name, Vm& vm) {
    vm.welcomedIntervalMs = intervalMs(vm);
    send(name, vm, formatHostMessage(WelcomeMessage{vm.version, vm.welcomedIntervalMs}));
  }

  // Writes the request now if the agent said HELLO on this connection, else after it does.
  void request(const std::string& name, std::uint64_t id, std::string line, std::string what, Done done) {
    if (line.size() > kMaxGuestLineBytes) {
      return failLater(std::move(done), "cannot send " + what + " to the guest of " + name + ": the line is " +
                                            std::to_string(line.size()) + " bytes, at most " +
                                            std::to_string(kMaxGuestLineBytes));
    }
    Vm& vm = entry(name);
    Request& request = vm.requests[id];
    request.line = std::move(line);
    request.what = std::move(what);
    request.done = std::move(done);
    if (vm.fd >= 0 && vm.helloSeen) {
      startAckTimer(name, vm, id, request);
      send(name, vm, request.line);
    }
    ensureConnecting(name, vm);
  }

  void startAckTimer(const std::string& name, Vm& vm, std::uint64_t id, Request& request) {
    request.written = true;
    if (request.ackTimer != 0) return;  // runs from the first write
    request.ackTimer =
        loop_.after(options_.ackTimeout, [this, name, key = vm.key, id] { onAckTimeout(name, key, id); });
  }

  void onAckTimeout(const std::string& name, std::uint64_t key, std::uint64_t id) {
    Vm* vm = find(name, key);
    if (vm == nullptr) return;
    auto it = vm->requests.find(id);
    if (it == vm->requests.end()) return;
    Request request = std::move(it->second);
    vm->requests.erase(it);
    std::string message =
        "the guest agent of " + name + " did not acknowledge " + request.what + " within " + ms(options_.ackTimeout);
    log(name, "request " + std::to_string(id) + " (" + request.what + ") timed out");
    if (!survives([&] { request.done(Error{message}); })) return;
    closeIfIdle(name, key);
  }

  // --- Hang.

  void armHang(const std::string& name, Vm& vm, Duration delay) {
    cancelTimer(vm.hangTimer);
    vm.hangTimer = loop_.after(delay, [this, name, key = vm.key, delay] {
      Vm* v = find(name, key);
      if (v == nullptr) return;
      v->hangTimer = 0;
      if (!v->heartbeat || v->hung) return;
      v->hung = true;
      ++v->stats.hangs;
      log(name, std::string("hung: no heartbeat ") + (v->firstHeartbeat ? "since watched, " : "") + "for " + ms(delay));
      if (listener_ != nullptr) listener_->onGuestHung(name);
    });
  }

  // --- Reading.

  void onReadable(const std::string& name, std::uint64_t key, std::uint64_t connection) {
    char buffer[kReadChunk];
    while (true) {
      Vm* vm = find(name, key);
      if (vm == nullptr || vm->fd < 0 || vm->connection != connection) return;
      ssize_t got = recv(vm->fd, buffer, sizeof buffer, MSG_DONTWAIT);
      if (got > 0) {
        vm->reader.feed(std::string_view(buffer, static_cast<std::size_t>(got)));
        if (!drainLines(name, key, connection)) return;
        continue;
      }
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      return lost(name, *vm, got == 0 ? "end of file" : "read: " + errnoText(errno));
    }
  }

  // Handles the complete lines read; returns whether the channel still exists.
  bool drainLines(const std::string& name, std::uint64_t key, std::uint64_t connection) {
    while (true) {
      Vm* vm = find(name, key);
      if (vm == nullptr || vm->fd < 0 || vm->connection != connection) return true;
      std::optional<std::string> line = vm->reader.next();
      while (vm->droppedCounted < vm->reader.droppedLines()) {
        ++vm->droppedCounted;
        ++vm->stats.oversizedLines;
        log(name, "dropped a line longer than " + std::to_string(kMaxGuestLineBytes) + " bytes");
      }
      if (!line) return true;
      if (!handleLine(name, *vm, *line)) return false;
    }
  }

  bool handleLine(const std::string& name, Vm& vm, const std::string& line) {
    Result<GuestMessage> parsed = parseGuestLine(line);
    if (!parsed) {
      ++vm.stats.badLines;
      log(name, "dropped a bad line: " + printable(parsed.error().message));
      return true;
    }
    return std::visit(Overloaded{
                          [&](const HelloMessage& m) { return onHello(name, vm, m); },
                          [&](const HeartbeatMessage& m) { return onHeartbeat(name, vm, m); },
                          [&](const AckMessage& m) { return onAck(name, vm, m); },
                          [&](const CheckpointReadMessage& m) { return onCheckpointRead(name, vm, m); },
                          [&](const CheckpointWriteMessage& m) { return onCheckpointWrite(name, vm, m); },
                      },
                      parsed.value());
  }

  bool onHello(const std::string& name, Vm& vm, const HelloMessage& hello) {
    ++vm.stats.hellos;
    vm.stats.agent = hello.agentVersion;
    vm.helloSeen = true;
    vm.version = std::min(hello.version, kGuestProtocolVersion);
    log(name, "HELLO from agent " + printable(hello.agentVersion) + ", protocol version " +
                  std::to_string(hello.version) + " (speaking " + std::to_string(vm.version) + ")");
    // Every outstanding request again: the agent (re)opened its port and may never have seen
    // what was written before. The hook is idempotent by contract.
    vm.welcomedIntervalMs = intervalMs(vm);
    std::string out = formatHostMessage(WelcomeMessage{vm.version, vm.welcomedIntervalMs});
    std::size_t again = 0;
    for (auto& [id, request] : vm.requests) {
      if (request.written) ++again;
      startAckTimer(name, vm, id, request);
      out += request.line;
    }
    if (again > 0) log(name, "writing " + std::to_string(again) + " unacknowledged request(s) again");
    send(name, vm, out);
    if (observer_ == nullptr) return true;
    return survives([&] { observer_->onHello(name, hello.agentVersion); });
  }

  bool onHeartbeat(const std::string& name, Vm& vm, const HeartbeatMessage& beat) {
    if (!vm.helloSeen) {
      // The agent's HELLO went to an earlier connection (this host's channel restarted, or the VM
      // arrived by migration): it is up and reading, so the queued requests go now.
      vm.helloSeen = true;
      std::string out;
      for (auto& [id, request] : vm.requests) {
        startAckTimer(name, vm, id, request);
        out += request.line;
      }
      if (!out.empty()) send(name, vm, out);
    }
    GuestStats& stats = vm.stats;
    ++stats.heartbeats;
    stats.lastHeartbeat = loop_.now();
    if (stats.lastSeq != 0 && beat.seq > stats.lastSeq + 1) {
      stats.missedHeartbeats += beat.seq - stats.lastSeq - 1;
    } else if (stats.lastSeq != 0 && beat.seq <= stats.lastSeq) {
      ++stats.agentRestarts;
      log(name,
          "the agent restarted: heartbeat " + std::to_string(beat.seq) + " after " + std::to_string(stats.lastSeq));
    }
    stats.lastSeq = beat.seq;

    bool reportUnhealthy = false;
    if (vm.heartbeat) {
      vm.firstHeartbeat = false;
      armHang(name, vm, vm.heartbeat->timeout);
      if (vm.hung) {
        vm.hung = false;
        log(name, "heartbeats resumed");
      }
      if (!beat.healthy && !vm.unhealthy) {
        vm.unhealthy = true;
        reportUnhealthy = true;
        log(name, "unhealthy: " + (beat.reason.empty() ? std::string("no reason given") : printable(beat.reason)));
      } else if (beat.healthy && vm.unhealthy) {
        vm.unhealthy = false;
        log(name, "healthy again");
      }
    }

    std::uint64_t key = vm.key;
    if (observer_ != nullptr && !survives([&] { observer_->onHeartbeat(name, beat.seq, beat.healthy); })) return false;
    if (!reportUnhealthy || listener_ == nullptr) return true;
    Vm* again = find(name, key);
    if (again == nullptr || !again->heartbeat) return true;  // the observer unwatched it
    return survives([&] { listener_->onGuestUnhealthy(name); });
  }

  bool onAck(const std::string& name, Vm& vm, const AckMessage& ack) {
    auto it = vm.requests.find(ack.id);
    if (it == vm.requests.end() || !it->second.written) {
      ++vm.stats.unexpectedAcks;
      log(name, "dropped ACK " + std::to_string(ack.id) + ": no such request outstanding");
      return true;
    }
    ++vm.stats.acks;
    Request request = std::move(it->second);
    vm.requests.erase(it);
    cancelTimer(request.ackTimer);
    std::string reason = ack.reason.empty() ? std::string("no reason given") : printable(ack.reason);
    log(name,
        "request " + std::to_string(ack.id) + " (" + request.what + "): " + (ack.ok ? "ok" : "failed, " + reason));
    Status status = ack.ok ? Status::success()
                           : Status(Error{"the guest agent of " + name + " failed " + request.what + ": " + reason});
    std::uint64_t key = vm.key;
    if (!survives([&] { request.done(status); })) return false;
    closeIfIdle(name, key);
    return true;
  }

  bool unsupported(const std::string& name, Vm& vm, const char* verb, std::uint64_t id) {
    log(name, std::string(verb) + " " + std::to_string(id) + " answered unsupported (no checkpoint service)");
    send(name, vm, formatHostMessage(ErrorMessage{id, "unsupported"}));
    return true;
  }

  // --- Checkpoints.

  // Writes a checkpoint answer on the connection the request came on, if it is still open. A read's
  // data that would not fit a line is failed instead.
  std::function<void(CheckpointReplyMessage)> checkpointReply(const std::string& name, const Vm& vm, std::string what) {
    return [this, alive = std::weak_ptr<bool>(alive_), name, key = vm.key, connection = vm.connection,
            what = std::move(what)](CheckpointReplyMessage reply) {
      if (alive.expired()) return;
      Vm* v = find(name, key);
      if (v == nullptr || v->fd < 0 || v->connection != connection) {
        log(name, what + ": answer dropped, the connection it came on has closed");
        return;
      }
      std::string line = formatHostMessage(reply);
      if (line.size() > kMaxGuestLineBytes) {
        const std::size_t bytes = reply.data ? reply.data->size() : 0;
        reply = CheckpointReplyMessage{reply.id, false, std::nullopt,
                                       "the section holds " + std::to_string(bytes) +
                                           " bytes, more than one line of the guest channel carries (" +
                                           std::to_string(kMaxGuestLineBytes) + " bytes, base64)"};
        line = formatHostMessage(reply);
      }
      ++v->stats.checkpointAnswers;
      log(name, what + ": " + (reply.ok ? std::string("ok") : "failed, " + printable(reply.reason)));
      send(name, *v, line);
    };
  }

  static std::string reasonOf(const Error& error) {
    return error.message.empty() ? std::string("failed") : error.message;
  }

  bool onCheckpointRead(const std::string& name, Vm& vm, const CheckpointReadMessage& m) {
    if (checkpoints_ == nullptr) return unsupported(name, vm, "CKPT-READ", m.id);
    ++vm.stats.checkpointRequests;
    auto reply = checkpointReply(
        name, vm, "CKPT-READ " + std::to_string(m.id) + " " + printable(m.name) + " " + printable(m.section));
    const std::uint64_t id = m.id;
    std::weak_ptr<bool> alive = alive_;
    checkpoints_->read(name, m.name, m.section, [reply, id](Result<std::string> data) {
      if (data.ok()) return reply(CheckpointReplyMessage{id, true, std::move(data).value(), ""});
      reply(CheckpointReplyMessage{id, false, std::nullopt, reasonOf(data.error())});
    });
    return !alive.expired();
  }

  bool onCheckpointWrite(const std::string& name, Vm& vm, const CheckpointWriteMessage& m) {
    if (checkpoints_ == nullptr) return unsupported(name, vm, "CKPT-WRITE", m.id);
    ++vm.stats.checkpointRequests;
    auto reply = checkpointReply(name, vm,
                                 "CKPT-WRITE " + std::to_string(m.id) + " " + printable(m.name) + " " +
                                     printable(m.section) + " (" + std::to_string(m.data.size()) + " bytes)");
    const std::uint64_t id = m.id;
    std::weak_ptr<bool> alive = alive_;
    checkpoints_->write(name, m.name, m.section, m.data, [reply, id](Status status) {
      if (status.ok()) return reply(CheckpointReplyMessage{id, true, std::nullopt, ""});
      reply(CheckpointReplyMessage{id, false, std::nullopt, reasonOf(status.error())});
    });
    return !alive.expired();
  }

  EventLoop& loop_;
  SocketGuestChannelOptions options_;
  std::map<std::string, Vm> vms_;
  std::uint64_t nextKey_ = 1;
  std::uint64_t nextConnection_ = 1;
  std::uint64_t nextRequest_ = 1;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // expires with the channel
};

SocketGuestChannel::SocketGuestChannel(EventLoop& loop, SocketGuestChannelOptions options)
    : impl_(std::make_unique<Impl>(loop, std::move(options))) {}

SocketGuestChannel::~SocketGuestChannel() = default;

void SocketGuestChannel::setListener(GuestListener* listener) { impl_->listener_ = listener; }

void SocketGuestChannel::setObserver(GuestObserver* observer) { impl_->observer_ = observer; }

void SocketGuestChannel::setCheckpoints(GuestCheckpoints* checkpoints) { impl_->checkpoints_ = checkpoints; }

void SocketGuestChannel::watch(const std::string& vm, const model::HeartbeatSpec& heartbeat) {
  impl_->watch(vm, heartbeat);
}

void SocketGuestChannel::unwatch(const std::string& vm) { impl_->unwatch(vm); }

void SocketGuestChannel::assign(const std::string& vm, const std::string& si, model::HaState ha,
                                const std::map<std::string, std::string>& attributes, Done done) {
  impl_->assign(vm, si, ha, attributes, std::move(done));
}

void SocketGuestChannel::unassign(const std::string& vm, const std::string& si, Done done) {
  impl_->unassign(vm, si, std::move(done));
}

std::optional<GuestStats> SocketGuestChannel::stats(const std::string& vm) const { return impl_->stats(vm); }

}  // namespace kvm_amf::vmm
