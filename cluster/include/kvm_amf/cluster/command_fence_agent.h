// The real fencing agent: runs the configured command (`/bin/sh -c`) with `{node}` replaced by the
// host's name, and reports its exit. The command runs in its own process group, with stdin from
// /dev/null and stdout and stderr read by the event loop; nothing here blocks the loop.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "kvm_amf/cluster/fence_agent.h"
#include "kvm_amf/common/event_loop.h"

namespace kvm_amf::cluster {

// Loop thread only: construct, call fence() and destroy it on the thread that runs `loop`, which
// must outlive it.
class CommandFenceAgent : public FenceAgent {
 public:
  explicit CommandFenceAgent(EventLoop& loop);
  // Kills (SIGKILL to the process group) and reaps every command still running; their `done`
  // never runs. Waits for the killed commands to exit.
  ~CommandFenceAgent() override;
  CommandFenceAgent(const CommandFenceAgent&) = delete;
  CommandFenceAgent& operator=(const CommandFenceAgent&) = delete;

  // Starts the command and returns; several may run at once. `done` runs later on the loop, never
  // inside fence():
  //   exit 0:        done(true, the last non-empty line of output, or "fenced")
  //   exit N != 0:   done(false, "fence command exited with status N: <last line>")
  //   signal N:      done(false, "fence command killed by signal N: <last line>")
  //   timeout:       the process group is killed, then done(false, "fence command timed out after T ms")
  //   empty command, or the command cannot be started: done(false, why)
  // `node` is put into the command as it is, unquoted: it must be a host name, not untrusted text.
  void fence(const std::string& node, const FenceMethod& method, Done done) override;

 private:
  struct Attempt {
    pid_t pid = -1;  // also the process group id
    int pidFd = -1;
    int outFd = -1;      // read end of the stdout+stderr pipe; -1 once it reached end of file
    std::string output;  // the last kMaxOutput bytes
    TimerId timer = 0;
    Duration timeout{0};
    bool timedOut = false;
    Done done;
  };

  // Reads what the command wrote so far; closes the pipe at end of file.
  void readOutput(Attempt& attempt);
  // The pidfd is readable: reaps the command and reports.
  void onExit(std::uint64_t id);
  void onTimeout(std::uint64_t id);
  // Releases the attempt's descriptors and timer, forgets it, then calls its done (last: done may
  // destroy this agent).
  void finish(std::uint64_t id, bool ok, std::string message);
  // Runs done(false, message) on the loop, unless this agent is gone by then.
  void failLater(Done done, std::string message);

  EventLoop& loop_;
  std::map<std::uint64_t, Attempt> attempts_;
  std::uint64_t nextAttempt_ = 1;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // posted callbacks hold it weakly
};

}  // namespace kvm_amf::cluster
