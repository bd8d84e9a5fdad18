// What the programs the lab hosts run (amf-testnode, amf-ckptnode) share: a journal of JSON lines,
// files replaced whole, commands read from a FIFO, and a clean stop on SIGTERM or SIGINT. All on
// the program's event loop.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "kvm_amf/common/event_loop.h"

namespace kvm_amf::testing {

// Appends one JSON object a line to a file, each with "t", the loop's time.
class JsonJournal {
 public:
  JsonJournal(Scheduler& clock, const std::string& path) : clock_(clock) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  }
  ~JsonJournal() {
    if (fd_ >= 0) ::close(fd_);
  }
  JsonJournal(const JsonJournal&) = delete;
  JsonJournal& operator=(const JsonJournal&) = delete;

  void write(nlohmann::json line) {
    line["t"] = clock_.now().count();
    const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    if (fd_ >= 0 && ::write(fd_, text.data(), text.size()) < 0) std::perror("journal");
  }

 private:
  Scheduler& clock_;
  int fd_ = -1;
};

// Replaces `path` with `text` (written beside it, then renamed): readers see one or the other.
inline void writeAtomically(const std::string& path, const std::string& text) {
  const std::string temporary = path + ".tmp";
  FILE* file = std::fopen(temporary.c_str(), "w");
  if (!file) return;
  std::fwrite(text.data(), 1, text.size(), file);
  std::fclose(file);
  std::rename(temporary.c_str(), path.c_str());
}

// A FIFO at `path` (made anew) whose lines go to `onLine`, and SIGTERM/SIGINT to `onStop`.
class LabNodeInput {
 public:
  LabNodeInput(EventLoop& loop, const std::string& path, std::function<void(const std::string&)> onLine,
               std::function<void()> onStop)
      : loop_(loop), onLine_(std::move(onLine)), onStop_(std::move(onStop)) {
    ::unlink(path.c_str());
    ::mkfifo(path.c_str(), 0600);
    control_ = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    (void)loop_.watch(control_, [this] { readLines(); });
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigprocmask(SIG_BLOCK, &signals, nullptr);
    signal_ = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
    (void)loop_.watch(signal_, [this] {
      signalfd_siginfo info{};
      if (::read(signal_, &info, sizeof info) > 0) onStop_();
    });
  }
  ~LabNodeInput() {
    loop_.unwatch(control_);
    loop_.unwatch(signal_);
    ::close(control_);
    ::close(signal_);
  }
  LabNodeInput(const LabNodeInput&) = delete;
  LabNodeInput& operator=(const LabNodeInput&) = delete;

 private:
  void readLines() {
    char buffer[4096];
    const ssize_t n = ::read(control_, buffer, sizeof buffer);
    if (n <= 0) return;
    pending_.append(buffer, static_cast<std::size_t>(n));
    std::size_t end;
    while ((end = pending_.find('\n')) != std::string::npos) {
      const std::string line = pending_.substr(0, end);
      pending_.erase(0, end + 1);
      onLine_(line);
    }
  }

  EventLoop& loop_;
  std::function<void(const std::string&)> onLine_;
  std::function<void()> onStop_;
  int control_ = -1;
  int signal_ = -1;
  std::string pending_;
};

}  // namespace kvm_amf::testing
