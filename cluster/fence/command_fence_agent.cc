#include "kvm_amf/cluster/command_fence_agent.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "kvm_amf/common/shell_command.h"

namespace kvm_amf::cluster {

namespace {

constexpr std::size_t kMaxOutput = 4096;

std::string errnoText(const char* what, int error) { return std::string(what) + ": " + std::strerror(error); }

std::string substituteNode(const std::string& command, const std::string& node) {
  static constexpr std::string_view kPlaceholder = "{node}";
  std::string out;
  std::size_t pos = 0;
  for (std::size_t hit; (hit = command.find(kPlaceholder, pos)) != std::string::npos; pos = hit + kPlaceholder.size()) {
    out.append(command, pos, hit - pos);
    out += node;
  }
  out.append(command, pos);
  return out;
}

// Waits for `pid`, which must be our child, and retries when interrupted. Blocks.
void reapBlocking(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace

CommandFenceAgent::CommandFenceAgent(EventLoop& loop) : loop_(loop) {}

CommandFenceAgent::~CommandFenceAgent() {
  for (auto& [id, attempt] : attempts_) {
    killpg(attempt.pid, SIGKILL);
    if (attempt.outFd >= 0) {
      loop_.unwatch(attempt.outFd);
      close(attempt.outFd);
    }
    loop_.unwatch(attempt.pidFd);
    close(attempt.pidFd);
    loop_.cancel(attempt.timer);
    reapBlocking(attempt.pid);
  }
}

void CommandFenceAgent::failLater(Done done, std::string message) {
  loop_.post([alive = std::weak_ptr<bool>(alive_), done = std::move(done), message = std::move(message)]() mutable {
    if (!alive.expired()) done(false, std::move(message));
  });
}

void CommandFenceAgent::fence(const std::string& node, const FenceMethod& method, Done done) {
  if (method.command.empty()) return failLater(std::move(done), "no fence command configured");

  int pipeFds[2];
  if (pipe2(pipeFds, O_CLOEXEC) != 0) {
    return failLater(std::move(done), "cannot start the fence command: " + errnoText("pipe2", errno));
  }
  fcntl(pipeFds[0], F_SETFL, fcntl(pipeFds[0], F_GETFL) | O_NONBLOCK);
  pid_t pid = spawnShell(substituteNode(method.command, node), -1, pipeFds[1]);
  close(pipeFds[1]);
  if (pid < 0) {
    close(pipeFds[0]);
    return failLater(std::move(done), "cannot start the fence command: " + errnoText("posix_spawn", -pid));
  }

  std::uint64_t id = nextAttempt_++;
  Attempt& attempt = attempts_[id];
  attempt.pid = pid;
  attempt.outFd = pipeFds[0];
  attempt.timeout = method.timeout;
  attempt.done = std::move(done);

  std::string failure;
  attempt.pidFd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (attempt.pidFd < 0) {
    failure = errnoText("pidfd_open", errno);
  } else if (Status watched = loop_.watch(attempt.pidFd, [this, id] { onExit(id); }); !watched) {
    failure = watched.error().message;
  } else if (Status read = loop_.watch(attempt.outFd, [this, id] { readOutput(attempts_.at(id)); }); !read) {
    failure = read.error().message;
  }
  if (!failure.empty()) {
    // Without a pidfd or the pipe watched the exit cannot be awaited on the loop: stop the command
    // now. Blocks only while a just-started shell dies of SIGKILL.
    killpg(pid, SIGKILL);
    reapBlocking(pid);
    Done failed = std::move(attempt.done);
    attempt.done = nullptr;
    finish(id, false, "");  // releases the descriptors; the empty done is not called
    return failLater(std::move(failed), "cannot watch the fence command: " + failure);
  }
  attempt.timer = loop_.after(method.timeout, [this, id] { onTimeout(id); });
}

void CommandFenceAgent::readOutput(Attempt& attempt) {
  char buf[4096];
  while (attempt.outFd >= 0) {
    ssize_t n = read(attempt.outFd, buf, sizeof buf);
    if (n > 0) {
      attempt.output.append(buf, static_cast<std::size_t>(n));
      if (attempt.output.size() > kMaxOutput) attempt.output.erase(0, attempt.output.size() - kMaxOutput);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    // End of file (every writer gone) or an error reading: nothing more will come.
    loop_.unwatch(attempt.outFd);
    close(attempt.outFd);
    attempt.outFd = -1;
  }
}

void CommandFenceAgent::onExit(std::uint64_t id) {
  Attempt& attempt = attempts_.at(id);
  int status = 0;
  pid_t reaped;
  while ((reaped = waitpid(attempt.pid, &status, WNOHANG)) < 0 && errno == EINTR) {
  }
  if (reaped == 0) return;  // not exited after all
  if (reaped < 0) {
    // Someone else reaped it (SIGCHLD ignored, or a waitpid(-1) elsewhere in the process).
    return finish(id, false, "fence command's exit status is lost: " + errnoText("waitpid", errno));
  }
  // What the shell wrote before it exited is in the pipe now. Processes it left behind may still
  // hold the pipe open, so do not wait for end of file.
  readOutput(attempt);
  if (attempt.timedOut) {
    return finish(id, false, "fence command timed out after " + std::to_string(attempt.timeout.count()) + " ms");
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    std::string line = lastLine(attempt.output);
    return finish(id, true, line.empty() ? "fenced" : line);
  }
  if (WIFEXITED(status)) {
    return finish(
        id, false,
        withLastLine("fence command exited with status " + std::to_string(WEXITSTATUS(status)), attempt.output));
  }
  finish(id, false, withLastLine("fence command killed by signal " + std::to_string(WTERMSIG(status)), attempt.output));
}

void CommandFenceAgent::onTimeout(std::uint64_t id) {
  Attempt& attempt = attempts_.at(id);
  attempt.timer = 0;
  siginfo_t info{};
  if (waitid(P_PID, static_cast<id_t>(attempt.pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0) {
    return onExit(id);  // it ended in time, its pidfd not read yet: report how it ended
  }
  // SIGKILL to the whole group: the shell and everything it started. The pidfd then reports the
  // shell's death and onExit() reaps it.
  killpg(attempt.pid, SIGKILL);
  attempt.timedOut = true;
}

void CommandFenceAgent::finish(std::uint64_t id, bool ok, std::string message) {
  auto node = attempts_.extract(id);
  Attempt& attempt = node.mapped();
  if (attempt.outFd >= 0) {
    loop_.unwatch(attempt.outFd);
    close(attempt.outFd);
  }
  if (attempt.pidFd >= 0) {
    loop_.unwatch(attempt.pidFd);
    close(attempt.pidFd);
  }
  if (attempt.timer != 0) loop_.cancel(attempt.timer);
  if (attempt.done) attempt.done(ok, std::move(message));
}

}  // namespace kvm_amf::cluster
