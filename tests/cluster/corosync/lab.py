"""A Corosync lab for tests and benchmarks: N hosts in network namespaces (scripts/lab/
corosync-hosts.sh), each running amf-testnode (a node manager on the real group, simulated VMs).

Every host I has DIR/nodeI/ with the node's journal (JSON lines), status (JSON) and control FIFO,
and DIR/vms-nodeI/ with its VMs (a file each).
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
HOSTS_SCRIPT = os.path.join(REPO, "scripts", "lab", "corosync-hosts.sh")

SERVICE_GROUPS = """\
apiVersion: kvm-amf/v1
kind: ServiceGroup
metadata:
  name: pair
spec:
  redundancy: {model: 2N}
  nodeGroup: all
  recovery: {vmRestartMax: 0, defaultAction: failover}
  units:
    - name: pair-a
      vms: [{name: pair-a-vm, vcpus: 1, memory: 128Mi, boot: {kernel: /k}}]
    - name: pair-b
      vms: [{name: pair-b-vm, vcpus: 1, memory: 128Mi, boot: {kernel: /k}}]
  serviceInstances:
    - name: pair-si
---
apiVersion: kvm-amf/v1
kind: ServiceGroup
metadata:
  name: solo
spec:
  redundancy: {model: No-Redundancy}
  nodeGroup: all
  units:
    - name: solo-1
      nodes: [node3, node2, node1]
      vms: [{name: solo-vm, vcpus: 1, memory: 128Mi, boot: {kernel: /k}}]
  serviceInstances:
    - name: solo-si
"""


def now_ms():
    return int(time.time() * 1000)


class Timeout(AssertionError):
    pass


class Lab:
    def __init__(self, hosts=3, token=300, fencing="mode: self", testnode=None, admin=None, prefix=None, grace=10000):
        self.n = hosts
        self.dir = tempfile.mkdtemp(prefix="amf-corosync-")
        self.prefix = prefix or "ac%d" % (os.getpid() % 10000)
        self.testnode = testnode or os.environ["AMF_TESTNODE"]
        self.env = dict(os.environ)
        if admin:
            self.env["AMF_ADMIN"] = admin
        self.procs = {}
        self.token = token
        self.fencing = fencing
        self._hosts("down")
        try:
            self._hosts("up", str(hosts), "--token", str(token))
        except Exception:
            self._hosts("down", check=False)
            raise
        with open(os.path.join(self.dir, "cluster.yaml")) as f:
            cluster = f.read()
        # The nodes' configuration: the lab's hosts, with capacity, a node group and this test's fencing.
        nodes = [line.rstrip() for line in cluster.splitlines() if line.startswith("    - {name: node")]
        fencing = fencing.replace("@LABDIR@", self.dir)
        self.config = os.path.join(self.dir, "amf-cluster.yaml")
        with open(self.config, "w") as f:
            f.write("apiVersion: kvm-amf/v1\nkind: Cluster\nmetadata: {name: lab}\nspec:\n  nodes:\n")
            for line in nodes:
                f.write(line[:-1] + ", capacity: {vcpus: 8, memory: 8Gi}}\n")
            f.write("  nodeGroups:\n    - {name: all, nodes: [%s]}\n" % ", ".join("node%d" % i for i in range(1, hosts + 1)))
            f.write("  membership: {token: %dms, amfdRestartGrace: %dms}\n" % (token, grace))
            f.write("  fencing:\n" + "".join("    " + line + "\n" for line in fencing.splitlines()))
        self.groups = os.path.join(self.dir, "sgs.yaml")
        with open(self.groups, "w") as f:
            f.write(SERVICE_GROUPS)
        for i in range(1, hosts + 1):
            os.makedirs(self.node_dir(i), exist_ok=True)

    # ---- the hosts --------------------------------------------------------------------------
    def _hosts(self, verb, *args, check=True):
        result = subprocess.run(["bash", HOSTS_SCRIPT, verb, self.dir, self.prefix, *args], env=self.env,
                                capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError("corosync-hosts.sh %s failed: %s%s" % (verb, result.stdout, result.stderr))
        return result.stdout

    def kill_corosync(self, i):
        self._hosts("kill", str(i))

    def start_corosync(self, i):
        self._hosts("start", str(i))

    def cut(self, i):
        self._hosts("cut", str(i))

    def heal(self, i):
        self._hosts("heal", str(i))

    def partition(self, *hosts):
        self._hosts("partition", *[str(i) for i in hosts])

    def unpartition(self):
        self._hosts("unpartition")

    def down(self):
        for i in list(self.procs):
            self.kill_node(i)
        self._hosts("down", check=False)

    def sanitizer_reports(self):
        """Reports AddressSanitizer or UndefinedBehaviorSanitizer wrote to a node's stderr."""
        found = []
        for i in range(1, self.n + 1):
            path = os.path.join(self.node_dir(i), "stderr")
            if os.path.exists(path):
                text = open(path, errors="replace").read()
                if "Sanitizer" in text or "runtime error:" in text:
                    found.append("node%d: %s" % (i, text[-4000:]))
        return found

    def cleanup(self):
        self.down()
        reports = self.sanitizer_reports()
        if reports:
            os.environ["AMF_KEEP_LAB"] = "1"
            print("lab kept in", self.dir)
            raise AssertionError("sanitizer reports:\n" + "\n".join(reports))
        if os.environ.get("AMF_KEEP_LAB"):
            print("lab kept in", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- the node managers ------------------------------------------------------------------
    def node_dir(self, i):
        return os.path.join(self.dir, "node%d" % i)

    def vm_dir(self, i):
        """Host i's VMs: one file each (amf-testnode --vm-dir); they outlive its node manager."""
        return os.path.join(self.dir, "vms-node%d" % i)

    def vms(self, i):
        try:
            return sorted(os.listdir(self.vm_dir(i)))
        except OSError:
            return []

    def start_node(self, i, vm_start=300):
        assert i not in self.procs or self.procs[i].poll() is not None, "node %d already running" % i
        status = os.path.join(self.node_dir(i), "status")
        if os.path.exists(status):
            os.unlink(status)  # the last run's; the new node writes its own
        log = open(os.path.join(self.node_dir(i), "stderr"), "a")
        self.procs[i] = subprocess.Popen(
            ["bash", HOSTS_SCRIPT, "exec", self.dir, self.prefix, str(i), self.testnode, "--name", "node%d" % i,
             "--config", self.config, "--config", self.groups, "--dir", self.node_dir(i), "--vm-start", str(vm_start),
             "--vm-dir", self.vm_dir(i)],
            stdout=log, stderr=log, env=self.env, start_new_session=True)

    def stop_node(self, i):
        """Clean stop (SIGTERM): the node manager leaves the group."""
        proc = self.procs.pop(i, None)
        if proc and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)

    def kill_node(self, i):
        """kill -9 of the node manager."""
        proc = self.procs.pop(i, None)
        if proc and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def control(self, i, line):
        fd = os.open(os.path.join(self.node_dir(i), "control"), os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def admin(self, i, words):
        self.control(i, "admin " + words)

    def status(self, i):
        try:
            with open(os.path.join(self.node_dir(i), "status")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def journal(self, i, ev=None):
        path = os.path.join(self.node_dir(i), "journal")
        if not os.path.exists(path):
            return []
        out = []
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut by kill -9
                if ev is None or entry.get("ev") == ev:
                    out.append(entry)
        return out

    # ---- waiting ------------------------------------------------------------------------------
    def wait(self, what, predicate, timeout=20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise Timeout("timed out after %.0f s waiting for %s; statuses: %s" %
                      (timeout, what, json.dumps({i: self.status(i) for i in range(1, self.n + 1)})))

    def wait_synced(self, hosts, members=None, timeout=30.0):
        members = sorted(members if members is not None else hosts)

        def ok():
            for i in hosts:
                s = self.status(i)
                if not s.get("synced") or sorted(s.get("members", [])) != members:
                    return False
            return True
        self.wait("hosts %s synced with members %s" % (hosts, members), ok, timeout)

    def wait_settled(self, hosts, timeout=30.0):
        """Synced, a director, every SI assigned with one active, and every host agreeing."""
        def ok():
            states = [self.status(i) for i in hosts]
            if not all(s.get("synced") and s.get("director") for s in states):
                return False
            first = states[0]
            for s in states[1:]:
                if (s.get("decisions"), s.get("sus"), s.get("sis")) != (first.get("decisions"), first.get("sus"), first.get("sis")):
                    return False
            sis = first.get("sis", {})
            return sis and all(list(v.values()).count("active") == 1 for v in sis.values())
        self.wait("hosts %s settled" % (hosts,), ok, timeout)
        return self.status(hosts[0])
