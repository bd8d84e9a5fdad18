// Hostile input is bounded: it yields errors, never a hang, a crash or unbounded memory.
#include <gtest/gtest.h>

#include "config_test_util.h"

namespace kvm_amf::config {
namespace {

using testing::errorLines;
using testing::hasError;
using testing::loadText;

TEST(HostileInput, AliasBombStopsAtTheValueBudget) {
  // One anchored list of 500 names, aliased by 2000 node groups: a million values if expanded.
  // The anchor must be defined in the same document: put it in an ignored-by-schema spot, the labels.
  std::string text2 =
      "apiVersion: kvm-amf/v1\nkind: Cluster\nmetadata: {name: c}\nspec:\n"
      "  nodes: [{name: n1, address: 10.0.0.1}]\n  nodeGroups: [{name: g0, nodes: &big [";
  for (int i = 0; i < 500; ++i) text2 += std::string(i ? ", " : "") + "n1";
  text2 += "]}";
  for (int i = 1; i < 2000; ++i) text2 += ", {name: g, nodes: *big}";
  text2 += "]\n";
  LoadLimits limits;
  limits.maxValues = 100'000;
  LoadResult r2 = loadConfiguration({{"bomb.yaml", text2}}, limits);
  EXPECT_TRUE(hasError(r2, "too many values")) << errorLines(r2).substr(0, 2000);
  EXPECT_LE(r2.errors.size(), 10u);  // reading stops; no error flood
}

TEST(HostileInput, DeepNestingIsAnError) {
  std::string deep(100000, '[');
  LoadResult r = loadText(deep);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(hasError(r, 1, 65, "nested deeper than 64 levels")) << errorLines(r);

  std::string deepMaps;
  for (int i = 0; i < 5000; ++i) deepMaps += "{a: ";
  LoadResult r2 = loadText(deepMaps);
  EXPECT_FALSE(r2.ok());
}

TEST(HostileInput, InputThatHangsYamlCppIsStoppedBeforeIt) {
  // yaml-cpp 0.7 loops forever on these; the libyaml gate reports them first.
  for (const char* text : {", a:", ", n :  :", "- a\n, b:"}) {
    LoadResult r = loadText(text);
    EXPECT_TRUE(hasError(r, "YAML syntax")) << text << "\n" << errorLines(r);
  }
}

TEST(HostileInput, OversizedSourcesAreNotRead) {
  LoadLimits limits;
  limits.maxSourceBytes = 1000;
  LoadResult r = loadConfiguration({{"big.yaml", std::string(1001, '#')}}, limits);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].str(), "big.yaml: larger than 1000 bytes; not read");
}

TEST(HostileInput, SelfReferentialAliasesTerminate) {
  LoadResult r =
      loadText("apiVersion: kvm-amf/v1\nkind: Cluster\nmetadata: &m {name: c, labels: *m}\nspec: &s {nodes: *s}\n");
  EXPECT_FALSE(r.ok());
}

TEST(HostileInput, BinaryGarbageIsAnError) {
  std::string garbage;
  for (int i = 0; i < 4096; ++i) garbage += static_cast<char>((i * 7919) % 256);
  LoadResult r = loadText(garbage);
  EXPECT_FALSE(r.ok());
}

TEST(HostileInput, ScalarsWhereDocumentsBelong) {
  LoadResult r = loadText("just a string\n---\n42\n---\n[1, 2]\n");
  EXPECT_EQ(r.errors.size(), 3u) << errorLines(r);
  EXPECT_TRUE(hasError(r, 1, 1, "expected a map, found 'just a string'")) << errorLines(r);
  EXPECT_TRUE(hasError(r, 5, 1, "expected a map, found a list")) << errorLines(r);
}

}  // namespace
}  // namespace kvm_amf::config
