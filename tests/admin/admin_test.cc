// The admin API's transport over real sockets: the server on a real event loop in this thread, the
// blocking clients on other threads (or in child processes that drop root, for the permission
// checks), raw ZeroMQ peers for malformed input, CURVE over TCP on localhost, and the events.
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "kvm_amf/admin/admin_client.h"
#include "kvm_amf/admin/admin_server.h"
#include "testing/run_until.h"
#include "testing/temp_dir.h"

namespace kvm_amf::admin {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Far more than anything here should take, so that a slow machine does not fail a test.
constexpr Duration kPatience{10000};
constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

Duration since(Clock::time_point start) { return std::chrono::duration_cast<milliseconds>(Clock::now() - start); }

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

bool anyContains(const std::vector<std::string>& lines, const std::string& part) {
  return std::any_of(lines.begin(), lines.end(), [&](const std::string& line) { return contains(line, part); });
}

proto::Request command(const std::string& words, std::uint64_t id = 0) {
  proto::Request request;
  request.set_id(id);
  request.mutable_command()->set_words(words);
  return request;
}

proto::Reply replyWith(const std::string& body) {
  proto::Reply reply;
  reply.set_code(proto::Reply::OK);
  reply.set_body(body);
  return reply;
}

using Respond = std::function<void(proto::Reply)>;

// Records every request and its peer; answers as the test says (by default: not at all).
class TestHandler : public AdminHandler {
 public:
  std::function<void(const proto::Request&, const Peer&, Respond)> answer;
  std::vector<proto::Request> requests;
  std::vector<Peer> peers;

  void onRequest(const proto::Request& request, const Peer& peer, Respond reply) override {
    requests.push_back(request);
    peers.push_back(peer);
    if (answer) answer(request, peer, std::move(reply));
  }
};

// Answers OK with the command's words as the body.
void echo(const proto::Request& request, const Peer&, const Respond& reply) {
  reply(replyWith(request.command().words()));
}

// A UNIX stream socket bound to `path`, or -1.
int boundUnixSocket(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Two free TCP ports in a row on localhost (requests on the first, events on the second).
int freePortPair() {
  auto bindable = [](int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    bool ok = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    socklen_t size = sizeof address;
    getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
    close(fd);
    return ok ? ntohs(address.sin_port) : 0;
  };
  for (int attempt = 0; attempt < 100; ++attempt) {
    int port = bindable(0);
    if (port > 0 && port < 65534 && bindable(port + 1) == port + 1) return port;
  }
  return 0;
}

struct KeyPair {
  std::string publicKey;
  std::string secretKey;
};

KeyPair curveKeyPair() {
  char publicKey[41] = {};
  char secretKey[41] = {};
  EXPECT_EQ(zmq_curve_keypair(publicKey, secretKey), 0);
  return {publicKey, secretKey};
}

// A raw ZeroMQ DEALER on its own context, for sending what no AdminClient sends.
class RawPeer {
 public:
  explicit RawPeer(const std::string& endpoint) : context_(zmq_ctx_new()), socket_(zmq_socket(context_, ZMQ_DEALER)) {
    int zero = 0;
    zmq_setsockopt(socket_, ZMQ_LINGER, &zero, sizeof zero);
    EXPECT_EQ(zmq_connect(socket_, endpoint.c_str()), 0);
  }
  ~RawPeer() {
    zmq_close(socket_);
    zmq_ctx_term(context_);
  }
  RawPeer(const RawPeer&) = delete;
  RawPeer& operator=(const RawPeer&) = delete;

  void send(const std::vector<std::string>& frames) {
    for (std::size_t i = 0; i < frames.size(); ++i) {
      EXPECT_GE(zmq_send(socket_, frames[i].data(), frames[i].size(), i + 1 < frames.size() ? ZMQ_SNDMORE : 0), 0);
    }
  }
  // One single-frame message, or nothing within `timeout`.
  std::optional<std::string> receive(Duration timeout) {
    zmq_pollitem_t item{socket_, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, static_cast<long>(timeout.count())) <= 0) return std::nullopt;
    zmq_msg_t message;
    zmq_msg_init(&message);
    std::optional<std::string> out;
    if (zmq_msg_recv(&message, socket_, 0) >= 0) {
      out = std::string(static_cast<const char*>(zmq_msg_data(&message)), zmq_msg_size(&message));
    }
    zmq_msg_close(&message);
    return out;
  }

 private:
  void* context_;
  void* socket_;
};

class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop).value();
  }

  std::string endpoint() const { return "ipc://" + (dir_ / "admin.sock").string(); }
  std::string eventsEndpoint() const { return "ipc://" + (dir_ / "events.sock").string(); }

  AdminServerOptions options() {
    AdminServerOptions options;
    options.ipcPath = endpoint();
    options.logger = [this](const std::string& line) { logs_.push_back(line); };
    return options;
  }

  void start(AdminServerOptions options) {
    auto server = AdminServer::create(*loop_, std::move(options), handler_);
    ASSERT_TRUE(server.ok()) << server.error().message;
    server_ = std::move(server).value();
  }

  // Runs `fn` on another thread while the loop runs on this one, until `fn` returns.
  void offLoop(std::function<void()> fn) {
    auto future = std::async(std::launch::async, std::move(fn));
    EXPECT_TRUE(testing::runUntil(
        *loop_, [&] { return future.wait_for(std::chrono::seconds(0)) == std::future_status::ready; }, kPatience * 3));
    future.get();
  }

  // Runs the loop until `done` holds (at most kPatience); returns done().
  bool runUntil(const std::function<bool()>& done) { return testing::runUntil(*loop_, done, kPatience); }

  testing::TempDir dir_{"kvm-amf-admin"};
  std::unique_ptr<EventLoop> loop_;
  TestHandler handler_;
  std::vector<std::string> logs_;
  std::unique_ptr<AdminServer> server_;
};

TEST_F(AdminTest, ARequestGoesThroughAndItsReplyComesBackWithItsId) {
  handler_.answer = [](const proto::Request& request, const Peer&, const Respond& reply) {
    proto::Reply answer;
    answer.set_generation(7);
    answer.set_id(999);  // the server puts the request's id in
    switch (request.body_case()) {
      case proto::Request::kCommand:
        answer.set_body("command " + request.command().words());
        break;
      case proto::Request::kQuery:
        answer.set_body("query " + request.query().what() + " " + request.query().kind() + " " +
                        request.query().name());
        break;
      case proto::Request::kApply:
        answer.set_body("apply " + std::to_string(request.apply().files_size()) + " " +
                        request.apply().files(1).name() + " " + request.apply().files(1).content() +
                        (request.apply().dry_run() ? " dry" : "") + " " +
                        std::to_string(request.apply().expected_generation()));
        break;
      case proto::Request::kDiff:
        answer.set_code(proto::Reply::DIFFERENT);
        answer.set_body("diff " + request.diff().files(0).name());
        break;
      case proto::Request::kDelete:
        answer.set_code(proto::Reply::REFUSED);
        answer.set_message("no such object: " + request.delete_().target());
        break;
      default:
        break;
    }
    reply(answer);
  };
  start(options());
  struct stat file {};
  ASSERT_EQ(stat((dir_ / "admin.sock").c_str(), &file), 0);
  EXPECT_TRUE(S_ISSOCK(file.st_mode));
  EXPECT_EQ(file.st_mode & 07777, 0600u);  // no group: the server's user (root) only

  offLoop([&] {
    auto client = AdminClient::connect(endpoint());
    ASSERT_TRUE(client.ok()) << client.error().message;
    AdminClient& c = *client.value();

    auto reply = c.call(command("lock su/mme-a", 42), kPatience);
    ASSERT_TRUE(reply.ok()) << reply.error().message;
    EXPECT_EQ(reply.value().id(), 42u);
    EXPECT_EQ(reply.value().code(), proto::Reply::OK);
    EXPECT_EQ(reply.value().body(), "command lock su/mme-a");
    EXPECT_EQ(reply.value().generation(), 7u);

    auto picked = c.call(command("unlock su/mme-a"), kPatience);  // id 0: the client picks one
    ASSERT_TRUE(picked.ok()) << picked.error().message;
    EXPECT_NE(picked.value().id(), 0u);
    EXPECT_EQ(picked.value().body(), "command unlock su/mme-a");

    proto::Request query;
    query.mutable_query()->set_what("get");
    query.mutable_query()->set_kind("sus");
    query.mutable_query()->set_name("mme-a");
    auto queried = c.call(query, kPatience);
    ASSERT_TRUE(queried.ok());
    EXPECT_EQ(queried.value().body(), "query get sus mme-a");

    proto::Request apply;
    apply.mutable_apply()->add_files()->set_name("a.yaml");
    proto::File* second = apply.mutable_apply()->add_files();
    second->set_name("b.yaml");
    second->set_content("kind: ServiceGroup\n");
    apply.mutable_apply()->set_dry_run(true);
    apply.mutable_apply()->set_expected_generation(6);
    auto applied = c.call(apply, kPatience);
    ASSERT_TRUE(applied.ok());
    EXPECT_EQ(applied.value().body(), "apply 2 b.yaml kind: ServiceGroup\n dry 6");

    proto::Request diff;
    diff.mutable_diff()->add_files()->set_name("c.yaml");
    auto diffed = c.call(diff, kPatience);
    ASSERT_TRUE(diffed.ok());
    EXPECT_EQ(diffed.value().code(), proto::Reply::DIFFERENT);
    EXPECT_EQ(diffed.value().body(), "diff c.yaml");

    proto::Request removal;
    removal.mutable_delete_()->set_target("sg/gone");
    auto removed = c.call(removal, kPatience);
    ASSERT_TRUE(removed.ok());
    EXPECT_EQ(removed.value().code(), proto::Reply::REFUSED);
    EXPECT_EQ(removed.value().message(), "no such object: sg/gone");
  });

  ASSERT_EQ(handler_.peers.size(), 6u);
  const Peer& peer = handler_.peers[0];
  EXPECT_EQ(peer.transport, Peer::Transport::kIpc);
  EXPECT_EQ(peer.uid, geteuid());
  EXPECT_EQ(peer.gid, getegid());
  EXPECT_EQ(peer.pid, getpid());
  EXPECT_EQ(peer.describe(), "uid " + std::to_string(geteuid()) + " gid " + std::to_string(getegid()) + " pid " +
                                 std::to_string(getpid()));
  AdminServerStats stats = server_->stats();
  EXPECT_EQ(stats.requests, 6u);
  EXPECT_EQ(stats.replies, 6u);
  EXPECT_EQ(stats.malformed, 0u);
  EXPECT_EQ(stats.refused, 0u);
  EXPECT_EQ(server_->endpoints(), std::vector<std::string>{endpoint()});

  server_.reset();
  EXPECT_FALSE(std::filesystem::exists(dir_ / "admin.sock"));  // removed as the server closes
}

TEST_F(AdminTest, AReplyGivenLaterFromATimerArrives) {
  handler_.answer = [this](const proto::Request& request, const Peer&, Respond reply) {
    loop_->after(Duration(200),
                 [reply = std::move(reply), words = request.command().words()] { reply(replyWith("late " + words)); });
  };
  start(options());
  offLoop([&] {
    auto client = AdminClient::connect(endpoint());
    ASSERT_TRUE(client.ok()) << client.error().message;
    auto begin = Clock::now();
    auto reply = client.value()->call(command("status", 5), kPatience);
    ASSERT_TRUE(reply.ok()) << reply.error().message;
    EXPECT_GE(since(begin), Duration(190));
    EXPECT_EQ(reply.value().id(), 5u);
    EXPECT_EQ(reply.value().body(), "late status");
  });
}

TEST_F(AdminTest, SeveralClientsAtOnceEachGetTheirOwnReplies) {
  // Some replies at once, some a few milliseconds later, so that they cross.
  handler_.answer = [this](const proto::Request& request, const Peer&, Respond reply) {
    auto delay = static_cast<int>(request.command().words().size() % 4);
    if (delay == 0) return reply(replyWith(request.command().words()));
    loop_->after(Duration(delay),
                 [reply = std::move(reply), words = request.command().words()] { reply(replyWith(words)); });
  };
  start(options());
  constexpr int kClients = 6;
  constexpr int kCalls = 30;
  std::atomic<int> good = 0;
  offLoop([&] {
    std::vector<std::thread> clients;
    for (int t = 0; t < kClients; ++t) {
      clients.emplace_back([&, t] {
        auto client = AdminClient::connect(endpoint());
        if (!client.ok()) return;
        for (int i = 0; i < kCalls; ++i) {
          std::string words = "client " + std::to_string(t) + " call " + std::to_string(i);
          auto reply = client.value()->call(command(words), kPatience);
          if (reply.ok() && reply.value().body() == words) ++good;
        }
      });
    }
    for (std::thread& client : clients) client.join();
  });
  EXPECT_EQ(good.load(), kClients * kCalls);
  EXPECT_EQ(server_->stats().requests, std::uint64_t(kClients * kCalls));
  EXPECT_EQ(server_->stats().replies, std::uint64_t(kClients * kCalls));
}

TEST_F(AdminTest, WithoutAServerTheClientSaysUnreachableAtOnce) {
  // No socket file.
  auto begin = Clock::now();
  auto missing = AdminClient::connect(endpoint());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, ClientErrorKind::kUnreachable);
  EXPECT_TRUE(contains(missing.error().message, "no amfd at " + endpoint() + ": ")) << missing.error().message;
  EXPECT_LT(since(begin), Duration(1000));

  // A socket file nobody listens on (what a server that died leaves).
  std::string stale = (dir_ / "stale.sock").string();
  int fd = boundUnixSocket(stale);
  ASSERT_GE(fd, 0);
  close(fd);
  auto refused = AdminClient::connect("ipc://" + stale);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ClientErrorKind::kUnreachable);
  EXPECT_EQ(refused.error().message, "no amfd at ipc://" + stale + ": Connection refused");

  // A TCP endpoint nobody listens on: the first connect fails, well within the call's timeout.
  int port = freePortPair();
  ASSERT_NE(port, 0);
  KeyPair server = curveKeyPair();
  KeyPair client = curveKeyPair();
  std::string tcp = "tcp://127.0.0.1:" + std::to_string(port);
  auto connected = AdminClient::connect(tcp, {server.publicKey, client.publicKey, client.secretKey});
  ASSERT_TRUE(connected.ok()) << connected.error().message;
  begin = Clock::now();
  auto call = connected.value()->call(command("status"), kPatience);
  ASSERT_FALSE(call.ok());
  EXPECT_EQ(call.error().kind, ClientErrorKind::kUnreachable);
  EXPECT_EQ(call.error().message, "no amfd at " + tcp + ": cannot connect");
  EXPECT_LT(since(begin), Duration(2000));

  // Bad endpoints and missing keys are the caller's mistake.
  auto noKeys = AdminClient::connect(tcp);
  ASSERT_FALSE(noKeys.ok());
  EXPECT_EQ(noKeys.error().kind, ClientErrorKind::kFailed);
  EXPECT_TRUE(contains(noKeys.error().message, "needs CURVE keys")) << noKeys.error().message;
  auto limited = AdminClient::connect(tcp, {server.publicKey, client.publicKey, client.secretKey, 100});
  ASSERT_TRUE(limited.ok());
  auto tooBig = limited.value()->call(command(std::string(200, 'w')), kPatience);
  ASSERT_FALSE(tooBig.ok());
  EXPECT_EQ(tooBig.error().kind, ClientErrorKind::kFailed);
  EXPECT_TRUE(contains(tooBig.error().message, "bytes, over the limit of 100")) << tooBig.error().message;
  auto scheme = AdminClient::connect("http://localhost/");
  ASSERT_FALSE(scheme.ok());
  EXPECT_EQ(scheme.error().kind, ClientErrorKind::kFailed);
}

TEST_F(AdminTest, AServerThatDiesInTheHandshakeIsUnreachable) {
  // The server took the connection and died before it answered the client's greeting: the
  // listener is gone, the connection reset in the handshake. Nothing listens at the file any
  // more, so it is "no amfd", not a failed handshake.
  std::string dying = (dir_ / "dying.sock").string();
  int fd = boundUnixSocket(dying);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(listen(fd, 4), 0);
  auto client = AdminClient::connect("ipc://" + dying);
  ASSERT_TRUE(client.ok()) << client.error().message;
  int accepted = accept(fd, nullptr, nullptr);
  ASSERT_GE(accepted, 0);
  close(fd);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the client's greeting, unread
  close(accepted);
  auto call = client.value()->call(command("status"), kPatience);
  ASSERT_FALSE(call.ok());
  EXPECT_EQ(call.error().kind, ClientErrorKind::kUnreachable) << call.error().message;
  EXPECT_EQ(call.error().message, "no amfd at ipc://" + dying + ": Connection refused");
}

TEST_F(AdminTest, AServerThatGoesAwayIsUnreachableForTheNextCall) {
  handler_.answer = echo;
  start(options());
  auto client = AdminClient::connect(endpoint());  // the kernel accepts without the loop running
  ASSERT_TRUE(client.ok()) << client.error().message;
  offLoop([&] { EXPECT_TRUE(client.value()->call(command("status"), kPatience).ok()); });
  server_.reset();
  auto begin = Clock::now();
  auto call = client.value()->call(command("status"), kPatience);
  ASSERT_FALSE(call.ok());
  EXPECT_EQ(call.error().kind, ClientErrorKind::kUnreachable);
  EXPECT_TRUE(contains(call.error().message, "no amfd at " + endpoint())) << call.error().message;
  EXPECT_LT(since(begin), Duration(2000));
}

TEST_F(AdminTest, AHandlerThatNeverRepliesMakesTheClientTimeOut) {
  start(options());  // the handler records requests and never answers
  offLoop([&] {
    auto client = AdminClient::connect(endpoint());
    ASSERT_TRUE(client.ok()) << client.error().message;
    auto begin = Clock::now();
    auto call = client.value()->call(command("status"), Duration(300));
    Duration took = since(begin);
    ASSERT_FALSE(call.ok());
    EXPECT_EQ(call.error().kind, ClientErrorKind::kTimeout);
    EXPECT_EQ(call.error().message, "no reply from amfd at " + endpoint() + " within 300 ms");
    EXPECT_GE(took, Duration(290));
    EXPECT_LT(took, Duration(3000));
  });
  EXPECT_EQ(handler_.requests.size(), 1u);
  EXPECT_EQ(server_->stats().replies, 0u);
}

TEST_F(AdminTest, ALateReplyToATimedOutRequestIsNotTakenForTheNextOnesReply) {
  // The first request is answered only when the second comes (the client has given up on the
  // first by then), the second a little later: the first's reply arrives while the client waits
  // for the second's.
  Respond heldReply;
  handler_.answer = [&](const proto::Request& request, const Peer&, Respond reply) {
    if (request.id() == 1) {
      heldReply = std::move(reply);
      return;
    }
    heldReply(replyWith("first"));
    loop_->after(Duration(50),
                 [reply = std::move(reply), words = request.command().words()] { reply(replyWith(words)); });
  };
  start(options());
  offLoop([&] {
    auto client = AdminClient::connect(endpoint());
    ASSERT_TRUE(client.ok()) << client.error().message;
    auto first = client.value()->call(command("first", 1), Duration(200));
    ASSERT_FALSE(first.ok());
    EXPECT_EQ(first.error().kind, ClientErrorKind::kTimeout);
    auto second = client.value()->call(command("second", 2), kPatience);
    ASSERT_TRUE(second.ok()) << second.error().message;
    EXPECT_EQ(second.value().id(), 2u);
    EXPECT_EQ(second.value().body(), "second");
  });
  EXPECT_EQ(server_->stats().replies, 2u);
}

TEST_F(AdminTest, MalformedFramesAreCountedAndDroppedAndTheServerGoesOn) {
  handler_.answer = echo;
  AdminServerOptions o = options();
  o.maxRequestBytes = 1024;
  start(o);
  offLoop([&] {
    RawPeer raw(endpoint());
    raw.send(
        {std::string("\x12\x7f"
                     "short",
                     7)});               // a length past the end: not a Request
    raw.send({""});                      // empty
    raw.send({"a", "b", "c"});           // three frames
    raw.send({std::string(2000, 'x')});  // over the limit (under twice the limit)
    proto::Request noBody;
    noBody.set_id(7);
    std::string noBodyBytes;
    noBody.SerializeToString(&noBodyBytes);
    raw.send({noBodyBytes});  // parses, but asks nothing: answered INVALID
    auto invalid = raw.receive(kPatience);
    ASSERT_TRUE(invalid.has_value());
    proto::Reply reply;
    ASSERT_TRUE(reply.ParseFromString(*invalid));
    EXPECT_EQ(reply.id(), 7u);
    EXPECT_EQ(reply.code(), proto::Reply::INVALID);

    // Over twice the limit: libzmq drops the connection before reading the frame.
    RawPeer huge(endpoint());
    huge.send({std::string(5000, 'y')});

    auto client = AdminClient::connect(endpoint());
    ASSERT_TRUE(client.ok()) << client.error().message;
    auto good = client.value()->call(command("still here"), kPatience);
    ASSERT_TRUE(good.ok()) << good.error().message;
    EXPECT_EQ(good.value().body(), "still here");
  });
  AdminServerStats stats = server_->stats();
  EXPECT_EQ(stats.malformed, 5u);
  EXPECT_EQ(stats.requests, 1u);  // only the good one reached the handler
  EXPECT_EQ(stats.replies, 2u);   // INVALID, and the good one's
  std::string peer =
      "uid " + std::to_string(geteuid()) + " gid " + std::to_string(getegid()) + " pid " + std::to_string(getpid());
  EXPECT_TRUE(anyContains(logs_, "dropped a malformed request from " + peer + ": not a Request (7 bytes)"));
  EXPECT_TRUE(anyContains(logs_, "dropped a malformed request from " + peer + ": empty request"));
  EXPECT_TRUE(anyContains(logs_, "dropped a malformed request from " + peer + ": expected one frame, got 3"));
  EXPECT_TRUE(anyContains(
      logs_, "dropped a malformed request from " + peer + ": request of 2000 bytes is over the limit of 1024"));
  EXPECT_TRUE(anyContains(logs_, "dropped a malformed request from " + peer + ": request 7 has no body"));
}

TEST_F(AdminTest, RepliesAfterThePeerOrTheServerHasGoneAreDropped) {
  std::vector<Respond> saved;
  handler_.answer = [&](const proto::Request&, const Peer&, Respond reply) { saved.push_back(std::move(reply)); };
  start(options());
  offLoop([&] {
    auto client = AdminClient::connect(endpoint());
    ASSERT_TRUE(client.ok()) << client.error().message;
    EXPECT_FALSE(client.value()->call(command("one", 11), Duration(100)).ok());
    EXPECT_FALSE(client.value()->call(command("two", 12), Duration(100)).ok());
  });  // the client is gone
  ASSERT_EQ(saved.size(), 2u);
  loop_->runFor(Duration(1000));  // the server's side of the connection notices
  saved[0](replyWith("too late"));
  AdminServerStats stats = server_->stats();
  EXPECT_EQ(stats.undelivered, 1u);
  EXPECT_EQ(stats.replies, 0u);
  EXPECT_TRUE(anyContains(logs_, "dropped the reply to request 11 from uid ")) << ::testing::PrintToString(logs_);
  EXPECT_TRUE(anyContains(logs_, ": the peer has gone"));
  saved[0](replyWith("twice"));  // a second call does nothing
  EXPECT_EQ(server_->stats().undelivered, 1u);
  server_.reset();
  saved[1](replyWith("after the server"));  // does nothing either
  loop_->runFor(Duration(10));
}

TEST_F(AdminTest, ASecondServerOnTheSamePathOrAPathThatIsNoSocketIsRefused) {
  handler_.answer = echo;
  start(options());
  auto second = AdminServer::create(*loop_, options(), handler_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().message, "cannot serve " + endpoint() + ": another server is listening there");
  offLoop([&] {
    auto client = AdminClient::connect(endpoint());
    ASSERT_TRUE(client.ok()) << client.error().message;
    EXPECT_TRUE(client.value()->call(command("status"), kPatience).ok());
  });

  std::ofstream(dir_ / "file") << "precious";
  AdminServerOptions o = options();
  o.ipcPath = (dir_ / "file").string();
  auto onFile = AdminServer::create(*loop_, o, handler_);
  ASSERT_FALSE(onFile.ok());
  EXPECT_EQ(onFile.error().message,
            "cannot serve ipc://" + (dir_ / "file").string() + ": it exists and is not a socket");

  o.ipcPath = (dir_ / "new" / "dirs" / "admin.sock").string();  // missing directories are made
  auto nested = AdminServer::create(*loop_, o, handler_);
  ASSERT_TRUE(nested.ok()) << nested.error().message;
  struct stat made {};
  ASSERT_EQ(stat((dir_ / "new" / "dirs").c_str(), &made), 0);
  EXPECT_EQ(made.st_mode & 0777, 0755u);
}

TEST_F(AdminTest, TcpNeedsCurveAndOnlyAllowedKeysGetIn) {
  KeyPair serverKeys = curveKeyPair();
  KeyPair allowed = curveKeyPair();
  KeyPair stranger = curveKeyPair();
  int port = freePortPair();
  ASSERT_NE(port, 0);
  std::string tcp = "tcp://127.0.0.1:" + std::to_string(port);

  // Without keys, or with a bad one, nothing starts (and nothing is left behind).
  AdminServerOptions o = options();
  o.tcpEndpoint = tcp;
  auto noKeys = AdminServer::create(*loop_, o, handler_);
  ASSERT_FALSE(noKeys.ok());
  EXPECT_TRUE(contains(noKeys.error().message, "tcpEndpoint " + tcp + " needs CURVE")) << noKeys.error().message;
  o.curveSecretKey = "not a key";
  o.curveClientKeys = {allowed.publicKey};
  auto badKey = AdminServer::create(*loop_, o, handler_);
  ASSERT_FALSE(badKey.ok());
  EXPECT_EQ(badKey.error().message, "curveSecretKey is not a Z85 CURVE key (40 characters)");
  o.curveSecretKey = serverKeys.secretKey;
  o.tcpEndpoint = "tcp://127.0.0.1";
  auto noPort = AdminServer::create(*loop_, o, handler_);
  ASSERT_FALSE(noPort.ok());
  EXPECT_TRUE(contains(noPort.error().message, "tcp://ADDRESS:PORT")) << noPort.error().message;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "admin.sock"));

  handler_.answer = echo;
  o.tcpEndpoint = tcp;
  start(o);
  EXPECT_EQ(server_->endpoints(), (std::vector<std::string>{endpoint(), tcp}));
  offLoop([&] {
    auto client = AdminClient::connect(tcp, {serverKeys.publicKey, allowed.publicKey, allowed.secretKey});
    ASSERT_TRUE(client.ok()) << client.error().message;
    auto reply = client.value()->call(command("over tcp"), kPatience);
    ASSERT_TRUE(reply.ok()) << reply.error().message;
    EXPECT_EQ(reply.value().body(), "over tcp");

    auto other = AdminClient::connect(tcp, {serverKeys.publicKey, stranger.publicKey, stranger.secretKey});
    ASSERT_TRUE(other.ok()) << other.error().message;
    auto begin = Clock::now();
    auto refused = other.value()->call(command("let me in"), kPatience);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().kind, ClientErrorKind::kRefused);
    EXPECT_TRUE(
        contains(refused.error().message, "refused by amfd at " + tcp + ": this client's CURVE key is not allowed"))
        << refused.error().message;
    EXPECT_LT(since(begin), Duration(2000));

    KeyPair impostor = curveKeyPair();  // not the server's key
    auto wrongServer = AdminClient::connect(tcp, {impostor.publicKey, allowed.publicKey, allowed.secretKey});
    ASSERT_TRUE(wrongServer.ok()) << wrongServer.error().message;
    begin = Clock::now();
    auto mismatch = wrongServer.value()->call(command("who are you"), Duration(3000));
    ASSERT_FALSE(mismatch.ok());
    EXPECT_EQ(mismatch.error().kind, ClientErrorKind::kFailed);
    EXPECT_TRUE(contains(mismatch.error().message, "the handshake with " + tcp + " failed"))
        << mismatch.error().message;
    EXPECT_TRUE(contains(mismatch.error().message, "is curveServerKey this server's public key?"));
    EXPECT_LT(since(begin), Duration(2000));
  });
  ASSERT_EQ(handler_.peers.size(), 1u);  // the stranger's request never arrived
  EXPECT_EQ(handler_.peers[0].transport, Peer::Transport::kTcp);
  EXPECT_EQ(handler_.peers[0].curveKey, allowed.publicKey);
  EXPECT_EQ(handler_.peers[0].address, "127.0.0.1");
  EXPECT_FALSE(handler_.peers[0].uid.has_value());
  EXPECT_GE(server_->stats().refused, 1u);
  EXPECT_TRUE(anyContains(logs_, "refused a connection from tcp 127.0.0.1 key " + stranger.publicKey));
}

// Publishes "sync" events until the subscriber has seen one (a subscription takes a moment to
// reach the server), then `count` numbered "data" events; the subscriber must get them all, in
// order, with consecutive seq numbers.
void expectEventsInOrder(EventLoop& loop, AdminServer& server, const std::string& admin, const std::string& events,
                         const ClientOptions& keys) {
  constexpr int kCount = 100;
  std::atomic<bool> synced = false;
  std::function<void()> tick = [&] {
    if (!synced) {
      proto::Event sync;
      sync.set_type("sync");
      server.publish(sync);
      loop.after(Duration(10), tick);
      return;
    }
    for (int i = 0; i < kCount; ++i) {
      proto::Event event;
      event.set_type("data");
      event.set_text(std::to_string(i));
      event.set_json("{\"n\":" + std::to_string(i) + "}");
      server.publish(event);
    }
  };
  loop.after(Duration(0), tick);
  std::vector<proto::Event> received;
  auto future = std::async(std::launch::async, [&] {
    auto client = AdminClient::connect(admin, keys);
    ASSERT_TRUE(client.ok()) << client.error().message;
    auto subscribed = client.value()->subscribe(events);
    ASSERT_TRUE(subscribed.ok()) << subscribed.error().message;
    auto begin = Clock::now();
    while (static_cast<int>(received.size()) < kCount && since(begin) < kPatience) {
      auto next = client.value()->nextEvent(Duration(200));
      ASSERT_TRUE(next.ok()) << next.error().message;
      if (!next.value()) continue;
      if (next.value()->type() == "sync") {
        synced = true;
      } else {
        received.push_back(*next.value());
      }
    }
  });
  EXPECT_TRUE(testing::runUntil(
      loop, [&] { return future.wait_for(std::chrono::seconds(0)) == std::future_status::ready; }, kPatience * 2));
  future.get();
  ASSERT_EQ(received.size(), std::size_t(kCount));
  for (int i = 0; i < kCount; ++i) {
    EXPECT_EQ(received[i].text(), std::to_string(i));
    EXPECT_GT(received[i].time_ms(), 0);
    if (i > 0) {
      EXPECT_EQ(received[i].seq(), received[i - 1].seq() + 1);
    }
  }
}

TEST_F(AdminTest, ASubscriberReceivesPublishedEventsInOrder) {
  AdminServerOptions o = options();
  o.eventsPath = eventsEndpoint();
  start(o);
  struct stat file {};
  ASSERT_EQ(stat((dir_ / "events.sock").c_str(), &file), 0);
  EXPECT_EQ(file.st_mode & 07777, 0600u);
  expectEventsInOrder(*loop_, *server_, endpoint(), eventsEndpoint(), {});
  EXPECT_GE(server_->stats().events, 101u);
}

TEST_F(AdminTest, ASubscriberOverTcpReceivesEventsOnTheNextPort) {
  KeyPair serverKeys = curveKeyPair();
  KeyPair allowed = curveKeyPair();
  int port = freePortPair();
  ASSERT_NE(port, 0);
  AdminServerOptions o = options();
  o.eventsPath = eventsEndpoint();
  o.tcpEndpoint = "tcp://127.0.0.1:" + std::to_string(port);
  o.curveSecretKey = serverKeys.secretKey;
  o.curveClientKeys = {allowed.publicKey};
  start(o);
  std::string events = "tcp://127.0.0.1:" + std::to_string(port + 1);
  EXPECT_EQ(server_->endpoints().back(), events);
  expectEventsInOrder(*loop_, *server_, o.tcpEndpoint, events,
                      {serverKeys.publicKey, allowed.publicKey, allowed.secretKey});
}

// --- Permissions: child processes that are not root. Root only.

struct ChildIdentity {
  uid_t uid;
  gid_t gid;
  std::vector<gid_t> groups;
};

class AdminPermissionTest : public AdminTest {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (child processes change their uid)";
#if defined(__SANITIZE_ADDRESS__)
    // The children run test code after fork() in a process with ZeroMQ's threads; under
    // AddressSanitizer such a child can hang in the allocator (a lock held by another thread at
    // the fork). The normal build runs these tests.
    GTEST_SKIP() << "fork without exec of a multithreaded process under AddressSanitizer";
#endif
    AdminTest::SetUp();
    // The children must reach the socket files through the test's directory.
    ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
    struct group* adm = getgrnam("adm");
    if (adm == nullptr) GTEST_SKIP() << "no group adm";
    admGid_ = adm->gr_gid;
  }

  // Runs `body` in a child process with `identity`, while the loop serves here; returns what
  // `body` returned, or why the child failed.
  std::string inChild(const ChildIdentity& identity, const std::function<std::string()>& body) {
    int fds[2];
    if (pipe(fds) != 0) return "pipe failed";
    pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      std::string out;
      if (setgroups(identity.groups.size(), identity.groups.data()) != 0 || setgid(identity.gid) != 0 ||
          setuid(identity.uid) != 0) {
        out = std::string("cannot change identity: ") + std::strerror(errno);
      } else {
        out = body();
      }
      ssize_t written = write(fds[1], out.data(), out.size());
      _exit(written == static_cast<ssize_t>(out.size()) ? 0 : 1);
    }
    close(fds[1]);
    int status = -1;
    bool reaped = false;
    bool exited = runUntil([&] { return reaped || (reaped = waitpid(pid, &status, WNOHANG) == pid); });
    if (!exited) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
    std::string out;
    char buffer[4096];
    for (ssize_t n; (n = read(fds[0], buffer, sizeof buffer)) > 0;) out.append(buffer, static_cast<std::size_t>(n));
    close(fds[0]);
    return exited ? out : "the child did not finish";
  }

  // A call as the child: "reply CODE ID MESSAGE" or "error KIND MESSAGE".
  static std::string callAs(const std::string& endpoint) {
    auto client = AdminClient::connect(endpoint);
    if (!client.ok()) {
      return "error " + std::to_string(static_cast<int>(client.error().kind)) + " " + client.error().message;
    }
    auto reply = client.value()->call(command("lock su/x", 77), Duration(5000));
    if (!reply.ok()) {
      return "error " + std::to_string(static_cast<int>(reply.error().kind)) + " " + reply.error().message;
    }
    return "reply " + proto::Reply::Code_Name(reply.value().code()) + " " + std::to_string(reply.value().id()) + " " +
           reply.value().message() + reply.value().body();
  }

  static std::string kind(ClientErrorKind k) { return std::to_string(static_cast<int>(k)); }

  gid_t admGid_ = 0;
};

TEST_F(AdminPermissionTest, APeerNotRootNorInTheGroupIsRefusedEvenThroughAWiderFileMode) {
  handler_.answer = echo;
  AdminServerOptions o = options();
  o.group = "adm";
  start(o);
  struct stat file {};
  ASSERT_EQ(stat((dir_ / "admin.sock").c_str(), &file), 0);
  EXPECT_EQ(file.st_mode & 07777, 0660u);
  EXPECT_EQ(file.st_gid, admGid_);
  EXPECT_EQ(file.st_uid, 0u);

  ChildIdentity nobody{kNobody, kNogroup, {kNogroup}};
  // The file's mode keeps nobody out: the kernel refuses the connection.
  std::string out = inChild(nobody, [&] { return callAs(endpoint()); });
  EXPECT_TRUE(contains(out, "error " + kind(ClientErrorKind::kRefused) +
                                " permission denied: this user may not connect to " + endpoint()))
      << out;

  // With the mode opened up, the server's own check refuses the request.
  ASSERT_EQ(chmod((dir_ / "admin.sock").c_str(), 0666), 0);
  out = inChild(nobody, [&] { return callAs(endpoint()); });
  EXPECT_EQ(out, "reply REFUSED 77 permission denied: uid 65534 is not root or in group adm");
  EXPECT_TRUE(handler_.requests.empty());
  EXPECT_EQ(server_->stats().refused, 1u);
  EXPECT_TRUE(anyContains(logs_, "refused a request from uid 65534 gid 65534 pid "));
}

TEST_F(AdminPermissionTest, APeerInTheGroupIsServed) {
  handler_.answer = echo;
  AdminServerOptions o = options();
  o.group = "adm";
  start(o);
  std::string out = inChild({kNobody, admGid_, {admGid_}}, [&] { return callAs(endpoint()); });
  EXPECT_EQ(out, "reply OK 77 lock su/x");
  ASSERT_EQ(handler_.peers.size(), 1u);
  EXPECT_EQ(handler_.peers[0].uid, kNobody);
  EXPECT_EQ(handler_.peers[0].gid, admGid_);
  EXPECT_EQ(server_->stats().refused, 0u);
}

TEST_F(AdminPermissionTest, WithoutAGroupOnlyRootIsServed) {
  handler_.answer = echo;
  start(options());
  ASSERT_EQ(chmod((dir_ / "admin.sock").c_str(), 0666), 0);
  std::string out = inChild({kNobody, admGid_, {admGid_}}, [&] { return callAs(endpoint()); });
  EXPECT_EQ(out, "reply REFUSED 77 permission denied: uid 65534 is not root");
}

TEST_F(AdminPermissionTest, ASubscriberWithoutPermissionIsRefused) {
  AdminServerOptions o = options();
  o.group = "adm";
  o.eventsPath = eventsEndpoint();
  start(o);
  ASSERT_EQ(chmod((dir_ / "admin.sock").c_str(), 0666), 0);
  ASSERT_EQ(chmod((dir_ / "events.sock").c_str(), 0666), 0);
  std::string out = inChild({kNobody, kNogroup, {kNogroup}}, [&]() -> std::string {
    auto client = AdminClient::connect(endpoint());
    if (!client.ok()) return "connect: " + client.error().message;
    auto subscribed = client.value()->subscribe(eventsEndpoint());
    if (!subscribed.ok()) return "subscribe: " + subscribed.error().message;
    auto event = client.value()->nextEvent(Duration(5000));
    if (event.ok()) return event.value() ? "an event" : "no event";
    return "error " + kind(event.error().kind) + " " + event.error().message;
  });
  EXPECT_TRUE(contains(out, "error " + kind(ClientErrorKind::kRefused) + " refused by amfd at " + eventsEndpoint() +
                                ": permission denied"))
      << out;
  EXPECT_GE(server_->stats().refused, 1u);
  EXPECT_TRUE(anyContains(logs_, "refused a subscriber (uid 65534 gid 65534 pid "));
}

TEST_F(AdminTest, AnUnknownGroupIsRefusedAtStart) {
  AdminServerOptions o = options();
  o.group = "no-such-group-kvm-amf";
  auto server = AdminServer::create(*loop_, o, handler_);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.error().message, "no such group: no-such-group-kvm-amf");
}

}  // namespace
}  // namespace kvm_amf::admin
