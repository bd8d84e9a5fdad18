// The libvirt domain XML of a VM: the whole VmSpec, as text. Pure (no libvirt, no I/O), so it is
// tested byte for byte and against libvirt's schema; the libvirt adapter defines domains with it.
// The mapping of each spec field is documented in docs/libvirt-adapter.md.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "kvm_amf/amf/model/config.h"
#include "kvm_amf/common/result.h"

namespace kvm_amf::vmm {

// The guest agent's virtio-serial port name, as the guest sees it in /sys/class/virtio-ports/*/name.
inline constexpr std::string_view kAgentChannelName = "org.kvm-amf.agent.0";

struct DomainOptions {
  bool kvm = false;  // domain type kvm, else qemu (TCG: hosts without working KVM, docs/test-guest.md)
  std::string uuid;  // optional: the domain's UUID ("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"); empty: libvirt picks one
  std::optional<model::WatchdogSpec> watchdog;  // absent: no watchdog device
  // Where the guest-agent channel's host side (a UNIX socket, DIR/NAME.agent, bound by QEMU) lives.
  // Required, absolute; the socket path must fit in sun_path (at most 107 bytes).
  std::string agentSocketDir;
  std::string emulator;  // optional: the QEMU binary; empty: libvirt's default for the domain type
  // How a NIC with a VLAN reaches it. false (Linux bridges): the host has one bridge per VLAN,
  // named `<bridge>-v<vlan>`, and the NIC joins that one untagged. true: the hosts' bridges are
  // Open vSwitch bridges; every NIC gets <virtualport type='openvswitch'/> and the VLAN as <vlan>.
  bool openvswitch = false;
};

// The domain XML for `vm`, or an error naming the spec field that cannot be expressed (for
// example a size that is not a whole number of KiB, a control character in a string, a diag288
// watchdog on x86). Every string is escaped. Deterministic: the same input gives the same bytes.
Result<std::string> domainXml(const model::VmSpec& vm, const DomainOptions& options);

// `value` escaped for XML element text and single- or double-quoted attributes (`& < > ' "`, and
// tab, newline and carriage return as character references). A string XML 1.0 cannot carry
// (invalid UTF-8, another control character) is an error saying which.
Result<std::string> escapeXml(std::string_view value);

}  // namespace kvm_amf::vmm
