#!/usr/bin/env python3
"""amfd on a real three-host lab (amf-lab, scripts/lab/amf_lab): Corosync, libvirt, QEMU test guests
with the agent, the lab's fence agent, amf-admin, and the client's probes of the service addresses.
The configuration is examples/lab/ with its paths moved into the test's directory.

Usage: amfd_test.py CASE   (root; AMF_LAB, AMF_AMFD, AMF_ADMIN, AMF_SIM, AMF_AGENT, AMF_GUEST_IMAGE and
AMF_LIBVIRT_CACHE from ctest)

Every case runs with a watcher that reads amf-admin status and the hosts' QEMUs every 200 ms and
fails the case if status ever shows two active assignments of one SI, a VM runs on two hosts, or
status places a VM on a host where it does not run (or the other way round) for longer than the
failure detection allows.
"""
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "lab"))
from amf_lab.examples import relocated  # noqa: E402
from amf_lab.lab import Lab, Tools, free_prefix  # noqa: E402
from amf_lab.probe import Probe, client_outage  # noqa: E402
from amf_lab.lab import LIBVIRT_SCRIPT as LIBVIRT  # noqa: E402
from amf_lab.util import now_ms, run, wait_for  # noqa: E402

MME_IP = "10.90.0.100"
OAM_IP = "10.90.3.100"
MACS = {"mme-a": "52:54:00:01:00:01", "mme-b": "52:54:00:01:00:02", "oam-1": "52:54:00:04:00:01"}
MISMATCH_GRACE_MS = 3000  # status may lag the truth by the detection time, not more


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def configuration(directory):
    """examples/lab/*.yaml with the guest image, consoles and disks in the test's directory."""
    return relocated(directory, os.environ["AMF_GUEST_IMAGE"])


class Watcher(threading.Thread):
    """Checks status against the truth every 200 ms until stopped (see the module's text)."""

    def __init__(self, lab):
        super().__init__(daemon=True)
        self.lab = lab
        self.stopped = threading.Event()
        self.problems = []
        self.mismatch_since = {}
        self.polls = 0
        self.tries = 0

    def run(self):
        while True:
            self.tries += 1
            try:
                status = self.lab.status()
                truth = {i: set(self.lab.qemus(i)) for i in self.lab.hosts()}
                if status:
                    self.polls += 1
                    self.judge(status, truth)
            except Exception as e:  # noqa: BLE001 - a broken watcher must fail the case, not vanish
                self.problems.append("%d: the watcher failed: %r" % (now_ms(), e))
            if self.stopped.wait(0.2):
                return

    def judge(self, status, truth):
        for si in status["sis"]:
            actives = [a["su"] for a in si["assignments"] if a["ha"] == "active"]
            if len(actives) > 1:
                self.problems.append("%d: si/%s has two actives: %s" % (now_ms(), si["name"], actives))
        running = {}
        for i, vms in truth.items():
            for vm in vms:
                running.setdefault(vm, []).append(self.lab.node_name(i))
        for vm, nodes in running.items():
            if len(nodes) > 1:
                self.problems.append("%d: vm/%s runs on %s" % (now_ms(), vm, nodes))
        for vm in status["vms"]:
            placed = vm["node"] if vm["presence"] == "instantiated" else None
            actual = running.get(vm["name"], [None])[0]
            # Only a placement status shows as running counts; starting and stopping are in between.
            if vm["presence"] in ("instantiated", "uninstantiated") and placed != actual:
                since = self.mismatch_since.setdefault(vm["name"], now_ms())
                if now_ms() - since > MISMATCH_GRACE_MS:
                    self.problems.append("%d: status places vm/%s on %s, it runs on %s" % (
                        now_ms(), vm["name"], placed, actual))
                    self.mismatch_since[vm["name"]] = now_ms()
            else:
                self.mismatch_since.pop(vm["name"], None)

    def finish(self):
        # A case can end within one poll: let the watcher read the settled state at least once more.
        last = self.tries
        wait_for("the watcher's next poll", lambda: self.tries > last + 1 or not self.is_alive(), timeout=30)
        self.stopped.set()
        self.join(10)
        check(self.polls > 0, "the watcher never read a status (%d tries)" % self.tries)
        check(not self.problems, "status and the truth disagreed:\n  " + "\n  ".join(self.problems[:10]))


def active_of(status, si):
    for entry in status["sis"]:
        if entry["name"] == si:
            actives = [a["su"] for a in entry["assignments"] if a["ha"] == "active" and a["acked"]]
            return actives[0] if len(actives) == 1 else None
    return None


def served(lab, si, other_than=None):
    """(active SU, its node) once si is active and acknowledged (by another unit than other_than)."""
    status = lab.status()
    if not status:
        return None
    active = active_of(status, si)
    if not active or active == other_than:
        return None
    node = [su["node"] for su in status["sus"] if su["name"] == active][0]
    return active, node


def standby_of(lab, si):
    status = lab.status()
    for entry in status["sis"] if status else []:
        if entry["name"] == si:
            for a in entry["assignments"]:
                if a["ha"] == "standby" and a["acked"]:
                    return a["su"]
    return None


def client_mac(lab, ip):
    out = run("ip", "-n", lab.client_ns(), "neigh", "show", ip, check=False)
    words = out.split()
    return words[words.index("lladdr") + 1] if "lladdr" in words else None


def settle(lab, probes):
    """Both SIs served, mme with a standby, and the client reaching both addresses."""
    wait_for("mme-si served", lambda: served(lab, "mme-si"), timeout=180)
    wait_for("oam-si served", lambda: served(lab, "oam-si"), timeout=180)
    wait_for("mme-si's standby", lambda: standby_of(lab, "mme-si"), timeout=180)
    for probe in probes.values():
        wait_for("the client reaching " + probe.address, lambda p=probe: p.answered_since(now_ms() - 200),
                 timeout=60)


def recovered(lab, probe, si, fault_ms, old_active=None):
    """Waits until si is served by one active (another unit than old_active, if given) and the client
    reaches its address from that unit's MAC; prints and returns the client-seen outage."""
    active, node = wait_for("%s served again" % si, lambda: served(lab, si, other_than=old_active), timeout=120,
                            poll=0.05)
    wait_for("the client reaching %s again" % probe.address, lambda: probe.answered_since(now_ms() - 100),
             timeout=60, poll=0.05)
    wait_for("the client's neighbour entry for %s naming %s" % (probe.address, active),
             lambda: client_mac(lab, probe.address) == MACS[active], timeout=10)
    outage = client_outage(probe, fault_ms, now_ms())
    print("%s: active %s on %s; client-seen outage %s ms" % (si, active, node, outage))
    return active, node, outage


def case_vm_kill(lab, probes):
    active, node = served(lab, "mme-si")
    fault = now_ms()
    hosts = lab.kill_qemu(active + "-vm")
    check(hosts == [lab.host_of(node)], "the active's QEMU ran on %s, status said %s" % (hosts, node))
    recovered(lab, probes["mme-si"], "mme-si", fault, old_active=active)
    wait_for("%s back as standby" % active, lambda: standby_of(lab, "mme-si") == active, timeout=120)


def case_host_crash(lab, probes):
    active, node = served(lab, "mme-si")
    fault = now_ms()
    lab.power_off(lab.host_of(node))
    recovered(lab, probes["mme-si"], "mme-si", fault, old_active=active)
    # The lab's fence agent power-cycles the host: it comes back, and the unit with it as standby.
    wait_for("%s back as standby" % active, lambda: standby_of(lab, "mme-si") == active, timeout=180)


def case_partition(lab, probes):
    active, node = served(lab, "mme-si")
    others = [lab.node_name(i) for i in lab.hosts() if lab.node_name(i) != node]
    fault = now_ms()
    lab.partition([others, [node]])
    recovered(lab, probes["mme-si"], "mme-si", fault, old_active=active)
    lab.heal()
    wait_for("%s back as standby" % active, lambda: standby_of(lab, "mme-si") == active, timeout=180)
    # The fenced host was power-cycled by the lab's fence agent: it rejoins once the partition heals.
    wait_for("%s back in the cluster" % node, lambda: all(n["member"] and n["status"] == "up"
                                                          for n in (lab.status() or {"nodes": [{}]})["nodes"]),
             timeout=60)


def case_lock_unlock(lab, probes):
    active, node = served(lab, "mme-si")
    fault = now_ms()
    result = lab.admin(1, "lock", "su/" + active)
    check(result.returncode == 0, "lock su/%s: exit %d %s" % (active, result.returncode, result.stderr))
    new, _, _ = recovered(lab, probes["mme-si"], "mme-si", fault, old_active=active)
    status = lab.status()
    su = [s for s in status["sus"] if s["name"] == active][0]
    check(su["admin"] == "locked" and su["readiness"] == "out-of-service", "locked unit: %s" % su)
    check(not any(a["su"] == active for si in status["sis"] for a in si["assignments"]),
          "the locked unit still holds an assignment")
    result = lab.admin(2, "unlock", "su/" + active)
    check(result.returncode == 0, "unlock su/%s: exit %d %s" % (active, result.returncode, result.stderr))
    wait_for("%s standby again" % active, lambda: standby_of(lab, "mme-si") == active, timeout=60)
    check(served(lab, "mme-si")[0] == new, "unlocking moved the active")


def case_si_swap(lab, probes):
    active, node = served(lab, "mme-si")
    standby = standby_of(lab, "mme-si")
    fault = now_ms()
    result = lab.admin(3, "si-swap", "si/mme-si")
    check(result.returncode == 0, "si-swap: exit %d %s" % (result.returncode, result.stderr))
    new, _, _ = recovered(lab, probes["mme-si"], "mme-si", fault, old_active=active)
    check(new == standby, "si-swap made %s active, not the standby %s" % (new, standby))
    wait_for("%s standby after the swap" % active, lambda: standby_of(lab, "mme-si") == active, timeout=60)


def case_noredundancy_host_crash(lab, probes):
    active, node = served(lab, "oam-si")
    fault = now_ms()
    lab.power_off(lab.host_of(node))
    qemu = wait_for("oam-vm's QEMU running on another host",
                    lambda: [i for i in lab.vm_host("oam-vm") if lab.node_name(i) != node], timeout=120, poll=0.05)
    print("oam-vm's QEMU running on %s %d ms after the crash" % (lab.node_name(qemu[0]), now_ms() - fault))
    recovered(lab, probes["oam-si"], "oam-si", fault)


def case_admin_api(lab, probes):
    # Malformed frames against a real amfd: counted (logged) and dropped, the daemon unharmed.
    log = os.path.join(lab.amfd_dir(1), "amfd.log")
    out = run(os.environ["AMF_HOSTILE_PEER"], lab.endpoint(1))
    print(out.strip())
    with open(log, errors="replace") as f:
        dropped = f.read().count("dropped a malformed request")
    check(dropped >= 4, "amfd logged %d malformed requests, not 4" % dropped)
    check(lab.amfd_pid(1) and lab.status(1), "amfd on node1 is not answering after the malformed frames")
    # A peer without permission is refused.
    result = run("runuser", "-u", "nobody", "--", lab.tools.admin, "--endpoint", lab.endpoint(1), "status",
                 check=False)
    print("as nobody: " + result.strip())
    check("permission denied" in result, "nobody was not refused: %s" % result)
    # No amfd: exit 69, naming the endpoint. Started again, it reattaches to its host's running VMs.
    qemus = lab.qemus(3)
    lab.kill_amfd(3)
    result = lab.admin(3, "status")
    print("no amfd: exit %d: %s" % (result.returncode, result.stderr.strip()))
    check(result.returncode == 69 and "no amfd at " + lab.endpoint(3) in result.stderr,
          "no amfd: exit %d %s" % (result.returncode, result.stderr))
    lab.start_amfd(3)
    wait_for("amfd on node3 back", lambda: lab.status(3), timeout=60)
    check(lab.qemus(3) == qemus, "the restarted amfd changed its host's VMs: %s, was %s" % (lab.qemus(3), qemus))


EXTRA = """apiVersion: kvm-amf/v1
kind: ServiceGroup
metadata:
  name: extra
spec:
  redundancy: {model: No-Redundancy}
  nodeGroup: all
  health:
    heartbeat: {interval: 500ms, timeout: 2s}
  units:
    - name: extra-1
      vms:
        - name: extra-vm
          vcpus: 1
          memory: 256Mi
          boot:
            kernel: %(image)s/vmlinux
            initrd: %(image)s/initrd.cpio.gz
            cmdline: console=ttyS0 quiet kvmamf.ip=10.90.3.20/24
          nics:
            - {mac: "52:54:00:04:00:20", bridge: br-oam, ip: 10.90.3.20/24}
  serviceInstances:
    - name: extra-si
      attributes: {ip: 10.90.3.101/24}
"""


def generation(lab):
    return lab.status()["generation"]


def case_apply(lab, probes):
    directory = os.path.dirname(lab.dir)
    mme, oam = [f for f in lab.state["config"] if f.endswith(("sg-mme.yaml", "sg-oam.yaml"))]
    result = lab.admin(1, "diff", "-f", mme, "-f", oam, output="table")
    check(result.returncode == 0, "diff of the running files: exit %d %s%s" % (result.returncode, result.stdout,
                                                                               result.stderr))
    first = generation(lab)
    # A new service group: its VM starts, its guest takes the SI's address.
    extra = os.path.join(directory, "sg-extra.yaml")
    with open(extra, "w") as f:
        f.write(EXTRA % {"image": os.environ["AMF_GUEST_IMAGE"]})
    result = lab.admin(2, "apply", "-f", extra, output="table")
    print(result.stdout.strip())
    check(result.returncode == 0 and generation(lab) == first + 1, "apply: exit %d %s" % (result.returncode,
                                                                                          result.stderr))
    probe = Probe(lab.client_ns(), "10.90.3.101")
    try:
        wait_for("extra-si served", lambda: served(lab, "extra-si"), timeout=180)
        wait_for("the client reaching 10.90.3.101", lambda: probe.answered_since(now_ms() - 200), timeout=60)
    finally:
        probe.stop()
    check(lab.vm_host("extra-vm"), "extra-vm runs nowhere")
    # Invalid documents: 65 at FILE:LINE:COLUMN, nothing changed.
    bad = os.path.join(directory, "bad.yaml")
    with open(bad, "w") as f:
        f.write((EXTRA % {"image": "/nowhere"}).replace("vcpus: 1", "vcpus: lots"))
    result = lab.admin(1, "apply", "-f", bad, output="table")
    check(result.returncode == 65 and bad + ":" in result.stderr, "invalid apply: exit %d %s" % (
        result.returncode, result.stderr))
    check(generation(lab) == first + 1, "an invalid apply changed the generation")
    # Two applies at once from two hosts, each changing another group: neither is lost.
    changed = []
    for path, key in ((mme, "vmRestartMax: 0"), (oam, "vmRestartMax: 2")):
        with open(path) as f:
            text = f.read()
        check(key in text, "%s has no '%s'" % (path, key))
        out = os.path.join(directory, "changed-" + os.path.basename(path))
        with open(out, "w") as f:
            f.write(text.replace(key, "vmRestartMax: 1"))
        changed.append(out)
    procs = [subprocess.Popen([lab.tools.admin, "--endpoint", lab.endpoint(i), "apply", "-f", path],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, path in ((1, changed[0]), (3, changed[1]))]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs):
        print(out.strip() or err.strip())
        check(p.returncode == 0, "a concurrent apply: exit %d %s" % (p.returncode, err))
    check(generation(lab) == first + 3, "two applies made generation %d, not %d" % (generation(lab), first + 3))
    result = lab.admin(2, "diff", "-f", changed[0], "-f", changed[1], output="table")
    check(result.returncode == 0, "one of the concurrent applies was lost:\n%s" % result.stdout)
    # An apply against a generation that has moved on is refused.
    result = lab.admin(1, "apply", "--generation", str(first), "-f", mme, output="table")
    check(result.returncode == 1 and "diff again" in result.stderr, "stale --generation: exit %d %s" % (
        result.returncode, result.stderr))
    # Deleting a running group is refused; once locked for instantiation it goes, with its VM.
    result = lab.admin(3, "delete", "sg/extra", output="table")
    check(result.returncode == 1 and "lock" in result.stderr, "delete of a running group: exit %d %s" % (
        result.returncode, result.stderr))
    for words in (("lock", "sg/extra"), ("lock-in", "sg/extra")):
        result = lab.admin(1, *words)
        check(result.returncode == 0, "%s: exit %d %s" % (" ".join(words), result.returncode, result.stderr))
    wait_for("extra-vm stopped", lambda: not lab.vm_host("extra-vm"), timeout=60)
    wait_for("extra-1 uninstantiated", lambda: [su for su in lab.status()["sus"] if su["name"] == "extra-1"
                                                and su["presence"] == "uninstantiated" and not su["node"]], timeout=60)
    result = lab.admin(3, "delete", "sg/extra", output="table")
    print(result.stdout.strip())
    check(result.returncode == 0, "delete: exit %d %s" % (result.returncode, result.stderr))
    status = lab.status()
    check(not [su for su in status["sus"] if su["name"] == "extra-1"], "extra-1 is still in status")
    check(status["generation"] == first + 4, "generation %d after the delete" % status["generation"])


def vm_of(status, name):
    return [vm for vm in status["vms"] if vm["name"] == name][0]


def boots(lab, vm):
    """How many times the VM's guest has booted (its console's `up` markers)."""
    with open(lab.state["consoles"][vm], errors="replace") as f:
        return f.read().count("KVM-AMF-GUEST up ")


def ok(result, what):
    check(result.returncode == 0, "%s: exit %d %s%s" % (what, result.returncode, result.stdout, result.stderr))


def case_vm_operations(lab, probes):
    active, node = served(lab, "mme-si")
    standby = standby_of(lab, "mme-si")
    svm, avm = standby + "-vm", active + "-vm"
    # The active's VM cannot be paused or stopped: the operator must switch over first.
    for op in ("pause", "destroy", "suspend"):
        result = lab.admin(1, "vm", op, "vm/" + avm)
        check(result.returncode == 1 and "switch over first" in result.stderr, "vm %s of the active: exit %d %s" % (
            op, result.returncode, result.stderr))
    # Pause the standby: frozen where it is, no hang reported past the heartbeat timeout, still standby.
    ok(lab.admin(2, "vm", "pause", "vm/" + svm), "vm pause")
    wait_for("%s paused" % svm, lambda: vm_of(lab.status(), svm).get("admin") == "paused", timeout=20)
    state = run(LIBVIRT, "exec", lab.dir, "host%d" % lab.vm_host(svm)[0], "virsh", "-c", "qemu:///system", "domstate",
                svm).strip()
    check(state == "paused", "libvirt says %s is %s" % (svm, state))
    time.sleep(3)
    status = lab.status()
    check(vm_of(status, svm)["failure"] is None, "a paused VM was reported failed: %s" % vm_of(status, svm))
    ok(lab.admin(3, "vm", "resume", "vm/" + svm), "vm resume")
    wait_for("%s resumed and standby" % svm, lambda: vm_of(lab.status(), svm).get("admin") is None and
             standby_of(lab, "mme-si") == standby, timeout=30)
    # Reset the standby: its guest boots again in place, it is told its HA state again.
    before = boots(lab, svm)
    host = lab.vm_host(svm)
    ok(lab.admin(1, "vm", "reset", "vm/" + svm), "vm reset")
    wait_for("%s booted again" % svm, lambda: boots(lab, svm) > before, timeout=60)
    wait_for("%s standby after its reset" % svm, lambda: standby_of(lab, "mme-si") == standby, timeout=60)
    check(lab.vm_host(svm) == host, "the reset moved %s: %s, was %s" % (svm, lab.vm_host(svm), host))
    # Destroy the standby: it stays stopped (nothing restarts it) until vm start.
    ok(lab.admin(2, "vm", "destroy", "vm/" + svm), "vm destroy")
    wait_for("%s stopped" % svm, lambda: not lab.vm_host(svm) and (lambda vm: vm.get("admin") == "stopped" and
             vm["presence"] == "uninstantiated")(vm_of(lab.status(), svm)), timeout=30)
    time.sleep(3)
    check(not lab.vm_host(svm), "a VM the operator stopped was started again")
    ok(lab.admin(3, "vm", "start", "vm/" + svm), "vm start")
    wait_for("%s standby again after vm start" % svm, lambda: standby_of(lab, "mme-si") == standby, timeout=120)
    # Suspend the standby (its memory saved by libvirt) and start it: restored, not booted again.
    before = boots(lab, svm)
    ok(lab.admin(1, "vm", "suspend", "vm/" + svm), "vm suspend")
    wait_for("%s suspended" % svm, lambda: not lab.vm_host(svm) and (lambda vm: vm.get("admin") == "suspended" and
             vm["presence"] == "uninstantiated")(vm_of(lab.status(), svm)), timeout=60)
    ok(lab.admin(2, "vm", "start", "vm/" + svm), "vm start after suspend")
    wait_for("%s standby after its restore" % svm, lambda: standby_of(lab, "mme-si") == standby, timeout=120)
    check(boots(lab, svm) == before, "%s booted again instead of being restored" % svm)
    check(served(lab, "mme-si")[0] == active, "the VM operations moved the active")


CASES = {
    "admin-api": case_admin_api,
    "vm-operations": case_vm_operations,
    "apply": case_apply,
    "vm-kill": case_vm_kill,
    "host-crash": case_host_crash,
    "partition": case_partition,
    "lock-unlock": case_lock_unlock,
    "si-swap": case_si_swap,
    "noredundancy-host-crash": case_noredundancy_host_crash,
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print(__doc__)
        return 64
    if os.geteuid() != 0:
        print("SKIP: needs root")
        return 77
    directory = tempfile.mkdtemp(prefix="amf-lab-test-")
    tools = Tools(amfd=os.environ["AMF_AMFD"], admin=os.environ["AMF_ADMIN"], sim=os.environ["AMF_SIM"],
                  agent=os.environ["AMF_AGENT"], lab=os.environ["AMF_LAB"])
    lab = Lab(os.path.join(directory, "lab"), tools)
    ok = False
    probes = {}
    watcher = None
    try:
        lab.up(configuration(directory), prefix=free_prefix("al"), cache=os.environ.get("AMF_LIBVIRT_CACHE") or None, boot_s=5)
        probes = {si: Probe(lab.client_ns(), ip) for si, ip in (("mme-si", MME_IP), ("oam-si", OAM_IP))}
        settle(lab, probes)
        watcher = Watcher(lab)
        watcher.start()
        CASES[sys.argv[1]](lab, probes)
        settle(lab, probes)
        watcher.finish()
        print(lab.admin(1, "status", output="table").stdout)
        ok = True
    finally:
        if watcher and not ok:
            watcher.stopped.set()
        for probe in probes.values():
            probe.stop()
        if not ok:
            print(lab_logs(lab))
        lab.down(keep_files=not ok)
        if ok:
            os.system("rm -rf '%s'" % directory)
        else:
            print("files kept in " + directory)
    print("ok")
    return 0


def lab_logs(lab):
    out = []
    for i in lab.hosts() if lab.state else []:
        path = os.path.join(lab.amfd_dir(i), "amfd.log")
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                out.append("--- amfd %s (tail)\n%s" % (lab.node_name(i), "".join(f.readlines()[-30:])))
    for vm, path in sorted((lab.state or {}).get("consoles", {}).items()):
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                out.append("--- console of %s (tail)\n%s" % (vm, "".join(f.readlines()[-15:])))
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
