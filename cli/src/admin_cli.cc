#include "kvm_amf/cli/admin_cli.h"

#include <CLI/CLI.hpp>
#include <ostream>

#include "kvm_amf/amf/config/loader.h"
#include "kvm_amf/amf/config/serialize.h"
#include "kvm_amf/amf/model/units.h"
#include "kvm_amf/amf/model/words.h"
#include "kvm_amf/cli/exit_codes.h"
#include "kvm_amf/cli/table.h"

namespace kvm_amf::cli {
namespace {

struct GlobalOptions {
  std::string endpoint;
  std::string output = "table";
};

void printSummary(const model::Configuration& config, std::ostream& out) {
  std::size_t units = 0;
  std::size_t vms = 0;
  std::size_t sis = 0;
  for (const auto& sg : config.serviceGroups) {
    units += sg.units.size();
    sis += sg.serviceInstances.size();
    for (const auto& unit : sg.units) vms += unit.vms.size();
  }
  out << "valid: ";
  if (config.cluster) {
    out << "cluster " << config.cluster->name << " (" << config.cluster->nodes.size() << " nodes), ";
  }
  out << config.serviceGroups.size() << " service groups, " << units << " service units, " << vms << " VMs, " << sis
      << " service instances\n";
  if (config.cluster) {
    out << "\n";
    Table nodes({"NODE", "ID", "ADDRESS", "LIBVIRT"});
    for (const auto& n : config.cluster->nodes) nodes.add({n.name, std::to_string(n.id), n.address, n.libvirtUri});
    nodes.print(out);
  }
  if (!config.serviceGroups.empty()) {
    out << "\n";
    Table groups({"SERVICE GROUP", "MODEL", "NODE GROUP", "UNITS", "SIS", "DEPENDS ON"});
    for (const auto& sg : config.serviceGroups) {
      std::string deps;
      for (const auto& d : sg.dependsOn) deps += (deps.empty() ? "" : ",") + d;
      groups.add({sg.name, std::string(model::toWord(sg.redundancy.model)),
                  sg.nodeGroup.empty() ? "(all nodes)" : sg.nodeGroup, std::to_string(sg.units.size()),
                  std::to_string(sg.serviceInstances.size()), deps.empty() ? "-" : deps});
    }
    groups.print(out);
  }
}

// `validate -f FILE...`: checks files offline; needs no running cluster.
int validateFiles(const std::vector<std::string>& files, const GlobalOptions& options, std::ostream& out,
                  std::ostream& err) {
  config::LoadResult result = config::loadConfigurationFiles(files);
  if (!result.ok()) {
    for (const auto& error : result.errors) err << error.str() << '\n';
    err << result.errors.size() << (result.errors.size() == 1 ? " error" : " errors") << "; nothing changed\n";
    return kExitDataError;
  }
  if (options.output == "json") {
    out << config::toDocuments(result.config).dump(2) << '\n';
  } else if (options.output == "yaml") {
    out << config::toYaml(config::toDocuments(result.config));
  } else {
    printSummary(result.config, out);
  }
  return kExitOk;
}

}  // namespace

int runAdmin(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
             const std::string& endpointEnv) {
  CLI::App app{"amf-admin: operate a kvm-amf cluster", "amf-admin"};
  app.require_subcommand(1, 1);
  GlobalOptions options;
  options.endpoint = endpointEnv;
  app.add_option("--endpoint", options.endpoint, "amfd admin endpoint (default: the local amfd; env AMF_ENDPOINT)");
  app.add_option("-o,--output", options.output, "output format")->check(CLI::IsMember({"table", "json", "yaml"}));

  std::vector<std::string> files;
  CLI::App* validate = app.add_subcommand("validate", "check configuration files offline (no cluster needed)");
  validate->add_option("-f,--file", files, "YAML files")->required()->expected(1, -1);
  validate->fallthrough();

  std::vector<std::string> argv_storage;
  argv_storage.reserve(args.size() + 1);
  argv_storage.emplace_back("amf-admin");
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<const char*> argv;
  for (const auto& a : argv_storage) argv.push_back(a.c_str());

  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {
      app.exit(e, out, err);
      return kExitOk;
    }
    err << "amf-admin: " << e.what() << "\n"
        << "Run 'amf-admin --help' for usage.\n";
    return kExitUsage;
  }

  if (validate->parsed()) return validateFiles(files, options, out, err);
  return kExitUsage;
}

}  // namespace kvm_amf::cli
