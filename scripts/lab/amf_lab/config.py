"""The configuration a lab runs, read through `amf-admin validate -o json` (the canonical documents,
every default written out), and what the lab must build for it: hosts, networks, client addresses,
the services to probe, files the VMs need."""
import ipaddress
import json
import os
import subprocess

from .util import LabError, parse_duration_ms


class Network:
    """One layer-2 network the VMs use: a bridge name and an optional VLAN (0: untagged)."""

    def __init__(self, bridge, vlan):
        self.bridge = bridge
        self.vlan = vlan
        self.subnets = []   # ipaddress.IPv4Network, from the NICs' and service addresses
        self.gateways = []  # the NICs' gateways: the client takes them, as the network's router

    def name(self):
        """The Linux bridge on every host: BRIDGE, or BRIDGE-vVLAN (docs/libvirt-adapter.md)."""
        return self.bridge if self.vlan == 0 else "%s-v%d" % (self.bridge, self.vlan)


class LabConfig:
    def __init__(self, files, admin):
        self.files = [os.path.abspath(f) for f in files]
        result = subprocess.run([admin, "-o", "json", "validate", "-f", *self.files], capture_output=True, text=True)
        if result.returncode != 0:
            raise LabError("the configuration does not validate:\n" + result.stderr.strip())
        self.documents = json.loads(result.stdout)
        clusters = [d for d in self.documents if d["kind"] == "Cluster"]
        if not clusters:
            raise LabError("the configuration has no Cluster document: the lab builds the hosts it names")
        self.cluster = clusters[0]["spec"]
        self.groups = [d for d in self.documents if d["kind"] == "ServiceGroup"]
        self._hosts()
        self._networks()

    # ---- hosts ----------------------------------------------------------------------------------
    def _hosts(self):
        nodes = self.cluster["nodes"]
        addresses = []
        for node in nodes:
            try:
                addresses.append(ipaddress.IPv4Address(node["address"]))
            except ValueError as e:
                raise LabError("node %s: the lab needs IPv4 addresses, not %s" % (node["name"], node["address"])) from e
        subnet = {ipaddress.IPv4Network("%s/24" % a, strict=False) for a in addresses}
        wanted = sorted(int(a) & 0xFF for a in addresses)
        if len(subnet) != 1 or wanted != list(range(1, len(nodes) + 1)):
            raise LabError("the lab gives host K the address A.B.C.K: the Cluster's nodes need the addresses "
                           "A.B.C.1 to A.B.C.%d of one /24, not %s" % (len(nodes), ", ".join(map(str, addresses))))
        self.subnet = str(next(iter(subnet)).network_address).rsplit(".", 1)[0]
        # Host index (1-based) by node name, and back.
        self.index = {n["name"]: int(ipaddress.IPv4Address(n["address"])) & 0xFF for n in nodes}
        self.names = {i: name for name, i in self.index.items()}
        self.token_ms = parse_duration_ms(self.cluster["membership"]["token"])
        self.crypto = self.cluster["membership"].get("crypto", True)

    def host_count(self):
        return len(self.index)

    # ---- VMs and networks -------------------------------------------------------------------------
    def vms(self):
        for group in self.groups:
            for unit in group["spec"]["units"]:
                for vm in unit["vms"]:
                    yield group, unit, vm

    def _networks(self):
        self.networks = {}
        used = set()
        for _, _, vm in self.vms():
            for nic in vm.get("nics", []):
                key = (nic["bridge"], nic.get("vlan", 0))
                net = self.networks.setdefault(key, Network(*key))
                if nic.get("ip"):
                    iface = ipaddress.IPv4Interface(nic["ip"])
                    used.add(iface.ip)
                    if iface.network not in net.subnets:
                        net.subnets.append(iface.network)
                if nic.get("gateway"):
                    gw = ipaddress.IPv4Address(nic["gateway"])
                    if gw not in net.gateways:
                        net.gateways.append(gw)
        # Service addresses: SI attributes that are IPv4 interfaces (e.g. ip: 10.0.0.100/24).
        self.services = {}
        for group in self.groups:
            for si in group["spec"].get("serviceInstances", []):
                for key, value in sorted(si.get("attributes", {}).items()):
                    try:
                        iface = ipaddress.IPv4Interface(value)
                    except ValueError:
                        continue
                    if "/" not in value:
                        continue
                    self.services.setdefault(si["name"], str(iface.ip))
                    used.add(iface.ip)
                    for net in self.networks.values():
                        if any(iface.ip in s for s in net.subnets):
                            break
                    else:
                        raise LabError("si %s: its address %s is on none of the VMs' networks" % (si["name"], value))
        self.used = used

    def client_addresses(self, network):
        """The client's addresses on a network: its gateways (the client is the network's router), else
        the highest free address of each subnet."""
        out = []
        for subnet in network.subnets:
            gateways = [g for g in network.gateways if g in subnet]
            if gateways:
                out.append("%s/%d" % (gateways[0], subnet.prefixlen))
                continue
            for host in reversed(list(subnet.hosts())):
                if host not in self.used:
                    out.append("%s/%d" % (host, subnet.prefixlen))
                    break
        return out

    def files_needed(self):
        """(path, kind) of what the VMs read or write: kernel, initrd (must exist), disks (created when
        missing), console files (their folder is created)."""
        for _, _, vm in self.vms():
            boot = vm.get("boot", {})
            for key in ("kernel", "initrd"):
                if boot.get(key):
                    yield boot[key], key, vm
            for disk in vm.get("disks", []):
                yield disk["source"], "disk-" + disk.get("format", "qcow2"), vm
            console = vm.get("console", {})
            if console.get("type") == "file":
                yield console["path"], "console", vm
