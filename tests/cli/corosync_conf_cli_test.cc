// amf-admin corosync-conf: corosync.conf from the Cluster document, and the authkey it references.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "cli_test_util.h"
#include "kvm_amf/cli/admin_cli.h"
#include "kvm_amf/cli/exit_codes.h"

namespace kvm_amf::cli {
namespace {

using testing::admin;
using testing::example;
using testing::Invocation;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string readAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class CorosyncConfCli : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (std::filesystem::temp_directory_path() / "amf-cli-corosync.XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(dir_ / name) << text;
    return path(name);
  }

  std::filesystem::path dir_;
};

constexpr const char* kTwoNodes = R"(apiVersion: kvm-amf/v1
kind: Cluster
metadata: {name: pair}
spec:
  nodes:
    - {name: a, address: 10.1.0.1}
    - {name: b, id: 7, address: 10.1.0.2}
  membership: {token: 1s, twoNode: true, crypto: false}
)";

TEST_F(CorosyncConfCli, PrintsTheConfigurationAndCreatesTheAuthkey) {
  const std::string key = path("authkey");
  Invocation r = admin({"corosync-conf", "-f", example("cluster.yaml"), example("sg-mme.yaml"), "--authkey", key,
                        "--state-dir", path("state"), "--log-file", path("corosync.log")});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_TRUE(contains(r.out, "  cluster_name: lab\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "  token: 300\n  token_coefficient: 0\n  consensus: 360\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "  crypto_cipher: aes256\n  crypto_hash: sha256\n  keyfile: " + key + "\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "    knet_ping_interval: 200\n    knet_ping_timeout: 1000\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "  node {\n    name: node1\n    nodeid: 1\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "  logfile: " + path("corosync.log") + "\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "  state_dir: " + path("state") + "\n")) << r.out;
  EXPECT_TRUE(contains(r.err, "created a new authkey " + key)) << r.err;
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 256);
  EXPECT_EQ(st.st_mode & 07777, 0400u);

  // A second run keeps the key that every host already has.
  const std::string before = readAll(key);
  Invocation again = admin({"corosync-conf", "-f", example("cluster.yaml"), "--authkey", key});
  ASSERT_EQ(again.code, kExitOk) << again.err;
  EXPECT_EQ(again.err, "");
  EXPECT_EQ(readAll(key), before);
  EXPECT_FALSE(contains(again.out, "system {")) << again.out;
  EXPECT_TRUE(contains(again.out, "  to_stderr: yes\n")) << again.out;
}

TEST_F(CorosyncConfCli, WithoutCryptoNoKeyIsMadeAndOutGoesToAFile) {
  const std::string cluster = write("pair.yaml", kTwoNodes);
  const std::string out = path("corosync.conf");
  std::ofstream(out) << "old";
  Invocation r = admin({"corosync-conf", "-f", cluster, "--authkey", path("authkey"), "--out", out});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
  EXPECT_FALSE(std::filesystem::exists(path("authkey")));
  const std::string conf = readAll(out);
  EXPECT_TRUE(contains(conf, "  crypto_cipher: none\n  crypto_hash: none\n")) << conf;
  EXPECT_FALSE(contains(conf, "keyfile")) << conf;
  EXPECT_TRUE(contains(conf, "  token: 1000\n")) << conf;
  EXPECT_TRUE(contains(conf, "  node {\n    name: b\n    nodeid: 7\n    ring0_addr: 10.1.0.2\n  }\n")) << conf;
  EXPECT_TRUE(contains(conf, "  two_node: 1\n")) << conf;
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir_)) ++files;
  EXPECT_EQ(files, 2u) << "no temporary file is left behind";
}

TEST_F(CorosyncConfCli, RelativePathsBecomeAbsolute) {
  const std::string cluster = write("pair.yaml", kTwoNodes);
  Invocation r = admin({"corosync-conf", "-f", cluster, "--log-file", "relative.log"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_TRUE(contains(r.out, "  logfile: " + (std::filesystem::current_path() / "relative.log").string() + "\n"))
      << r.out;
}

TEST_F(CorosyncConfCli, InvalidDocumentsAreReportedLikeValidate) {
  const std::string bad = write("bad.yaml",
                                "apiVersion: kvm-amf/v1\nkind: Cluster\nmetadata: {name: c}\nspec:\n  nodes:\n"
                                "    - {name: n1, address: nowhere}\n  membership: {crypto: maybe}\n");
  Invocation r = admin({"corosync-conf", "-f", bad, "--authkey", path("authkey")});
  EXPECT_EQ(r.code, kExitDataError);
  EXPECT_TRUE(contains(r.err, bad + ":6:27: 'nowhere' is not an IPv4 or IPv6 address")) << r.err;
  EXPECT_TRUE(contains(r.err, bad + ":7:24: crypto: expected true or false")) << r.err;
  EXPECT_TRUE(contains(r.err, "2 errors; nothing changed")) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_FALSE(std::filesystem::exists(path("authkey")));
}

TEST_F(CorosyncConfCli, NeedsExactlyOneClusterDocument) {
  Invocation none = admin({"corosync-conf", "-f", example("sg-oam.yaml"), "--authkey", path("authkey")});
  EXPECT_EQ(none.code, kExitDataError);
  EXPECT_TRUE(contains(none.err, "no Cluster document")) << none.err;
  EXPECT_EQ(none.out, "");
  EXPECT_FALSE(std::filesystem::exists(path("authkey")));

  const std::string second = write("second.yaml", kTwoNodes);
  Invocation two = admin({"corosync-conf", "-f", example("cluster.yaml"), second, "--authkey", path("authkey")});
  EXPECT_EQ(two.code, kExitDataError);
  EXPECT_TRUE(contains(two.err, "one Cluster document")) << two.err;
  EXPECT_EQ(two.out, "");
}

TEST_F(CorosyncConfCli, UsageErrorsExit64) {
  EXPECT_EQ(admin({"corosync-conf"}).code, kExitUsage);
  EXPECT_EQ(admin({"corosync-conf", "-f"}).code, kExitUsage);
  EXPECT_EQ(admin({"corosync-conf", "-f", example("cluster.yaml"), "--bogus"}).code, kExitUsage);
  Invocation brace = admin({"corosync-conf", "-f", example("cluster.yaml"), "--log-file", path("a{b")});
  EXPECT_EQ(brace.code, kExitUsage);
  EXPECT_TRUE(contains(brace.err, "log file")) << brace.err;
  EXPECT_EQ(brace.out, "");
  Invocation help = admin({"--help"});
  EXPECT_TRUE(contains(help.out, "corosync-conf")) << help.out;
}

TEST_F(CorosyncConfCli, FailuresToWriteExit1) {
  Invocation key = admin({"corosync-conf", "-f", example("cluster.yaml"), "--authkey", path("missing/authkey")});
  EXPECT_EQ(key.code, kExitRefused);
  EXPECT_TRUE(contains(key.err, path("missing/authkey"))) << key.err;
  EXPECT_EQ(key.out, "");

  const std::string cluster = write("pair.yaml", kTwoNodes);
  Invocation out = admin({"corosync-conf", "-f", cluster, "--out", path("missing/corosync.conf")});
  EXPECT_EQ(out.code, kExitRefused);
  EXPECT_TRUE(contains(out.err, path("missing/corosync.conf"))) << out.err;
}

}  // namespace
}  // namespace kvm_amf::cli
