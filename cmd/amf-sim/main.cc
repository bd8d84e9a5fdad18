// amf-sim: thin entry point; the simulator lives in sim/.
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include "kvm_amf/sim/sim_cli.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto wallSeconds = [] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  };
  return kvm_amf::sim::runSimCli(args, std::cout, std::cerr, wallSeconds);
}
