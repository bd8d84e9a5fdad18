#include "delivery.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "kvm_amf/common/shell_command.h"

namespace kvm_amf::monitor {

namespace {

constexpr std::size_t kMaxOutput = 4096;  // of a command's output, the end is kept for the log
constexpr std::size_t kMaxAnswer = 8192;  // of an HTTP answer, only the status line is read

std::string errnoText(const char* what, int error) { return std::string(what) + ": " + std::strerror(error); }

// A descriptor closed when it goes out of scope.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// A deadline as a descriptor: a monotonic timer that becomes readable once `after` has passed.
// Waiting for other descriptors beside it bounds a whole exchange, not each step.
class Deadline {
 public:
  explicit Deadline(Duration after) : fd_(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC)) {
    const long long ms = std::max<long long>(after.count(), 1);
    itimerspec spec{};
    spec.it_value.tv_sec = static_cast<time_t>(ms / 1000);
    spec.it_value.tv_nsec = static_cast<long>((ms % 1000) * 1'000'000);
    if (fd_ && timerfd_settime(fd_.get(), 0, &spec, nullptr) != 0) fd_.reset();
  }

  // Waits until one of `fds` has an event (their revents are set) or the deadline passes: false
  // then (and when the timer could not be made or poll fails).
  bool wait(std::vector<pollfd>& fds) {
    if (!fd_) return false;
    for (auto& p : fds) p.revents = 0;
    fds.push_back({fd_.get(), POLLIN, 0});
    int ready;
    do {
      ready = poll(fds.data(), fds.size(), -1);
    } while (ready < 0 && errno == EINTR);
    const bool expired = ready < 0 || fds.back().revents != 0;
    fds.pop_back();
    return !expired;
  }

 private:
  Fd fd_;
};

bool waitFor(Deadline& deadline, int fd, short events) {
  std::vector<pollfd> fds{{fd, events, 0}};
  return deadline.wait(fds);
}

// Reads what `fd` (non-blocking) has now into `output`, keeping its end; false at end of file or
// an error.
bool drain(int fd, std::string& output) {
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      output.append(buf, static_cast<std::size_t>(n));
      if (output.size() > kMaxOutput) output.erase(0, output.size() - kMaxOutput);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
}

Result<Fd> connectTo(const HttpUrl& url, Deadline& deadline, const std::string& where, Duration timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(url.host.c_str(), url.port.c_str(), &hints, &found); rc != 0) {
    return Error{where + ": " + gai_strerror(rc)};
  }
  std::string failure = "no address";
  Fd connected;
  for (addrinfo* a = found; a != nullptr && !connected; a = a->ai_next) {
    Fd s(socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol));
    if (!s) {
      failure = errnoText("socket", errno);
      continue;
    }
    if (connect(s.get(), a->ai_addr, a->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        failure = errnoText("connect", errno);
        continue;
      }
      if (!waitFor(deadline, s.get(), POLLOUT)) {
        failure = "no connection within " + std::to_string(timeout.count()) + " ms";
        break;
      }
      int error = 0;
      socklen_t length = sizeof error;
      getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &error, &length);
      if (error != 0) {
        failure = errnoText("connect", error);
        continue;
      }
    }
    connected = std::move(s);
  }
  freeaddrinfo(found);
  if (!connected) return Error{where + ": " + failure};
  return connected;
}

}  // namespace

Result<HttpUrl> parseHttpUrl(const std::string& url) {
  static constexpr std::string_view kScheme = "http://";
  if (url.rfind(kScheme, 0) != 0) return Error{"'" + url + "' is not an http:// URL (https is not supported)"};
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return Error{"'" + url + "' has a blank or control byte"};
  }
  const std::size_t start = kScheme.size();
  const std::size_t slash = url.find('/', start);
  const std::string authority = url.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
  HttpUrl out;
  if (slash != std::string::npos) out.path = url.substr(slash);
  std::string port;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string::npos) return Error{"'" + url + "': unclosed [ in the host"};
    out.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return Error{"'" + url + "': junk after the host"};
      port = authority.substr(close + 2);
    }
  } else {
    const std::size_t colon = authority.rfind(':');
    out.host = authority.substr(0, colon);
    if (colon != std::string::npos) port = authority.substr(colon + 1);
  }
  if (out.host.empty() || out.host.find('@') != std::string::npos) return Error{"'" + url + "': no host"};
  if (!port.empty()) {
    const bool digits =
        port.size() <= 5 && std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits || std::stoi(port) < 1 || std::stoi(port) > 65535) return Error{"'" + url + "': bad port"};
    out.port = port;
  }
  return out;
}

Status httpPost(const HttpUrl& url, const std::string& body, Duration timeout) {
  const bool v6 = url.host.find(':') != std::string::npos;
  const std::string host = (v6 ? "[" + url.host + "]" : url.host) + (url.port == "80" ? "" : ":" + url.port);
  const std::string where = "POST http://" + host + url.path;
  Deadline deadline(timeout);
  Result<Fd> connected = connectTo(url, deadline, where, timeout);
  if (!connected.ok()) return connected.error();
  const int fd = connected.value().get();
  const std::string request =
      "POST " + url.path + " HTTP/1.1\r\nHost: " + host +
      "\r\nUser-Agent: amfd\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\nConnection: close\r\n\r\n" + body;
  for (std::size_t sent = 0; sent < request.size();) {
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!waitFor(deadline, fd, POLLOUT))
        return Error{where + ": not sent within " + std::to_string(timeout.count()) + " ms"};
    } else if (n < 0 && errno != EINTR) {
      return Error{where + ": " + errnoText("send", errno)};
    }
  }
  std::string answer;
  while (answer.find("\r\n") == std::string::npos && answer.size() < kMaxAnswer) {
    char buf[1024];
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      answer.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!waitFor(deadline, fd, POLLIN))
        return Error{where + ": no answer within " + std::to_string(timeout.count()) + " ms"};
    } else if (errno != EINTR) {
      return Error{where + ": " + errnoText("recv", errno)};
    }
  }
  const std::string status = answer.substr(0, answer.find("\r\n"));
  const std::size_t space = status.find(' ');
  if (status.rfind("HTTP/", 0) != 0 || space == std::string::npos) {
    return Error{where + ": not an HTTP answer" + (status.empty() ? "" : ": " + status.substr(0, 80))};
  }
  const int code = std::atoi(status.c_str() + space + 1);
  if (code < 200 || code > 299) return Error{where + ": " + status.substr(space + 1, 80)};
  return Status::success();
}

Status runCommand(const std::string& command, const std::string& input,
                  const std::map<std::string, std::string>& environment, Duration timeout) {
  int inPair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, inPair) != 0) return Error{errnoText("socketpair", errno)};
  Fd in(inPair[0]), childIn(inPair[1]);
  int outPipe[2];
  if (pipe2(outPipe, O_CLOEXEC) != 0) return Error{errnoText("pipe2", errno)};
  Fd out(outPipe[0]), childOut(outPipe[1]);
  fcntl(in.get(), F_SETFL, fcntl(in.get(), F_GETFL) | O_NONBLOCK);
  fcntl(out.get(), F_SETFL, fcntl(out.get(), F_GETFL) | O_NONBLOCK);

  // amfd's environment with `environment` put over it.
  std::vector<std::string> variables;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    if (!environment.contains(std::string(entry.substr(0, entry.find('='))))) variables.emplace_back(entry);
  }
  for (const auto& [name, value] : environment) variables.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (auto& v : variables) envp.push_back(v.data());
  envp.push_back(nullptr);

  const pid_t pid = spawnShell(command, childIn.get(), childOut.get(), envp.data());
  childIn.reset();
  childOut.reset();
  if (pid < 0) return Error{"cannot start the command: " + errnoText("posix_spawn", -pid)};

  Deadline deadline(timeout);
  Fd pidFd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidFd) {
    const int error = errno;
    killpg(pid, SIGKILL);
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return Error{"cannot watch the command: " + errnoText("pidfd_open", error)};
  }
  std::string output;
  std::size_t written = 0;
  bool timedOut = false;
  if (input.empty()) in.reset();  // end of file at once
  for (bool exited = false; !exited && !timedOut;) {
    std::vector<pollfd> fds{{pidFd.get(), POLLIN, 0}, {out.get(), POLLIN, 0}, {in.get(), POLLOUT, 0}};
    if (!deadline.wait(fds)) {
      timedOut = true;
      break;
    }
    exited = fds[0].revents != 0;
    if (out && fds[1].revents != 0 && !drain(out.get(), output)) out.reset();
    if (in && fds[2].revents != 0) {
      const ssize_t n = send(in.get(), input.data() + written, input.size() - written, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) written += static_cast<std::size_t>(n);
      // All written, or the command closed its input (it need not read it): end of file.
      if (written == input.size() || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) in.reset();
    }
  }
  if (timedOut) killpg(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  // What it wrote before it exited is in the pipe; processes it left behind may hold it open, so
  // do not wait for end of file.
  if (out) drain(out.get(), output);
  if (timedOut) return Error{withLastLine("timed out after " + std::to_string(timeout.count()) + " ms", output)};
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::success();
  if (WIFEXITED(status))
    return Error{withLastLine("exited with status " + std::to_string(WEXITSTATUS(status)), output)};
  return Error{withLastLine("killed by signal " + std::to_string(WTERMSIG(status)), output)};
}

}  // namespace kvm_amf::monitor
