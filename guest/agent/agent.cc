// kvm-amf-agent: the guest side of docs/guest-protocol.md. One thread, one poll() loop: the port,
// a signalfd for SIGCHLD, the control socket where applications in the guest ask for checkpoints
// (`kvm-amf-agent ckpt ...`, which is this same binary as a client), and timers (heartbeat, health
// check and hook timeouts, checkpoint requests, port reopen). Runs in a busybox guest: a static
// binary that uses no library of the project (only the codec source and common/result.h).
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "kvm_amf/vmm/guest_protocol.h"

extern char** environ;  // NOLINT(readability-redundant-declaration)

namespace kvm_amf::guest {
namespace {

using vmm::AckMessage;
using vmm::AssignMessage;
using vmm::CheckpointReadMessage;
using vmm::CheckpointReplyMessage;
using vmm::CheckpointWriteMessage;
using vmm::ErrorMessage;
using vmm::GuestLineReader;
using vmm::HeartbeatMessage;
using vmm::HelloMessage;
using vmm::RemoveMessage;
using vmm::WelcomeMessage;

constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kReopenDelayMs = 1000;
constexpr std::size_t kMaxPendingOutput = 64 * 1024;
constexpr std::size_t kMaxQueuedRequests = 64;
// The control socket: one request line a connection, at most this long.
constexpr std::size_t kMaxControlLine = 8192;
constexpr std::size_t kMaxControlClients = 64;
constexpr const char* kDefaultControl = "/run/kvm-amf/agent.sock";

struct Options {
  std::string port;  // empty: find the virtio port by name
  std::string health;
  std::int64_t healthTimeoutMs = 0;  // 0: the heartbeat interval
  std::string hook = "/etc/kvm-amf/hook";
  std::int64_t hookTimeoutMs = 10000;
  std::uint64_t stopAfter = 0;            // 0: never
  std::string control = kDefaultControl;  // empty: no control socket
  std::int64_t checkpointTimeoutMs = 30000;
};

std::int64_t monotonicMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void logEvent(const std::string& what) {
  std::string line = "kvm-amf-agent: " + what + "\n";
  (void)!write(STDERR_FILENO, line.data(), line.size());
}

std::string errnoText(int error) { return std::strerror(error); }

// How a child ended: empty when it exited 0.
std::string outcomeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status) == 0 ? "" : "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// Starts argv[0] (a path) in its own process group with stdin from /dev/null and `env` added to
// the agent's environment. Returns the pid, or the exec error.
Result<pid_t> spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) envp.push_back(*e);
  for (const auto& entry : env) envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);

  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) return Error{"pipe: " + errnoText(errno)};
  pid_t pid = fork();
  if (pid < 0) {
    int error = errno;
    close(report[0]);
    close(report[1]);
    return Error{"fork: " + errnoText(error)};
  }
  if (pid == 0) {
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    signal(SIGPIPE, SIG_DFL);
    setpgid(0, 0);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, STDIN_FILENO);
    execve(args[0], args.data(), envp.data());
    int error = errno;
    (void)!write(report[1], &error, sizeof error);
    _exit(127);
  }
  setpgid(pid, pid);  // also here: a kill of the group may come before the child ran
  close(report[1]);
  int error = 0;
  ssize_t got;
  do {
    got = read(report[0], &error, sizeof error);
  } while (got < 0 && errno == EINTR);
  close(report[0]);
  if (got == static_cast<ssize_t>(sizeof error)) {
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return Error{"exec " + argv[0] + ": " + errnoText(error)};
  }
  return pid;
}

void killGroup(pid_t pid) {
  kill(-pid, SIGKILL);
  kill(pid, SIGKILL);
}

// The hook's environment name for an attribute key: KVMAMF_ATTR_ and the key, ASCII letters upper
// case, every other byte but a digit '_'.
std::string attributeVariable(const std::string& key) {
  std::string name = "KVMAMF_ATTR_";
  for (char c : key) {
    if (c >= 'a' && c <= 'z') {
      name += static_cast<char>(c - 'a' + 'A');
    } else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
      name += c;
    } else {
      name += '_';
    }
  }
  return name;
}

// The /dev path of the virtio port named vmm::kGuestPortName, or empty.
std::string findVirtioPort() {
  DIR* dir = opendir("/sys/class/virtio-ports");
  if (dir == nullptr) return "";
  std::string found;
  while (dirent* entry = readdir(dir)) {
    std::string node = entry->d_name;
    if (node == "." || node == "..") continue;
    std::ifstream nameFile("/sys/class/virtio-ports/" + node + "/name");
    std::string name;
    if (std::getline(nameFile, name) && name == vmm::kGuestPortName) {
      found = "/dev/" + node;
      break;
    }
  }
  closedir(dir);
  return found;
}

// Listens on the UNIX socket `path` (mode 0660), replacing a file left by an agent that died; its
// directory is created (0755) if missing. -1 with the reason logged on failure.
int listenControl(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    std::string dir = path.substr(0, slash);
    for (std::size_t at = 1; at != std::string::npos; at = dir.find('/', at + 1)) {
      mkdir(dir.substr(0, at).c_str(), 0755);
    }
    mkdir(dir.c_str(), 0755);
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) {
    logEvent("control socket path too long: " + path);
    return -1;
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe >= 0 && connect(probe, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    close(probe);
    logEvent("control socket " + path + ": another agent listens there; no control socket");
    return -1;
  }
  if (probe >= 0) close(probe);
  unlink(path.c_str());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || listen(fd, 16) != 0) {
    logEvent("control socket " + path + ": " + errnoText(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  chmod(path.c_str(), 0660);
  logEvent("control socket: " + path);
  return fd;
}

// A request of an application on the control socket, forwarded to the host or being read.
struct ControlClient {
  int fd = -1;
  std::string input;     // read so far, up to the request's '\n'
  std::uint64_t id = 0;  // the CKPT request's id once forwarded
  std::int64_t deadline = kNever;
};

// A hook run the host asked for.
struct Request {
  std::uint64_t id = 0;
  std::vector<std::string> args;  // after the hook path: state, si
  std::vector<std::string> env;
};

struct RunningChild {
  pid_t pid = 0;
  std::int64_t deadline = kNever;
  bool timedOut = false;
  std::uint64_t tag = 0;  // health check: the heartbeat's seq; hook: the request id
};

class Agent {
 public:
  Agent(Options options, int signalFd) : options_(std::move(options)), signalFd_(signalFd) {}

  [[noreturn]] void run() {
    nextBeat_ = monotonicMs();
    if (!options_.control.empty()) control_ = listenControl(options_.control);
    while (true) {
      std::int64_t now = monotonicMs();
      if (port_ < 0 && now >= nextReopen_) openPort(now);
      if (now >= nextBeat_) beat(now);
      checkTimeouts(now);

      std::int64_t wake = std::min({nextBeat_, health_ ? health_->deadline : kNever, hook_ ? hook_->deadline : kNever,
                                    port_ < 0 ? nextReopen_ : kNever, nextControlDeadline()});
      int timeout = static_cast<int>(std::clamp<std::int64_t>(wake - now, 0, 60000));
      std::vector<pollfd> fds = {{signalFd_, POLLIN, 0}, {port_, 0, 0}, {control_, POLLIN, 0}};
      if (port_ >= 0) fds[1].events = static_cast<short>(POLLIN | (output_.empty() ? 0 : POLLOUT));
      for (const auto& client : clients_)
        fds.push_back({client.fd, static_cast<short>(client.id == 0 ? POLLIN : 0), 0});
      int ready = poll(fds.data(), fds.size(), timeout);
      if (ready < 0) {
        if (errno != EINTR) logEvent("poll: " + errnoText(errno));
        continue;
      }
      if ((fds[0].revents & POLLIN) != 0) reapChildren();
      if (port_ >= 0 && fds[1].revents != 0) servePort(fds[1].revents);
      if (control_ >= 0 && (fds[2].revents & POLLIN) != 0) acceptClients();
      for (std::size_t i = 3; i < fds.size(); ++i) {
        if (fds[i].revents != 0) readClient(fds[i].fd);
      }
    }
  }

 private:
  void openPort(std::int64_t now) {
    nextReopen_ = now + kReopenDelayMs;
    std::string path = options_.port.empty() ? findVirtioPort() : options_.port;
    if (path.empty()) return reportOpenError(std::string("no virtio port named ") + std::string(vmm::kGuestPortName));
    struct stat info {};
    int fd = -1;
    if (stat(path.c_str(), &info) == 0 && S_ISSOCK(info.st_mode)) {
      fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un address{};
      address.sun_family = AF_UNIX;
      if (fd >= 0 && path.size() < sizeof address.sun_path) {
        std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
        if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
          int error = errno;
          close(fd);
          fd = -1;
          errno = error;
        } else {
          fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        }
      }
    } else {
      fd = open(path.c_str(), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
      if (fd >= 0 && isatty(fd)) {
        termios mode{};
        if (tcgetattr(fd, &mode) == 0) {
          cfmakeraw(&mode);
          tcsetattr(fd, TCSANOW, &mode);
        }
      }
    }
    if (fd < 0) return reportOpenError("cannot open port " + path + ": " + errnoText(errno));
    port_ = fd;
    lastOpenError_.clear();
    reader_.reset();
    output_.clear();
    logEvent("port open: " + path);
    send(HelloMessage{vmm::kGuestProtocolVersion, KVM_AMF_AGENT_VERSION});
  }

  void reportOpenError(const std::string& error) {
    if (error != lastOpenError_) logEvent(error + " (retrying every second)");
    lastOpenError_ = error;
  }

  void closePort(const std::string& why) {
    logEvent("port closed: " + why);
    close(port_);
    port_ = -1;
    nextReopen_ = monotonicMs() + kReopenDelayMs;
    // The host answers on the connection a request came on: those written are lost with it.
    for (auto& client : clients_) {
      if (client.id != 0) answerClient(client, "FAIL " + vmm::percentEncode("the host's channel closed (" + why + ")"));
    }
    dropAnsweredClients();
  }

  void send(const vmm::GuestMessage& message) {
    std::string line = vmm::formatGuestMessage(message);
    if (port_ < 0) {
      logEvent("not sent (port closed): " + line.substr(0, line.size() - 1));
      return;
    }
    if (output_.size() + line.size() > kMaxPendingOutput) {
      ++droppedOutput_;
      logEvent("not sent (host not reading, " + std::to_string(droppedOutput_) +
               " dropped): " + line.substr(0, line.size() - 1));
      return;
    }
    output_ += line;
    flush();
  }

  void flush() {
    while (port_ >= 0 && !output_.empty()) {
      ssize_t wrote = write(port_, output_.data(), output_.size());
      if (wrote > 0) {
        output_.erase(0, static_cast<std::size_t>(wrote));
      } else if (wrote < 0 && errno == EINTR) {
        continue;
      } else if (wrote < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return;
      } else {
        closePort("write: " + errnoText(errno));
      }
    }
  }

  void servePort(short revents) {
    if ((revents & POLLOUT) != 0) flush();
    if (port_ < 0 || (revents & (POLLIN | POLLHUP | POLLERR)) == 0) return;
    char buffer[8192];
    while (port_ >= 0) {
      ssize_t got = read(port_, buffer, sizeof buffer);
      if (got > 0) {
        std::uint64_t droppedBefore = reader_.droppedLines();
        reader_.feed(std::string_view(buffer, static_cast<std::size_t>(got)));
        while (auto line = reader_.next()) handleLine(*line);
        if (reader_.droppedLines() != droppedBefore) {
          logEvent("dropped an oversized line (" + std::to_string(reader_.droppedLines()) + " so far)");
        }
        continue;
      }
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      closePort(got == 0 ? "end of file" : "read: " + errnoText(errno));
    }
  }

  void handleLine(const std::string& line) {
    auto parsed = vmm::parseHostLine(line);
    if (!parsed) {
      ++malformed_;
      logEvent("dropped a line (" + std::to_string(malformed_) + " so far): " + parsed.error().message);
      return;
    }
    std::visit([this](const auto& message) { handle(message); }, parsed.value());
  }

  void handle(const WelcomeMessage& message) {
    intervalMs_ = message.intervalMs;
    nextBeat_ = std::min(nextBeat_, monotonicMs() + intervalMs_);
    logEvent("welcome: version " + std::to_string(message.version) + ", interval " + std::to_string(intervalMs_) +
             " ms");
  }

  void handle(const AssignMessage& message) {
    Request request{message.id, {std::string(vmm::guestHaStateName(message.state)), message.si}, {}};
    request.env.push_back("KVMAMF_SI=" + message.si);
    request.env.push_back("KVMAMF_HA_STATE=" + request.args[0]);
    for (const auto& [key, value] : message.attributes) request.env.push_back(attributeVariable(key) + "=" + value);
    logEvent("assign " + std::to_string(message.id) + ": " + message.si + " " + request.args[0]);
    enqueue(std::move(request));
  }

  void handle(const RemoveMessage& message) {
    logEvent("remove " + std::to_string(message.id) + ": " + message.si);
    enqueue(Request{message.id, {"removed", message.si}, {"KVMAMF_SI=" + message.si, "KVMAMF_HA_STATE=removed"}});
  }

  void handle(const CheckpointReplyMessage& message) {
    ControlClient* client = clientFor(message.id);
    if (client == nullptr) return unexpected("CKPT", message.id);
    if (message.ok) {
      std::string line = "OK";
      if (message.data) line += " " + (message.data->empty() ? std::string("-") : vmm::base64Encode(*message.data));
      answerClient(*client, line);
    } else {
      answerClient(*client, "FAIL " + vmm::percentEncode(message.reason));
    }
    dropAnsweredClients();
  }
  void handle(const ErrorMessage& message) {
    ControlClient* client = clientFor(message.id);
    if (client == nullptr) return unexpected("ERR", message.id);
    answerClient(*client, "FAIL " + vmm::percentEncode("the host cannot serve checkpoints: " + message.reason));
    dropAnsweredClients();
  }

  // --- The control socket: applications' checkpoint requests.

  void acceptClients() {
    while (true) {
      int fd = accept4(control_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      if (clients_.size() >= kMaxControlClients) {
        const std::string busy = "FAIL busy\n";
        (void)!write(fd, busy.data(), busy.size());
        close(fd);
        continue;
      }
      clients_.push_back(ControlClient{fd, "", 0, monotonicMs() + options_.checkpointTimeoutMs});
    }
  }

  ControlClient* clientFor(std::uint64_t id) {
    for (auto& client : clients_) {
      if (client.id == id) return &client;
    }
    return nullptr;
  }

  std::int64_t nextControlDeadline() const {
    std::int64_t next = kNever;
    for (const auto& client : clients_) next = std::min(next, client.deadline);
    return next;
  }

  // Writes the answer line (the socket takes a few kilobytes at once) and marks the client done.
  void answerClient(ControlClient& client, const std::string& line) {
    const std::string bytes = line + "\n";
    (void)!::send(client.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    close(client.fd);
    client.fd = -1;
  }

  void dropAnsweredClients() {
    std::erase_if(clients_, [](const ControlClient& client) { return client.fd < 0; });
  }

  void readClient(int fd) {
    auto it = std::find_if(clients_.begin(), clients_.end(), [fd](const ControlClient& c) { return c.fd == fd; });
    if (it == clients_.end()) return;
    ControlClient& client = *it;
    char buffer[4096];
    ssize_t got = read(fd, buffer, sizeof buffer);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (got <= 0 || client.id != 0) {  // gone, or talking out of turn: it gets nothing
      close(client.fd);
      client.fd = -1;
      return dropAnsweredClients();
    }
    client.input.append(buffer, static_cast<std::size_t>(got));
    const std::size_t end = client.input.find('\n');
    if (end == std::string::npos) {
      if (client.input.size() > kMaxControlLine) answerClient(client, "FAIL request%20too%20long");
      return dropAnsweredClients();
    }
    forward(client, client.input.substr(0, end));
    dropAnsweredClients();
  }

  // Sends the application's request to the host as CKPT-READ or CKPT-WRITE.
  void forward(ControlClient& client, const std::string& line) {
    std::vector<std::string> fields;
    for (std::size_t at = 0; at <= line.size();) {
      std::size_t space = line.find(' ', at);
      if (space == std::string::npos) space = line.size();
      fields.push_back(line.substr(at, space - at));
      at = space + 1;
    }
    auto field = [&](std::size_t i) { return vmm::percentDecode(fields[i]); };
    const bool isRead = fields[0] == "READ" && fields.size() == 3;
    const bool isWrite = fields[0] == "WRITE" && fields.size() == 4;
    if (!isRead && !isWrite) return answerClient(client, "FAIL " + vmm::percentEncode("bad request: " + fields[0]));
    auto name = field(1);
    auto section = field(2);
    auto data = isWrite ? vmm::base64Decode(fields[3]) : Result<std::string>(std::string());
    if (!name || !section || !data || name.value().empty() || section.value().empty()) {
      return answerClient(client, "FAIL bad%20encoding");
    }
    if (port_ < 0) return answerClient(client, "FAIL " + vmm::percentEncode("the host's channel is not open"));
    client.id = nextCheckpointId_++;
    logEvent(std::string(isRead ? "ckpt read " : "ckpt write ") + std::to_string(client.id) + ": " + name.value() +
             " " + section.value());
    if (isRead) {
      send(CheckpointReadMessage{client.id, name.value(), section.value()});
    } else {
      send(CheckpointWriteMessage{client.id, name.value(), section.value(), data.value()});
    }
  }

  void expireClients(std::int64_t now) {
    for (auto& client : clients_) {
      if (client.deadline > now) continue;
      logEvent("ckpt request " + std::to_string(client.id) + " timed out");
      answerClient(client, "FAIL " + vmm::percentEncode("no answer from the host within " +
                                                        std::to_string(options_.checkpointTimeoutMs) + " ms"));
    }
    dropAnsweredClients();
  }

  void unexpected(const char* verb, std::uint64_t id) {
    ++unexpected_;
    logEvent(std::string("dropped ") + verb + " " + std::to_string(id) + ": no such request (" +
             std::to_string(unexpected_) + " so far)");
  }

  void enqueue(Request request) {
    if (queue_.size() >= kMaxQueuedRequests) {
      logEvent("request " + std::to_string(request.id) + " refused: busy");
      send(AckMessage{request.id, false, "busy"});
      return;
    }
    queue_.push_back(std::move(request));
    startNextHook();
  }

  void startNextHook() {
    while (!hook_ && !queue_.empty()) {
      Request request = std::move(queue_.front());
      queue_.pop_front();
      struct stat info {};
      if (stat(options_.hook.c_str(), &info) != 0 && errno == ENOENT) {
        logEvent("request " + std::to_string(request.id) + ": no hook " + options_.hook + ", ok");
        send(AckMessage{request.id, true, ""});
        continue;
      }
      std::vector<std::string> argv = {options_.hook};
      argv.insert(argv.end(), request.args.begin(), request.args.end());
      auto pid = spawn(argv, request.env);
      if (!pid) {
        logEvent("request " + std::to_string(request.id) + ": " + pid.error().message);
        send(AckMessage{request.id, false, pid.error().message});
        continue;
      }
      hook_ = RunningChild{pid.value(), monotonicMs() + options_.hookTimeoutMs, false, request.id};
    }
  }

  void beat(std::int64_t now) {
    nextBeat_ += intervalMs_;
    if (nextBeat_ <= now) nextBeat_ = now + intervalMs_;
    if (options_.stopAfter != 0 && seq_ >= options_.stopAfter) {
      if (!stoppedLogged_) logEvent("heartbeats stopped after " + std::to_string(seq_) + " (--stop-after)");
      stoppedLogged_ = true;
      return;
    }
    if (health_) {  // the previous check outlived its heartbeat interval
      killGroup(health_->pid);
      logEvent("health check for heartbeat " + std::to_string(health_->tag) + " timed out");
      send(HeartbeatMessage{health_->tag, false, "timeout"});
      health_.reset();
    }
    ++seq_;
    if (options_.health.empty()) return send(HeartbeatMessage{seq_, true, ""});
    auto pid = spawn({"/bin/sh", "-c", options_.health}, {});
    if (!pid) {
      logEvent("health check: " + pid.error().message);
      return send(HeartbeatMessage{seq_, false, pid.error().message});
    }
    std::int64_t timeout = options_.healthTimeoutMs > 0 ? std::min<std::int64_t>(options_.healthTimeoutMs, intervalMs_)
                                                        : std::int64_t{intervalMs_};
    health_ = RunningChild{pid.value(), now + timeout, false, seq_};
  }

  void checkTimeouts(std::int64_t now) {
    if (nextControlDeadline() <= now) expireClients(now);
    if (health_ && now >= health_->deadline) {
      killGroup(health_->pid);
      logEvent("health check for heartbeat " + std::to_string(health_->tag) + " timed out");
      send(HeartbeatMessage{health_->tag, false, "timeout"});
      health_.reset();  // reaped by reapChildren() as an unknown child
    }
    if (hook_ && !hook_->timedOut && now >= hook_->deadline) {
      logEvent("hook for request " + std::to_string(hook_->tag) + " timed out, killing it");
      killGroup(hook_->pid);
      hook_->timedOut = true;
      hook_->deadline = kNever;  // done when reaped
    }
  }

  void reapChildren() {
    signalfd_siginfo info{};
    while (read(signalFd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    }
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      if (health_ && pid == health_->pid) {
        std::string outcome = outcomeOf(status);
        if (!outcome.empty()) logEvent("health check for heartbeat " + std::to_string(health_->tag) + ": " + outcome);
        send(HeartbeatMessage{health_->tag, outcome.empty(), outcome});
        health_.reset();
      } else if (hook_ && pid == hook_->pid) {
        std::string outcome = hook_->timedOut ? "timeout" : outcomeOf(status);
        logEvent("hook for request " + std::to_string(hook_->tag) + ": " + (outcome.empty() ? "ok" : outcome));
        send(AckMessage{hook_->tag, outcome.empty(), outcome});
        hook_.reset();
        startNextHook();
      }
    }
  }

  Options options_;
  int signalFd_;
  int control_ = -1;
  std::vector<ControlClient> clients_;
  std::uint64_t nextCheckpointId_ = 1;
  int port_ = -1;
  std::int64_t nextReopen_ = 0;
  std::string lastOpenError_;
  GuestLineReader reader_;
  std::string output_;  // bytes not yet written to the port
  std::uint32_t intervalMs_ = 1000;
  std::int64_t nextBeat_ = 0;
  std::uint64_t seq_ = 0;  // the last heartbeat's
  bool stoppedLogged_ = false;
  std::optional<RunningChild> health_;
  std::optional<RunningChild> hook_;
  std::deque<Request> queue_;
  std::uint64_t malformed_ = 0;
  std::uint64_t unexpected_ = 0;
  std::uint64_t droppedOutput_ = 0;
};

constexpr const char* kUsage =
    "usage: kvm-amf-agent [--port PATH] [--health CMD] [--health-timeout MS] [--hook PATH]\n"
    "                     [--hook-timeout MS] [--stop-after N] [--control PATH] [--ckpt-timeout MS]\n"
    "       kvm-amf-agent ckpt [--control PATH] [--timeout MS] read NAME SECTION\n"
    "       kvm-amf-agent ckpt [--control PATH] [--timeout MS] write NAME SECTION DATA|-\n";

bool parseCount(const char* text, std::int64_t& out) {
  std::string_view view(text);
  auto [end, ec] = std::from_chars(view.data(), view.data() + view.size(), out);
  return ec == std::errc() && end == view.data() + view.size() && out >= 0;
}

std::optional<Options> parseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (flag == "--help" || i + 1 >= argc) return std::nullopt;
    const char* value = argv[++i];
    std::int64_t number = 0;
    if (flag == "--port") {
      options.port = value;
    } else if (flag == "--health") {
      options.health = value;
    } else if (flag == "--hook") {
      options.hook = value;
    } else if (flag == "--health-timeout" && parseCount(value, number)) {
      options.healthTimeoutMs = number;
    } else if (flag == "--hook-timeout" && parseCount(value, number) && number > 0) {
      options.hookTimeoutMs = number;
    } else if (flag == "--stop-after" && parseCount(value, number)) {
      options.stopAfter = static_cast<std::uint64_t>(number);
    } else if (flag == "--control") {
      options.control = value;
    } else if (flag == "--ckpt-timeout" && parseCount(value, number) && number > 0) {
      options.checkpointTimeoutMs = number;
    } else {
      return std::nullopt;
    }
  }
  return options;
}

// `kvm-amf-agent ckpt ...`: asks the running agent over its control socket. Exit 0 (a read's data
// on stdout), 1 refused or failed (the reason on stderr), 2 usage, 69 no agent listening.
int runCheckpointCommand(int argc, char** argv) {
  std::string control = kDefaultControl;
  std::int64_t timeoutMs = 60000;
  int i = 2;
  for (; i + 1 < argc && argv[i][0] == '-' && argv[i][1] == '-'; i += 2) {
    std::string_view flag = argv[i];
    if (flag == "--control") {
      control = argv[i + 1];
    } else if (flag != "--timeout" || !parseCount(argv[i + 1], timeoutMs) || timeoutMs == 0) {
      std::fputs(kUsage, stderr);
      return 2;
    }
  }
  std::vector<std::string> words(argv + i, argv + argc);
  std::string request;
  if (words.size() == 3 && words[0] == "read") {
    request = "READ " + vmm::percentEncode(words[1]) + " " + vmm::percentEncode(words[2]);
  } else if (words.size() == 4 && words[0] == "write") {
    std::string data = words[3];
    if (data == "-") data.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    request = "WRITE " + vmm::percentEncode(words[1]) + " " + vmm::percentEncode(words[2]) + " " +
              (data.empty() ? std::string("-") : vmm::base64Encode(data));
  } else {
    std::fputs(kUsage, stderr);
    return 2;
  }
  if (words[1].empty() || words[2].empty()) {
    std::fputs("kvm-amf-agent ckpt: NAME and SECTION must not be empty\n", stderr);
    return 2;
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (control.size() >= sizeof address.sun_path || fd < 0) {
    std::fprintf(stderr, "kvm-amf-agent ckpt: cannot use %s\n", control.c_str());
    return 2;
  }
  std::memcpy(address.sun_path, control.c_str(), control.size() + 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    std::fprintf(stderr, "kvm-amf-agent ckpt: no agent at %s: %s (is kvm-amf-agent running?)\n", control.c_str(),
                 std::strerror(errno));
    close(fd);
    return 69;
  }
  request += "\n";
  for (std::size_t done = 0; done < request.size();) {
    ssize_t n = write(fd, request.data() + done, request.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::fprintf(stderr, "kvm-amf-agent ckpt: write: %s\n", std::strerror(errno));
      close(fd);
      return 1;
    }
    done += static_cast<std::size_t>(n);
  }
  std::string answer;
  const std::int64_t deadline = monotonicMs() + timeoutMs;
  while (answer.find('\n') == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    const std::int64_t left = deadline - monotonicMs();
    if (left <= 0 || poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left, 60000))) == 0) {
      if (monotonicMs() < deadline) continue;
      std::fprintf(stderr, "kvm-amf-agent ckpt: no answer within %lld ms\n", static_cast<long long>(timeoutMs));
      close(fd);
      return 1;
    }
    char buffer[8192];
    ssize_t got = read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    answer.append(buffer, static_cast<std::size_t>(got));
  }
  close(fd);
  answer = answer.substr(0, answer.find('\n'));
  if (answer == "OK") return 0;
  if (answer.rfind("OK ", 0) == 0) {
    auto data = vmm::base64Decode(answer.substr(3));
    if (!data) {
      std::fputs("kvm-amf-agent ckpt: the agent's answer does not decode\n", stderr);
      return 1;
    }
    std::fwrite(data.value().data(), 1, data.value().size(), stdout);
    return 0;
  }
  if (answer.rfind("FAIL ", 0) == 0) {
    auto reason = vmm::percentDecode(answer.substr(5));
    std::fprintf(stderr, "kvm-amf-agent ckpt: %s\n", reason ? reason.value().c_str() : answer.c_str());
    return 1;
  }
  std::fputs("kvm-amf-agent ckpt: the agent closed the connection without an answer\n", stderr);
  return 1;
}

}  // namespace
}  // namespace kvm_amf::guest

int main(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "ckpt") return kvm_amf::guest::runCheckpointCommand(argc, argv);
  auto options = kvm_amf::guest::parseOptions(argc, argv);
  if (!options) {
    std::fputs(kvm_amf::guest::kUsage, stderr);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  sigset_t children;
  sigemptyset(&children);
  sigaddset(&children, SIGCHLD);
  sigprocmask(SIG_BLOCK, &children, nullptr);
  int signalFd = signalfd(-1, &children, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signalFd < 0) {
    kvm_amf::guest::logEvent("signalfd: " + kvm_amf::guest::errnoText(errno));
    return 1;
  }
  kvm_amf::guest::logEvent("started");
  kvm_amf::guest::Agent(std::move(*options), signalFd).run();
}
