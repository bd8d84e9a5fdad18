// libFuzzer target for the configuration loader. Properties checked on every input:
// no crash, hang or sanitizer report; and a configuration that loads prints canonical documents
// that load back to an equal configuration.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "kvm_amf/amf/config/loader.h"
#include "kvm_amf/amf/config/serialize.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kvm_amf::config;
  LoadLimits limits;
  limits.maxSourceBytes = 256 << 10;
  limits.maxValues = 50'000;
  const std::string text(reinterpret_cast<const char*>(data), size);
  LoadResult result = loadConfiguration({{"fuzz.yaml", text}}, limits);
  for (const auto& error : result.errors) {
    if (error.str().empty()) std::abort();
  }
  if (result.ok()) {
    const std::string canonical = toYaml(toDocuments(result.config));
    LoadResult again = loadConfiguration({{"canonical.yaml", canonical}});
    if (!again.ok() || !(again.config == result.config)) std::abort();
  }
  return 0;
}
