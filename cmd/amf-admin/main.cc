// amf-admin: thin entry point; the verbs live in cli/.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "kvm_amf/cli/admin_cli.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const char* endpoint = std::getenv("AMF_ENDPOINT");
  return kvm_amf::cli::runAdmin(args, std::cout, std::cerr, endpoint ? endpoint : "");
}
