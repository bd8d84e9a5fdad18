// VmSpec -> libvirt domain XML (docs/libvirt-adapter.md has the mapping). Pure text: no libvirt.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "kvm_amf/vmm/libvirt_domain_xml.h"

namespace kvm_amf::vmm {
namespace {

using model::VmSpec;

// Where the spec-only fields (those libvirt has no element for) are kept, in <metadata>.
constexpr std::string_view kMetadataNamespace = "urn:kvm-amf:vm:1";
constexpr std::size_t kMaxSocketPath = 107;    // sizeof(sockaddr_un::sun_path) - 1 on Linux
constexpr std::size_t kMaxInterfaceName = 15;  // IFNAMSIZ - 1

// The length of the valid UTF-8 sequence at the start of `s`, or 0 if there is none.
std::size_t utf8SequenceLength(std::string_view s) {
  const auto lead = static_cast<unsigned char>(s[0]);
  std::size_t length = 0;
  std::uint32_t codePoint = 0;
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) {
    length = 2;
    codePoint = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    codePoint = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    codePoint = lead & 0x07;
  } else {
    return 0;
  }
  if (s.size() < length) return 0;
  for (std::size_t i = 1; i < length; ++i) {
    const auto next = static_cast<unsigned char>(s[i]);
    if ((next & 0xC0) != 0x80) return 0;
    codePoint = (codePoint << 6) | (next & 0x3F);
  }
  constexpr std::uint32_t kMinimum[] = {0, 0, 0x80, 0x800, 0x10000};
  if (codePoint < kMinimum[length] || codePoint > 0x10FFFF) return 0;  // overlong or out of range
  if (codePoint >= 0xD800 && codePoint <= 0xDFFF) return 0;            // surrogates
  if (codePoint == 0xFFFE || codePoint == 0xFFFF) return 0;            // not XML characters
  return length;
}

// Writes the domain, line by line; the first field that cannot be expressed is kept as the error
// (the text written after it is then thrown away).
class DomainWriter {
 public:
  explicit DomainWriter(const VmSpec& vm) : vm_(vm) {}

  std::optional<Error> error() const { return error_; }
  std::string take() && { return std::move(out_); }

  void fail(std::string_view field, std::string_view why) {
    if (!error_) error_ = Error{"vm '" + vm_.name + "': " + std::string(field) + ": " + std::string(why)};
  }

  // `value` escaped (escapeXml), or an error naming `field`.
  std::string escape(std::string_view field, std::string_view value) {
    Result<std::string> escaped = escapeXml(value);
    if (!escaped.ok()) {
      fail(field, escaped.error().message);
      return {};
    }
    return std::move(escaped).value();
  }

  // One line at `depth` (two spaces each); `text` is already XML.
  void line(int depth, std::string_view text) {
    out_.append(static_cast<std::size_t>(depth) * 2, ' ');
    out_.append(text);
    out_ += '\n';
  }

 private:
  const VmSpec& vm_;
  std::string out_;
  std::optional<Error> error_;
};

std::string attr(std::string_view name, std::string_view escapedValue) {
  return " " + std::string(name) + "='" + std::string(escapedValue) + "'";
}

std::string_view diskFormatName(model::DiskFormat format) {
  switch (format) {
    case model::DiskFormat::kQcow2:
      return "qcow2";
    case model::DiskFormat::kRaw:
      return "raw";
  }
  return "raw";
}

std::string_view diskBusName(model::DiskBus bus) {
  switch (bus) {
    case model::DiskBus::kVirtio:
      return "virtio";
    case model::DiskBus::kSata:
      return "sata";
    case model::DiskBus::kScsi:
      return "scsi";
  }
  return "virtio";
}

std::string_view diskCacheName(model::DiskCache cache) {
  switch (cache) {
    case model::DiskCache::kNone:
      return "none";
    case model::DiskCache::kWriteback:
      return "writeback";
    case model::DiskCache::kWritethrough:
      return "writethrough";
    case model::DiskCache::kDirectsync:
      return "directsync";
    case model::DiskCache::kUnsafe:
      return "unsafe";
  }
  return "none";
}

std::string_view watchdogModelName(model::WatchdogModel model) {
  switch (model) {
    case model::WatchdogModel::kI6300esb:
      return "i6300esb";
    case model::WatchdogModel::kIb700:
      return "ib700";
    case model::WatchdogModel::kDiag288:
      return "diag288";
  }
  return "i6300esb";
}

std::string_view watchdogActionName(model::WatchdogAction action) {
  switch (action) {
    case model::WatchdogAction::kReset:
      return "reset";
    case model::WatchdogAction::kPoweroff:
      return "poweroff";
    case model::WatchdogAction::kPause:
      return "pause";
    case model::WatchdogAction::kNone:
      return "none";
    case model::WatchdogAction::kDump:
      return "dump";
    case model::WatchdogAction::kInjectNmi:
      return "inject-nmi";
  }
  return "poweroff";
}

bool isHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", hex digits.
bool isUuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !isHex(s[i])) return false;
  }
  return true;
}

// A host CPU set as libvirt writes it: "2", "4-5,7", "0-7,^3".
bool isCpuSet(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    if (!((c >= '0' && c <= '9') || c == ',' || c == '-' || c == '^')) return false;
  }
  return true;
}

struct PciAddress {
  std::string domain, bus, slot, function;  // "0x" and the hex digits of the spec
};

// "DDDD:BB:SS.F" (hex), as lspci -D prints it.
std::optional<PciAddress> parsePci(std::string_view s) {
  if (s.size() != 12 || s[4] != ':' || s[7] != ':' || s[10] != '.') return std::nullopt;
  for (const std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9, 11}) {
    if (!isHex(s[i])) return std::nullopt;
  }
  if (s[11] > '7') return std::nullopt;  // functions 0..7
  return PciAddress{"0x" + std::string(s.substr(0, 4)), "0x" + std::string(s.substr(5, 2)),
                    "0x" + std::string(s.substr(8, 2)), "0x" + std::string(s.substr(11, 1))};
}

std::string indexed(std::string_view list, std::size_t i, std::string_view field) {
  return std::string(list) + "[" + std::to_string(i) + "]." + std::string(field);
}

// Sizes in KiB, the unit libvirt stores; a size that is not a whole number of KiB is refused
// rather than rounded (libvirt would round it up, silently).
std::optional<std::uint64_t> kib(DomainWriter& w, std::string_view field, model::Bytes bytes) {
  if (bytes % 1024 != 0) {
    w.fail(field, "not a whole number of KiB");
    return std::nullopt;
  }
  return bytes / 1024;
}

void writeMetadata(DomainWriter& w, const VmSpec& vm, const DomainOptions& options) {
  w.line(1, "<metadata>");
  w.line(2, "<amf:vm xmlns:amf='" + std::string(kMetadataNamespace) + "'" +
                attr("bootOrder", std::to_string(vm.bootOrder)) + ">");
  for (std::size_t i = 0; i < vm.nics.size(); ++i) {
    const model::NicSpec& nic = vm.nics[i];
    std::string element = "<amf:nic" + attr("mac", w.escape(indexed("nics", i, "mac"), nic.mac));
    if (!nic.ip.empty()) element += attr("ip", w.escape(indexed("nics", i, "ip"), nic.ip));
    if (!nic.gateway.empty()) element += attr("gateway", w.escape(indexed("nics", i, "gateway"), nic.gateway));
    w.line(3, element + "/>");
  }
  if (options.watchdog) {
    w.line(3, "<amf:watchdog" + attr("timeout", std::to_string(options.watchdog->timeout.count()) + "ms") + "/>");
  }
  w.line(2, "</amf:vm>");
  w.line(1, "</metadata>");
}

void writeMemory(DomainWriter& w, const VmSpec& vm) {
  if (vm.memory == 0) w.fail("memory", "required");
  if (vm.maxMemory != 0 && vm.maxMemory < vm.memory) w.fail("maxMemory", "below memory");
  const auto current = kib(w, "memory", vm.memory);
  const auto maximum = vm.maxMemory != 0 ? kib(w, "maxMemory", vm.maxMemory) : current;
  if (!current || !maximum) return;
  // <memory> is what the VM may grow to (through the balloon); <currentMemory> what it starts with.
  w.line(1, "<memory unit='KiB'>" + std::to_string(*maximum) + "</memory>");
  w.line(1, "<currentMemory unit='KiB'>" + std::to_string(*current) + "</currentMemory>");

  const model::MemoryBackingSpec& backing = vm.memoryBacking;
  if (backing.hugepages == 0 && !backing.locked) return;
  w.line(1, "<memoryBacking>");
  if (backing.hugepages != 0) {
    const auto page = kib(w, "memoryBacking.hugepages", backing.hugepages);
    if (page && vm.memory % backing.hugepages != 0) w.fail("memory", "not a whole number of huge pages");
    w.line(2, "<hugepages>");
    w.line(3, "<page size='" + std::to_string(page.value_or(0)) + "' unit='KiB'/>");
    w.line(2, "</hugepages>");
  }
  // libvirt lifts QEMU's RLIMIT_MEMLOCK to unlimited for <locked/> when no <memtune> hard_limit
  // is given; kvm-amf sets none, so the host's capacity check is what bounds it.
  if (backing.locked) w.line(2, "<locked/>");
  w.line(1, "</memoryBacking>");
}

void writeCpu(DomainWriter& w, const VmSpec& vm) {
  if (vm.vcpus < 1) w.fail("vcpus", "at least 1");
  w.line(1, "<vcpu placement='static'>" + std::to_string(vm.vcpus) + "</vcpu>");

  const model::CpuSpec& cpu = vm.cpu;
  if (!cpu.pinning.empty() && cpu.pinning.size() != static_cast<std::size_t>(vm.vcpus)) {
    w.fail("cpu.pinning", std::to_string(cpu.pinning.size()) + " entries for " + std::to_string(vm.vcpus) + " vCPUs");
  }
  if (cpu.pinning.empty() && cpu.emulatorPinning.empty() && !cpu.realtime) return;
  w.line(1, "<cputune>");
  for (std::size_t i = 0; i < cpu.pinning.size(); ++i) {
    const std::string field = "cpu.pinning[" + std::to_string(i) + "]";
    if (!isCpuSet(cpu.pinning[i])) w.fail(field, "not a host CPU set");
    w.line(2, "<vcpupin" + attr("vcpu", std::to_string(i)) + attr("cpuset", w.escape(field, cpu.pinning[i])) + "/>");
  }
  if (!cpu.emulatorPinning.empty()) {
    if (!isCpuSet(cpu.emulatorPinning)) w.fail("cpu.emulatorPinning", "not a host CPU set");
    w.line(2, "<emulatorpin" + attr("cpuset", w.escape("cpu.emulatorPinning", cpu.emulatorPinning)) + "/>");
  }
  if (cpu.realtime) {
    if (cpu.realtime->priority < 1 || cpu.realtime->priority > 99) w.fail("cpu.realtime.priority", "not in 1..99");
    const std::string vcpus = vm.vcpus == 1 ? "0" : "0-" + std::to_string(vm.vcpus - 1);
    const std::string_view policy = cpu.realtime->policy == model::RealtimePolicy::kRr ? "rr" : "fifo";
    w.line(2, "<vcpusched" + attr("vcpus", vcpus) + attr("scheduler", policy) +
                  attr("priority", std::to_string(cpu.realtime->priority)) + "/>");
  }
  w.line(1, "</cputune>");
}

void writeOs(DomainWriter& w, const VmSpec& vm) {
  const model::BootSpec& boot = vm.boot;
  const int methods = (boot.kernel.empty() ? 0 : 1) + (boot.disk.empty() ? 0 : 1) + (boot.network ? 1 : 0);
  if (methods != 1) w.fail("boot", "exactly one of kernel, disk or network must be given");
  if (boot.kernel.empty() && !boot.initrd.empty()) w.fail("boot.initrd", "only with boot.kernel");
  if (boot.kernel.empty() && !boot.cmdline.empty()) w.fail("boot.cmdline", "only with boot.kernel");

  w.line(1, boot.firmware == model::Firmware::kUefi ? "<os firmware='efi'>" : "<os>");
  w.line(2, "<type arch='x86_64' machine='pc'>hvm</type>");
  // Disk and network boot are written as <boot order='1'/> on the device (writeDevices), not as
  // <os><boot dev=.../>: libvirt refuses a domain that has both.
  if (!boot.kernel.empty()) {
    w.line(2, "<kernel>" + w.escape("boot.kernel", boot.kernel) + "</kernel>");
    if (!boot.initrd.empty()) w.line(2, "<initrd>" + w.escape("boot.initrd", boot.initrd) + "</initrd>");
    if (!boot.cmdline.empty()) w.line(2, "<cmdline>" + w.escape("boot.cmdline", boot.cmdline) + "</cmdline>");
  }
  w.line(1, "</os>");
  w.line(1, "<features>");
  w.line(2, "<acpi/>");
  w.line(1, "</features>");

  const model::CpuTopology& topology = vm.cpu.topology;
  const int declared =
      (topology.sockets != 0 ? 1 : 0) + (topology.cores != 0 ? 1 : 0) + (topology.threads != 0 ? 1 : 0);
  if (declared == 0) return;
  if (declared != 3 || topology.sockets < 0 || topology.cores < 0 || topology.threads < 0) {
    w.fail("cpu.topology", "sockets, cores and threads must all be given");
  } else if (static_cast<long long>(topology.sockets) * topology.cores * topology.threads != vm.vcpus) {
    w.fail("cpu.topology", "sockets x cores x threads must equal vcpus");
  }
  w.line(1, "<cpu>");
  w.line(2, "<topology" + attr("sockets", std::to_string(topology.sockets)) + " dies='1'" +
                attr("cores", std::to_string(topology.cores)) + attr("threads", std::to_string(topology.threads)) +
                "/>");
  w.line(1, "</cpu>");
}

void writeDisks(DomainWriter& w, const VmSpec& vm) {
  bool bootDiskFound = false;
  for (std::size_t i = 0; i < vm.disks.size(); ++i) {
    const model::DiskSpec& disk = vm.disks[i];
    if (disk.source.empty()) w.fail(indexed("disks", i, "source"), "required");
    if (disk.target.empty()) w.fail(indexed("disks", i, "target"), "required");
    // QEMU's shared (concurrent) access works only on raw images; libvirt refuses a writable
    // <shareable/> qcow2 disk at start, so it is refused here, where the field can be named.
    if (disk.shared && !disk.readonly && disk.format == model::DiskFormat::kQcow2) {
      w.fail(indexed("disks", i, "shared"), "a writable shared disk must be raw: QEMU cannot share qcow2");
    }
    // A block device is a <disk type='block'>; every other path an image file.
    const bool block = disk.source.starts_with("/dev/");
    // QEMU's SATA (and IDE) hard disk cannot be read-only ("Can't use a read-only drive"), so a
    // read-only SATA disk is a CD-ROM, which is read-only by nature.
    const bool cdrom = disk.readonly && disk.bus == model::DiskBus::kSata;
    w.line(2, std::string("<disk") + attr("type", block ? "block" : "file") + attr("device", cdrom ? "cdrom" : "disk") +
                  ">");
    w.line(3, "<driver name='qemu'" + attr("type", diskFormatName(disk.format)) +
                  attr("cache", diskCacheName(disk.cache)) + "/>");
    w.line(3, std::string("<source") +
                  attr(block ? "dev" : "file", w.escape(indexed("disks", i, "source"), disk.source)) + "/>");
    w.line(3, "<target" + attr("dev", w.escape(indexed("disks", i, "target"), disk.target)) +
                  attr("bus", diskBusName(disk.bus)) + "/>");
    if (!vm.boot.disk.empty() && disk.target == vm.boot.disk && !bootDiskFound) {
      bootDiskFound = true;
      w.line(3, "<boot order='1'/>");
    }
    if (disk.readonly) w.line(3, "<readonly/>");
    if (disk.shared) w.line(3, "<shareable/>");
    w.line(2, "</disk>");
  }
  if (!vm.boot.disk.empty() && !bootDiskFound) w.fail("boot.disk", "no disk has this target");
}

void writeControllers(DomainWriter& w, const VmSpec& vm) {
  bool sata = false;
  bool scsi = false;
  for (const model::DiskSpec& disk : vm.disks) {
    sata = sata || disk.bus == model::DiskBus::kSata;
    scsi = scsi || disk.bus == model::DiskBus::kScsi;
  }
  // No USB controller (libvirt would add one); SATA (AHCI) and virtio-scsi only when a disk needs them.
  w.line(2, "<controller type='usb' index='0' model='none'/>");
  if (sata) w.line(2, "<controller type='sata' index='0'/>");
  if (scsi) w.line(2, "<controller type='scsi' index='0' model='virtio-scsi'/>");
  w.line(2, "<controller type='virtio-serial' index='0'/>");
}

void writeVlan(DomainWriter& w, int depth, std::string_view field, int vlan) {
  if (vlan < 0 || vlan > 4094) w.fail(field, "not in 0..4094");
  w.line(depth, "<vlan>");
  w.line(depth + 1, "<tag id='" + std::to_string(vlan) + "'/>");
  w.line(depth, "</vlan>");
}

void writeInterfaces(DomainWriter& w, const VmSpec& vm, const DomainOptions& options) {
  if (vm.boot.network && vm.nics.empty()) w.fail("boot.network", "needs a NIC to boot from");
  for (std::size_t i = 0; i < vm.nics.size(); ++i) {
    const model::NicSpec& nic = vm.nics[i];
    if (nic.mac.empty()) w.fail(indexed("nics", i, "mac"), "required");
    if (nic.bridge.empty()) w.fail(indexed("nics", i, "bridge"), "required");
    if (nic.model.empty()) w.fail(indexed("nics", i, "model"), "required");
    // A VLAN on a Linux bridge cannot be expressed in libvirt (<vlan> needs Open vSwitch or an
    // SR-IOV VF). With Linux bridges each host carries one bridge per VLAN, `<bridge>-v<vlan>`
    // (its uplink the VLAN subinterface), and the NIC joins it untagged; with Open vSwitch the
    // NIC joins the bridge itself and OVS tags its port.
    std::string bridge = nic.bridge;
    if (nic.vlan != 0 && !options.openvswitch) {
      bridge += "-v" + std::to_string(nic.vlan);
      if (bridge.size() > kMaxInterfaceName) {
        w.fail(indexed("nics", i, "vlan"), "the per-VLAN bridge name '" + bridge + "' is longer than 15 characters");
      }
    }
    w.line(2, "<interface type='bridge'>");
    w.line(3, "<mac" + attr("address", w.escape(indexed("nics", i, "mac"), nic.mac)) + "/>");
    w.line(3, "<source" + attr("bridge", w.escape(indexed("nics", i, "bridge"), bridge)) + "/>");
    if (options.openvswitch) {
      if (nic.vlan != 0) writeVlan(w, 3, indexed("nics", i, "vlan"), nic.vlan);
      w.line(3, "<virtualport type='openvswitch'/>");
    } else if (nic.vlan < 0 || nic.vlan > 4094) {
      w.fail(indexed("nics", i, "vlan"), "not in 0..4094");
    }
    w.line(3, "<model" + attr("type", w.escape(indexed("nics", i, "model"), nic.model)) + "/>");
    if (vm.boot.network && i == 0) w.line(3, "<boot order='1'/>");
    w.line(2, "</interface>");
  }
  for (std::size_t i = 0; i < vm.hostdevs.size(); ++i) {
    const model::HostdevSpec& dev = vm.hostdevs[i];
    const auto pci = parsePci(dev.pci);
    if (!pci) w.fail(indexed("hostdevs", i, "pci"), "not a PCI address DDDD:BB:SS.F");
    const PciAddress address = pci.value_or(PciAddress{});
    // An SR-IOV VF as a network interface: libvirt detaches it from the host driver (managed),
    // programs the MAC and VLAN into the VF through its PF, and passes it through with VFIO.
    w.line(2, "<interface type='hostdev' managed='yes'>");
    if (!dev.mac.empty()) w.line(3, "<mac" + attr("address", w.escape(indexed("hostdevs", i, "mac"), dev.mac)) + "/>");
    w.line(3, "<source>");
    w.line(4, "<address type='pci'" + attr("domain", address.domain) + attr("bus", address.bus) +
                  attr("slot", address.slot) + attr("function", address.function) + "/>");
    w.line(3, "</source>");
    if (dev.vlan != 0) writeVlan(w, 3, indexed("hostdevs", i, "vlan"), dev.vlan);
    w.line(2, "</interface>");
  }
}

void writeConsole(DomainWriter& w, const VmSpec& vm) {
  // The serial port only: libvirt adds the matching <console type=... target type='serial'/>.
  switch (vm.console.type) {
    case model::ConsoleType::kNone:
      if (!vm.console.path.empty()) w.fail("console.path", "only with console type file");
      return;
    case model::ConsoleType::kPty:
      if (!vm.console.path.empty()) w.fail("console.path", "only with console type file");
      w.line(2, "<serial type='pty'>");
      break;
    case model::ConsoleType::kFile:
      if (vm.console.path.empty()) w.fail("console.path", "required with console type file");
      w.line(2, "<serial type='file'>");
      // append: a restarted or migrated VM continues the log instead of truncating it.
      w.line(3, "<source" + attr("path", w.escape("console.path", vm.console.path)) + " append='on'/>");
      break;
  }
  w.line(3, "<target port='0'/>");
  w.line(2, "</serial>");
}

void writeAgentChannel(DomainWriter& w, const VmSpec& vm, const DomainOptions& options) {
  std::string dir = options.agentSocketDir;
  while (dir.size() > 1 && dir.ends_with('/')) dir.pop_back();
  if (!dir.starts_with('/')) w.fail("agentSocketDir", "must be an absolute path");
  const std::string path = (dir == "/" ? "" : dir) + "/" + vm.name + ".agent";
  if (path.size() > kMaxSocketPath) w.fail("agentSocketDir", "the agent socket path '" + path + "' is too long");
  w.line(2, "<channel type='unix'>");
  w.line(3, "<source mode='bind'" + attr("path", w.escape("agentSocketDir", path)) + "/>");
  w.line(3, "<target type='virtio'" + attr("name", kAgentChannelName) + "/>");
  w.line(2, "</channel>");
}

void writeDevices(DomainWriter& w, const VmSpec& vm, const DomainOptions& options) {
  w.line(1, "<devices>");
  if (!options.emulator.empty()) w.line(2, "<emulator>" + w.escape("emulator", options.emulator) + "</emulator>");
  writeDisks(w, vm);
  writeControllers(w, vm);
  writeInterfaces(w, vm, options);
  writeConsole(w, vm);
  writeAgentChannel(w, vm, options);
  if (options.watchdog) {
    // diag288 is the s390x watchdog; these domains are x86_64.
    if (options.watchdog->model == model::WatchdogModel::kDiag288) {
      w.fail("health.watchdog.model", "diag288 exists only on s390x; use i6300esb or ib700");
    }
    w.line(2, "<watchdog" + attr("model", watchdogModelName(options.watchdog->model)) +
                  attr("action", watchdogActionName(options.watchdog->action)) + "/>");
  }
  // The balloon is always there: it carries the memory statistics (every second) and, with
  // maxMemory, the dynamic memory.
  w.line(2, "<memballoon model='virtio'>");
  w.line(3, "<stats period='1'/>");
  w.line(2, "</memballoon>");
  w.line(1, "</devices>");
}

}  // namespace

Result<std::string> domainXml(const model::VmSpec& vm, const DomainOptions& options) {
  DomainWriter w(vm);
  if (vm.name.empty()) w.fail("name", "required");
  if (vm.name.find('/') != std::string::npos) w.fail("name", "must not contain '/'");
  if (!options.uuid.empty() && !isUuid(options.uuid)) w.fail("uuid", "not a UUID");

  w.line(0, std::string("<domain type='") + (options.kvm ? "kvm" : "qemu") + "'>");
  w.line(1, "<name>" + w.escape("name", vm.name) + "</name>");
  if (!options.uuid.empty()) w.line(1, "<uuid>" + w.escape("uuid", options.uuid) + "</uuid>");
  writeMetadata(w, vm, options);
  writeMemory(w, vm);
  writeCpu(w, vm);
  writeOs(w, vm);
  w.line(1, "<clock offset='utc'/>");
  // A VM that stops is not restarted by libvirt: the cluster decides where it runs again.
  w.line(1, "<on_poweroff>destroy</on_poweroff>");
  w.line(1, "<on_reboot>restart</on_reboot>");
  w.line(1, "<on_crash>destroy</on_crash>");
  writeDevices(w, vm, options);
  w.line(0, "</domain>");

  if (auto error = w.error()) return *std::move(error);
  return std::move(w).take();
}

Result<std::string> escapeXml(std::string_view value) {
  std::string escaped;
  escaped.reserve(value.size());
  while (!value.empty()) {
    const std::size_t length = utf8SequenceLength(value);
    if (length == 0) {
      return Error{"not valid UTF-8"};
    }
    const char c = value[0];
    if (length == 1) {
      switch (c) {
        case '&':
          escaped += "&amp;";
          break;
        case '<':
          escaped += "&lt;";
          break;
        case '>':
          escaped += "&gt;";
          break;
        case '\'':
          escaped += "&apos;";
          break;
        case '"':
          escaped += "&quot;";
          break;
        case '\t':
          escaped += "&#9;";
          break;
        case '\n':
          escaped += "&#10;";
          break;
        case '\r':
          escaped += "&#13;";
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            return Error{"contains a control character, which XML cannot carry"};
          }
          escaped += c;
      }
    } else {
      escaped.append(value.substr(0, length));
    }
    value.remove_prefix(length);
  }
  return escaped;
}

}  // namespace kvm_amf::vmm
