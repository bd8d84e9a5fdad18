"""A real kvm-amf cluster on this machine: N hosts, each a network namespace with Corosync
(scripts/lab/corosync-hosts.sh), a libvirt daemon (scripts/lab/libvirt-host.sh --netns) and
amfd, plus a service network: a bridge br0 in every host, joined through a hub namespace
PREFIX-svc whose bridge also carries the client's address 10.231.0.250/24.

Files: DIR (the corosync hosts' files, cluster.yaml), DIR/hostI (libvirtd's), DIR/amfdI/
(amfd's state, admin.sock, events.sock, amfd.err), DIR/sgs.yaml, DIR/VM.console.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "vmm-adapter", "libvirt"))
from vm_lab import BOOT_TWEAKS, check, sh, tsc_khz, Timeout  # noqa: E402,F401

HOSTS_SCRIPT = os.path.join(REPO, "scripts", "lab", "corosync-hosts.sh")
LIBVIRT_SCRIPT = os.path.join(REPO, "scripts", "lab", "libvirt-host.sh")
AGENT_DIR = "/run/libvirt/kvm-amf-agents"
CLIENT_IP = "10.231.0.250"


def now_ms():
    return int(time.time() * 1000)


class ClusterLab:
    def __init__(self, hosts=3, token=300, prefix="al", amfd=None, admin=None, image=None, cache=None):
        self.n = hosts
        self.token = token
        self.prefix = prefix
        self.amfd = amfd or os.environ["AMF_AMFD"]
        self.admin = admin or os.environ["AMF_ADMIN"]
        self.image = image or os.environ["AMF_GUEST_IMAGE"]
        self.cache = cache or os.environ.get("AMF_LIBVIRT_CACHE", "")
        self.dir = tempfile.mkdtemp(prefix="amf-cluster-")
        self.procs = {}
        self.env = dict(os.environ, AMF_ADMIN=self.admin)

    # ---- set-up -------------------------------------------------------------------------------
    def netns(self, i):
        return "%s%d" % (self.prefix, i)

    def hub(self):
        return "%s-svc" % self.prefix

    def up(self, service_groups):
        self._hosts("down", check_rc=False)
        subprocess.run(["ip", "netns", "delete", self.hub()], stderr=subprocess.DEVNULL)
        self._hosts("up", str(self.n), "--token", str(self.token))
        hub = self.hub()
        sh("ip", "netns", "add", hub)
        sh("ip", "-n", hub, "link", "set", "lo", "up")
        sh("ip", "-n", hub, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
        sh("ip", "-n", hub, "addr", "add", CLIENT_IP + "/24", "dev", "br0")
        sh("ip", "-n", hub, "link", "set", "br0", "up")
        for i in range(1, self.n + 1):
            ns = self.netns(i)
            sh("ip", "-n", ns, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
            sh("ip", "-n", ns, "link", "set", "br0", "up")
            sh("ip", "link", "add", "svc%d" % i, "netns", ns, "type", "veth", "peer", "name", "h%d" % i, "netns", hub)
            sh("ip", "-n", ns, "link", "set", "svc%d" % i, "master", "br0", "up")
            sh("ip", "-n", hub, "link", "set", "h%d" % i, "master", "br0", "up")
            args = [LIBVIRT_SCRIPT, "up", self.dir, "host%d" % i, "--netns", ns]
            if self.cache:
                args += ["--cache", self.cache]
            sh(*args)
            os.makedirs(os.path.join(self.dir, "host%d" % i, "run", "kvm-amf-agents"), exist_ok=True)
            os.makedirs(self.amfd_dir(i), exist_ok=True)
        with open(os.path.join(self.dir, "cluster.yaml")) as f:
            cluster = f.read()
        nodes = [line.rstrip() for line in cluster.splitlines() if line.startswith("    - {name: node")]
        self.config = os.path.join(self.dir, "amf-cluster.yaml")
        with open(self.config, "w") as f:
            f.write("apiVersion: kvm-amf/v1\nkind: Cluster\nmetadata: {name: lab}\nspec:\n  nodes:\n")
            for line in nodes:
                f.write(line[:-1] + ", capacity: {vcpus: 8, memory: 8Gi}}\n")
            f.write("  nodeGroups:\n    - {name: all, nodes: [%s]}\n" % ", ".join(
                "node%d" % i for i in range(1, self.n + 1)))
            f.write("  membership: {token: %dms}\n" % self.token)
            f.write("  fencing: {mode: self}\n")
        self.groups = os.path.join(self.dir, "sgs.yaml")
        with open(self.groups, "w") as f:
            f.write(service_groups)
        return self

    def _hosts(self, verb, *args, check_rc=True):
        return sh("bash", HOSTS_SCRIPT, verb, self.dir, self.prefix, *args, check_rc=check_rc)

    def down(self, keep=False):
        for i in list(self.procs):
            self.stop_amfd(i)
        for i in range(1, self.n + 1):
            subprocess.run([LIBVIRT_SCRIPT, "down", self.dir, "host%d" % i], stdout=subprocess.DEVNULL)
        self._hosts("down", check_rc=False)
        subprocess.run(["ip", "netns", "delete", self.hub()], stderr=subprocess.DEVNULL)
        if keep:
            print("lab directory kept: " + self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- VMs in the service groups ---------------------------------------------------------------
    def vm_yaml(self, name, index, cmdline=""):
        tweaks = BOOT_TWEAKS + (" tsc_early_khz=%d" % tsc_khz() if tsc_khz() else "")
        return """        - name: %s
          vcpus: 1
          memory: 256Mi
          boot:
            kernel: %s/vmlinux
            initrd: %s/initrd.cpio.gz
            cmdline: "%s kvmamf.ip=10.231.0.%d/24 %s"
          nics:
            - {mac: "52:54:00:e7:01:%02x", bridge: br0}
          console: {type: file, path: %s}
""" % (name, self.image, self.image, tweaks, 10 + index, cmdline, index, self.console(name))

    def console(self, vm):
        return os.path.join(self.dir, vm + ".console")

    # ---- amfd ----------------------------------------------------------------------------------------
    def amfd_dir(self, i):
        return os.path.join(self.dir, "amfd%d" % i)

    def endpoint(self, i):
        return "ipc://" + os.path.join(self.amfd_dir(i), "admin.sock")

    def start_amfd(self, i):
        d = self.amfd_dir(i)
        err = open(os.path.join(d, "amfd.err"), "a")
        self.procs[i] = subprocess.Popen(
            [LIBVIRT_SCRIPT, "exec", self.dir, "host%d" % i, self.amfd, "--node", "node%d" % i, "--config",
             self.config, "--config", self.groups, "--state-dir", os.path.join(d, "state"), "--admin-socket",
             os.path.join(d, "admin.sock"), "--events-socket", os.path.join(d, "events.sock"), "--agent-dir",
             AGENT_DIR], stdin=subprocess.DEVNULL, stdout=err, stderr=err)

    def stop_amfd(self, i, sig="TERM"):
        proc = self.procs.pop(i, None)
        if proc is None:
            return
        # The exec chain ends in amfd itself (every step execs), so the pid is amfd's.
        subprocess.run(["kill", "-" + sig, str(proc.pid)])
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def admin_cmd(self, i, *words, output="json", check_rc=False):
        result = subprocess.run([self.admin, "--endpoint", self.endpoint(i), "-o", output, *words],
                                capture_output=True, text=True, timeout=60)
        if check_rc and result.returncode != 0:
            raise AssertionError("amf-admin %s on host %d: exit %d: %s%s" % (
                " ".join(words), i, result.returncode, result.stdout, result.stderr))
        return result

    def status(self, i):
        result = self.admin_cmd(i, "status")
        if result.returncode != 0:
            return None
        return json.loads(result.stdout)

    def active_of(self, status, si):
        """The SU holding `si` active (acknowledged), or None."""
        for entry in status["sis"]:
            if entry["name"] == si:
                actives = [a["su"] for a in entry["assignments"] if a["ha"] == "active" and a["acked"]]
                check(len(actives) <= 1, "two actives for %s: %s" % (si, actives))
                return actives[0] if actives else None
        return None

    def wait(self, what, predicate, timeout=60.0, poll=0.1):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(poll)
        raise Timeout("timed out after %.0f s waiting for %s" % (timeout, what))

    def qemu_pid(self, i, vm):
        try:
            with open(os.path.join(self.dir, "host%d" % i, "run", "qemu", vm + ".pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def kill_qemu(self, i, vm):
        sh(LIBVIRT_SCRIPT, "kill-qemu", self.dir, "host%d" % i, vm)

    def ping_from_client(self, ip, count=1, wait_s=1):
        result = subprocess.run(["ip", "netns", "exec", self.hub(), "ping", "-c", str(count), "-W", str(wait_s), ip],
                                capture_output=True, text=True)
        return result.returncode == 0

    def logs(self):
        out = []
        for i in range(1, self.n + 1):
            path = os.path.join(self.amfd_dir(i), "amfd.err")
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    out.append("--- amfd node%d (tail)\n%s" % (i, "".join(f.readlines()[-25:])))
        return "\n".join(out)
