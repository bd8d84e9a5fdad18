#include "kvm_amf/cluster/corosync_conf.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "testing/temp_dir.h"

namespace kvm_amf::cluster {
namespace {

using kvm_amf::testing::TempDir;

using namespace std::chrono_literals;

CorosyncClusterConf threeNodes() {
  CorosyncClusterConf conf;
  conf.clusterName = "lab";
  conf.nodes = {{"node1", 1, "10.88.0.1"}, {"node2", 2, "10.88.0.2"}, {"node3", 3, "10.88.0.3"}};
  conf.token = 300ms;
  conf.authkeyPath = "/etc/corosync/authkey";
  return conf;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The text between "NAME {" and its closing brace (one level of nesting).
std::string section(const std::string& text, const std::string& name) {
  std::size_t start = text.find("\n" + name + " {\n");
  if (start == std::string::npos && text.rfind(name + " {\n", 0) == 0) start = 0;
  if (start == std::string::npos) return "";
  std::size_t end = text.find("\n}\n", start + 1);
  return text.substr(start, end == std::string::npos ? std::string::npos : end - start + 3);
}

TEST(CorosyncConf, ThreeNodesWithTheFastProfileAndCrypto) {
  const std::string conf = corosyncConf(threeNodes());
  const std::string totem = section(conf, "totem");
  EXPECT_TRUE(contains(totem, "  version: 2\n")) << conf;
  EXPECT_TRUE(contains(totem, "  cluster_name: lab\n")) << conf;
  EXPECT_TRUE(contains(totem, "  transport: knet\n")) << conf;
  EXPECT_TRUE(contains(totem, "  token: 300\n")) << conf;
  EXPECT_TRUE(contains(totem, "  token_coefficient: 0\n")) << conf;
  EXPECT_TRUE(contains(totem, "  consensus: 360\n")) << conf;
  EXPECT_TRUE(contains(totem, "  crypto_cipher: aes256\n")) << conf;
  EXPECT_TRUE(contains(totem, "  crypto_hash: sha256\n")) << conf;
  EXPECT_TRUE(contains(totem, "  keyfile: /etc/corosync/authkey\n")) << conf;
  EXPECT_TRUE(contains(totem,
                       "  interface {\n    linknumber: 0\n    knet_ping_interval: 200\n"
                       "    knet_ping_timeout: 1000\n  }\n"))
      << conf;
  EXPECT_EQ(section(conf, "nodelist"),
            "\nnodelist {\n"
            "  node {\n    name: node1\n    nodeid: 1\n    ring0_addr: 10.88.0.1\n  }\n"
            "  node {\n    name: node2\n    nodeid: 2\n    ring0_addr: 10.88.0.2\n  }\n"
            "  node {\n    name: node3\n    nodeid: 3\n    ring0_addr: 10.88.0.3\n  }\n"
            "}\n");
  EXPECT_EQ(section(conf, "quorum"), "\nquorum {\n  provider: corosync_votequorum\n}\n");
  EXPECT_EQ(section(conf, "logging"),
            "\nlogging {\n  to_syslog: no\n  to_stderr: yes\n  to_logfile: no\n  timestamp: hires\n}\n");
  EXPECT_FALSE(contains(conf, "system {")) << conf;
}

TEST(CorosyncConf, EveryBlockIsOpenedOnItsOwnLineAndClosed) {
  const std::string conf = corosyncConf(threeNodes());
  int depth = 0;
  std::size_t pos = 0;
  while (pos < conf.size()) {
    std::size_t eol = conf.find('\n', pos);
    std::string line = conf.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.empty() || line.find_first_not_of(' ') == std::string::npos || line[line.find_first_not_of(' ')] == '#') {
      continue;
    }
    if (line.find('{') != std::string::npos) {
      EXPECT_EQ(line.back(), '{') << "a block's opening line holds nothing after '{': " << line;
      ++depth;
    } else if (line.find('}') != std::string::npos) {
      EXPECT_EQ(line.substr(line.find_first_not_of(' ')), "}") << line;
      --depth;
      EXPECT_GE(depth, 0);
    } else {
      EXPECT_NE(line.find(": "), std::string::npos) << "not a key: value line: " << line;
    }
  }
  EXPECT_EQ(depth, 0);
}

TEST(CorosyncConf, WithoutCryptoNoKeyIsReferenced) {
  CorosyncClusterConf in = threeNodes();
  in.crypto = false;
  const std::string conf = corosyncConf(in);
  EXPECT_TRUE(contains(conf, "  crypto_cipher: none\n  crypto_hash: none\n")) << conf;
  EXPECT_FALSE(contains(conf, "keyfile")) << conf;
  EXPECT_FALSE(contains(conf, "aes256")) << conf;
}

TEST(CorosyncConf, ConsensusIsGivenOrRoundedFromTheToken) {
  CorosyncClusterConf in = threeNodes();
  in.token = 1000ms;
  EXPECT_TRUE(contains(corosyncConf(in), "  consensus: 1200\n"));
  in.token = 333ms;  // 399.6
  EXPECT_TRUE(contains(corosyncConf(in), "  consensus: 400\n"));
  in.token = 301ms;  // 361.2
  EXPECT_TRUE(contains(corosyncConf(in), "  consensus: 361\n"));
  in.consensus = 5000ms;
  EXPECT_TRUE(contains(corosyncConf(in), "  consensus: 5000\n"));
}

TEST(CorosyncConf, KnetPingTimersFollowTheToken) {
  EXPECT_EQ(knetPingTimers(300ms).interval, 200ms);  // the profile found stable here (docs/membership.md)
  EXPECT_EQ(knetPingTimers(300ms).timeout, 1000ms);
  EXPECT_EQ(knetPingTimers(1000ms).interval, 250ms);
  EXPECT_EQ(knetPingTimers(1000ms).timeout, 1000ms);
  EXPECT_EQ(knetPingTimers(3000ms).interval, 750ms);  // Corosync's own token/4, token/2
  EXPECT_EQ(knetPingTimers(3000ms).timeout, 1500ms);
  for (auto token : {10ms, 100ms, 300ms, 500ms, 999ms, 1000ms, 2000ms, 5000ms, 60000ms}) {
    KnetPingTimers t = knetPingTimers(token);
    EXPECT_GE(t.timeout, 2 * t.interval) << token.count();
    EXPECT_LT(t.timeout - token, 1000ms) << token.count();  // beyond the token by under a second
    EXPECT_GE(t.timeout, token / 2) << token.count();       // never tighter than Corosync's default
  }
  CorosyncClusterConf in = threeNodes();
  in.token = 3000ms;
  EXPECT_TRUE(contains(corosyncConf(in), "    knet_ping_interval: 750\n    knet_ping_timeout: 1500\n"));
}

TEST(CorosyncConf, VotequorumOptions) {
  CorosyncClusterConf in = threeNodes();
  in.nodes.pop_back();
  in.twoNode = true;
  in.waitForAll = true;
  EXPECT_EQ(section(corosyncConf(in), "quorum"),
            "\nquorum {\n  provider: corosync_votequorum\n  two_node: 1\n  wait_for_all: 1\n}\n");
}

TEST(CorosyncConf, LogFileAndStateDir) {
  CorosyncClusterConf in = threeNodes();
  in.logFile = "/var/tmp/lab/host1/corosync.log";
  in.stateDir = "/var/tmp/lab/host1/state";
  const std::string conf = corosyncConf(in);
  EXPECT_EQ(section(conf, "logging"),
            "\nlogging {\n  to_syslog: no\n  to_stderr: no\n  to_logfile: yes\n"
            "  logfile: /var/tmp/lab/host1/corosync.log\n  timestamp: hires\n}\n");
  EXPECT_EQ(section(conf, "system"), "\nsystem {\n  state_dir: /var/tmp/lab/host1/state\n}\n");
}

TEST(CorosyncConf, CheckRejectsWhatTheParserWouldMisread) {
  EXPECT_TRUE(checkCorosyncConf(threeNodes()).ok());
  auto failure = [](CorosyncClusterConf in) {
    Status s = checkCorosyncConf(in);
    return s.ok() ? std::string("ok") : s.error().message;
  };
  CorosyncClusterConf in = threeNodes();
  in.logFile = "/tmp/a{b";
  EXPECT_TRUE(contains(failure(in), "log file '/tmp/a{b'")) << failure(in);
  in = threeNodes();
  in.stateDir = "/tmp/x\nquorum {";
  EXPECT_TRUE(contains(failure(in), "state directory")) << failure(in);
  in = threeNodes();
  in.authkeyPath = "";
  EXPECT_TRUE(contains(failure(in), "authkey path is empty")) << failure(in);
  in.crypto = false;  // no key needed without crypto
  EXPECT_EQ(failure(in), "ok");
  in = threeNodes();
  in.authkeyPath = "/etc/key ";
  EXPECT_TRUE(contains(failure(in), "space")) << failure(in);
  in = threeNodes();
  in.nodes.clear();
  EXPECT_TRUE(contains(failure(in), "no nodes")) << failure(in);
  in = threeNodes();
  in.nodes[1].id = 0;
  EXPECT_TRUE(contains(failure(in), "node node2 has id 0")) << failure(in);
  in = threeNodes();
  in.clusterName = "";
  EXPECT_TRUE(contains(failure(in), "cluster name is empty")) << failure(in);
}

std::string readAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(Authkey, Is256RandomBytesReadableOnlyByTheOwner) {
  TempDir dir("corosync-conf-test");
  const auto key = dir / "authkey";
  Status s = writeAuthkey(key.string());
  ASSERT_TRUE(s.ok()) << s.error().message;
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0400u);
  EXPECT_EQ(st.st_size, 256);
  const std::string first = readAll(key);

  const auto other = dir / "authkey2";
  ASSERT_TRUE(writeAuthkey(other.string()).ok());
  EXPECT_NE(readAll(other), first);  // 2^-2048 chance of a false failure
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 2u) << "no temporary file is left behind";
}

TEST(Authkey, NeverOverwritesAnExistingFile) {
  TempDir dir("corosync-conf-test");
  const auto key = dir / "authkey";
  std::ofstream(key) << "precious";
  Status s = writeAuthkey(key.string());
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(contains(s.error().message, key.string())) << s.error().message;
  EXPECT_TRUE(contains(s.error().message, "already exists")) << s.error().message;
  EXPECT_EQ(readAll(key), "precious");
}

TEST(Authkey, AMissingDirectoryIsAnErrorNamingThePath) {
  TempDir dir("corosync-conf-test");
  const auto key = dir / "no-such-dir" / "authkey";
  Status s = writeAuthkey(key.string());
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(contains(s.error().message, key.string())) << s.error().message;
  EXPECT_FALSE(std::filesystem::exists(key));
}

}  // namespace
}  // namespace kvm_amf::cluster
