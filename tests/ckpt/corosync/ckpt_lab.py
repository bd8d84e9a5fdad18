"""The checkpoint service on real Corosync: lab hosts (scripts/lab/corosync-hosts.sh, as
tests/cluster/corosync/lab.py builds them) each running amf-ckptnode (tests/tools/amf_ckptnode.cc),
which journals what it sees in its directory and takes commands from a FIFO there."""
import os
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(REPO, "tests", "cluster", "corosync"))
from lab import Lab, HOSTS_SCRIPT, now_ms, Timeout  # noqa: E402,F401


class CkptLab(Lab):
    def __init__(self, hosts=3, token=300, ckptnode=None, prefix=None):
        self.ckptnode = ckptnode or os.environ["AMF_CKPTNODE"]
        super().__init__(hosts=hosts, token=token, testnode=self.ckptnode, prefix=prefix)

    def start_node(self, i, vm_start=None):
        """Starts host i's checkpoint service (from what its directory holds)."""
        assert i not in self.procs or self.procs[i].poll() is not None, "node %d already running" % i
        status = os.path.join(self.node_dir(i), "status")
        if os.path.exists(status):
            os.unlink(status)
        log = open(os.path.join(self.node_dir(i), "stderr"), "a")
        self.procs[i] = subprocess.Popen(
            ["bash", HOSTS_SCRIPT, "exec", self.dir, self.prefix, str(i), self.ckptnode, "--dir", self.node_dir(i)],
            stdout=log, stderr=log, env=self.env, start_new_session=True)

    def crash_host(self, i):
        """Host i dies at once: its checkpoint service and its Corosync are killed (SIGKILL)."""
        self.kill_node(i)
        self.kill_corosync(i)

    def read(self, i, name, section, timeout=10.0):
        """The data host i's replica holds (None, with the error in the journal, when it has none)."""
        before = len(self.journal(i, "read"))
        self.control(i, "read %s %s" % (name, section))
        entry = self.wait("host %d's read" % i, lambda: (self.journal(i, "read")[before:] or [None])[0], timeout)
        return entry.get("data")

    def acked(self, i):
        """The values of host i's stream whose writes were acknowledged."""
        return [e["value"] for e in self.journal(i, "acked")]
