#!/usr/bin/env python3
"""Membership and replication benchmarks on real Corosync: three hosts in network namespaces
(token 300 ms), each running amf-testnode.

  bench_corosync.py [--trials 20] [--messages 20000] [--size 1024]   (root; run from the build tree
  or set AMF_TESTNODE, AMF_ADMIN and CPG_PLAIN)

Prints:
  - detection: from host 3's Corosync killed (SIGKILL), and from its link cut, to the director's
    decision on the survivors that host 3 is lost (or down, when it ran nothing) (p50, max over
    the trials);
  - replication: 1 KiB decisions per second applied by every node manager (encode, Corosync's
    agreed order, decode, apply, state saved), next to a bare libcpg client sending the same
    number of messages of the same size in the same lab.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "cluster", "corosync"))
from lab import Lab, HOSTS_SCRIPT, now_ms  # noqa: E402


def binary(env, default):
    path = os.environ.get(env) or os.path.join(REPO, "build", default)
    if not os.access(path, os.X_OK):
        sys.exit("%s: %s not found (build first, or set %s)" % (os.path.basename(sys.argv[0]), path, env))
    return path


def lost_decision_time(lab, host, node, since):
    for entry in lab.journal(host, "decision"):
        if entry["t"] >= since and any(a.startswith(("node %s lost" % node, "node %s down" % node)) for a in entry["actions"]):
            return entry["t"]
    return None


def detection(lab, kind, trials):
    times = []
    for trial in range(trials):
        # A host that rejoined can take a few ring reformations to settle: start from a membership
        # that has not changed for 2 s.
        lab.wait("three hosts, stable for 2 s",
                 lambda: lab.status(1).get("hosts") == [1, 2, 3] and lab.status(1).get("members") == [1, 2, 3]
                 and now_ms() - lab.journal(1, "view")[-1]["t"] > 2000 and lab.status(1).get("nodes", {}).get(
                     "node3", {}).get("status") == "up", timeout=30)
        lab.wait_settled([1, 2, 3])
        start = now_ms()
        if kind == "kill":
            lab.kill_corosync(3)
        else:
            lab.cut(3)
        at = lab.wait("the director's decision that node3 is lost",
                      lambda: lost_decision_time(lab, 1, "node3", start), timeout=15)
        times.append(at - start)
        if kind == "kill":
            lab.start_corosync(3)
        else:
            lab.heal(3)
        # node3's manager reconnects to its Corosync by itself (or sees the heal).
    return times


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids(lab, testnode):
    nodes = {}
    for i in (1, 2, 3):
        out = subprocess.run(["pgrep", "-f", "^%s --name node%d " % (testnode, i)], capture_output=True, text=True)
        nodes[i] = int(out.stdout.split()[0])
    corosyncs = {i: int(open(os.path.join(lab.dir, "host%d" % i, "corosync.pid")).read()) for i in (1, 2, 3)}
    return nodes, corosyncs


def bare_client(lab, cpg_plain, messages, size):
    """The bare libcpg client: one sender (host 1), three receivers, in `lab`; each member's result."""
    procs = []
    for i in (1, 2, 3):
        argv = ["bash", HOSTS_SCRIPT, "exec", lab.dir, lab.prefix, str(i), cpg_plain, "--members", "3",
                "--expect", str(messages), "--size", str(size)]
        if i == 1:
            argv += ["--send", str(messages)]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
        if i == 1:
            time.sleep(0.3)
    return [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]


def replication(lab, messages, size, cpg_plain, testnode):
    plain = bare_client(lab, cpg_plain, messages, size)

    lab.wait_settled([1, 2, 3])
    nodes, corosyncs = pids(lab, testnode)
    before = {("node", i): cpu_seconds(p) for i, p in nodes.items()}
    before.update({("corosync", i): cpu_seconds(p) for i, p in corosyncs.items()})
    for i in (1, 2, 3):
        lab.control(i, "bench-expect %d" % messages)
    time.sleep(0.2)
    lab.control(1, "bench %d %d" % (messages, size))
    lab.wait("every node applied the benchmark decisions",
             lambda: all(lab.journal(i, "bench") for i in (1, 2, 3)), timeout=300)
    ours = [lab.journal(i, "bench")[-1] for i in (1, 2, 3)]
    cpu = {key: (cpu_seconds(nodes[key[1]] if key[0] == "node" else corosyncs[key[1]]) - value)
           for key, value in before.items()}
    return plain, ours, cpu


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    testnode = binary("AMF_TESTNODE", "tests/tools/amf-testnode")
    admin = binary("AMF_ADMIN", "cmd/amf-admin/amf-admin")
    cpg_plain = binary("CPG_PLAIN", "bench/cpg-plain")

    lab = Lab(3, token=300, testnode=testnode, admin=admin)
    try:
        for i in (1, 2, 3):
            lab.start_node(i)
        lab.wait_synced([1, 2, 3])
        print("detection with token 300 ms (%d trials each): time from the fault to the director's decision" % args.trials)
        for kind, label in (("kill", "corosync killed (SIGKILL)"), ("cut", "link cut")):
            times = detection(lab, kind, args.trials)
            print("  %-26s p50 %4d ms   max %4d ms   min %4d ms" %
                  (label, statistics.median(times), max(times), min(times)))
        lab.wait_synced([1, 2, 3])
        plain, ours, cpu = replication(lab, args.messages, args.size, cpg_plain, testnode)
        plain_rate = min(p["per_second"] for p in plain)
        our_rate = min(o["per_second"] for o in ours)
        print("  per member: bare %s, node managers %s" % ([round(p["per_second"]) for p in plain], [round(o["per_second"]) for o in ours]))
        print("replication of %d messages of %d bytes, 3 hosts (slowest member):" % (args.messages, args.size))
        print("  bare libcpg client            %8.0f messages/s" % plain_rate)
        print("  node manager decisions        %8.0f decisions/s  (%.2f of the bare client)" %
              (our_rate, our_rate / plain_rate))
        print("  CPU per decision: node managers %s us (director first), Corosyncs %s us" % (
            [round(cpu[("node", i)] / args.messages * 1e6, 1) for i in (1, 2, 3)],
            [round(cpu[("corosync", i)] / args.messages * 1e6, 1) for i in (1, 2, 3)]))
    finally:
        lab.cleanup()


if __name__ == "__main__":
    main()
