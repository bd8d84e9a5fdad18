"""A lab: the hosts of one Cluster document built on this machine, each with Corosync
(corosync-hosts.sh), a libvirt daemon (libvirt-host.sh --netns) and amfd; the service networks
and the client namespace; power off/on, fencing and the other faults. Its state is kept in
DIR/lab.json so that every amf-lab command (and the fence agent amfd runs) finds it.

Files under DIR: lab.json, config/ (the configuration the lab was brought up with), hostK/
(Corosync's and libvirt's state of host K), amfdK/ (amfd's state directory, admin.sock,
events.sock, amfd.log, amfd.pid), fence.log, power.log.
"""
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from .config import LabConfig
from .util import LabError, alive, fill, now_ms, read_pid, run, wait_for

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTS_SCRIPT = os.path.join(SCRIPTS, "corosync-hosts.sh")
LIBVIRT_SCRIPT = os.path.join(SCRIPTS, "libvirt-host.sh")
SOURCE = os.path.dirname(os.path.dirname(SCRIPTS))
GUEST_BUILDER = os.path.join(SOURCE, "guest", "image", "build-test-guest.sh")
LOSS_TABLE = "amf_lab_loss"
# The netfilter queue whose packets netdelay.py holds (packet-loss with a delay).
DELAY_QUEUE = 7
# The tmpfs under a new directory of VM disks (shared storage; io-error fills it).
DISK_STORE = "256m"
# The tmpfs under each amfd's state: room for the checkpoints (which keep 64 MiB spare), small
# enough to fill (state-disk-full).
STATE_DISK = "256m"
AGENT_DIR = "/run/libvirt/kvm-amf-agents"  # inside a host: DIR/hostK/run/kvm-amf-agents
DEFAULT_DIR = "/var/lib/kvm-amf-lab"


def prefix_namespaces(prefix):
    """The network namespaces a lab with `prefix` names: PREFIXhub, PREFIXsvc and PREFIX<host>."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names = [line.split()[0] for line in listing.splitlines() if line.strip()]
    return [n for n in names if n in (prefix + "hub", prefix + "svc") or
            (n.startswith(prefix) and n[len(prefix):].isdigit())]


def free_prefix(base):
    """`base`, or `base` with a letter appended, whose namespaces are free: a test's lab starts even
    when a run killed before its teardown has left its lab behind."""
    for candidate in [base] + [base[:5] + c for c in "abcdefghijklmnopqrstuvwxyz"]:
        if not prefix_namespaces(candidate):
            return candidate
    raise LabError("every prefix from %s to %sz is taken by a lab that is up" % (base, base[:5]))


class Tools:
    """Where the lab's programs are: amfd, amf-admin, amf-sim, the guest agent, amf-lab itself, and
    amf-hostile-peer (malformed admin frames, for the hostile-frames fault; optional)."""

    def __init__(self, amfd, admin, sim, agent, lab, hostile=None):
        self.amfd, self.admin, self.sim, self.agent, self.lab = amfd, admin, sim, agent, lab
        self.hostile = hostile

    @classmethod
    def of_build(cls, build):
        """The programs of a build tree (for benchmarks and scripts run without the launcher)."""
        build = os.path.abspath(build)
        return cls(amfd=os.path.join(build, "cmd", "amfd", "amfd"),
                   admin=os.path.join(build, "cmd", "amf-admin", "amf-admin"),
                   sim=os.path.join(build, "cmd", "amf-sim", "amf-sim"),
                   agent=os.path.join(build, "guest", "kvm-amf-agent"),
                   lab=os.path.join(build, "cmd", "amf-lab", "amf-lab"),
                   hostile=os.path.join(build, "tests", "admin", "amf-hostile-peer"))

    def as_dict(self):
        return dict(amfd=self.amfd, admin=self.admin, sim=self.sim, agent=self.agent, lab=self.lab,
                    hostile=self.hostile)


class Lab:
    def __init__(self, directory, tools, state=None):
        self.dir = os.path.abspath(directory)
        self.tools = tools
        self.state = state or {}

    # ---- the lab's record ---------------------------------------------------------------------------
    @classmethod
    def load(cls, directory, tools):
        path = os.path.join(os.path.abspath(directory), "lab.json")
        try:
            with open(path) as f:
                state = json.load(f)
        except FileNotFoundError:
            raise LabError("no lab in %s (amf-lab up first, or --dir)" % directory) from None
        return cls(directory, tools, state)

    def save(self):
        tmp = os.path.join(self.dir, "lab.json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.state, f, indent=2)
        os.replace(tmp, os.path.join(self.dir, "lab.json"))

    @property
    def prefix(self):
        return self.state["prefix"]

    def config(self):
        return LabConfig(self.state["config"], self.tools.admin)

    def hosts(self):
        return sorted(int(i) for i in self.state["nodes"])

    def node_name(self, i):
        return self.state["nodes"][str(i)]

    def host_of(self, node):
        for i, name in self.state["nodes"].items():
            if name == node:
                return int(i)
        raise LabError("no node %s in this lab (nodes: %s)" % (node, ", ".join(self.state["nodes"].values())))

    def netns(self, i):
        return "%s%d" % (self.prefix, i)

    def client_ns(self):
        return self.prefix + "svc"

    def amfd_dir(self, i):
        return os.path.join(self.dir, "amfd%d" % i)

    def endpoint(self, i):
        return "ipc://" + os.path.join(self.amfd_dir(i), "admin.sock")

    # ---- up and down --------------------------------------------------------------------------------
    def up(self, files, prefix="amf", image=None, cache=None, boot_s=20, log=print):
        """Builds the lab for the configuration in `files`, starts every amfd with its Cluster document,
        then applies the whole configuration once every amfd is in the group."""
        if os.path.exists(os.path.join(self.dir, "lab.json")):
            raise LabError("a lab is up in %s already (amf-lab down first, or another --dir)" % self.dir)
        if not prefix.isalnum() or not prefix[0].isalpha() or len(prefix) > 6:
            raise LabError("--prefix must be 1-6 letters and digits, starting with a letter")
        taken = prefix_namespaces(prefix)
        if taken:
            raise LabError("namespaces %s exist: another lab with prefix %s is up (amf-lab down --dir of that "
                           "lab, or another --prefix)" % (", ".join(taken), prefix))
        config = LabConfig(files, self.tools.admin)
        started = time.time()
        os.makedirs(os.path.join(self.dir, "config"), exist_ok=True)
        copies = []
        for k, f in enumerate(config.files):
            copy = os.path.join(self.dir, "config", "%02d-%s" % (k, os.path.basename(f)))
            shutil.copyfile(f, copy)
            copies.append(copy)
        self.state = {
            "prefix": prefix,
            "config": copies,
            "nodes": {str(i): name for i, name in config.names.items()},
            "bootSeconds": boot_s,
            "tools": self.tools.as_dict(),
            "services": config.services,
            "consoles": {vm["name"]: path for path, kind, vm in config.files_needed() if kind == "console"},
            "startedMs": now_ms(),
        }
        # A process that stays in the machine's own namespaces: the fence agent, which runs inside
        # another host's, starts the power-on there (nsenter), so that it outlives that host.
        keeper = subprocess.Popen(["sleep", "infinity"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        self.state["keeper"] = keeper.pid
        self.save()
        try:
            if image:
                self._guest_image(image, log)
            self._files(config, log)
            cluster_file = os.path.join(self.dir, "config", "cluster.json")
            with open(cluster_file, "w") as f:
                json.dump([d for d in config.documents if d["kind"] == "Cluster"][0], f, indent=2)
            args = [HOSTS_SCRIPT, "up", self.dir, prefix, str(config.host_count()), "--token", str(config.token_ms),
                    "--subnet", config.subnet, "--cluster", cluster_file]
            if not config.crypto:
                args.append("--no-crypto")
            log(run("bash", *args, timeout=120, env=dict(os.environ, AMF_ADMIN=self.tools.admin)).strip())
            self._networks(config)
            for i in self.hosts():
                args = [LIBVIRT_SCRIPT, "up", self.dir, "host%d" % i, "--netns", self.netns(i)]
                if cache:
                    args += ["--cache", cache]
                log(run(*args, timeout=180).strip().splitlines()[-1])
                os.makedirs(os.path.join(self.dir, "host%d" % i, "run", "kvm-amf-agents"), exist_ok=True)
            for i in self.hosts():
                state = os.path.join(self.amfd_dir(i), "state")
                os.makedirs(state, exist_ok=True)
                run("mount", "-t", "tmpfs", "-o", "size=" + STATE_DISK + ",mode=0700", "amf-lab-state", state)
            # The amfds start with the Cluster document alone; once every one of them is in the group,
            # the service groups are applied, so that the first placement sees every host (a unit
            # placed while a host's amfd is still joining would crowd the others).
            for i in self.hosts():
                self.start_amfd(i)
            everyone = lambda: (lambda doc: doc and doc.get("director") and all(  # noqa: E731
                n["amfd"] for n in doc["nodes"]) and doc)(self.status())
            wait_for("every amfd in the group", everyone, timeout=60)
            result = self.admin(self.hosts()[0], "apply", *[a for f in copies for a in ("-f", f)], output="table",
                                timeout=60)
            if result.returncode != 0:
                raise LabError("amf-admin apply of the configuration failed (exit %d): %s" % (
                    result.returncode, (result.stderr or result.stdout).strip()))
            log(result.stdout.strip())
        except BaseException:
            log("up failed; taking the lab down (logs are kept in %s)" % self.dir)
            self.down(keep_files=True)
            raise
        log("up: %d hosts in %s, every amfd synchronised after %.1f s" % (
            config.host_count(), self.dir, time.time() - started))

    def _guest_image(self, image, log):
        out = run(GUEST_BUILDER, image, "--agent", self.tools.agent, timeout=600)
        log(out.strip().splitlines()[0] if out.strip() else "guest image ready in " + image)

    def _files(self, config, log):
        for path, kind, vm in config.files_needed():
            if kind in ("kernel", "initrd"):
                if not os.path.exists(path):
                    raise LabError("vm %s: its %s %s does not exist (amf-lab up --image DIR builds the test guest "
                                   "into DIR)" % (vm["name"], kind, path))
            elif kind == "console":
                os.makedirs(os.path.dirname(path), exist_ok=True)
            elif not path.startswith("/dev/") and not os.path.exists(path):
                # Shared storage: the machine's file system is seen by every host at the same path.
                # A new (or empty) directory of disks gets a tmpfs of its own, mounted before the
                # hosts' mount namespaces copy the machine's: what fills it (io-error) fills only it.
                directory = os.path.dirname(path)
                os.makedirs(directory, exist_ok=True)
                if not os.path.ismount(directory) and not os.listdir(directory):
                    run("mount", "-t", "tmpfs", "-o", "size=" + DISK_STORE, "amf-lab-disks", directory)
                    self.state.setdefault("diskMounts", []).append(directory)
                    self.save()
                fmt = kind[len("disk-"):]
                run("qemu-img", "create", "-q", "-f", fmt, path, "64M")
                log("created an empty %s disk %s for vm %s" % (fmt, path, vm["name"]))

    def _networks(self, config):
        """Per host a bridge for each network the VMs use (BRIDGE, or BRIDGE-vVLAN for a VLAN, as
        docs/libvirt-adapter.md names them), each with its own uplink to the same bridge in the client
        namespace, which holds the client's addresses. A real host's per-VLAN bridge has a VLAN device
        of its trunk as uplink; this machine's kernel has no 802.1Q devices (nor VLAN filtering on
        bridges), so each VLAN gets a link of its own: the same separation, without the tags."""
        client = self.client_ns()
        run("ip", "netns", "add", client)
        run("ip", "-n", client, "link", "set", "lo", "up")

        def bridge(ns, name):
            run("ip", "-n", ns, "link", "add", name, "type", "bridge", "forward_delay", "0")
            run("ip", "-n", ns, "link", "set", name, "up")

        for k, (_, net) in enumerate(sorted(config.networks.items())):
            bridge(client, net.name())
            for address in config.client_addresses(net):
                run("ip", "-n", client, "addr", "add", address, "dev", net.name())
            for i in self.hosts():
                ns, uplink, peer = self.netns(i), "n%d" % k, "n%dh%d" % (k, i)
                bridge(ns, net.name())
                run("ip", "link", "add", uplink, "netns", ns, "type", "veth", "peer", "name", peer, "netns", client)
                run("ip", "-n", ns, "link", "set", uplink, "master", net.name(), "up")
                run("ip", "-n", client, "link", "set", peer, "master", net.name(), "up")

    def down(self, keep_files=False):
        """Stops everything of the lab and deletes its namespaces; with keep_files, its files stay."""
        if not self.state:
            try:
                with open(os.path.join(self.dir, "lab.json")) as f:
                    self.state = json.load(f)
            except (OSError, ValueError):
                return
        for pid in [read_pid(f) for f in self._power_pidfiles()] + [self.state.get("keeper")]:
            if pid and alive(pid):
                os.kill(pid, signal.SIGKILL)
        # A lab keeps nothing worth a graceful stop: every host is powered off at once, then the
        # scripts delete what is left (namespaces, mounts, pid files).
        for i in self.hosts():
            try:
                self.power_off(i)
            except LabError as e:
                print("amf-lab: down: %s" % e, file=sys.stderr)
        for i in self.hosts():
            subprocess.run([LIBVIRT_SCRIPT, "down", self.dir, "host%d" % i], stdout=subprocess.DEVNULL)
        subprocess.run(["bash", HOSTS_SCRIPT, "down", self.dir, self.prefix], stdout=subprocess.DEVNULL)
        for i in self.hosts():
            state = os.path.join(self.amfd_dir(i), "state")
            if os.path.ismount(state):
                subprocess.run(["umount", "-l", state])
        for directory in self.state.get("diskMounts", []):
            if os.path.ismount(directory):
                subprocess.run(["umount", "-l", directory])
        for pid in self._netns_pids(self.client_ns()):
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", self.client_ns()], stderr=subprocess.DEVNULL)
        if keep_files:
            os.replace(os.path.join(self.dir, "lab.json"), os.path.join(self.dir, "lab.json.down"))
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.state = {}

    def _power_pidfiles(self):
        return [os.path.join(self.dir, f) for f in os.listdir(self.dir) if f.startswith("power-on.")] \
            if os.path.isdir(self.dir) else []

    # ---- processes of a host -----------------------------------------------------------------------
    @staticmethod
    def _netns_pids(ns):
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def amfd_pid(self, i):
        pid = read_pid(os.path.join(self.amfd_dir(i), "amfd.pid"))
        return pid if pid and alive(pid) else None

    def corosync_pid(self, i):
        pid = read_pid(os.path.join(self.dir, "host%d" % i, "corosync.pid"))
        return pid if pid and alive(pid) else None

    def libvirtd_pid(self, i):
        pid = read_pid(os.path.join(self.dir, "host%d" % i, "libvirtd.pid"))
        return pid if pid and alive(pid) else None

    def qemus(self, i):
        """{vm: pid} of the QEMUs running on host i (from libvirt's pid files)."""
        out = {}
        d = os.path.join(self.dir, "host%d" % i, "run", "qemu")
        for f in os.listdir(d) if os.path.isdir(d) else []:
            if f.endswith(".pid") and f != "driver.pid":  # driver.pid: libvirtd's own lock
                pid = read_pid(os.path.join(d, f))
                if pid and alive(pid):
                    out[f[:-4]] = pid
        return out

    def vm_host(self, vm):
        """The hosts whose QEMU runs `vm` (more than one would be a split brain)."""
        return [i for i in self.hosts() if vm in self.qemus(i)]

    def start_amfd(self, i):
        if self.amfd_pid(i):
            return
        d = self.amfd_dir(i)
        os.makedirs(d, exist_ok=True)
        env = dict(os.environ, AMF_LAB_DIR=self.dir,
                   PATH=os.path.dirname(self.tools.lab) + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"))
        args = [LIBVIRT_SCRIPT, "exec", self.dir, "host%d" % i, self.tools.amfd, "--node", self.node_name(i)]
        args += ["--config", os.path.join(self.dir, "config", "cluster.json")]
        args += ["--state-dir", os.path.join(d, "state"), "--admin-socket", os.path.join(d, "admin.sock"),
                 "--events-socket", os.path.join(d, "events.sock"), "--agent-dir", AGENT_DIR]
        with open(os.path.join(d, "amfd.log"), "a") as logfile:
            # Every step of the exec chain execs: the child's pid is amfd's.
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile, env=env,
                                    start_new_session=True)
        with open(os.path.join(d, "amfd.pid"), "w") as f:
            f.write("%d\n" % proc.pid)

    def kill_amfd(self, i, sig=signal.SIGKILL):
        pid = self.amfd_pid(i)
        if not pid:
            return False
        os.kill(pid, sig)
        try:
            wait_for("amfd on host %d to exit" % i, lambda: not alive(pid), timeout=15, poll=0.02)
        except LabError:
            os.kill(pid, signal.SIGKILL)
        return True

    def _power_switch(self, i):
        """The host's power switch: one power-off or power-on of a host at a time (a scenario's
        node-start or a test's power-on can meet the fence agent's power-off and power-on). An open file
        whose exclusive lock is held until it is closed."""
        os.makedirs(os.path.join(self.dir, "host%d" % i), exist_ok=True)
        lock = open(os.path.join(self.dir, "host%d" % i, "power.lock"), "w")
        fcntl.flock(lock, fcntl.LOCK_EX)
        return lock

    def power_off(self, i):
        """Host i crashes: every process of the host dies at once (SIGKILL), as when its power fails.
        A power-on in progress finishes first."""
        ns = self.netns(i)
        with self._power_switch(i):
            deadline = time.time() + 10
            while True:
                pids = self._netns_pids(ns) + [p for p in (self.amfd_pid(i), self.corosync_pid(i)) if p]
                pids = [p for p in pids if alive(p)]
                if not pids:
                    return
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                if time.time() > deadline:
                    raise LabError("host %d: processes %s survive SIGKILL" % (i, pids))
                time.sleep(0.01)

    def power_on(self, i):
        """Host i boots: its Corosync, libvirt daemon and amfd start (those not running)."""
        with self._power_switch(i):
            if not self.corosync_pid(i):
                run("bash", HOSTS_SCRIPT, "start", self.dir, self.prefix, str(i))
            if not self.libvirtd_pid(i):
                run(LIBVIRT_SCRIPT, "restart", self.dir, "host%d" % i, timeout=120)
            self.start_amfd(i)

    def fence(self, node):
        """The lab's fence agent: powers the host off now and on again after the lab's boot time, as a
        power switch's reboot does. The power-on runs detached, in the keeper's namespaces (the
        machine's own): the fence agent runs in the fencing host's."""
        i = self.host_of(node)
        self.power_off(i)
        with open(os.path.join(self.dir, "fence.log"), "a") as f:
            f.write("%d fenced %s (host %d): powered off\n" % (now_ms(), node, i))
        pidfile = os.path.join(self.dir, "power-on.%d" % i)
        old = read_pid(pidfile)
        if old and alive(old):
            return
        keeper = self.state.get("keeper")
        enter = ["nsenter", "-t", str(keeper), "-m", "-n", "--"] if keeper and alive(keeper) else []
        with open(os.path.join(self.dir, "power.log"), "a") as logfile:
            proc = subprocess.Popen(enter + [sys.executable, self.tools.lab, "--dir", self.dir, "power-on", "--after",
                                             str(self.state["bootSeconds"]), node],
                                    stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile, start_new_session=True)
        with open(pidfile, "w") as f:
            f.write("%d\n" % proc.pid)

    # ---- faults ---------------------------------------------------------------------------------------
    def kill_qemu(self, vm, sig=signal.SIGKILL):
        hosts = self.vm_host(vm)
        if not hosts:
            raise LabError("vm %s runs on no host" % vm)
        for i in hosts:
            os.kill(self.qemus(i)[vm], sig)
        return hosts

    def crash_loop(self, vm, count, window_s=300):
        """The VM's QEMU is killed now and each time it starts again, count times in all (within
        window_s seconds), by a thread; returns it."""
        def loop():
            killed, seen = 0, {}
            deadline = time.time() + window_s
            while killed < count and time.time() < deadline:
                for i in self.hosts():
                    pid = self.qemus(i).get(vm)
                    if pid and seen.get(vm) != pid:
                        seen[vm] = pid
                        try:
                            os.kill(pid, signal.SIGKILL)
                            killed += 1
                        except ProcessLookupError:
                            pass
                time.sleep(0.02)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread

    def signal_amfd(self, i, sig):
        pid = self.amfd_pid(i)
        if not pid and sig != signal.SIGCONT:
            raise LabError("amfd on %s is not running" % self.node_name(i))
        if pid:
            os.kill(pid, sig)

    def restart_libvirtd(self, i):
        run(LIBVIRT_SCRIPT, "restart", self.dir, "host%d" % i, timeout=120)

    def kill_corosync(self, i):
        run("bash", HOSTS_SCRIPT, "kill", self.dir, self.prefix, str(i))

    def start_corosync(self, i):
        if not self.corosync_pid(i):
            run("bash", HOSTS_SCRIPT, "start", self.dir, self.prefix, str(i))

    def link(self, i, up):
        run("bash", HOSTS_SCRIPT, "heal" if up else "cut", self.dir, self.prefix, str(i))

    def link_flap(self, i, count, period_s):
        """The host's cluster link goes down for half the period and up for the other half, count times,
        by a thread; returns it."""
        def flap():
            for _ in range(count):
                self.link(i, False)
                time.sleep(period_s / 2)
                self.link(i, True)
                time.sleep(period_s / 2)

        thread = threading.Thread(target=flap, daemon=True)
        thread.start()
        return thread

    def packet_loss(self, i, percent, delay_ms=0):
        """Drops percent% of the host's Corosync packets, each way, at random (nftables), and delays
        the others by delay_ms each way (an NFQUEUE rule of iptables-legacy and netdelay.py in the
        host's namespace: this kernel has neither netem nor nftables' queue); 0 and 0 end both.
        Returns what the delayer it stopped, if any, says it held."""
        ns = self.netns(i)
        subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", LOSS_TABLE],
                       stderr=subprocess.DEVNULL)
        held = self._delay(i, 0)
        if percent > 0:
            rule = "udp dport 5405 numgen random mod 100 < %d drop" % percent
            script = ("table inet %s {\n chain input { type filter hook input priority 0; policy accept; %s; }\n"
                      " chain output { type filter hook output priority 0; policy accept; %s; }\n}\n" % (
                          LOSS_TABLE, rule, rule))
            result = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True,
                                    capture_output=True)
            if result.returncode != 0:
                raise LabError("nft in %s: %s" % (ns, result.stderr.strip()))
        if delay_ms > 0:
            self._delay(i, delay_ms)
        return held

    def _delay(self, i, delay_ms):
        """Stops the host's delayer (returning the last line of its log) and starts one for delay_ms."""
        ns = self.netns(i)
        delayers = self.state.setdefault("delayers", {})
        pid = delayers.pop(str(i), None)
        path = os.path.join(self.dir, "host%d" % i, "netdelay.log")
        said = None
        if pid and alive(pid):
            os.kill(pid, signal.SIGTERM)
            wait_for("host%d's delayer gone" % i, lambda: not alive(pid), timeout=5, poll=0.02)
            with open(path, errors="replace") as f:
                lines = f.read().strip().splitlines()
            said = lines[-1] if lines else None
        for chain in ("INPUT", "OUTPUT"):
            rule = [chain, "-p", "udp", "--dport", "5405", "-j", "NFQUEUE", "--queue-num", str(DELAY_QUEUE),
                    "--queue-bypass"]
            while subprocess.run(["ip", "netns", "exec", ns, "iptables-legacy", "-D"] + rule,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
                pass
            if delay_ms > 0:
                run("ip", "netns", "exec", ns, "iptables-legacy", "-A", *rule)
        if delay_ms > 0:
            log = open(path, "a")
            proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "amf_lab.netdelay",
                                     str(DELAY_QUEUE), str(delay_ms)], cwd=SCRIPTS, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, start_new_session=True)
            log.close()
            delayers[str(i)] = proc.pid
        self.save()
        return said

    def state_disk(self, i, full):
        """Fills the file system under the host's amfd state (a tmpfs of its own) with one file, or
        removes that file."""
        filler = os.path.join(self.amfd_dir(i), "state", ".filler")
        if not full:
            if os.path.exists(filler):
                os.remove(filler)
            return
        fill(filler)

    def io_error(self, vm, wait_s=15.0, failed=lambda: False):
        """A failing disk under `vm`: fills the file system under its disks (a tmpfs the lab mounted
        for them) so that its writes fail (ENOSPC: QEMU stops the VM and reports the I/O error), until
        failed() is true or wait_s passes; then frees it. Returns how long it was full, in ms."""
        disks = [path for path, kind, owner in self.config().files_needed()
                 if kind.startswith("disk-") and owner["name"] == vm and not path.startswith("/dev/")]
        if not disks:
            raise LabError("vm %s has no disk file to fail" % vm)
        directory = os.path.dirname(disks[0])
        if directory not in self.state.get("diskMounts", []):
            raise LabError("vm %s's disks are not on a file system the lab mounted for them (a new or empty "
                           "directory of disks gets one at up): %s" % (vm, directory))
        filler = os.path.join(directory, ".filler")
        started = now_ms()
        try:
            fill(filler)
            deadline = time.time() + wait_s
            while not failed() and time.time() < deadline:
                time.sleep(0.05)
        finally:
            if os.path.exists(filler):
                os.remove(filler)
        return now_ms() - started

    def hostile_frames(self, i):
        if not self.tools.hostile:
            raise LabError("no amf-hostile-peer in this lab's tools")
        return run(self.tools.hostile, self.endpoint(i), check=False)

    def partition(self, sides):
        """Cuts Corosync's traffic between two sides (lists of node names); the service networks stay."""
        if len(sides) != 2:
            raise LabError("the lab partitions into two sides, not %d" % len(sides))
        inside = [str(self.host_of(n)) for n in sides[0]]
        run("bash", HOSTS_SCRIPT, "partition", self.dir, self.prefix, *inside)

    def heal(self):
        run("bash", HOSTS_SCRIPT, "unpartition", self.dir, self.prefix)

    # ---- amf-admin -------------------------------------------------------------------------------------
    def admin(self, i, *words, output="json", timeout=10):
        return subprocess.run([self.tools.admin, "--endpoint", self.endpoint(i), "-o", output, "--timeout",
                               "%ds" % timeout, *words], capture_output=True, text=True, timeout=timeout + 5)

    def status(self, i=None):
        """amfd's status document from host i; else from the first host whose amfd answers and has a
        director (an amfd without one shows its last known, maybe stale, state), else from the first
        that answers at all; None if none does."""
        fallback = None
        for k in ([i] if i else self.hosts()):
            if not os.path.exists(os.path.join(self.amfd_dir(k), "admin.sock")):
                continue
            try:
                result = self.admin(k, "status", timeout=3)
            except subprocess.TimeoutExpired:
                continue
            if result.returncode == 0:
                document = json.loads(result.stdout)
                if i or document.get("director"):
                    return document
                fallback = fallback or document
        return fallback
