// monitor-sample: prints what an amfd's metrics endpoint serves with every collector holding data
// (everything.h), for checking the dashboards' queries without a lab (scripts/check_dashboards.py).
#include <cstdio>

#include "everything.h"

int main() {
  kvm_amf::monitor::testing::Everything all;
  if (!all.ready) {
    std::fprintf(stderr, "monitor-sample: the VMs' statistics were not collected\n");
    return 1;
  }
  const std::string text = all.metrics.text();
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}
