#include "kvm_amf/cluster/command_fence_agent.h"
#include "testing/run_until.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace kvm_amf::cluster {
namespace {

using std::chrono::milliseconds;

// Far more than anything here should take, so that a slow machine does not fail a test.
constexpr Duration kPatience{20000};

struct Outcome {
  int calls = 0;
  bool ok = false;
  std::string message;
};

FenceAgent::Done record(Outcome& outcome) {
  return [&outcome](bool ok, std::string message) {
    ++outcome.calls;
    outcome.ok = ok;
    outcome.message = std::move(message);
  };
}

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<pid_t> readPids(const std::filesystem::path& path) {
  std::vector<pid_t> pids;
  std::istringstream in(readFile(path));
  for (pid_t pid; in >> pid;) pids.push_back(pid);
  return pids;
}

// Whether a process of group `pgid` still runs (zombies, which only wait to be reaped, do not count).
bool groupRuns(pid_t pgid) {
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return false;
  bool found = false;
  while (dirent* entry = readdir(proc)) {
    std::string name = entry->d_name;
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string stat = readFile("/proc/" + name + "/stat");
    std::size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream fields(stat.substr(paren + 1));
    char state = 0;
    pid_t ppid = 0;
    pid_t pgrp = 0;
    fields >> state >> ppid >> pgrp;
    if (pgrp == pgid && state != 'Z' && state != 'X') found = true;
  }
  closedir(proc);
  return found;
}

int openFds() {
  int count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++count;
  return count;
}

bool processRuns(pid_t pid) {
  std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  std::size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return false;
  char state = stat.size() > paren + 2 ? stat[paren + 2] : 0;
  return state != 'Z' && state != 'X';
}

class CommandFenceAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto created = EventLoop::create();
    ASSERT_TRUE(created.ok());
    loop_ = std::move(created).value();
    agent_ = std::make_unique<CommandFenceAgent>(*loop_);
    std::string pattern = (std::filesystem::temp_directory_path() / "fence_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    agent_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Runs the loop until `done()` holds or `limit` passes; returns done().
  bool runUntil(const std::function<bool()>& done, Duration limit = kPatience) {
    return kvm_amf::testing::runUntil(*loop_, done, limit);
  }

  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<CommandFenceAgent> agent_;
  std::filesystem::path dir_;
};

TEST_F(CommandFenceAgentTest, SuccessSubstitutesTheNodeAndReportsTheLastLine) {
  auto file = dir_ / "fenced";
  Outcome outcome;
  agent_->fence(
      "node-a",
      {"printf '%s\\n' {node} > " + file.string() + "; echo 'powering off {node}'; echo 'done: {node} off'; echo",
       Duration(10000)},
      record(outcome));
  EXPECT_EQ(outcome.calls, 0);  // never inside fence()
  ASSERT_TRUE(runUntil([&] { return outcome.calls > 0; }));
  EXPECT_EQ(outcome.calls, 1);
  EXPECT_TRUE(outcome.ok);
  EXPECT_EQ(outcome.message, "done: node-a off");
  EXPECT_EQ(readFile(file), "node-a\n");
  int status = 0;
  EXPECT_EQ(waitpid(-1, &status, WNOHANG), -1);  // reaped: no child left, not even a zombie
  EXPECT_EQ(errno, ECHILD);
}

TEST_F(CommandFenceAgentTest, SuccessWithoutOutputSaysFenced) {
  Outcome outcome;
  agent_->fence("node-a", {"true", Duration(10000)}, record(outcome));
  ASSERT_TRUE(runUntil([&] { return outcome.calls > 0; }));
  EXPECT_TRUE(outcome.ok);
  EXPECT_EQ(outcome.message, "fenced");
}

TEST_F(CommandFenceAgentTest, FailureReportsTheStatusAndTheLastLineOfStdoutOrStderr) {
  Outcome outcome;
  agent_->fence("node-b", {"echo trying {node}; echo 'no power switch for {node}' >&2; exit 3", Duration(10000)},
                record(outcome));
  ASSERT_TRUE(runUntil([&] { return outcome.calls > 0; }));
  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.message, "fence command exited with status 3: no power switch for node-b");
}

TEST_F(CommandFenceAgentTest, FailureWithoutOutput) {
  Outcome outcome;
  agent_->fence("node-b", {"exit 1", Duration(10000)}, record(outcome));
  ASSERT_TRUE(runUntil([&] { return outcome.calls > 0; }));
  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.message, "fence command exited with status 1");
}

TEST_F(CommandFenceAgentTest, CommandKilledBySignal) {
  Outcome outcome;
  agent_->fence("node-b", {"echo about to die; kill -TERM $$", Duration(10000)}, record(outcome));
  ASSERT_TRUE(runUntil([&] { return outcome.calls > 0; }));
  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.message, "fence command killed by signal 15: about to die");
}

TEST_F(CommandFenceAgentTest, MissingProgramFails) {
  Outcome outcome;
  agent_->fence("node-b", {"/nonexistent/fence-agent {node}", Duration(10000)}, record(outcome));
  ASSERT_TRUE(runUntil([&] { return outcome.calls > 0; }));
  EXPECT_FALSE(outcome.ok);
  EXPECT_NE(outcome.message.find("fence command exited with status 127"), std::string::npos) << outcome.message;
}

TEST_F(CommandFenceAgentTest, EmptyCommandFailsLaterNotInsideFence) {
  Outcome outcome;
  agent_->fence("node-c", {"", Duration(10000)}, record(outcome));
  EXPECT_EQ(outcome.calls, 0);
  ASSERT_TRUE(runUntil([&] { return outcome.calls > 0; }));
  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.message, "no fence command configured");
}

TEST_F(CommandFenceAgentTest, KeepsOnlyTheEndOfLongOutput) {
  Outcome outcome;
  agent_->fence("node-a", {"i=0; while [ $i -lt 5000 ]; do echo line$i; i=$((i+1)); done", Duration(10000)},
                record(outcome));
  ASSERT_TRUE(runUntil([&] { return outcome.calls > 0; }));
  EXPECT_TRUE(outcome.ok);
  EXPECT_EQ(outcome.message, "line4999");
}

TEST_F(CommandFenceAgentTest, TimeoutKillsTheWholeProcessGroup) {
  auto pids = dir_ / "pids";
  Outcome outcome;
  // The shell's pid is its process group; the background sleep is a second member.
  agent_->fence(
      "node-a",
      {"echo $$ > " + pids.string() + "; sleep 30 & echo $! >> " + pids.string() + "; sleep 30", Duration(500)},
      record(outcome));
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(runUntil([&] { return outcome.calls > 0; }));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.message, "fence command timed out after 500 ms");

  std::vector<pid_t> started = readPids(pids);
  ASSERT_EQ(started.size(), 2u);
  // SIGKILL has been sent to the group; the background sleep dies soon after.
  EXPECT_TRUE(runUntil([&] { return !groupRuns(started[0]); }, Duration(5000)));
  EXPECT_FALSE(processRuns(started[1]));
}

TEST_F(CommandFenceAgentTest, LoopRunsTimersWhileTheCommandRuns) {
  Outcome outcome;
  agent_->fence("node-a", {"sleep 1; echo off", Duration(10000)}, record(outcome));
  int ticks = 0;
  std::function<void()> tick = [&] {
    ++ticks;
    if (outcome.calls == 0) loop_->after(Duration(20), tick);
  };
  loop_->after(Duration(0), tick);
  ASSERT_TRUE(runUntil([&] { return outcome.calls > 0; }));
  EXPECT_TRUE(outcome.ok);
  EXPECT_GE(ticks, 5);  // about 50 in the second the command sleeps
}

TEST_F(CommandFenceAgentTest, SeveralFencesRunAtOnce) {
  std::vector<Outcome> outcomes(3);
  int fdsBefore = openFds();
  auto start = std::chrono::steady_clock::now();
  agent_->fence("n1", {"sleep 1; echo {node} off", Duration(10000)}, record(outcomes[0]));
  agent_->fence("n2", {"sleep 1; echo {node} stuck; exit 2", Duration(10000)}, record(outcomes[1]));
  agent_->fence("n3", {"echo {node} off", Duration(10000)}, record(outcomes[2]));
  ASSERT_TRUE(runUntil([&] { return outcomes[0].calls && outcomes[1].calls && outcomes[2].calls; }));
  // In parallel: well under the 2 s the two sleeps would take one after the other.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1900));
  EXPECT_TRUE(outcomes[0].ok);
  EXPECT_EQ(outcomes[0].message, "n1 off");
  EXPECT_FALSE(outcomes[1].ok);
  EXPECT_EQ(outcomes[1].message, "fence command exited with status 2: n2 stuck");
  EXPECT_TRUE(outcomes[2].ok);
  EXPECT_EQ(outcomes[2].message, "n3 off");
  EXPECT_EQ(openFds(), fdsBefore);  // pipes and pidfds closed
}

TEST_F(CommandFenceAgentTest, DestructorKillsARunningCommandAndNeverCallsDone) {
  auto pids = dir_ / "pids";
  Outcome outcome;
  Outcome emptyOutcome;
  int fdsBefore = openFds();
  agent_->fence("node-a", {"sleep 30 & echo $$ $! > " + pids.string() + "; sleep 30", Duration(60000)},
                record(outcome));
  ASSERT_TRUE(runUntil([&] { return readPids(pids).size() == 2; }));
  std::vector<pid_t> started = readPids(pids);

  agent_->fence("node-b", {"", Duration(1000)}, record(emptyOutcome));  // its failure is posted
  agent_.reset();
  EXPECT_EQ(openFds(), fdsBefore);
  int status = 0;
  EXPECT_EQ(waitpid(-1, &status, WNOHANG), -1);  // the shell is reaped
  EXPECT_EQ(errno, ECHILD);
  EXPECT_FALSE(processRuns(started[0]));
  EXPECT_TRUE(runUntil([&] { return !groupRuns(started[0]); }, Duration(5000)));
  EXPECT_FALSE(processRuns(started[1]));

  loop_->runFor(Duration(100));
  EXPECT_EQ(outcome.calls, 0);
  EXPECT_EQ(emptyOutcome.calls, 0);
}

TEST_F(CommandFenceAgentTest, DoneMayDestroyTheAgent) {
  Outcome outcome;
  agent_->fence("node-a", {"echo off", Duration(10000)}, [&](bool ok, std::string message) {
    agent_.reset();
    record(outcome)(ok, std::move(message));
  });
  ASSERT_TRUE(runUntil([&] { return outcome.calls > 0; }));
  EXPECT_TRUE(outcome.ok);
  EXPECT_EQ(agent_, nullptr);
}

}  // namespace
}  // namespace kvm_amf::cluster
