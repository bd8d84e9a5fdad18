#include "kvm_amf/vmm/libvirt_domain_xml.h"

#include <gtest/gtest.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "kvm_amf/amf/config/loader.h"
#include "testing/temp_dir.h"

namespace kvm_amf::vmm {
namespace {

using kvm_amf::testing::TempDir;

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A parsed XML document to ask XPath questions of.
class Xml {
 public:
  explicit Xml(const std::string& text)
      : doc_(xmlReadMemory(text.data(), static_cast<int>(text.size()), "domain.xml", nullptr,
                           XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING),
             xmlFreeDoc) {}

  bool ok() const { return doc_ != nullptr; }

  // The XPath expression's value as a string ("" when nothing matches).
  std::string str(const std::string& xpath) const { return evaluate("string(" + xpath + ")"); }
  int count(const std::string& xpath) const { return std::stoi(evaluate("count(" + xpath + ")")); }

 private:
  std::string evaluate(const std::string& expression) const {
    if (!doc_) return {};
    std::unique_ptr<xmlXPathContext, decltype(&xmlXPathFreeContext)> context(xmlXPathNewContext(doc_.get()),
                                                                             xmlXPathFreeContext);
    xmlXPathRegisterNs(context.get(), BAD_CAST "amf", BAD_CAST "urn:kvm-amf:vm:1");
    std::unique_ptr<xmlXPathObject, decltype(&xmlXPathFreeObject)> result(
        xmlXPathEvalExpression(BAD_CAST expression.c_str(), context.get()), xmlXPathFreeObject);
    if (!result) return {};
    xmlChar* text = xmlXPathCastToString(result.get());
    std::string value(reinterpret_cast<const char*>(text));
    xmlFree(text);
    if (value.size() > 2 && value.ends_with(".0") && expression.starts_with("count(")) value.resize(value.size() - 2);
    return value;
  }

  std::unique_ptr<xmlDoc, decltype(&xmlFreeDoc)> doc_;
};

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void writeFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// Runs `command`, returning its exit status and output (stdout and stderr).
std::pair<int, std::string> run(const std::string& command) {
  std::string output;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return {-1, "popen failed"};
  char buffer[4096];
  std::size_t n = 0;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

bool haveCommand(const std::string& name) { return run("command -v " + name).first == 0; }

const fs::path kSource = KVM_AMF_SOURCE_DIR;

// A VM that uses every field of the VM spec (maxMemory excepted: it excludes huge pages and
// locked memory; sg-oam.yaml has it), with strings that need escaping.
constexpr const char* kFullVmYaml = R"(apiVersion: kvm-amf/v1
kind: ServiceGroup
metadata:
  name: full
spec:
  redundancy: {model: No-Redundancy}
  health:
    watchdog: {model: ib700, action: inject-nmi, timeout: 7s}
    heartbeat: {interval: 500ms, timeout: 2s}
  units:
    - name: full-1
      vms:
        - name: full-vm
          bootOrder: 3
          vcpus: 4
          memory: 1Gi
          boot:
            firmware: uefi
            kernel: /images/vm&linux
            initrd: /images/initrd<1>.cpio
            cmdline: console=ttyS0 amf.role='active' amf.tag="a<b&c>d"
          cpu:
            pinning: ["2", "3", "4-5", "6,7"]
            emulatorPinning: "0-1"
            realtime: {policy: rr, priority: 10}
            topology: {sockets: 1, cores: 2, threads: 2}
          memoryBacking: {hugepages: 2Mi, locked: true}
          disks:
            - {source: /images/root.qcow2, target: vda, cache: writeback}
            - {source: /images/tools.iso, format: raw, target: sda, bus: sata, readonly: true}
            - {source: /images/data.raw, format: raw, target: sdb, bus: scsi, cache: directsync, shared: true}
            - {source: /dev/vg0/scratch, format: raw, target: vdb, cache: unsafe}
          nics:
            - {mac: "52:54:00:aa:00:01", bridge: br-svc, vlan: 100, ip: 10.90.0.11/24, gateway: 10.90.0.1}
            - {mac: "52:54:00:aa:00:02", bridge: br-mgmt, model: e1000}
          hostdevs:
            - {pci: "0000:03:10.2", mac: "52:54:00:aa:00:03", vlan: 12}
            - {pci: "0000:03:10.3"}
          console: {type: file, path: /var/log/kvm-amf/full-vm.console}
  serviceInstances:
    - name: full-si
)";

struct LoadedVm {
  model::VmSpec vm;
  std::optional<model::WatchdogSpec> watchdog;
};

std::vector<LoadedVm> vmsOf(const model::Configuration& config) {
  std::vector<LoadedVm> vms;
  for (const auto& sg : config.serviceGroups) {
    for (const auto& unit : sg.units) {
      for (const auto& vm : unit.vms) vms.push_back({vm, sg.health.watchdog});
    }
  }
  return vms;
}

std::vector<LoadedVm> exampleVms() {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(kSource / "examples")) {
    if (entry.path().extension() == ".yaml") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  const config::LoadResult loaded = config::loadConfigurationFiles(files);
  EXPECT_TRUE(loaded.ok());
  return vmsOf(loaded.config);
}

LoadedVm fullVm() {
  const config::LoadResult loaded = config::loadConfiguration({{"full.yaml", kFullVmYaml}});
  EXPECT_TRUE(loaded.ok()) << (loaded.errors.empty() ? "" : loaded.errors.front().message);
  const auto vms = vmsOf(loaded.config);
  EXPECT_EQ(vms.size(), 1u);
  return vms.empty() ? LoadedVm{} : vms.front();
}

DomainOptions optionsFor(const LoadedVm& loaded) {
  DomainOptions options;
  options.watchdog = loaded.watchdog;
  options.agentSocketDir = "/run/kvm-amf/agent";
  return options;
}

std::string xmlOf(const LoadedVm& loaded, DomainOptions options) {
  const Result<std::string> xml = domainXml(loaded.vm, options);
  EXPECT_TRUE(xml.ok()) << (xml.ok() ? "" : xml.error().message);
  return xml.ok() ? xml.value() : "";
}

const LoadedVm& byName(const std::vector<LoadedVm>& vms, const std::string& name) {
  for (const auto& vm : vms) {
    if (vm.vm.name == name) return vm;
  }
  static const LoadedVm kNone;
  ADD_FAILURE() << "no VM " << name;
  return kNone;
}

TEST(DomainXml, MmeExampleDirectKernelBootOnALinuxBridgeVlan) {
  const auto vms = exampleVms();
  const LoadedVm& mme = byName(vms, "mme-a-vm");
  const Xml xml(xmlOf(mme, optionsFor(mme)));
  ASSERT_TRUE(xml.ok());
  EXPECT_EQ(xml.str("/domain/@type"), "qemu");
  EXPECT_EQ(xml.str("/domain/name"), "mme-a-vm");
  EXPECT_EQ(xml.count("/domain/uuid"), 0);
  EXPECT_EQ(xml.str("/domain/memory"), "262144");
  EXPECT_EQ(xml.str("/domain/memory/@unit"), "KiB");
  EXPECT_EQ(xml.str("/domain/currentMemory"), "262144");
  EXPECT_EQ(xml.str("/domain/vcpu"), "1");
  EXPECT_EQ(xml.count("/domain/cputune"), 0);
  EXPECT_EQ(xml.count("/domain/memoryBacking"), 0);
  EXPECT_EQ(xml.count("/domain/os/@firmware"), 0);
  EXPECT_EQ(xml.str("/domain/os/type/@machine"), "pc");
  EXPECT_EQ(xml.str("/domain/os/type"), "hvm");
  EXPECT_EQ(xml.str("/domain/os/kernel"), "/var/lib/kvm-amf/images/vmlinux");
  EXPECT_EQ(xml.str("/domain/os/initrd"), "/var/lib/kvm-amf/images/guest-initrd.cpio.gz");
  EXPECT_EQ(xml.str("/domain/os/cmdline"), "console=ttyS0 quiet");
  EXPECT_EQ(xml.count("/domain/os/boot"), 0);
  EXPECT_EQ(xml.count("//boot"), 0);
  EXPECT_EQ(xml.count("/domain/features/acpi"), 1);
  EXPECT_EQ(xml.str("/domain/clock/@offset"), "utc");
  EXPECT_EQ(xml.str("/domain/on_poweroff"), "destroy");
  EXPECT_EQ(xml.str("/domain/on_reboot"), "restart");
  EXPECT_EQ(xml.str("/domain/on_crash"), "destroy");
  // The VLAN on a Linux bridge: the per-VLAN bridge, untagged.
  EXPECT_EQ(xml.count("/domain/devices/interface"), 1);
  EXPECT_EQ(xml.str("/domain/devices/interface/@type"), "bridge");
  EXPECT_EQ(xml.str("/domain/devices/interface/mac/@address"), "52:54:00:01:00:01");
  EXPECT_EQ(xml.str("/domain/devices/interface/source/@bridge"), "br-svc-v100");
  EXPECT_EQ(xml.count("/domain/devices/interface/vlan"), 0);
  EXPECT_EQ(xml.str("/domain/devices/interface/model/@type"), "virtio");
  EXPECT_EQ(xml.str("/domain/metadata/amf:vm/amf:nic/@ip"), "10.90.0.11/24");
  EXPECT_EQ(xml.str("/domain/metadata/amf:vm/@bootOrder"), "0");
  EXPECT_EQ(xml.str("/domain/devices/serial/@type"), "file");
  EXPECT_EQ(xml.str("/domain/devices/serial/source/@path"), "/var/log/kvm-amf/mme-a-vm.console");
  EXPECT_EQ(xml.str("/domain/devices/channel/@type"), "unix");
  EXPECT_EQ(xml.str("/domain/devices/channel/source/@mode"), "bind");
  EXPECT_EQ(xml.str("/domain/devices/channel/source/@path"), "/run/kvm-amf/agent/mme-a-vm.agent");
  EXPECT_EQ(xml.str("/domain/devices/channel/target/@type"), "virtio");
  EXPECT_EQ(xml.str("/domain/devices/channel/target/@name"), "org.kvm-amf.agent.0");
  EXPECT_EQ(xml.count("/domain/devices/controller[@type='virtio-serial']"), 1);
  EXPECT_EQ(xml.str("/domain/devices/watchdog/@model"), "i6300esb");
  EXPECT_EQ(xml.str("/domain/devices/watchdog/@action"), "poweroff");
  EXPECT_EQ(xml.str("/domain/metadata/amf:vm/amf:watchdog/@timeout"), "5000ms");
  EXPECT_EQ(xml.str("/domain/devices/memballoon/@model"), "virtio");
  EXPECT_EQ(xml.str("/domain/devices/memballoon/stats/@period"), "1");
  EXPECT_EQ(xml.count("//graphics | //video | //sound | //audio | //redirdev"), 0);
  EXPECT_EQ(xml.str("/domain/devices/controller[@type='usb']/@model"), "none");
  EXPECT_EQ(xml.count("/domain/devices/disk"), 0);
}

TEST(DomainXml, OamExampleUefiDiskBootBalloonAndPinning) {
  const auto vms = exampleVms();
  const LoadedVm& oam = byName(vms, "oam-vm");
  const Xml xml(xmlOf(oam, optionsFor(oam)));
  ASSERT_TRUE(xml.ok());
  EXPECT_EQ(xml.str("/domain/memory"), "1048576");        // maxMemory
  EXPECT_EQ(xml.str("/domain/currentMemory"), "524288");  // memory
  EXPECT_EQ(xml.str("/domain/vcpu"), "2");
  EXPECT_EQ(xml.str("/domain/cputune/vcpupin[@vcpu='0']/@cpuset"), "0");
  EXPECT_EQ(xml.str("/domain/cputune/vcpupin[@vcpu='1']/@cpuset"), "1");
  EXPECT_EQ(xml.str("/domain/cputune/emulatorpin/@cpuset"), "0-1");
  EXPECT_EQ(xml.count("/domain/cputune/vcpusched"), 0);
  EXPECT_EQ(xml.str("/domain/os/@firmware"), "efi");
  EXPECT_EQ(xml.count("/domain/os/kernel"), 0);
  EXPECT_EQ(xml.count("/domain/os/boot"), 0);
  EXPECT_EQ(xml.count("//boot"), 1);
  EXPECT_EQ(xml.str("//disk[boot]/target/@dev"), "vda");
  EXPECT_EQ(xml.str("//disk[boot]/boot/@order"), "1");
  EXPECT_EQ(xml.str("//disk[target/@dev='vda']/@device"), "disk");
  EXPECT_EQ(xml.str("//disk[target/@dev='vda']/source/@file"), "/var/lib/kvm-amf/shared/oam.qcow2");
  EXPECT_EQ(xml.str("//disk[target/@dev='vda']/driver/@type"), "qcow2");
  EXPECT_EQ(xml.str("//disk[target/@dev='vda']/driver/@cache"), "writeback");
  EXPECT_EQ(xml.str("//disk[target/@dev='vda']/target/@bus"), "virtio");
  EXPECT_EQ(xml.count("//disk[target/@dev='vda']/readonly"), 0);
  // A read-only SATA disk is a CD-ROM (QEMU has no read-only SATA hard disk).
  EXPECT_EQ(xml.str("//disk[target/@dev='sda']/@device"), "cdrom");
  EXPECT_EQ(xml.str("//disk[target/@dev='sda']/driver/@type"), "raw");
  EXPECT_EQ(xml.str("//disk[target/@dev='sda']/target/@bus"), "sata");
  EXPECT_EQ(xml.count("//disk[target/@dev='sda']/readonly"), 1);
  EXPECT_EQ(xml.count("/domain/devices/controller[@type='sata']"), 1);
  EXPECT_EQ(xml.str("/domain/devices/interface/source/@bridge"), "br-oam");
  EXPECT_EQ(xml.str("/domain/metadata/amf:vm/amf:nic/@gateway"), "10.90.3.1");
  EXPECT_EQ(xml.str("/domain/devices/serial/@type"), "pty");
  EXPECT_EQ(xml.str("/domain/devices/watchdog/@action"), "reset");
}

TEST(DomainXml, LbExampleNetworkBootFromTheFirstNic) {
  const auto vms = exampleVms();
  const LoadedVm& lb = byName(vms, "lb-1-vm");
  const Xml xml(xmlOf(lb, optionsFor(lb)));
  ASSERT_TRUE(xml.ok());
  EXPECT_EQ(xml.count("//boot"), 1);
  EXPECT_EQ(xml.str("/domain/devices/interface[1]/boot/@order"), "1");
}

TEST(DomainXml, FullVmEveryField) {
  const LoadedVm full = fullVm();
  DomainOptions options = optionsFor(full);
  options.uuid = "6f1c2a55-1b0e-4d39-9b8a-0c1d2e3f4a5b";
  options.emulator = "/usr/bin/qemu-system-x86_64";
  const Xml xml(xmlOf(full, options));
  ASSERT_TRUE(xml.ok());
  EXPECT_EQ(xml.str("/domain/uuid"), options.uuid);
  EXPECT_EQ(xml.str("/domain/metadata/amf:vm/@bootOrder"), "3");
  EXPECT_EQ(xml.str("/domain/memory"), "1048576");
  EXPECT_EQ(xml.str("/domain/currentMemory"), "1048576");
  EXPECT_EQ(xml.str("/domain/memoryBacking/hugepages/page/@size"), "2048");
  EXPECT_EQ(xml.str("/domain/memoryBacking/hugepages/page/@unit"), "KiB");
  EXPECT_EQ(xml.count("/domain/memoryBacking/locked"), 1);
  EXPECT_EQ(xml.str("/domain/vcpu"), "4");
  EXPECT_EQ(xml.count("/domain/cputune/vcpupin"), 4);
  EXPECT_EQ(xml.str("/domain/cputune/vcpupin[@vcpu='2']/@cpuset"), "4-5");
  EXPECT_EQ(xml.str("/domain/cputune/vcpupin[@vcpu='3']/@cpuset"), "6,7");
  EXPECT_EQ(xml.str("/domain/cputune/emulatorpin/@cpuset"), "0-1");
  EXPECT_EQ(xml.str("/domain/cputune/vcpusched/@vcpus"), "0-3");
  EXPECT_EQ(xml.str("/domain/cputune/vcpusched/@scheduler"), "rr");
  EXPECT_EQ(xml.str("/domain/cputune/vcpusched/@priority"), "10");
  EXPECT_EQ(xml.str("/domain/cpu/topology/@sockets"), "1");
  EXPECT_EQ(xml.str("/domain/cpu/topology/@cores"), "2");
  EXPECT_EQ(xml.str("/domain/cpu/topology/@threads"), "2");
  EXPECT_EQ(xml.str("/domain/os/@firmware"), "efi");
  // Escaping: the parsed values are the spec's strings exactly.
  EXPECT_EQ(xml.str("/domain/os/kernel"), "/images/vm&linux");
  EXPECT_EQ(xml.str("/domain/os/initrd"), "/images/initrd<1>.cpio");
  EXPECT_EQ(xml.str("/domain/os/cmdline"), full.vm.boot.cmdline);
  EXPECT_EQ(xml.str("/domain/os/cmdline"), "console=ttyS0 amf.role='active' amf.tag=\"a<b&c>d\"");
  EXPECT_EQ(xml.str("/domain/devices/emulator"), "/usr/bin/qemu-system-x86_64");
  EXPECT_EQ(xml.count("/domain/devices/disk"), 4);
  EXPECT_EQ(xml.str("//disk[target/@dev='sdb']/target/@bus"), "scsi");
  EXPECT_EQ(xml.str("//disk[target/@dev='sdb']/driver/@cache"), "directsync");
  EXPECT_EQ(xml.count("//disk[target/@dev='sdb']/shareable"), 1);
  EXPECT_EQ(xml.str("/domain/devices/controller[@type='scsi']/@model"), "virtio-scsi");
  EXPECT_EQ(xml.str("//disk[target/@dev='vdb']/@type"), "block");
  EXPECT_EQ(xml.str("//disk[target/@dev='vdb']/source/@dev"), "/dev/vg0/scratch");
  EXPECT_EQ(xml.str("//disk[target/@dev='vdb']/driver/@cache"), "unsafe");
  EXPECT_EQ(xml.count("//boot"), 0);
  EXPECT_EQ(xml.count("/domain/devices/interface[@type='bridge']"), 2);
  EXPECT_EQ(xml.str("//interface[mac/@address='52:54:00:aa:00:01']/source/@bridge"), "br-svc-v100");
  EXPECT_EQ(xml.str("//interface[mac/@address='52:54:00:aa:00:02']/source/@bridge"), "br-mgmt");
  EXPECT_EQ(xml.str("//interface[mac/@address='52:54:00:aa:00:02']/model/@type"), "e1000");
  EXPECT_EQ(xml.str("/domain/metadata/amf:vm/amf:nic[@mac='52:54:00:aa:00:01']/@ip"), "10.90.0.11/24");
  EXPECT_EQ(xml.str("/domain/metadata/amf:vm/amf:nic[@mac='52:54:00:aa:00:01']/@gateway"), "10.90.0.1");
  EXPECT_EQ(xml.count("/domain/devices/interface[@type='hostdev']"), 2);
  EXPECT_EQ(xml.str("//interface[@type='hostdev'][1]/@managed"), "yes");
  EXPECT_EQ(xml.str("//interface[@type='hostdev'][1]/mac/@address"), "52:54:00:aa:00:03");
  EXPECT_EQ(xml.str("//interface[@type='hostdev'][1]/source/address/@type"), "pci");
  EXPECT_EQ(xml.str("//interface[@type='hostdev'][1]/source/address/@domain"), "0x0000");
  EXPECT_EQ(xml.str("//interface[@type='hostdev'][1]/source/address/@bus"), "0x03");
  EXPECT_EQ(xml.str("//interface[@type='hostdev'][1]/source/address/@slot"), "0x10");
  EXPECT_EQ(xml.str("//interface[@type='hostdev'][1]/source/address/@function"), "0x2");
  EXPECT_EQ(xml.str("//interface[@type='hostdev'][1]/vlan/tag/@id"), "12");
  EXPECT_EQ(xml.count("//interface[@type='hostdev'][2]/mac"), 0);
  EXPECT_EQ(xml.count("//interface[@type='hostdev'][2]/vlan"), 0);
  EXPECT_EQ(xml.str("//interface[@type='hostdev'][2]/source/address/@function"), "0x3");
  EXPECT_EQ(xml.str("/domain/devices/serial/source/@path"), "/var/log/kvm-amf/full-vm.console");
  EXPECT_EQ(xml.str("/domain/devices/serial/source/@append"), "on");
  EXPECT_EQ(xml.str("/domain/devices/watchdog/@model"), "ib700");
  EXPECT_EQ(xml.str("/domain/devices/watchdog/@action"), "inject-nmi");
  EXPECT_EQ(xml.str("/domain/metadata/amf:vm/amf:watchdog/@timeout"), "7000ms");
}

TEST(DomainXml, FullVmMatchesTheGoldenFile) {
  const LoadedVm full = fullVm();
  DomainOptions options = optionsFor(full);
  options.uuid = "6f1c2a55-1b0e-4d39-9b8a-0c1d2e3f4a5b";
  options.emulator = "/usr/bin/qemu-system-x86_64";
  const std::string xml = xmlOf(full, options);
  const fs::path golden = kSource / "tests/vmm-adapter/libvirt/golden/full-vm.xml";
  if (std::getenv("KVM_AMF_UPDATE_GOLDEN") != nullptr) writeFile(golden, xml);
  EXPECT_EQ(xml, readFile(golden)) << "regenerate with KVM_AMF_UPDATE_GOLDEN=1 and review the diff";
}

TEST(DomainXml, KvmAndOpenVswitchOptions) {
  const LoadedVm full = fullVm();
  DomainOptions options = optionsFor(full);
  options.kvm = true;
  options.openvswitch = true;
  const Xml xml(xmlOf(full, options));
  ASSERT_TRUE(xml.ok());
  EXPECT_EQ(xml.str("/domain/@type"), "kvm");
  EXPECT_EQ(xml.count("/domain/uuid"), 0);
  EXPECT_EQ(xml.count("/domain/devices/emulator"), 0);
  const std::string tagged = "//interface[mac/@address='52:54:00:aa:00:01']";
  EXPECT_EQ(xml.str(tagged + "/source/@bridge"), "br-svc");
  EXPECT_EQ(xml.str(tagged + "/vlan/tag/@id"), "100");
  EXPECT_EQ(xml.str(tagged + "/virtualport/@type"), "openvswitch");
  const std::string untagged = "//interface[mac/@address='52:54:00:aa:00:02']";
  EXPECT_EQ(xml.count(untagged + "/vlan"), 0);
  EXPECT_EQ(xml.str(untagged + "/virtualport/@type"), "openvswitch");
}

TEST(DomainXml, EscapesNamesAndPaths) {
  LoadedVm loaded = fullVm();
  loaded.vm.name = "a<b&c'd\"e>";
  loaded.vm.console.path = "/log/'x\"&<>";
  loaded.vm.boot.cmdline = "a\tb\nc\rd &amp; <x>";
  const std::string text = xmlOf(loaded, optionsFor(loaded));
  EXPECT_NE(text.find("<name>a&lt;b&amp;c&apos;d&quot;e&gt;</name>"), std::string::npos) << text;
  EXPECT_NE(text.find("<cmdline>a&#9;b&#10;c&#13;d &amp;amp; &lt;x&gt;</cmdline>"), std::string::npos) << text;
  const Xml xml(text);
  ASSERT_TRUE(xml.ok());
  EXPECT_EQ(xml.str("/domain/name"), loaded.vm.name);
  EXPECT_EQ(xml.str("/domain/devices/serial/source/@path"), loaded.vm.console.path);
  EXPECT_EQ(xml.str("/domain/devices/channel/source/@path"), "/run/kvm-amf/agent/a<b&c'd\"e>.agent");
  EXPECT_EQ(xml.str("/domain/os/cmdline"), loaded.vm.boot.cmdline);
}

// The error names the field; nothing is written for a spec that cannot be expressed.
std::string errorFor(const model::VmSpec& vm, const DomainOptions& options) {
  const Result<std::string> xml = domainXml(vm, options);
  EXPECT_FALSE(xml.ok());
  return xml.ok() ? "" : xml.error().message;
}

TEST(DomainXml, RefusesWhatCannotBeExpressed) {
  const LoadedVm full = fullVm();
  const DomainOptions options = optionsFor(full);
  auto with = [&](auto change) {
    model::VmSpec vm = full.vm;
    change(vm);
    return errorFor(vm, options);
  };
  using model::VmSpec;
  EXPECT_EQ(with([](VmSpec& vm) { vm.boot.cmdline = std::string("a\x01") + "b"; }),
            "vm 'full-vm': boot.cmdline: contains a control character, which XML cannot carry");
  EXPECT_EQ(with([](VmSpec& vm) { vm.boot.kernel = "/k\xff"; }), "vm 'full-vm': boot.kernel: not valid UTF-8");
  EXPECT_EQ(with([](VmSpec& vm) { vm.memory += 1; }), "vm 'full-vm': memory: not a whole number of KiB");
  EXPECT_EQ(with([](VmSpec& vm) { vm.memory += 1024; }), "vm 'full-vm': memory: not a whole number of huge pages");
  EXPECT_EQ(with([](VmSpec& vm) { vm.cpu.pinning.pop_back(); }), "vm 'full-vm': cpu.pinning: 3 entries for 4 vCPUs");
  EXPECT_EQ(with([](VmSpec& vm) { vm.cpu.pinning[1] = "x"; }), "vm 'full-vm': cpu.pinning[1]: not a host CPU set");
  EXPECT_EQ(with([](VmSpec& vm) { vm.boot.disk = "vda"; }),
            "vm 'full-vm': boot: exactly one of kernel, disk or network must be given");
  EXPECT_EQ(with([](VmSpec& vm) {
              vm.boot.kernel.clear();
              vm.boot.initrd.clear();
              vm.boot.cmdline.clear();
              vm.boot.disk = "vdz";
            }),
            "vm 'full-vm': boot.disk: no disk has this target");
  EXPECT_EQ(with([](VmSpec& vm) { vm.disks[2].format = model::DiskFormat::kQcow2; }),
            "vm 'full-vm': disks[2].shared: a writable shared disk must be raw: QEMU cannot share qcow2");
  EXPECT_EQ(with([](VmSpec& vm) { vm.hostdevs[0].pci = "03:10.2"; }),
            "vm 'full-vm': hostdevs[0].pci: not a PCI address DDDD:BB:SS.F");
  EXPECT_EQ(with([](VmSpec& vm) { vm.nics[0].bridge = "br-very-long12"; }),
            "vm 'full-vm': nics[0].vlan: the per-VLAN bridge name 'br-very-long12-v100' is longer than 15 characters");
  EXPECT_EQ(with([](VmSpec& vm) { vm.console.path.clear(); }),
            "vm 'full-vm': console.path: required with console type file");

  DomainOptions bad = options;
  bad.uuid = "not-a-uuid";
  EXPECT_EQ(errorFor(full.vm, bad), "vm 'full-vm': uuid: not a UUID");
  bad = options;
  bad.agentSocketDir = "relative";
  EXPECT_EQ(errorFor(full.vm, bad), "vm 'full-vm': agentSocketDir: must be an absolute path");
  bad.agentSocketDir = "/" + std::string(120, 'd');
  EXPECT_NE(errorFor(full.vm, bad).find("agentSocketDir: the agent socket path"), std::string::npos);
  bad = options;
  bad.watchdog->model = model::WatchdogModel::kDiag288;
  EXPECT_EQ(errorFor(full.vm, bad),
            "vm 'full-vm': health.watchdog.model: diag288 exists only on s390x; use i6300esb or ib700");
}

// Every example VM and the full VM, against libvirt's own checks: its RelaxNG schema
// (virt-xml-validate), and its domain parser (virsh define on the in-process test driver,
// which also catches what the schema allows but libvirt refuses).
TEST(DomainXml, ValidatesWithLibvirt) {
  if (!haveCommand("virt-xml-validate") || !haveCommand("xmllint")) {
    GTEST_SKIP() << "virt-xml-validate (libvirt-clients) or xmllint (libxml2-utils) is not installed";
  }
  const bool haveVirsh = haveCommand("virsh");
  TempDir dir("domain-xml");
  ASSERT_FALSE(dir.path().empty());
  std::vector<LoadedVm> vms = exampleVms();
  ASSERT_GE(vms.size(), 5u);
  vms.push_back(fullVm());
  for (const LoadedVm& vm : vms) {
    for (const bool openvswitch : {false, true}) {
      DomainOptions options = optionsFor(vm);
      options.openvswitch = openvswitch;
      options.uuid = "6f1c2a55-1b0e-4d39-9b8a-0c1d2e3f4a5b";
      const fs::path file = dir.path() / (vm.vm.name + (openvswitch ? "-ovs" : "") + ".xml");
      writeFile(file, xmlOf(vm, options));
      const auto [status, output] = run("virt-xml-validate '" + file.string() + "' domain");
      EXPECT_EQ(status, 0) << vm.vm.name << ": " << output << readFile(file);
      if (!haveVirsh) continue;
      const auto [defined, why] = run("virsh -q -c test:///default define '" + file.string() + "'");
      EXPECT_EQ(defined, 0) << vm.vm.name << ": " << why << readFile(file);
    }
  }
}

}  // namespace
}  // namespace kvm_amf::vmm
