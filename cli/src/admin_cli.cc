#include "kvm_amf/cli/admin_cli.h"

#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <ostream>
#include <utility>
#include <vector>

#include "checkpoint_verbs.h"
#include "cluster_verbs.h"
#include "config_verbs.h"
#include "kvm_amf/admin/admin_client.h"
#include "kvm_amf/amf/config/loader.h"
#include "kvm_amf/amf/config/serialize.h"
#include "kvm_amf/amf/model/units.h"
#include "kvm_amf/amf/model/words.h"
#include "kvm_amf/cli/exit_codes.h"
#include "kvm_amf/cli/table.h"
#include "kvm_amf/cluster/corosync_conf.h"

namespace kvm_amf::cli {
namespace {

struct GlobalOptions {
  std::string endpoint;
  std::string output = "table";
  std::string timeout = "30s";  // for each request to amfd
};

// A verb that sends one AMF admin or VM operation: its first word and what follows it.
struct OperationVerb {
  const char* word;
  const char* description;
  CLI::App* app = nullptr;
  std::vector<std::string> words{};  // the target (and a vm operation's word), checked by parseAdminCommand
};

// The words of the operation, as parseAdminCommand reads them.
std::string operationWords(const OperationVerb& verb) {
  std::string text = verb.word;
  for (const auto& word : verb.words) text += " " + word;
  return text;
}

struct MigrateOptions {
  std::vector<std::string> words;  // the unit
  CLI::Option* to = nullptr;
  CLI::Option* maxDowntime = nullptr;
  CLI::Option* timeout = nullptr;
  std::string toText;
  std::string maxDowntimeText;
  std::string timeoutText;
};

// `migrate`'s words; an option given is passed on as --opt=VALUE, so that an empty value is
// reported as missing.
std::string migrateWords(const MigrateOptions& m) {
  std::string text = "migrate";
  for (const auto& word : m.words) text += " " + word;
  if (m.to->count() > 0) text += " --to=" + m.toText;
  if (m.maxDowntime->count() > 0) text += " --max-downtime=" + m.maxDowntimeText;
  if (m.timeout->count() > 0) text += " --timeout=" + m.timeoutText;
  return text;
}

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

// Loads and checks `files`; on errors prints every one and a count to `err` and returns nullopt.
std::optional<model::Configuration> loadValid(const std::vector<std::string>& files, std::ostream& err) {
  config::LoadResult result = config::loadConfigurationFiles(files);
  if (!result.ok()) {
    for (const auto& error : result.errors) err << error.str() << '\n';
    err << result.errors.size() << (result.errors.size() == 1 ? " error" : " errors") << "; nothing changed\n";
    return std::nullopt;
  }
  return std::move(result.config);
}

// `validate -f FILE...`: checks files offline; needs no running cluster.
int validateFiles(const std::vector<std::string>& files, const GlobalOptions& options, std::ostream& out,
                  std::ostream& err) {
  std::optional<model::Configuration> config = loadValid(files, err);
  if (!config) return kExitDataError;
  if (options.output == "json") {
    out << config::toDocuments(*config).dump(2) << '\n';
  } else if (options.output == "yaml") {
    out << config::toYaml(config::toDocuments(*config));
  } else {
    printSummary(*config, out);
  }
  return kExitOk;
}

struct CorosyncConfOptions {
  std::vector<std::string> files;
  std::string authkey = "/etc/corosync/authkey";
  std::string stateDir;
  std::string logFile;
  std::string outFile;
};

// Corosync runs in another directory than amf-admin: relative paths are made absolute.
std::string absolutePath(const std::string& path) {
  if (path.empty()) return path;
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  return ec ? path : absolute.lexically_normal().string();
}

cluster::CorosyncClusterConf corosyncInput(const model::ClusterSpec& spec, const CorosyncConfOptions& options) {
  cluster::CorosyncClusterConf conf;
  conf.clusterName = spec.name;
  for (const auto& node : spec.nodes) conf.nodes.push_back({node.name, node.id, node.address});
  conf.token = spec.membership.token;
  conf.consensus = spec.membership.consensus;
  conf.twoNode = spec.membership.twoNode;
  conf.waitForAll = spec.membership.waitForAll;
  conf.crypto = spec.membership.crypto;
  if (conf.crypto) conf.authkeyPath = absolutePath(options.authkey);
  conf.stateDir = absolutePath(options.stateDir);
  conf.logFile = absolutePath(options.logFile);
  return conf;
}

// Writes `text` to a temporary file beside `path` (mode 0644), fsyncs it and renames it over `path`:
// readers see the old file or the whole new one.
Status writeFileAtomically(const std::string& path, const std::string& text) {
  const std::filesystem::path target(path);
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  std::string temp = (dir / ("." + target.filename().string() + ".XXXXXX")).string();
  int fd = ::mkstemp(temp.data());
  if (fd < 0) return Error{path + ": cannot create a file in " + dir.string() + ": " + std::strerror(errno)};
  auto fail = [&](const char* step) {
    int error = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(temp.c_str());
    return Error{path + ": " + step + ": " + std::strerror(error)};
  };
  if (::fchmod(fd, 0644) != 0) return fail("chmod");
  std::size_t written = 0;
  while (written < text.size()) {
    ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("fsync");
  int rc = ::close(fd);
  fd = -1;
  if (rc != 0) return fail("close");
  if (::rename(temp.c_str(), path.c_str()) != 0) return fail("rename");
  return {};
}

// `corosync-conf -f FILE...`: corosync.conf made from the Cluster document, to stdout or --out; with
// membership.crypto, creates the authkey it references unless that file exists. Offline.
int corosyncConfFiles(const CorosyncConfOptions& options, std::ostream& out, std::ostream& err) {
  std::optional<model::Configuration> config = loadValid(options.files, err);
  if (!config) return kExitDataError;
  if (!config->cluster) {
    err << "amf-admin corosync-conf: no Cluster document in the files given; the Corosync configuration is "
           "made from one\n";
    return kExitDataError;
  }
  cluster::CorosyncClusterConf conf = corosyncInput(*config->cluster, options);
  // The documents are valid, so only the paths given as options can fail this check.
  if (Status s = cluster::checkCorosyncConf(conf); !s) {
    err << "amf-admin corosync-conf: " << s.error().message << "\n";
    return kExitUsage;
  }
  const std::string text = cluster::corosyncConf(conf);

  if (conf.crypto) {
    struct stat st {};
    if (::stat(conf.authkeyPath.c_str(), &st) != 0) {
      if (Status s = cluster::writeAuthkey(conf.authkeyPath); !s) {
        err << "amf-admin corosync-conf: " << s.error().message << "\n";
        return kExitRefused;
      }
      err << "amf-admin corosync-conf: created a new authkey " << conf.authkeyPath
          << "; every host needs this same file\n";
    } else if (!S_ISREG(st.st_mode)) {
      err << "amf-admin corosync-conf: authkey " << conf.authkeyPath << " is not a regular file\n";
      return kExitRefused;
    }
  }

  if (options.outFile.empty()) {
    out << text;
    return kExitOk;
  }
  if (Status s = writeFileAtomically(options.outFile, text); !s) {
    err << "amf-admin corosync-conf: " << s.error().message << "\n";
    return kExitRefused;
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
  app.add_option("--endpoint", options.endpoint,
                 "amfd's admin endpoint (default: the local amfd's, " + std::string(admin::kDefaultAdminEndpoint) +
                     "; env AMF_ENDPOINT)");
  app.add_option("-o,--output", options.output, "output format")->check(CLI::IsMember({"table", "json", "yaml"}));

  std::vector<std::string> files;
  CLI::App* validate = app.add_subcommand("validate", "check configuration files offline (no cluster needed)");
  validate->add_option("-f,--file", files, "YAML files")->required()->expected(1, -1);
  validate->fallthrough();

  CorosyncConfOptions corosync;
  CLI::App* corosyncVerb =
      app.add_subcommand("corosync-conf", "write corosync.conf for the Cluster document (no cluster needed)");
  corosyncVerb->add_option("-f,--file", corosync.files, "YAML files")->required()->expected(1, -1);
  corosyncVerb->add_option("--authkey", corosync.authkey, "knet authkey, created if missing (with membership.crypto)")
      ->capture_default_str();
  corosyncVerb->add_option("--state-dir", corosync.stateDir, "Corosync's state directory (default: its own)");
  corosyncVerb->add_option("--log-file", corosync.logFile, "log to this file instead of stderr");
  corosyncVerb->add_option("--out", corosync.outFile, "write here (atomically) instead of to stdout");
  corosyncVerb->fallthrough();

  // The verbs that talk to amfd (cluster_verbs.h).
  app.add_option("--timeout", options.timeout, "how long to wait for amfd's reply (default 30s)");
  CLI::App* statusVerb =
      app.add_subcommand("status", "the cluster at a glance: quorum, director, problems, hosts, service groups");
  statusVerb->fallthrough();

  std::string getKind;
  std::string getName;
  CLI::App* getVerb = app.add_subcommand("get", "one kind's objects, or one object, from amfd's status");
  getVerb->add_option("kind", getKind, "nodes, sgs, sus, sis or vms (or node, sg, su, si, vm)")->required();
  getVerb->add_option("name", getName, "one object's name");
  getVerb->fallthrough();

  std::array<OperationVerb, 10> operations = {{
      {"lock", "AMF admin operation: lock TARGET"},
      {"unlock", "AMF admin operation: unlock TARGET"},
      {"lock-in", "AMF admin operation: lock instantiation of TARGET"},
      {"unlock-in", "AMF admin operation: unlock instantiation of TARGET"},
      {"shutdown", "AMF admin operation: shut TARGET down (its assignments leave gracefully)"},
      {"restart", "AMF admin operation: restart su/NAME or vm/NAME"},
      {"repaired", "AMF admin operation: node/NAME or su/NAME is repaired (clears disabled)"},
      {"si-swap", "swap the active and standby assignments of si/NAME"},
      {"sg-adjust", "move sg/NAME's assignments to their preferred units"},
      {"vm", "VM operation: vm start|shutdown|destroy|pause|resume|suspend|reboot|reset vm/NAME"},
  }};
  for (OperationVerb& verb : operations) {
    verb.app = app.add_subcommand(verb.word, verb.description);
    verb.app->add_option("words", verb.words, "the target (vm: the operation, then the target)");
    verb.app->fallthrough();
  }

  MigrateOptions migrate;
  CLI::App* migrateVerb =
      app.add_subcommand("migrate", "live-migrate su/NAME's VMs: migrate su/NAME --to node/NAME [--max-downtime D]");
  migrateVerb->add_option("unit", migrate.words, "su/NAME");
  migrate.to = migrateVerb->add_option("--to", migrate.toText, "the destination, node/NAME");
  migrate.maxDowntime = migrateVerb->add_option("--max-downtime", migrate.maxDowntimeText, "e.g. 200ms");
  migrate.timeout = migrateVerb->add_option(
      "--timeout", migrate.timeoutText, "how long the migration may take (the reply's is --timeout before the verb)");
  migrateVerb->fallthrough();

  ApplyOptions apply;
  std::string generationText;
  CLI::App* applyVerb = app.add_subcommand(
      "apply", "change the running configuration: each document replaces the one of its kind and name, or is added");
  applyVerb->add_option("-f,--file", apply.files, "YAML files")->required()->expected(1, -1);
  applyVerb->add_flag("--dry-run", apply.dryRun, "validate, check and show what would change; change nothing");
  CLI::Option* generationOption = applyVerb->add_option(
      "--generation", generationText, "refuse unless the configuration is still at generation N (from diff or status)");
  applyVerb->fallthrough();

  std::vector<std::string> diffFileNames;
  CLI::App* diffVerb =
      app.add_subcommand("diff", "what applying the files would change in the running configuration (exit 1: some)");
  diffVerb->add_option("-f,--file", diffFileNames, "YAML files")->required()->expected(1, -1);
  diffVerb->fallthrough();

  std::string deleteTarget;
  CLI::App* deleteVerb = app.add_subcommand("delete", "remove a service group from the running configuration");
  deleteVerb->add_option("target", deleteTarget, "sg/NAME")->required();
  deleteVerb->fallthrough();

  bool follow = false;
  std::string eventsEndpoint;
  CLI::App* eventsVerb = app.add_subcommand("events", "print amfd's events, one a line (1 s of them, or --follow)");
  eventsVerb->add_flag("--follow", follow, "keep printing until interrupted");
  eventsVerb->add_option(
      "--events", eventsEndpoint,
      "the events endpoint (default: beside --endpoint, " + std::string(admin::kDefaultEventsEndpoint) + ")");
  eventsVerb->fallthrough();

  // `ckpt VERB ...`: the cluster's checkpoints (checkpoint_verbs.h).
  CheckpointVerb checkpoint;
  struct {
    std::string retention, expiresIn, maxSectionBytes, maxBytes;
    std::uint64_t maxSections = 0;
    std::string data, file;
    CLI::Option* retentionOption = nullptr;
    CLI::Option* expiresOption = nullptr;
    CLI::Option* maxSectionsOption = nullptr;
    CLI::Option* maxSectionBytesOption = nullptr;
    CLI::Option* maxBytesOption = nullptr;
    CLI::Option* dataOption = nullptr;
    CLI::Option* fileOption = nullptr;
  } ckptArgs;
  CLI::App* ckptVerb = app.add_subcommand(
      "ckpt",
      "the cluster's checkpoints: list, info NAME, create NAME, read NAME SECTION, write NAME SECTION, "
      "delete NAME SECTION, unlink NAME");
  ckptVerb->require_subcommand(1, 1);
  ckptVerb->fallthrough();
  std::vector<std::pair<CLI::App*, CheckpointVerb::Kind>> ckptVerbs;
  auto ckptSubcommand = [&](const char* word, const char* description, CheckpointVerb::Kind kind, bool name,
                            bool section) {
    CLI::App* sub = ckptVerb->add_subcommand(word, description);
    if (name) sub->add_option("name", checkpoint.name, "the checkpoint's name")->required();
    if (section) sub->add_option("section", checkpoint.section, "the section's id")->required();
    sub->fallthrough();
    ckptVerbs.emplace_back(sub, kind);
    return sub;
  };
  ckptSubcommand("list", "every checkpoint, with its size and retention", CheckpointVerb::Kind::kList, false, false);
  ckptSubcommand("info", "one checkpoint: its attributes and sections", CheckpointVerb::Kind::kInfo, true, false);
  CLI::App* ckptCreate = ckptSubcommand("create", "create a checkpoint (again with the same attributes: no change)",
                                        CheckpointVerb::Kind::kCreate, true, false);
  ckptArgs.retentionOption = ckptCreate->add_option("--retention", ckptArgs.retention,
                                                    "kept this long after its last close (default: until unlinked)");
  ckptArgs.maxSectionsOption =
      ckptCreate->add_option("--max-sections", ckptArgs.maxSections, "at most this many sections (default 1000)");
  ckptArgs.maxSectionBytesOption = ckptCreate->add_option("--max-section-bytes", ckptArgs.maxSectionBytes,
                                                          "at most this much data a section (default 1Mi)");
  ckptArgs.maxBytesOption =
      ckptCreate->add_option("--max-bytes", ckptArgs.maxBytes, "at most this much data in all (default 16Mi)");
  ckptSubcommand("read", "print a section's data", CheckpointVerb::Kind::kRead, true, true);
  CLI::App* ckptWrite = ckptSubcommand("write", "replace a section's data (the section is created if missing)",
                                       CheckpointVerb::Kind::kWrite, true, true);
  ckptArgs.dataOption = ckptWrite->add_option("--data", ckptArgs.data, "the data");
  ckptArgs.fileOption = ckptWrite->add_option("--file", ckptArgs.file, "read the data from this file");
  ckptWrite->add_flag("--async", checkpoint.async, "answer once applied on this host, not on every host's disk");
  ckptArgs.expiresOption =
      ckptWrite->add_option("--expires-in", ckptArgs.expiresIn, "the section expires this long after the write");
  ckptSubcommand("delete", "delete a section", CheckpointVerb::Kind::kDelete, true, true);
  ckptSubcommand("unlink", "remove a checkpoint", CheckpointVerb::Kind::kUnlink, true, false);

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
  if (corosyncVerb->parsed()) return corosyncConfFiles(corosync, out, err);

  ClusterOptions cluster;
  cluster.endpoint = options.endpoint.empty() ? admin::kDefaultAdminEndpoint : options.endpoint;
  cluster.eventsEndpoint = eventsEndpoint;
  cluster.output = options.output;
  std::optional<Duration> timeout = model::parseDuration(options.timeout);
  if (!timeout || *timeout <= Duration(0)) {
    err << "amf-admin: --timeout: '" << options.timeout
        << "' is not a duration above 0: a number with a unit ms, s, m or h (e.g. 300ms, 5s)\n";
    return kExitUsage;
  }
  cluster.timeout = *timeout;

  if (ckptVerb->parsed()) {
    for (const auto& [sub, kind] : ckptVerbs) {
      if (sub->parsed()) checkpoint.kind = kind;
    }
    auto durationOf = [&](CLI::Option* option, const std::string& text, std::optional<Duration>& into) {
      if (option == nullptr || option->count() == 0) return true;
      into = model::parseDuration(text);
      if (into) return true;
      err << "amf-admin ckpt: " << option->get_name() << ": '" << text
          << "' is not a duration: a number with a unit ms, s, m or h (e.g. 300ms, 5s, 10m)\n";
      return false;
    };
    auto bytesOf = [&](CLI::Option* option, const std::string& text, std::optional<std::uint64_t>& into) {
      if (option->count() == 0) return true;
      into = model::parseBytes(text);
      if (into) return true;
      err << "amf-admin ckpt: " << option->get_name() << ": '" << text
          << "' is not a size: a whole number of bytes with an optional unit Ki, Mi, Gi (e.g. 4096, 64Ki)\n";
      return false;
    };
    if (!durationOf(ckptArgs.retentionOption, ckptArgs.retention, checkpoint.retention) ||
        !durationOf(ckptArgs.expiresOption, ckptArgs.expiresIn, checkpoint.expiresIn) ||
        !bytesOf(ckptArgs.maxSectionBytesOption, ckptArgs.maxSectionBytes, checkpoint.maxSectionBytes) ||
        !bytesOf(ckptArgs.maxBytesOption, ckptArgs.maxBytes, checkpoint.maxBytes)) {
      return kExitUsage;
    }
    if (ckptArgs.maxSectionsOption->count() > 0) checkpoint.maxSections = ckptArgs.maxSections;
    if (checkpoint.kind == CheckpointVerb::Kind::kWrite) {
      const bool data = ckptArgs.dataOption->count() > 0;
      const bool file = ckptArgs.fileOption->count() > 0;
      if (data == file) {
        err << "amf-admin ckpt write: give the data as --data TEXT or --file FILE (one of them)\n";
        return kExitUsage;
      }
      if (data) checkpoint.data = ckptArgs.data;
      if (file) checkpoint.file = ckptArgs.file;
    }
    return runCheckpointVerb(checkpoint, cluster, out, err);
  }
  if (applyVerb->parsed()) {
    if (generationOption->count() > 0) {
      apply.expectedGeneration = parseGeneration(generationText);
      if (apply.expectedGeneration == 0) {
        err << "amf-admin apply: --generation: '" << generationText
            << "' is not a configuration generation (a whole number from 1)\n";
        return kExitUsage;
      }
    }
    return applyFiles(apply, cluster, out, err);
  }
  if (diffVerb->parsed()) return diffFiles(diffFileNames, cluster, out, err);
  if (deleteVerb->parsed()) return deleteObject(deleteTarget, cluster, out, err);
  if (statusVerb->parsed()) return showStatus(cluster, out, err);
  if (getVerb->parsed()) return getObjects(cluster, getKind, getName, out, err);
  for (const OperationVerb& verb : operations) {
    if (verb.app->parsed()) return runOperation(operationWords(verb), cluster, out, err);
  }
  if (migrateVerb->parsed()) return runOperation(migrateWords(migrate), cluster, out, err);
  if (eventsVerb->parsed()) return streamEvents(cluster, follow, out, err);
  return kExitUsage;
}

}  // namespace kvm_amf::cli
