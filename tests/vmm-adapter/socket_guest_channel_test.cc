// SocketGuestChannel against a fake QEMU: the test binds the VM's port socket (`DIR/VM.agent`)
// and accepts the channel's connection on the same event loop. It then plays the agent itself,
// or relays the bytes to the built kvm-amf-agent, which connects to a second socket the test
// listens on (`--port`).
#include "kvm_amf/vmm/socket_guest_channel.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "kvm_amf/common/event_loop.h"
#include "kvm_amf/vmm/guest_protocol.h"
#include "testing/child_process.h"
#include "testing/run_until.h"
#include "testing/temp_dir.h"

namespace kvm_amf::vmm {
namespace {

namespace fs = std::filesystem;
using kvm_amf::testing::runUntil;

constexpr Duration kPatience{10000};  // generous: the machine may be slow
const model::HeartbeatSpec kBeat{Duration(50), Duration(300)};

std::string readFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A UNIX stream socket the test listens on, served on the test's event loop: QEMU's end of a
// VM's port, or the socket the real agent connects to. One connection at a time (a new one
// replaces the old). Records the host messages it reads, or relays the bytes to a peer.
class Endpoint {
 public:
  Endpoint(EventLoop& loop, fs::path path) : loop_(loop), path_(std::move(path)) {
    unlink(path_.c_str());
    listener_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    EXPECT_GE(listener_, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path_.c_str(), sizeof address.sun_path - 1);
    EXPECT_EQ(bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address), 0) << std::strerror(errno);
    EXPECT_EQ(listen(listener_, 4), 0);
    EXPECT_TRUE(loop_.watch(listener_, [this] { accept(); }).ok());
  }
  ~Endpoint() {
    hangUp();
    loop_.unwatch(listener_);
    close(listener_);
    unlink(path_.c_str());
  }
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  void relayTo(Endpoint* peer) { peer_ = peer; }
  bool connected() const { return fd_ >= 0; }
  int accepts() const { return accepts_; }
  int ends() const { return ends_; }  // connections the other side closed

  // Closes the connection (QEMU drops its client).
  void hangUp() {
    if (fd_ < 0) return;
    loop_.unwatch(fd_);
    close(fd_);
    fd_ = -1;
  }

  // Bytes to the connection; before there is one, they wait for it.
  void send(const std::string& bytes) {
    if (fd_ < 0) {
      pending_ += bytes;
      return;
    }
    std::size_t done = 0;
    while (done < bytes.size()) {
      ssize_t wrote = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (wrote > 0) {
        done += static_cast<std::size_t>(wrote);
      } else if (wrote < 0 && (errno == EAGAIN || errno == EINTR)) {
        pollfd writable{fd_, POLLOUT, 0};
        poll(&writable, 1, 1000);
      } else {
        ADD_FAILURE() << "write to " << path_ << ": " << std::strerror(errno);
        return;
      }
    }
  }
  void send(const GuestMessage& message) { send(formatGuestMessage(message)); }

  const std::vector<HostMessage>& received() const { return received_; }
  void clearReceived() { received_.clear(); }
  template <typename T>
  std::vector<T> messages() const {
    std::vector<T> out;
    for (const auto& message : received_) {
      if (const T* wanted = std::get_if<T>(&message)) out.push_back(*wanted);
    }
    return out;
  }

 private:
  void accept() {
    int fd = accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    hangUp();
    fd_ = fd;
    ++accepts_;
    reader_.reset();
    EXPECT_TRUE(loop_.watch(fd_, [this] { read(); }).ok());
    std::string waiting;
    waiting.swap(pending_);
    if (!waiting.empty()) send(waiting);
  }

  void read() {
    char buffer[8192];
    while (fd_ >= 0) {
      ssize_t got = recv(fd_, buffer, sizeof buffer, MSG_DONTWAIT);
      if (got > 0) {
        std::string bytes(buffer, static_cast<std::size_t>(got));
        if (peer_ != nullptr) {
          peer_->send(bytes);
          continue;
        }
        reader_.feed(bytes);
        while (auto line = reader_.next()) {
          auto parsed = parseHostLine(*line);
          EXPECT_TRUE(parsed.ok()) << *line;
          if (parsed.ok()) received_.push_back(parsed.value());
        }
        continue;
      }
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      ++ends_;
      hangUp();
    }
  }

  EventLoop& loop_;
  fs::path path_;
  int listener_ = -1;
  int fd_ = -1;
  int accepts_ = 0;
  int ends_ = 0;
  Endpoint* peer_ = nullptr;
  std::string pending_;
  GuestLineReader reader_;
  std::vector<HostMessage> received_;
};

// What a request's `done` got.
struct Outcome {
  int calls = 0;
  std::optional<Status> status;
};

Done record(const std::shared_ptr<Outcome>& outcome) {
  return [outcome](Status status) {
    ++outcome->calls;
    outcome->status = std::move(status);
  };
}

// The checkpoint service as the channel sees it: sections in a map, answers at once or when the
// test says.
class FakeCheckpoints : public GuestCheckpoints {
 public:
  void read(const std::string& vm, const std::string& name, const std::string& section, ReadDone done) override {
    calls.push_back("read " + vm + " " + name + " " + section);
    auto answer = [this, name, section, done = std::move(done)] {
      auto it = sections.find(name + " " + section);
      if (it == sections.end()) return done(Error{"no section '" + section + "' of checkpoint '" + name + "'"});
      done(it->second);
    };
    if (deferAnswers) return deferred.push_back(std::move(answer));
    answer();
  }
  void write(const std::string& vm, const std::string& name, const std::string& section, std::string data,
             WriteDone done) override {
    calls.push_back("write " + vm + " " + name + " " + section);
    auto answer = [this, name, section, data = std::move(data), done = std::move(done)] {
      if (refuseWrites) return done(Error{*refuseWrites});
      sections[name + " " + section] = data;
      done(Status::success());
    };
    if (deferAnswers) return deferred.push_back(std::move(answer));
    answer();
  }

  std::map<std::string, std::string> sections;  // "name section" -> data
  std::vector<std::string> calls;
  std::optional<std::string> refuseWrites;
  bool deferAnswers = false;
  std::vector<std::function<void()>> deferred;
};

class SocketGuestChannelTest : public ::testing::Test, public GuestListener, public GuestObserver {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop).value();
    options_.socketDir = dir_.path().string();
    options_.connectRetry = Duration(20);
    options_.firstHeartbeatTimeout = Duration(5000);
    options_.ackTimeout = Duration(5000);
    options_.logger = [this](const std::string& vm, const std::string& line) { log_.push_back(vm + ": " + line); };
  }

  void TearDown() override {
    channel_.reset();
    port_.reset();
    agentPort_.reset();
    if (agent_ > 0) {
      kill(agent_, SIGKILL);
      waitpid(agent_, nullptr, 0);
    }
    if (HasFailure()) {
      std::cerr << "channel log:\n";
      for (const auto& line : log_) std::cerr << "  " << line << "\n";
      if (fs::exists(dir_ / "agent.log")) std::cerr << "agent log:\n" << readFile(dir_ / "agent.log");
    }
  }

  void makeChannel() {
    channel_ = std::make_unique<SocketGuestChannel>(*loop_, options_);
    channel_->setListener(this);
    channel_->setObserver(this);
    if (serveCheckpoints_) channel_->setCheckpoints(&checkpoints_);
  }

  Endpoint& openPort(const std::string& vm = "web") {
    port_ = std::make_unique<Endpoint>(*loop_, dir_ / (vm + ".agent"));
    return *port_;
  }

  bool until(const std::function<bool()>& done, Duration limit = kPatience) { return runUntil(*loop_, done, limit); }

  GuestStats stats(const std::string& vm = "web") {
    auto known = channel_->stats(vm);
    EXPECT_TRUE(known) << vm;
    return known.value_or(GuestStats{});
  }

  bool logged(const std::string& part) const {
    return std::any_of(log_.begin(), log_.end(),
                       [&](const std::string& line) { return line.find(part) != std::string::npos; });
  }
  std::size_t loggedCount(const std::string& part) const {
    return static_cast<std::size_t>(std::count_if(
        log_.begin(), log_.end(), [&](const std::string& line) { return line.find(part) != std::string::npos; }));
  }

  // A channel watching "web", connected to the port, past HELLO and WELCOME.
  Endpoint& handshake(const model::HeartbeatSpec& heartbeat = kBeat) {
    makeChannel();
    Endpoint& port = openPort();
    channel_->watch("web", heartbeat);
    EXPECT_TRUE(until([&] { return port.connected(); }));
    port.send(HelloMessage{kGuestProtocolVersion, "fake-1"});
    EXPECT_TRUE(until([&] { return !port.messages<WelcomeMessage>().empty(); }));
    return port;
  }

  // The next message of type T the port receives, after the `seen` it already has.
  template <typename T>
  std::optional<T> awaitMessage(Endpoint& port, std::size_t seen = 0) {
    if (!until([&] { return port.messages<T>().size() > seen; })) return std::nullopt;
    return port.messages<T>()[seen];
  }

  void startAgent(const std::vector<std::string>& extra) {
    std::vector<std::string> args = {KVM_AMF_AGENT_PATH,       "--port",    (dir_ / "agent.sock").string(),  "--hook",
                                     (dir_ / "hook").string(), "--control", (dir_ / "control.sock").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    agent_ = testing::spawnProcess(args, (dir_ / "agent.log").string());
    ASSERT_GE(agent_, 0);
  }

  // QEMU's port for "web" relayed to the socket the real agent connects to.
  Endpoint& relayToAgent() {
    Endpoint& port = openPort();
    agentPort_ = std::make_unique<Endpoint>(*loop_, dir_ / "agent.sock");
    port.relayTo(agentPort_.get());
    agentPort_->relayTo(&port);
    return port;
  }

  void writeHook(const std::string& body) {
    fs::path hook = dir_ / "hook";
    std::ofstream(hook) << "#!/bin/sh\n" << body;
    fs::permissions(hook, fs::perms::owner_all);
  }

  // GuestListener and GuestObserver: recorded.
  void onGuestHung(const std::string& vm) override {
    hung_.push_back(loop_->now());
    if (onHung_) onHung_(vm);
  }
  void onGuestUnhealthy(const std::string& vm) override { unhealthy_.push_back(vm); }
  void onHeartbeat(const std::string& vm, std::uint64_t seq, bool healthy) override {
    beats_.push_back(seq);
    if (onBeat_) onBeat_(vm, seq, healthy);
  }
  void onHello(const std::string& /*vm*/, const std::string& agentVersion) override { hellos_.push_back(agentVersion); }

  FakeCheckpoints checkpoints_;
  bool serveCheckpoints_ = false;
  kvm_amf::testing::TempDir dir_{"socket-guest-channel"};
  std::unique_ptr<EventLoop> loop_;
  SocketGuestChannelOptions options_;
  std::unique_ptr<SocketGuestChannel> channel_;
  std::unique_ptr<Endpoint> port_;
  std::unique_ptr<Endpoint> agentPort_;
  pid_t agent_ = -1;
  std::vector<std::string> log_;
  std::vector<TimePoint> hung_;  // when onGuestHung was called
  std::vector<std::string> unhealthy_;
  std::vector<std::uint64_t> beats_;
  std::vector<std::string> hellos_;
  std::function<void(const std::string&)> onHung_;
  std::function<void(const std::string&, std::uint64_t, bool)> onBeat_;
};

TEST_F(SocketGuestChannelTest, ConnectsOnceTheSocketAppears) {
  makeChannel();
  EXPECT_FALSE(channel_->stats("web"));
  channel_->watch("web", kBeat);
  loop_->runFor(Duration(100));  // several attempts: no socket yet
  EXPECT_EQ(stats().connects, 0u);
  EXPECT_FALSE(stats().connected);

  {  // A socket file nobody listens on: refused.
    int stale = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, (dir_ / "web.agent").c_str(), sizeof address.sun_path - 1);
    ASSERT_EQ(bind(stale, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    close(stale);
  }
  loop_->runFor(Duration(100));
  EXPECT_EQ(stats().connects, 0u);

  Endpoint& port = openPort();
  ASSERT_TRUE(until([&] { return port.connected() && stats().connected; }));
  EXPECT_EQ(stats().connects, 1u);
  EXPECT_EQ(port.accepts(), 1);
  // Each kind of failure is logged once, not once per attempt.
  EXPECT_EQ(loggedCount("No such file or directory"), 1u);
  EXPECT_EQ(loggedCount("Connection refused"), 1u);
  EXPECT_TRUE(logged("connected to "));
  EXPECT_FALSE(channel_->stats("db"));
}

TEST_F(SocketGuestChannelTest, HelloIsWelcomedWithTheWatchedInterval) {
  makeChannel();
  Endpoint& port = openPort();
  channel_->watch("web", kBeat);
  ASSERT_TRUE(until([&] { return port.connected(); }));
  port.send(HelloMessage{7, "fake 1.0"});  // a newer agent: the host's version wins
  ASSERT_TRUE(until([&] { return !port.received().empty(); }));
  EXPECT_EQ(port.received()[0], HostMessage(WelcomeMessage{kGuestProtocolVersion, 50}));
  EXPECT_EQ(stats().hellos, 1u);
  EXPECT_EQ(stats().agent, "fake 1.0");
  EXPECT_EQ(hellos_, std::vector<std::string>{"fake 1.0"});

  // Watched again with another interval: the agent is told at once.
  channel_->watch("web", model::HeartbeatSpec{Duration(80), Duration(400)});
  ASSERT_TRUE(until([&] { return port.received().size() == 2; }));
  EXPECT_EQ(port.received()[1], HostMessage(WelcomeMessage{kGuestProtocolVersion, 80}));
}

TEST_F(SocketGuestChannelTest, UnwatchedVmIsConnectedForARequestAndWelcomedWithTheDefaultInterval) {
  makeChannel();
  Endpoint& port = openPort("db");
  auto outcome = std::make_shared<Outcome>();
  channel_->unassign("db", "si db", record(outcome));
  ASSERT_TRUE(until([&] { return port.connected(); }));
  port.send(HelloMessage{kGuestProtocolVersion, "fake"});
  ASSERT_TRUE(until([&] { return port.received().size() == 2; }));
  EXPECT_EQ(port.received()[0], HostMessage(WelcomeMessage{kGuestProtocolVersion, 1000}));
  ASSERT_TRUE(std::holds_alternative<RemoveMessage>(port.received()[1]));
  const RemoveMessage remove = std::get<RemoveMessage>(port.received()[1]);
  EXPECT_EQ(remove.si, "si db");
  port.send(AckMessage{remove.id, true, ""});
  ASSERT_TRUE(until([&] { return outcome->calls == 1; }));
  EXPECT_TRUE(outcome->status->ok());
  // Nothing left to ask and not watched: the channel lets go of the port but remembers the VM.
  ASSERT_TRUE(until([&] { return port.ends() == 1; }));
  EXPECT_FALSE(stats("db").connected);
  EXPECT_EQ(stats("db").acks, 1u);
}

TEST_F(SocketGuestChannelTest, HeartbeatsAreCountedWithTheirGaps) {
  makeChannel();
  Endpoint& port = openPort();
  channel_->watch("web", kBeat);
  ASSERT_TRUE(until([&] { return port.connected(); }));
  port.send(HeartbeatMessage{1, true, ""});  // before HELLO: a heartbeat all the same
  port.send(HelloMessage{kGuestProtocolVersion, "fake"});
  for (std::uint64_t seq : {2, 3, 6, 2}) port.send(HeartbeatMessage{seq, true, ""});
  ASSERT_TRUE(until([&] { return stats().heartbeats == 5; }));
  GuestStats seen = stats();
  EXPECT_EQ(seen.lastSeq, 2u);
  EXPECT_EQ(seen.missedHeartbeats, 2u);  // 4 and 5
  EXPECT_EQ(seen.agentRestarts, 1u);     // 6 then 2
  EXPECT_TRUE(seen.lastHeartbeat.has_value());
  EXPECT_EQ(beats_, (std::vector<std::uint64_t>{1, 2, 3, 6, 2}));
  EXPECT_TRUE(hung_.empty());
  EXPECT_TRUE(unhealthy_.empty());
}

TEST_F(SocketGuestChannelTest, HangIsReportedOnceAndAgainAfterHeartbeatsResume) {
  Endpoint& port = handshake();
  // Heartbeats every interval for longer than the timeout: no hang.
  std::uint64_t seq = 0;
  std::function<void()> beat = [&] {
    port.send(HeartbeatMessage{++seq, true, ""});
    if (seq < 12) loop_->after(kBeat.interval, beat);
  };
  beat();
  ASSERT_TRUE(until([&] { return stats().heartbeats == 12; }));
  EXPECT_TRUE(hung_.empty());

  TimePoint last = loop_->now();
  port.send(HeartbeatMessage{++seq, true, ""});
  ASSERT_TRUE(until([&] { return hung_.size() == 1; }));
  EXPECT_GE(hung_[0] - last, kBeat.timeout - Duration(5));
  EXPECT_EQ(stats().hangs, 1u);
  loop_->runFor(Duration(500));  // more than another timeout without a heartbeat: no second report
  EXPECT_EQ(hung_.size(), 1u);

  port.send(HeartbeatMessage{++seq, true, ""});
  ASSERT_TRUE(until([&] { return stats().heartbeats == 14; }));
  EXPECT_TRUE(logged("heartbeats resumed"));
  ASSERT_TRUE(until([&] { return hung_.size() == 2; }));
  EXPECT_EQ(stats().hangs, 2u);
}

TEST_F(SocketGuestChannelTest, FirstHeartbeatHasItsOwnGrace) {
  options_.firstHeartbeatTimeout = Duration(600);
  makeChannel();
  Endpoint& port = openPort();
  TimePoint watched = loop_->now();
  channel_->watch("web", model::HeartbeatSpec{Duration(50), Duration(100)});
  ASSERT_TRUE(until([&] { return port.connected(); }));
  ASSERT_TRUE(until([&] { return hung_.size() == 1; }));
  EXPECT_GE(hung_[0] - watched, Duration(595));
  EXPECT_TRUE(logged("no heartbeat since watched, for 600 ms"));

  // After the first heartbeat the watched timeout applies.
  port.send(HeartbeatMessage{1, true, ""});
  ASSERT_TRUE(until([&] { return hung_.size() == 2; }));
  EXPECT_TRUE(logged("hung: no heartbeat for 100 ms"));

  // Watching again restarts the grace.
  hung_.clear();
  watched = loop_->now();
  channel_->watch("web", model::HeartbeatSpec{Duration(50), Duration(100)});
  ASSERT_TRUE(until([&] { return hung_.size() == 1; }));
  EXPECT_GE(hung_[0] - watched, Duration(595));
}

TEST_F(SocketGuestChannelTest, UnhealthyIsReportedOnceUntilAHealthyHeartbeat) {
  Endpoint& port = handshake(model::HeartbeatSpec{Duration(50), Duration(5000)});
  port.send(HeartbeatMessage{1, false, "exit 1"});
  port.send(HeartbeatMessage{2, false, "exit 1"});
  ASSERT_TRUE(until([&] { return stats().heartbeats == 2; }));
  EXPECT_EQ(unhealthy_, std::vector<std::string>{"web"});
  port.send(HeartbeatMessage{3, true, ""});
  port.send(HeartbeatMessage{4, false, "exit 2"});
  ASSERT_TRUE(until([&] { return stats().heartbeats == 4; }));
  EXPECT_EQ(unhealthy_.size(), 2u);
  EXPECT_TRUE(logged("unhealthy: exit 2"));
}

TEST_F(SocketGuestChannelTest, AssignIsQueuedUntilHelloThenAcknowledged) {
  makeChannel();
  Endpoint& port = openPort();
  channel_->watch("web", kBeat);
  ASSERT_TRUE(until([&] { return port.connected(); }));
  auto assigned = std::make_shared<Outcome>();
  channel_->assign("web", "si web", model::HaState::kQuiescing, {{"vip", "10.0.0.1 eth0"}}, record(assigned));
  loop_->runFor(Duration(100));
  EXPECT_TRUE(port.received().empty()) << "written before HELLO";

  port.send(HelloMessage{kGuestProtocolVersion, "fake"});
  ASSERT_TRUE(until([&] { return port.received().size() == 2; }));
  EXPECT_TRUE(std::holds_alternative<WelcomeMessage>(port.received()[0]));
  ASSERT_TRUE(std::holds_alternative<AssignMessage>(port.received()[1]));
  const AssignMessage assign = std::get<AssignMessage>(port.received()[1]);
  EXPECT_EQ(assign.si, "si web");
  EXPECT_EQ(assign.state, GuestHaState::kQuiesced);
  EXPECT_EQ(assign.attributes, (std::map<std::string, std::string>{{"vip", "10.0.0.1 eth0"}}));
  EXPECT_EQ(assigned->calls, 0);
  port.send(AckMessage{assign.id, true, ""});
  ASSERT_TRUE(until([&] { return assigned->calls == 1; }));
  EXPECT_TRUE(assigned->status->ok());

  // After HELLO a request is written at once, with a new id.
  auto removed = std::make_shared<Outcome>();
  channel_->unassign("web", "si web", record(removed));
  auto remove = awaitMessage<RemoveMessage>(port);
  ASSERT_TRUE(remove);
  EXPECT_NE(remove->id, assign.id);
  port.send(AckMessage{remove->id, true, ""});
  ASSERT_TRUE(until([&] { return removed->calls == 1; }));
  EXPECT_TRUE(removed->status->ok());
  EXPECT_EQ(stats().acks, 2u);
  EXPECT_EQ(stats().unexpectedAcks, 0u);
  EXPECT_TRUE(stats().connected) << "watched: stays connected";
}

// After a restart of the host's channel, or a migration, the agent's HELLO went to an earlier
// connection: its first heartbeat on this one shows it reads, and the queued request goes then.
TEST_F(SocketGuestChannelTest, AssignIsWrittenAfterAHeartbeatWithoutHello) {
  makeChannel();
  Endpoint& port = openPort();
  channel_->watch("web", kBeat);
  ASSERT_TRUE(until([&] { return port.connected(); }));
  auto assigned = std::make_shared<Outcome>();
  channel_->assign("web", "si", model::HaState::kActive, {}, record(assigned));
  loop_->runFor(Duration(50));
  EXPECT_TRUE(port.received().empty()) << "written before the agent showed it reads";
  port.send(HeartbeatMessage{41, true, ""});
  auto assign = awaitMessage<AssignMessage>(port);
  ASSERT_TRUE(assign);
  port.send(AckMessage{assign->id, true, ""});
  ASSERT_TRUE(until([&] { return assigned->calls == 1; }));
  EXPECT_TRUE(assigned->status->ok());
  EXPECT_EQ(stats().hellos, 0u);
  EXPECT_EQ(stats().heartbeats, 1u);
}

TEST_F(SocketGuestChannelTest, FailedAckCarriesTheReason) {
  Endpoint& port = handshake();
  auto outcome = std::make_shared<Outcome>();
  channel_->assign("web", "si", model::HaState::kStandby, {}, record(outcome));
  auto assign = awaitMessage<AssignMessage>(port);
  ASSERT_TRUE(assign);
  EXPECT_EQ(assign->state, GuestHaState::kStandby);
  port.send(AckMessage{assign->id, false, "exit 3"});
  ASSERT_TRUE(until([&] { return outcome->calls == 1; }));
  ASSERT_FALSE(outcome->status->ok());
  EXPECT_NE(outcome->status->error().message.find("exit 3"), std::string::npos) << outcome->status->error().message;
  EXPECT_NE(outcome->status->error().message.find("ASSIGN si standby"), std::string::npos);
}

TEST_F(SocketGuestChannelTest, MissingAckTimesOutAndALateAckIsUnexpected) {
  options_.ackTimeout = Duration(200);
  Endpoint& port = handshake();
  auto outcome = std::make_shared<Outcome>();
  TimePoint asked = loop_->now();
  channel_->assign("web", "si", model::HaState::kActive, {}, record(outcome));
  auto assign = awaitMessage<AssignMessage>(port);
  ASSERT_TRUE(assign);
  ASSERT_TRUE(until([&] { return outcome->calls == 1; }));
  TimePoint failed = loop_->now();
  EXPECT_GE(failed - asked, Duration(195));
  ASSERT_FALSE(outcome->status->ok());
  EXPECT_NE(outcome->status->error().message.find("did not acknowledge"), std::string::npos);

  port.send(AckMessage{assign->id, true, ""});  // late
  port.send(AckMessage{999, true, ""});         // never asked
  port.send(HeartbeatMessage{1, true, ""});
  ASSERT_TRUE(until([&] { return stats().heartbeats == 1; }));
  EXPECT_EQ(stats().unexpectedAcks, 2u);
  EXPECT_EQ(stats().acks, 0u);
  EXPECT_EQ(outcome->calls, 1);
  EXPECT_TRUE(stats().connected);
}

TEST_F(SocketGuestChannelTest, UnwatchFailsOutstandingRequestsAndClosesTheSocket) {
  Endpoint& port = handshake();
  auto written = std::make_shared<Outcome>();
  auto other = std::make_shared<Outcome>();
  channel_->assign("web", "a", model::HaState::kActive, {}, record(written));
  channel_->unassign("web", "b", record(other));
  ASSERT_TRUE(awaitMessage<RemoveMessage>(port));
  channel_->unwatch("web");
  EXPECT_EQ(written->calls + other->calls, 0) << "failed inside unwatch()";
  EXPECT_FALSE(channel_->stats("web"));
  ASSERT_TRUE(until([&] { return written->calls == 1 && other->calls == 1 && port.ends() == 1; }));
  for (const auto& outcome : {written, other}) {
    ASSERT_FALSE(outcome->status->ok());
    EXPECT_EQ(outcome->status->error().message, "VM stopped");
  }
  // Nothing is watched: no reconnection.
  loop_->runFor(Duration(100));
  EXPECT_EQ(port.accepts(), 1);
  EXPECT_FALSE(channel_->stats("web"));
}

TEST_F(SocketGuestChannelTest, UnacknowledgedRequestIsWrittenAgainAfterReconnectAndHello) {
  Endpoint& port = handshake();
  auto outcome = std::make_shared<Outcome>();
  channel_->assign("web", "si", model::HaState::kActive, {{"k", "v"}}, record(outcome));
  auto first = awaitMessage<AssignMessage>(port);
  ASSERT_TRUE(first);
  port.hangUp();  // QEMU drops the connection
  ASSERT_TRUE(until([&] { return port.accepts() == 2 && stats().connects == 2; }));
  EXPECT_TRUE(logged("connection lost: end of file"));
  port.clearReceived();
  loop_->runFor(Duration(50));
  EXPECT_TRUE(port.received().empty()) << "written before HELLO";
  port.send(HelloMessage{kGuestProtocolVersion, "fake"});
  auto again = awaitMessage<AssignMessage>(port);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *first);
  EXPECT_TRUE(std::holds_alternative<WelcomeMessage>(port.received()[0]));
  port.send(AckMessage{first->id, true, ""});
  ASSERT_TRUE(until([&] { return outcome->calls == 1; }));
  EXPECT_TRUE(outcome->status->ok());
  loop_->runFor(Duration(50));
  EXPECT_EQ(outcome->calls, 1);
}

TEST_F(SocketGuestChannelTest, BadLinesAreCountedAndDroppedAndTheConnectionStays) {
  Endpoint& port = handshake();
  port.send(std::string("\x01\x02 garbage\n"));
  port.send("NOPE 1\n");
  port.send("HB x ok\n");
  port.send("\n");
  port.send("HB  1 ok\n");
  port.send(std::string(10000, 'A') + "\n");
  port.send(std::string(3000, 'B'));
  port.send(std::string(3000, 'B') + "\n");
  port.send("ACK 999 ok\n");
  port.send(HeartbeatMessage{1, true, ""});
  ASSERT_TRUE(until([&] { return stats().heartbeats == 1; }));
  GuestStats seen = stats();
  EXPECT_EQ(seen.badLines, 5u);
  EXPECT_EQ(seen.oversizedLines, 2u);
  EXPECT_EQ(seen.unexpectedAcks, 1u);
  EXPECT_TRUE(seen.connected);
  EXPECT_EQ(seen.connects, 1u);
  EXPECT_EQ(loggedCount("dropped a bad line"), 5u);
  EXPECT_TRUE(logged("unknown verb"));
  EXPECT_EQ(loggedCount("dropped a line longer than 4096 bytes"), 2u);

  // Requests still go through.
  auto outcome = std::make_shared<Outcome>();
  channel_->assign("web", "si", model::HaState::kActive, {}, record(outcome));
  auto assign = awaitMessage<AssignMessage>(port);
  ASSERT_TRUE(assign);
  port.send(AckMessage{assign->id, true, ""});
  ASSERT_TRUE(until([&] { return outcome->calls == 1; }));
  EXPECT_TRUE(outcome->status->ok());
}

TEST_F(SocketGuestChannelTest, CheckpointRequestsAreAnsweredUnsupported) {
  Endpoint& port = handshake();
  port.send("CKPT-READ 5 name section\n");
  port.send(CheckpointWriteMessage{6, "name", "section", "data"});
  ASSERT_TRUE(until([&] { return port.messages<ErrorMessage>().size() == 2; }));
  EXPECT_EQ(port.messages<ErrorMessage>()[0], (ErrorMessage{5, "unsupported"}));
  EXPECT_EQ(port.messages<ErrorMessage>()[1], (ErrorMessage{6, "unsupported"}));
  EXPECT_EQ(stats().badLines, 0u);
}

TEST_F(SocketGuestChannelTest, CheckpointWritesAndReadsAreHandedToTheServiceAndAnswered) {
  serveCheckpoints_ = true;
  Endpoint& port = handshake();
  const std::string data("counter=41\n\0\xff", 13);
  port.send(CheckpointWriteMessage{7, "app.state", "counter", data});
  auto written = awaitMessage<CheckpointReplyMessage>(port);
  ASSERT_TRUE(written);
  EXPECT_EQ(*written, (CheckpointReplyMessage{7, true, std::nullopt, ""}));
  port.send(CheckpointReadMessage{8, "app.state", "counter"});
  auto read = awaitMessage<CheckpointReplyMessage>(port, 1);
  ASSERT_TRUE(read);
  EXPECT_EQ(*read, (CheckpointReplyMessage{8, true, data, ""}));
  EXPECT_EQ(checkpoints_.calls,
            (std::vector<std::string>{"write web app.state counter", "read web app.state counter"}));
  EXPECT_EQ(stats().checkpointRequests, 2u);
  EXPECT_EQ(stats().checkpointAnswers, 2u);
  EXPECT_TRUE(port.messages<ErrorMessage>().empty());
}

TEST_F(SocketGuestChannelTest, CheckpointFailuresCarryTheServicesReason) {
  serveCheckpoints_ = true;
  Endpoint& port = handshake();
  port.send(CheckpointReadMessage{3, "app", "missing"});
  checkpoints_.refuseWrites = "no quorum: checkpoint writes need a quorate cluster";
  port.send(CheckpointWriteMessage{4, "app", "s", "x"});
  ASSERT_TRUE(until([&] { return port.messages<CheckpointReplyMessage>().size() == 2; }));
  EXPECT_EQ(port.messages<CheckpointReplyMessage>()[0],
            (CheckpointReplyMessage{3, false, std::nullopt, "no section 'missing' of checkpoint 'app'"}));
  EXPECT_EQ(port.messages<CheckpointReplyMessage>()[1],
            (CheckpointReplyMessage{4, false, std::nullopt, "no quorum: checkpoint writes need a quorate cluster"}));
}

TEST_F(SocketGuestChannelTest, CheckpointDataTooLongForALineFailsTheRead) {
  serveCheckpoints_ = true;
  checkpoints_.sections["app big"] = std::string(3100, 'x');  // 4136 bytes of base64
  checkpoints_.sections["app fits"] = std::string(3000 - 30, 'y');
  Endpoint& port = handshake();
  port.send(CheckpointReadMessage{1, "app", "big"});
  port.send(CheckpointReadMessage{2, "app", "fits"});
  ASSERT_TRUE(until([&] { return port.messages<CheckpointReplyMessage>().size() == 2; }));
  const CheckpointReplyMessage big = port.messages<CheckpointReplyMessage>()[0];
  EXPECT_FALSE(big.ok);
  EXPECT_EQ(big.reason,
            "the section holds 3100 bytes, more than one line of the guest channel carries (4096 bytes, base64)");
  EXPECT_TRUE(port.messages<CheckpointReplyMessage>()[1].ok);
  EXPECT_EQ(stats().badLines, 0u);
}

TEST_F(SocketGuestChannelTest, CheckpointAnswerForAConnectionThatClosedIsDropped) {
  serveCheckpoints_ = true;
  checkpoints_.deferAnswers = true;
  Endpoint& port = handshake();
  port.send(CheckpointWriteMessage{9, "app", "s", "x"});
  ASSERT_TRUE(until([&] { return checkpoints_.deferred.size() == 1; }));
  port.hangUp();  // the agent's port closed: it failed the request itself
  ASSERT_TRUE(until([&] { return port.accepts() == 2; }));
  port.clearReceived();
  port.send(HelloMessage{kGuestProtocolVersion, "fake-1"});
  ASSERT_TRUE(until([&] { return !port.messages<WelcomeMessage>().empty(); }));
  checkpoints_.deferred[0]();
  loop_->runFor(Duration(50));
  EXPECT_TRUE(port.messages<CheckpointReplyMessage>().empty());
  EXPECT_TRUE(logged("answer dropped"));
  // Destroying the channel before an answer: the answer goes nowhere.
  port.send(CheckpointReadMessage{10, "app", "s"});
  ASSERT_TRUE(until([&] { return checkpoints_.deferred.size() == 2; }));
  channel_.reset();
  checkpoints_.deferred[1]();
}

TEST_F(SocketGuestChannelTest, InvalidRequestsFailFromTheLoop) {
  makeChannel();
  auto noSi = std::make_shared<Outcome>();
  auto emptyKey = std::make_shared<Outcome>();
  auto tooLong = std::make_shared<Outcome>();
  channel_->assign("web", "", model::HaState::kActive, {}, record(noSi));
  channel_->assign("web", "si", model::HaState::kActive, {{"", "v"}}, record(emptyKey));
  channel_->assign("web", "si", model::HaState::kActive, {{"k", std::string(5000, 'x')}}, record(tooLong));
  EXPECT_EQ(noSi->calls + emptyKey->calls + tooLong->calls, 0);
  ASSERT_TRUE(until([&] { return noSi->calls == 1 && emptyKey->calls == 1 && tooLong->calls == 1; }));
  for (const auto& outcome : {noSi, emptyKey, tooLong}) EXPECT_FALSE(outcome->status->ok());
  EXPECT_FALSE(channel_->stats("web")) << "nothing was asked";
}

TEST_F(SocketGuestChannelTest, CallbacksMayUnwatchOrDestroyTheChannel) {
  // The listener unwatches the hung VM from onGuestHung.
  options_.firstHeartbeatTimeout = Duration(100);
  makeChannel();
  Endpoint& port = openPort();
  onHung_ = [&](const std::string& vm) { channel_->unwatch(vm); };
  auto queued = std::make_shared<Outcome>();
  channel_->watch("web", kBeat);
  channel_->assign("web", "si", model::HaState::kActive, {}, record(queued));
  ASSERT_TRUE(until([&] { return hung_.size() == 1 && queued->calls == 1; }));
  EXPECT_FALSE(channel_->stats("web"));
  EXPECT_FALSE(queued->status->ok());
  ASSERT_TRUE(until([&] { return port.ends() == 1; }));
  onHung_ = nullptr;

  // The observer destroys the channel on a heartbeat followed by more lines in the same read.
  options_.firstHeartbeatTimeout = Duration(5000);
  makeChannel();
  channel_->watch("web", kBeat);
  ASSERT_TRUE(until([&] { return port.accepts() == 2; }));
  onBeat_ = [&](const std::string&, std::uint64_t, bool) { channel_.reset(); };
  port.send("HB 1 ok\nHB 2 fail x\nHELLO 1 fake\nCKPT-READ 1 a b\n");
  ASSERT_TRUE(until([&] { return channel_ == nullptr && port.ends() == 2; }));
  EXPECT_EQ(beats_, std::vector<std::uint64_t>{1});
  onBeat_ = nullptr;

  // A `done` destroys the channel: the rest of the line batch is not handled.
  makeChannel();
  channel_->watch("web", kBeat);
  ASSERT_TRUE(until([&] { return port.accepts() == 3; }));
  port.send(HelloMessage{kGuestProtocolVersion, "fake"});
  auto outcome = std::make_shared<Outcome>();
  channel_->assign("web", "si", model::HaState::kActive, {}, [&, outcome](Status status) {
    ++outcome->calls;
    outcome->status = std::move(status);
    channel_.reset();
  });
  port.clearReceived();
  auto assign = awaitMessage<AssignMessage>(port);
  ASSERT_TRUE(assign);
  port.send(formatGuestMessage(AckMessage{assign->id, true, ""}) + "HB 7 ok\n");
  ASSERT_TRUE(until([&] { return channel_ == nullptr && port.ends() == 3; }));
  EXPECT_EQ(outcome->calls, 1);
  EXPECT_TRUE(outcome->status->ok());
  EXPECT_EQ(std::count(beats_.begin(), beats_.end(), 7u), 0);
}

TEST_F(SocketGuestChannelTest, DestroyingTheChannelCallsNoDone) {
  Endpoint& port = handshake();
  auto outcome = std::make_shared<Outcome>();
  channel_->assign("web", "si", model::HaState::kActive, {}, record(outcome));
  ASSERT_TRUE(awaitMessage<AssignMessage>(port));
  channel_.reset();
  ASSERT_TRUE(until([&] { return port.ends() == 1; }));
  loop_->runFor(Duration(50));
  EXPECT_EQ(outcome->calls, 0);
}

TEST_F(SocketGuestChannelTest, CheckpointOfAnApplicationInTheGuestThroughTheRealAgent) {
  serveCheckpoints_ = true;
  Endpoint& port = relayToAgent();
  makeChannel();
  channel_->watch("web", kBeat);
  ASSERT_TRUE(until([&] { return port.connected(); }));
  startAgent({});
  ASSERT_TRUE(until([&] { return stats().hellos == 1; }));
  // `kvm-amf-agent ckpt ...` as an application runs it; the loop serves the channel meanwhile.
  auto run = [&](std::vector<std::string> words) -> std::pair<int, std::string> {
    const fs::path out = dir_ / "ckpt.out";
    words.insert(words.begin(), {KVM_AMF_AGENT_PATH, "ckpt", "--control", (dir_ / "control.sock").string()});
    const pid_t pid = fork();
    if (pid == 0) {
      int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, STDOUT_FILENO);
      std::vector<char*> argv;
      for (auto& word : words) argv.push_back(word.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    int status = -1;
    bool exited = false;
    EXPECT_TRUE(until([&] { return exited || (exited = waitpid(pid, &status, WNOHANG) == pid); }));
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, readFile(out)};
  };
  EXPECT_EQ(run({"write", "app", "counter", "17"}).first, 0);
  EXPECT_EQ(checkpoints_.sections["app counter"], "17");
  EXPECT_EQ(run({"read", "app", "counter"}), std::make_pair(0, std::string("17")));
  EXPECT_EQ(run({"read", "app", "other"}).first, 1);
  EXPECT_EQ(checkpoints_.calls,
            (std::vector<std::string>{"write web app counter", "read web app counter", "read web app other"}));
}

TEST_F(SocketGuestChannelTest, RealAgentRunsTheHookAndHeartbeats) {
  writeHook("echo \"args=$*\" >> \"" + (dir_ / "record").string() + "\"\nenv | grep '^KVMAMF_' | sort >> \"" +
            (dir_ / "record").string() + "\"\n");
  Endpoint& port = relayToAgent();
  makeChannel();
  channel_->watch("web", kBeat);
  ASSERT_TRUE(until([&] { return port.connected(); }));
  startAgent({});
  auto outcome = std::make_shared<Outcome>();
  channel_->assign("web", "si web", model::HaState::kActive, {{"vip", "10.0.0.1 eth0"}}, record(outcome));
  ASSERT_TRUE(until([&] { return outcome->calls == 1; }));
  ASSERT_TRUE(outcome->status->ok()) << outcome->status->error().message;
  std::string ran = readFile(dir_ / "record");
  EXPECT_NE(ran.find("args=active si web\n"), std::string::npos) << ran;
  EXPECT_NE(ran.find("KVMAMF_ATTR_VIP=10.0.0.1 eth0\n"), std::string::npos) << ran;
  EXPECT_NE(ran.find("KVMAMF_HA_STATE=active\n"), std::string::npos) << ran;

  // At the watched 50 ms, not the agent's default 1000 ms: 8 heartbeats in well under 8 s.
  ASSERT_TRUE(until([&] { return stats().heartbeats >= 8; }, Duration(4000)));
  GuestStats seen = stats();
  EXPECT_EQ(seen.hellos, 1u);
  EXPECT_TRUE(seen.agent.has_value() && !seen.agent->empty());
  EXPECT_EQ(seen.missedHeartbeats, 0u);
  EXPECT_EQ(seen.agentRestarts, 0u);
  EXPECT_EQ(seen.hangs, 0u);
  EXPECT_EQ(seen.badLines, 0u);
  EXPECT_TRUE(hung_.empty());
  EXPECT_TRUE(unhealthy_.empty());

  auto removed = std::make_shared<Outcome>();
  channel_->unassign("web", "si web", record(removed));
  ASSERT_TRUE(until([&] { return removed->calls == 1; }));
  EXPECT_TRUE(removed->status->ok());
  EXPECT_NE(readFile(dir_ / "record").find("args=removed si web\n"), std::string::npos);
}

TEST_F(SocketGuestChannelTest, RealAgentStoppingHeartbeatsIsAHang) {
  Endpoint& port = relayToAgent();
  makeChannel();
  channel_->watch("web", kBeat);
  ASSERT_TRUE(until([&] { return port.connected(); }));
  startAgent({"--stop-after", "3"});
  ASSERT_TRUE(until([&] { return hung_.size() == 1; }));
  GuestStats seen = stats();
  EXPECT_EQ(seen.lastSeq, 3u);
  EXPECT_EQ(seen.heartbeats, 3u);
  EXPECT_EQ(seen.hangs, 1u);
  // A hung guest (in this sense) still serves requests; no hook file is success.
  auto outcome = std::make_shared<Outcome>();
  channel_->assign("web", "si", model::HaState::kStandby, {}, record(outcome));
  ASSERT_TRUE(until([&] { return outcome->calls == 1; }));
  EXPECT_TRUE(outcome->status->ok());
  EXPECT_EQ(hung_.size(), 1u);
}

}  // namespace
}  // namespace kvm_amf::vmm
