#!/usr/bin/env python3
"""The checkpoint service on a real three-host lab (amf-lab over examples/lab): amfd's own group
kvm-amf-ckpt, the hosts' disks, guests' and operators' access (docs/checkpoints.md).

Usage: ckpt_test.py CASE   (root; the AMF_* variables of tests/lab/CMakeLists.txt)
Cases:
  writer-killed   synchronous writes through node3's amfd, one section each, while node3 is
                  powered off: every acknowledged write reads back whole on the survivors (zero
                  lost), the one in flight is there whole or not at all
  guest-counter   the 2N pair's active guest keeps a counter in its group's checkpoint (the test
                  guest's kvm-amf-counter, run by its hook for an SI with `counter: app`); its host
                  is powered off: the new active resumes from the last value acknowledged
  cluster-restart checkpoints written, every host powered off and on: every checkpoint is back,
                  but for a section that expired meanwhile
"""
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from amfd_test import check, configuration, served, settle, standby_of  # noqa: E402
from amf_lab.lab import Lab, Tools, free_prefix  # noqa: E402
from amf_lab.probe import Probe  # noqa: E402
from amf_lab.util import now_ms, wait_for  # noqa: E402


def ckpt(lab, i, *words, timeout=10):
    return lab.admin(i, "ckpt", *words, output="table", timeout=timeout)


def case_writer_killed(lab):
    check(ckpt(lab, 1, "create", "stream").returncode == 0, "create stream")
    acked, failed = [], []
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            data = ("v%d-" % i).ljust(1024, "x")  # 1 KiB each
            result = ckpt(lab, 3, "write", "stream", "s%d" % i, "--data", data, timeout=5)
            (acked if result.returncode == 0 else failed).append(i)
            if result.returncode != 0 and lab.amfd_pid(3) is None:
                return

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    wait_for("50 acknowledged writes", lambda: len(acked) >= 50, timeout=120)
    lab.power_off(3)
    thread.join(30)
    stop.set()
    print("acknowledged %d writes before node3 went; %d not acknowledged" % (len(acked), len(failed)))
    wait_for("a director again", lambda: lab.status(1) and lab.status(1)["director"], timeout=30)
    lost = []
    for i in acked:
        result = ckpt(lab, 1 + i % 2, "read", "stream", "s%d" % i)
        if result.returncode != 0 or not result.stdout.startswith("v%d-" % i) or len(result.stdout.rstrip("\n")) != 1024:
            lost.append((i, result.returncode, result.stdout[:40], result.stderr.strip()))
    check(not lost, "acknowledged writes lost or damaged on the survivors: %s" % lost[:5])
    for i in failed:
        result = ckpt(lab, 1, "read", "stream", "s%d" % i)
        check(result.returncode != 0 or len(result.stdout.rstrip("\n")) == 1024,
              "write %d, not acknowledged, is half there: %r" % (i, result.stdout[:60]))
    print("zero lost: every one of the %d acknowledged writes reads back whole on node1 and node2" % len(acked))


def counter_lines(lab, vm):
    with open(lab.state["consoles"][vm], errors="replace") as f:
        text = f.read()
    return [(kind, int(n)) for kind, n in re.findall(r"KVM-AMF-GUEST counter (resumed )?(\d+)", text)]


def case_guest_counter(lab):
    active, node = served(lab, "mme-si")
    avm = active + "-vm"
    wait_for("the active's counter at 3", lambda: any(n >= 3 for k, n in counter_lines(lab, avm) if not k),
             timeout=60)
    other = [u for u in ("mme-a", "mme-b") if u != active][0]
    seen_before = len(counter_lines(lab, other + "-vm"))
    lab.power_off(lab.host_of(node))
    last = max(n for k, n in counter_lines(lab, avm) if not k)  # acknowledged, as its guest printed
    wait_for("mme-si served by %s" % other, lambda: (served(lab, "mme-si") or (None,))[0] == other, timeout=60)
    resumed = wait_for("the new active's counter resumed", lambda: [n for k, n in counter_lines(lab, other + "-vm")
                                                                     [seen_before:] if k], timeout=60)[0]
    print("the old active acknowledged up to %d; the new active resumed from %d" % (last, resumed))
    # The old active may have had one more write acknowledged that its console did not show yet.
    check(last <= resumed <= last + 1, "resumed from %d, the last acknowledged was %d" % (resumed, last))
    wait_for("the counter going on", lambda: any(n > resumed for k, n in counter_lines(lab, other + "-vm")
                                                 [seen_before:] if not k), timeout=30)
    read = ckpt(lab, [i for i in lab.hosts() if lab.node_name(i) != node][0], "read", "sg/mme/app", "counter")
    check(read.returncode == 0 and int(read.stdout.strip()) > resumed, "amf-admin ckpt read: %s %s" % (
        read.stdout, read.stderr))


def case_cluster_restart(lab):
    for words in (("create", "keep"), ("write", "keep", "a", "--data", "alpha"),
                  ("write", "keep", "b", "--data", "beta"), ("create", "other", "--retention", "1h"),
                  ("write", "other", "x", "--data", "ex"),
                  ("write", "other", "soon", "--data", "gone", "--expires-in", "3s")):
        result = ckpt(lab, 1 + len(words) % 3, *words)
        check(result.returncode == 0, "ckpt %s: exit %d %s" % (" ".join(words), result.returncode, result.stderr))
    for i in lab.hosts():
        lab.power_off(i)
    time.sleep(4)  # the section's expiry passes while every host is off
    for i in lab.hosts():
        lab.power_on(i)
    wait_for("a director again", lambda: (lab.status() or {}).get("director"), timeout=60)
    for name, section, data in (("keep", "a", "alpha"), ("keep", "b", "beta"), ("other", "x", "ex")):
        result = wait_for("%s %s readable" % (name, section), lambda: (lambda r: r if r.returncode == 0 else None)(
            ckpt(lab, 2, "read", name, section)), timeout=30)
        check(result.stdout.strip() == data, "%s %s reads %r after the restart" % (name, section, result.stdout))
    # Through host 3, which the cluster may have fenced (and the lab's agent powered on again) had it
    # come back after the others formed a quorum: "no section", not an absent amfd, is the answer.
    gone = wait_for("the expired section removed", lambda: "no section" in ckpt(lab, 3, "read", "other",
                                                                                "soon").stderr, timeout=60)
    check(gone, "the expired section is still there")
    print("every checkpoint back after every host was powered off and on; the expired section gone")


CASES = {"writer-killed": case_writer_killed, "guest-counter": case_guest_counter,
         "cluster-restart": case_cluster_restart}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print(__doc__)
        return 64
    if os.geteuid() != 0:
        print("SKIP: needs root")
        return 77
    directory = tempfile.mkdtemp(prefix="amf-ckpt-test-")
    tools = Tools(amfd=os.environ["AMF_AMFD"], admin=os.environ["AMF_ADMIN"], sim=os.environ["AMF_SIM"],
                  agent=os.environ["AMF_AGENT"], lab=os.environ["AMF_LAB"])
    files = configuration(directory)
    mme = [f for f in files if f.endswith("sg-mme.yaml")][0]
    with open(mme) as f:
        text = f.read()
    with open(mme, "w") as f:
        f.write(text.replace("attributes: {ip: 10.90.0.100/24}", "attributes: {ip: 10.90.0.100/24, counter: app}"))
    lab = Lab(os.path.join(directory, "lab"), tools)
    ok = False
    probes = {}
    try:
        lab.up(files, prefix=free_prefix("ck"), cache=os.environ.get("AMF_LIBVIRT_CACHE") or None, boot_s=5)
        probes = {si: Probe(lab.client_ns(), ip) for si, ip in (("mme-si", "10.90.0.100"), ("oam-si", "10.90.3.100"))}
        settle(lab, probes)
        CASES[sys.argv[1]](lab)
        ok = True
    finally:
        for probe in probes.values():
            probe.stop()
        lab.down(keep_files=not ok)
        if ok:
            subprocess.run(["rm", "-rf", directory])
        else:
            print("files kept in " + directory)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
