#include "kvm_amf/cli/admin_cli.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli_test_util.h"
#include "kvm_amf/cli/exit_codes.h"

namespace kvm_amf::cli {
namespace {

using testing::admin;
using testing::example;
using testing::Invocation;

std::vector<std::string> allExamples() {
  return {example("cluster.yaml"), example("sg-mme.yaml"), example("sg-sgw.yaml"), example("sg-lb.yaml"),
          example("sg-oam.yaml")};
}

class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    path_ = std::filesystem::temp_directory_path() /
            ("amf-cli-test-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".yaml");
    std::ofstream(path_) << text;
  }
  ~TempFile() { std::filesystem::remove(path_); }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

TEST(AdminCli, ValidateAcceptsTheExamples) {
  std::vector<std::string> args = {"validate", "-f"};
  for (const auto& f : allExamples()) args.push_back(f);
  Invocation r = admin(args);
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("valid: cluster lab (3 nodes), 4 service groups"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mme"), std::string::npos);
  EXPECT_EQ(r.err, "");
}

TEST(AdminCli, ValidateReportsEveryErrorAndExits65) {
  TempFile bad(
      "apiVersion: kvm-amf/v1\nkind: Cluster\nmetadata: {name: c}\nspec:\n  nodes:\n"
      "    - {name: n1, address: nowhere}\n  membership: {token: fast}\n");
  Invocation r = admin({"validate", "-f", bad.path()});
  EXPECT_EQ(r.code, kExitDataError);
  EXPECT_NE(r.err.find(bad.path() + ":6:27: 'nowhere' is not an IPv4 or IPv6 address"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(bad.path() + ":7:23: token: 'fast' is not a duration"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("2 errors; nothing changed"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(AdminCli, ValidatePrintsCanonicalJsonAndYaml) {
  std::vector<std::string> args = {"-o", "json", "validate", "-f"};
  for (const auto& f : allExamples()) args.push_back(f);
  Invocation json = admin(args);
  ASSERT_EQ(json.code, kExitOk) << json.err;
  EXPECT_EQ(json.out.substr(0, 1), "[");
  EXPECT_NE(json.out.find("\"kind\": \"ServiceGroup\""), std::string::npos);

  std::vector<std::string> yamlArgs = {"validate", "-o", "yaml", "-f"};
  for (const auto& f : allExamples()) yamlArgs.push_back(f);
  Invocation yaml = admin(yamlArgs);
  ASSERT_EQ(yaml.code, kExitOk) << yaml.err;
  TempFile canonical(yaml.out);
  Invocation again = admin({"validate", "-f", canonical.path()});
  EXPECT_EQ(again.code, kExitOk) << again.err;
}

TEST(AdminCli, UsageErrorsExit64) {
  EXPECT_EQ(admin({}).code, kExitUsage);
  EXPECT_EQ(admin({"validate"}).code, kExitUsage);
  EXPECT_EQ(admin({"validate", "-f"}).code, kExitUsage);
  EXPECT_EQ(admin({"frobnicate"}).code, kExitUsage);
  EXPECT_EQ(admin({"-o", "xml", "validate", "-f", example("cluster.yaml")}).code, kExitUsage);
  Invocation help = admin({"--help"});
  EXPECT_EQ(help.code, kExitOk);
  EXPECT_NE(help.out.find("validate"), std::string::npos);
}

TEST(AdminCli, MissingFileIsADataError) {
  Invocation r = admin({"validate", "-f", "/nonexistent/cluster.yaml"});
  EXPECT_EQ(r.code, kExitDataError);
  EXPECT_NE(r.err.find("/nonexistent/cluster.yaml: cannot be read"), std::string::npos);
}

}  // namespace
}  // namespace kvm_amf::cli
