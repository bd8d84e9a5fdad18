"""A stream of synchronous checkpoint writes kept up through a fault-injection run, and the count of
acknowledged writes that did not survive it (docs/lab.md, "Invariants": no acknowledged checkpoint
write is lost).

Every WRITE_S the writer writes one new section of the checkpoint `faultlab` through the next host
whose amfd runs (`amf-admin ckpt write`, synchronous: acknowledged once every member has it on disk).
At the end it reads every section back through the amfds that answer: an acknowledged write that is
missing or different is lost; a write that was not acknowledged may be there, but whole or not at
all (a torn write).
"""
import threading
import time

NAME = "faultlab"
WRITE_S = 0.2
SIZE = 256


def payload(n):
    return ("w%d-" % n).ljust(SIZE, "x")


class CheckpointWriter(threading.Thread):
    def __init__(self, lab):
        super().__init__(daemon=True)
        self.lab = lab
        self.stopped = threading.Event()
        self.acked, self.failed = [], []
        self.created = False
        self.next_host = 0

    def _ckpt(self, i, *words, timeout=5):
        return self.lab.admin(i, "ckpt", *words, output="table", timeout=timeout)

    def _hosts(self):
        """The hosts whose amfd runs, starting at a different one each call."""
        hosts = [i for i in self.lab.hosts() if self.lab.amfd_pid(i)]
        self.next_host += 1
        return hosts[self.next_host % len(hosts):] + hosts[:self.next_host % len(hosts)] if hosts else []

    def run(self):
        n = 0
        while not self.stopped.wait(WRITE_S):
            hosts = self._hosts()
            if not hosts:
                continue
            try:
                if not self.created:
                    result = self._ckpt(hosts[0], "create", NAME, "--retention", "1h", "--max-sections", "65536")
                    self.created = result.returncode == 0 or "exists" in (result.stderr + result.stdout)
                    continue
                n += 1
                result = self._ckpt(hosts[0], "write", NAME, "s%d" % n, "--data", payload(n))
            except Exception:  # noqa: BLE001 - a write that timed out is a write not acknowledged
                self.failed.append(n)
                continue
            (self.acked if result.returncode == 0 else self.failed).append(n)

    def finish(self, timeout=60):
        """Stops writing and reads every write back: {"acked", "failed", "lost": [n], "torn": [n]}
        (lost and torn are None when no amfd answered within timeout)."""
        self.stopped.set()
        self.join(30)
        deadline = time.time() + timeout
        lost, torn = [], []
        for n in self.acked:
            got = self._read(n, deadline)
            if got is None:
                return {"acked": len(self.acked), "failed": len(self.failed), "lost": None, "torn": None}
            if got != payload(n):
                lost.append(n)
        for n in self.failed:
            got = self._read(n, deadline)
            if got not in ("", payload(n), None):
                torn.append(n)
        return {"acked": len(self.acked), "failed": len(self.failed), "lost": lost, "torn": torn}

    def _read(self, n, deadline):
        """The section's data, "" when the cluster says it is not there, None when no amfd answers."""
        while True:
            for i in self._hosts():
                try:
                    result = self._ckpt(i, "read", NAME, "s%d" % n)
                except Exception:  # noqa: BLE001 - try the next amfd
                    continue
                if result.returncode == 0:
                    return result.stdout.rstrip("\n")
                if "no section" in result.stderr or "no checkpoint" in result.stderr:
                    return ""
            if time.time() >= deadline:
                return None
            time.sleep(0.5)
