// Runs the built kvm-amf-agent on the host against a UNIX socket the test listens on (--port),
// playing the host's side of docs/guest-protocol.md.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kvm_amf/vmm/guest_protocol.h"
#include "testing/child_process.h"

namespace kvm_amf::vmm {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kPatience{10000};  // generous: the machine may be slow

std::string readFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class GuestAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "guest_agent_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    socketPath_ = dir_ / "port.sock";
    listener_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(listener_, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, socketPath_.c_str(), sizeof address.sun_path - 1);
    ASSERT_EQ(bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    ASSERT_EQ(listen(listener_, 4), 0);
  }

  void TearDown() override {
    if (agent_ > 0) {
      kill(agent_, SIGKILL);
      waitpid(agent_, nullptr, 0);
    }
    if (connection_ >= 0) close(connection_);
    if (listener_ >= 0) close(listener_);
    if (HasFailure()) std::cerr << "agent log:\n" << readFile(dir_ / "agent.log");
    fs::remove_all(dir_);
  }

  void startAgent(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {KVM_AMF_AGENT_PATH,       "--port",    socketPath_.string(), "--hook",
                                     (dir_ / "hook").string(), "--control", control().string()};
    args.insert(args.end(), extra.begin(), extra.end());
    agent_ = testing::spawnProcess(args, (dir_ / "agent.log").string());
    ASSERT_GE(agent_, 0);
    acceptAgent();
  }

  void acceptAgent() {
    pollfd fd{listener_, POLLIN, 0};
    ASSERT_EQ(poll(&fd, 1, static_cast<int>(kPatience.count())), 1) << "the agent did not connect";
    connection_ = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    ASSERT_GE(connection_, 0);
    reader_.reset();
  }

  void sendRaw(const std::string& bytes) {
    ASSERT_EQ(write(connection_, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }
  void send(const HostMessage& message) { sendRaw(formatHostMessage(message)); }

  // The agent's next message, or nothing within `patience`.
  std::optional<GuestMessage> receive(std::chrono::milliseconds patience = kPatience) {
    auto deadline = Clock::now() + patience;
    while (true) {
      if (auto line = reader_.next()) {
        auto parsed = parseGuestLine(*line);
        EXPECT_TRUE(parsed.ok()) << *line;
        if (parsed.ok()) return parsed.value();
        continue;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd fd{connection_, POLLIN, 0};
      if (poll(&fd, 1, static_cast<int>(left.count())) <= 0) continue;
      char buffer[4096];
      ssize_t got = read(connection_, buffer, sizeof buffer);
      if (got <= 0) return std::nullopt;
      reader_.feed(std::string_view(buffer, static_cast<std::size_t>(got)));
    }
  }

  // The next message of type T, skipping others (heartbeats).
  template <typename T>
  std::optional<T> receiveA(std::chrono::milliseconds patience = kPatience) {
    auto deadline = Clock::now() + patience;
    while (Clock::now() < deadline) {
      auto message = receive(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
      if (!message) return std::nullopt;
      if (auto* wanted = std::get_if<T>(&*message)) return *wanted;
    }
    return std::nullopt;
  }

  void welcome(std::uint32_t intervalMs = 100) {
    auto hello = receiveA<HelloMessage>();
    ASSERT_TRUE(hello);
    EXPECT_EQ(hello->version, kGuestProtocolVersion);
    send(WelcomeMessage{kGuestProtocolVersion, intervalMs});
  }

  // `count` heartbeats with consecutive seqs; returns the last seq.
  std::uint64_t expectHeartbeats(int count, bool healthy = true) {
    std::uint64_t last = 0;
    for (int i = 0; i < count; ++i) {
      auto beat = receiveA<HeartbeatMessage>();
      EXPECT_TRUE(beat);
      if (!beat) return last;
      EXPECT_EQ(beat->healthy, healthy) << beat->reason;
      if (last != 0) {
        EXPECT_EQ(beat->seq, last + 1);
      }
      last = beat->seq;
    }
    return last;
  }

  void writeHook(const std::string& body) {
    fs::path hook = dir_ / "hook";
    std::ofstream(hook) << "#!/bin/sh\n" << body;
    fs::permissions(hook, fs::perms::owner_all);
  }

  fs::path control() const { return dir_ / "run" / "agent.sock"; }

  // `kvm-amf-agent ckpt ARGS...` as an application in the guest runs it, in the background: its
  // stdout and stderr go to files, its stdin comes from `input`.
  struct Command {
    pid_t pid = -1;
    fs::path out;
    fs::path err;
  };
  Command ckpt(std::vector<std::string> args, const std::string& input = "") {
    static int count = 0;
    Command command;
    command.out = dir_ / ("ckpt" + std::to_string(++count) + ".out");
    command.err = dir_ / ("ckpt" + std::to_string(count) + ".err");
    const fs::path in = dir_ / ("ckpt" + std::to_string(count) + ".in");
    std::ofstream(in) << input;
    args.insert(args.begin(), {KVM_AMF_AGENT_PATH, "ckpt", "--control", control().string()});
    command.pid = fork();
    if (command.pid == 0) {
      int fdIn = open(in.c_str(), O_RDONLY);
      int fdOut = open(command.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int fdErr = open(command.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fdIn, STDIN_FILENO);
      dup2(fdOut, STDOUT_FILENO);
      dup2(fdErr, STDERR_FILENO);
      std::vector<char*> argv;
      for (auto& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    return command;
  }
  // Its exit code, or -1 if it has not exited within kPatience.
  int exitCode(const Command& command) {
    auto deadline = Clock::now() + kPatience;
    int status = 0;
    while (waitpid(command.pid, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        kill(command.pid, SIGKILL);
        waitpid(command.pid, &status, 0);
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  fs::path dir_;
  fs::path socketPath_;
  int listener_ = -1;
  int connection_ = -1;
  pid_t agent_ = -1;
  GuestLineReader reader_;
};

TEST_F(GuestAgentTest, HelloWelcomeAndHeartbeatsWithIncreasingSeq) {
  startAgent();
  welcome(100);
  auto start = Clock::now();
  expectHeartbeats(5);
  // 5 heartbeats at 100 ms take far less than 5 default (1000 ms) intervals.
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(4500));
}

TEST_F(GuestAgentTest, AssignRunsTheHookWithAttributesAndAcks) {
  writeHook("echo \"args=$*\" >> \"" + (dir_ / "record").string() + "\"\nenv | grep '^KVMAMF_' | sort >> \"" +
            (dir_ / "record").string() + "\"\n");
  startAgent();
  welcome();
  send(AssignMessage{7, "si web", GuestHaState::kActive, {{"vip", "10.0.0.1 eth0"}, {"a=b", "grüße=1"}}});
  auto ack = receiveA<AckMessage>();
  ASSERT_TRUE(ack);
  EXPECT_EQ(*ack, (AckMessage{7, true, ""}));
  std::string record = readFile(dir_ / "record");
  EXPECT_NE(record.find("args=active si web\n"), std::string::npos) << record;
  EXPECT_NE(record.find("KVMAMF_ATTR_VIP=10.0.0.1 eth0\n"), std::string::npos) << record;
  EXPECT_NE(record.find("KVMAMF_ATTR_A_B=grüße=1\n"), std::string::npos) << record;
  EXPECT_NE(record.find("KVMAMF_SI=si web\n"), std::string::npos) << record;
  EXPECT_NE(record.find("KVMAMF_HA_STATE=active\n"), std::string::npos) << record;

  send(RemoveMessage{8, "si web"});
  ack = receiveA<AckMessage>();
  ASSERT_TRUE(ack);
  EXPECT_EQ(*ack, (AckMessage{8, true, ""}));
  EXPECT_NE(readFile(dir_ / "record").find("args=removed si web\n"), std::string::npos);
}

TEST_F(GuestAgentTest, FailingHookAcksFail) {
  writeHook("exit 1\n");
  startAgent();
  welcome();
  send(AssignMessage{3, "si", GuestHaState::kStandby, {}});
  auto ack = receiveA<AckMessage>();
  ASSERT_TRUE(ack);
  EXPECT_EQ(*ack, (AckMessage{3, false, "exit 1"}));
}

TEST_F(GuestAgentTest, MissingHookIsSuccess) {
  startAgent();
  welcome();
  send(AssignMessage{4, "si", GuestHaState::kQuiesced, {}});
  auto ack = receiveA<AckMessage>();
  ASSERT_TRUE(ack);
  EXPECT_EQ(*ack, (AckMessage{4, true, ""}));
}

TEST_F(GuestAgentTest, SlowHookTimesOutWithoutBlockingHeartbeats) {
  writeHook("sleep 30\n");
  startAgent({"--hook-timeout", "1500"});
  welcome(100);
  send(AssignMessage{5, "si", GuestHaState::kActive, {}});
  int beats = 0;
  std::optional<AckMessage> ack;
  while (!ack) {
    auto message = receive();
    ASSERT_TRUE(message);
    if (std::holds_alternative<HeartbeatMessage>(*message)) ++beats;
    if (auto* a = std::get_if<AckMessage>(&*message)) ack = *a;
  }
  EXPECT_EQ(*ack, (AckMessage{5, false, "timeout"}));
  EXPECT_GE(beats, 3) << "heartbeats went on while the hook ran";
  expectHeartbeats(2);
}

TEST_F(GuestAgentTest, GarbageAndOversizedLinesAreSurvived) {
  startAgent();
  welcome(100);
  std::uint64_t before = expectHeartbeats(2);
  sendRaw(std::string("\x01\x02\xff garbage\n", 13));
  sendRaw("ASSIGN x si active\nNOPE 1\n\n   \nCKPT 99 ok\nERR 98 what\n");
  sendRaw(std::string(10000, 'A') + "\n");
  sendRaw(std::string(3000, 'B'));
  sendRaw(std::string(3000, 'B') + "\n");
  std::uint64_t after = expectHeartbeats(3);
  EXPECT_GT(after, before);
  send(AssignMessage{11, "si", GuestHaState::kActive, {}});  // no hook file: success
  auto ack = receiveA<AckMessage>();
  ASSERT_TRUE(ack);
  EXPECT_EQ(*ack, (AckMessage{11, true, ""}));
  std::string log = readFile(dir_ / "agent.log");
  EXPECT_NE(log.find("oversized"), std::string::npos) << log;
}

TEST_F(GuestAgentTest, StopAfterStopsHeartbeatsButKeepsServing) {
  startAgent({"--stop-after", "3"});
  welcome(100);
  std::uint64_t last = expectHeartbeats(3);
  // The agent may have sent up to 3 before the WELCOME (at the default interval).
  EXPECT_LE(last, 3u);
  EXPECT_FALSE(receiveA<HeartbeatMessage>(std::chrono::milliseconds(800)));
  send(RemoveMessage{12, "si"});
  auto ack = receiveA<AckMessage>();
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->id, 12u);
}

TEST_F(GuestAgentTest, ReconnectsAfterTheHostCloses) {
  startAgent();
  welcome(100);
  std::uint64_t before = expectHeartbeats(2);
  close(connection_);
  connection_ = -1;
  acceptAgent();
  welcome(100);
  std::uint64_t after = expectHeartbeats(2);
  EXPECT_GT(after, before) << "seq goes on across reconnects";
}

TEST_F(GuestAgentTest, HealthCommandVerdict) {
  startAgent({"--health", "exit 3"});
  welcome(100);
  auto beat = receiveA<HeartbeatMessage>();
  ASSERT_TRUE(beat);
  EXPECT_FALSE(beat->healthy);
  EXPECT_EQ(beat->reason, "exit 3");
}

TEST_F(GuestAgentTest, CkptWriteIsForwardedToTheHostAndItsAnswerEndsTheCommand) {
  startAgent();
  welcome();
  Command command = ckpt({"write", "app state", "counter", "42"});
  auto write = receiveA<CheckpointWriteMessage>();
  ASSERT_TRUE(write);
  EXPECT_EQ(write->name, "app state");
  EXPECT_EQ(write->section, "counter");
  EXPECT_EQ(write->data, "42");
  send(CheckpointReplyMessage{write->id, true, std::nullopt, ""});
  EXPECT_EQ(exitCode(command), 0) << readFile(command.err);
  EXPECT_EQ(readFile(command.out), "");
}

TEST_F(GuestAgentTest, CkptReadPrintsTheSectionsBytes) {
  startAgent();
  welcome();
  Command command = ckpt({"read", "app", "counter"});
  auto read = receiveA<CheckpointReadMessage>();
  ASSERT_TRUE(read);
  EXPECT_EQ(read->name, "app");
  const std::string data("41\n\0\xff end", 9);
  send(CheckpointReplyMessage{read->id, true, data, ""});
  EXPECT_EQ(exitCode(command), 0) << readFile(command.err);
  EXPECT_EQ(readFile(command.out), data);
  // An empty section reads as nothing.
  Command empty = ckpt({"read", "app", "empty"});
  auto second = receiveA<CheckpointReadMessage>();
  ASSERT_TRUE(second);
  send(CheckpointReplyMessage{second->id, true, std::string(), ""});
  EXPECT_EQ(exitCode(empty), 0) << readFile(empty.err);
  EXPECT_EQ(readFile(empty.out), "");
}

TEST_F(GuestAgentTest, CkptWriteReadsItsDataFromStdinWithADash) {
  startAgent();
  welcome();
  Command command = ckpt({"write", "app", "blob", "-"}, std::string("line 1\nline 2\n"));
  auto write = receiveA<CheckpointWriteMessage>();
  ASSERT_TRUE(write);
  EXPECT_EQ(write->data, "line 1\nline 2\n");
  send(CheckpointReplyMessage{write->id, true, std::nullopt, ""});
  EXPECT_EQ(exitCode(command), 0);
}

TEST_F(GuestAgentTest, CkptRefusalsAndErrorsExitOneWithTheReason) {
  startAgent();
  welcome();
  Command missing = ckpt({"read", "app", "nothing"});
  auto read = receiveA<CheckpointReadMessage>();
  ASSERT_TRUE(read);
  send(CheckpointReplyMessage{read->id, false, std::nullopt, "no section 'nothing' of checkpoint 'app'"});
  EXPECT_EQ(exitCode(missing), 1);
  EXPECT_EQ(readFile(missing.err), "kvm-amf-agent ckpt: no section 'nothing' of checkpoint 'app'\n");

  Command unsupported = ckpt({"write", "app", "s", "x"});
  auto write = receiveA<CheckpointWriteMessage>();
  ASSERT_TRUE(write);
  send(ErrorMessage{write->id, "unsupported"});
  EXPECT_EQ(exitCode(unsupported), 1);
  EXPECT_NE(readFile(unsupported.err).find("unsupported"), std::string::npos) << readFile(unsupported.err);
}

TEST_F(GuestAgentTest, CkptWithoutAnAnswerTimesOutAndAClosedPortFailsWhatWaits) {
  startAgent({"--ckpt-timeout", "300"});
  welcome();
  Command slow = ckpt({"read", "app", "s"});
  ASSERT_TRUE(receiveA<CheckpointReadMessage>());
  EXPECT_EQ(exitCode(slow), 1);
  EXPECT_NE(readFile(slow.err).find("no answer from the host within 300 ms"), std::string::npos) << readFile(slow.err);

  Command cut = ckpt({"read", "app", "s"});
  ASSERT_TRUE(receiveA<CheckpointReadMessage>());
  close(connection_);  // the host's end goes away
  connection_ = -1;
  EXPECT_EQ(exitCode(cut), 1);
  EXPECT_NE(readFile(cut.err).find("the host's channel closed"), std::string::npos) << readFile(cut.err);
}

TEST_F(GuestAgentTest, CkptWithoutARunningAgentExits69AndBadArgumentsExit2) {
  Command none = ckpt({"read", "app", "s"});
  EXPECT_EQ(exitCode(none), 69);
  EXPECT_NE(readFile(none.err).find("no agent at"), std::string::npos) << readFile(none.err);
  Command usage = ckpt({"read", "app"});
  EXPECT_EQ(exitCode(usage), 2);
  Command empty = ckpt({"write", "", "s", "x"});
  EXPECT_EQ(exitCode(empty), 2);
}

}  // namespace
}  // namespace kvm_amf::vmm
