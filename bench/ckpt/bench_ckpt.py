#!/usr/bin/env python3
"""The checkpoint service's writes on real Corosync: three hosts in network namespaces (token
300 ms), each running amf-ckptnode (the real CheckpointService, CorosyncGroup, event loop and disk
log), next to a bare libcpg client sending the same number of messages of the same size in the
same lab.

  bench_ckpt.py [--messages 20000] [--size 1024] [--windows 1,16,256]   (root; run from the build
  tree or set AMF_CKPTNODE and CPG_PLAIN)

Prints, for each window (synchronous writes outstanding at once from host 1): writes per second
(each acknowledged once all three hosts have it on disk) and the p50/p99 latency of one write;
then the bare client's messages per second and the ratio.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "ckpt", "corosync"))
sys.path.insert(0, os.path.join(REPO, "bench", "corosync"))
from ckpt_lab import CkptLab  # noqa: E402
from bench_corosync import bare_client, binary, cpu_seconds  # noqa: E402


def pids(lab, ckptnode):
    nodes = {}
    for i in (1, 2, 3):
        out = subprocess.run(["pgrep", "-f", "^%s --dir %s$" % (ckptnode, lab.node_dir(i))],
                             capture_output=True, text=True)
        nodes[i] = int(out.stdout.split()[0])
    corosyncs = {i: int(open(os.path.join(lab.dir, "host%d" % i, "corosync.pid")).read()) for i in (1, 2, 3)}
    return nodes, corosyncs


def ours(lab, messages, size, window, mode=""):
    """Host 1's benchmark result, and the CPU seconds each process spent on it."""
    nodes, corosyncs = pids(lab, lab.ckptnode)
    before = {("node", i): cpu_seconds(p) for i, p in nodes.items()}
    before.update({("corosync", i): cpu_seconds(p) for i, p in corosyncs.items()})
    done = len(lab.journal(1, "bench"))
    lab.control(1, "bench %d %d %d %s" % (messages, size, window, mode))
    result = lab.wait("the benchmark's writes answered",
                      lambda: (lab.journal(1, "bench")[done:] or [None])[0], timeout=900)
    cpu = {key: cpu_seconds(nodes[key[1]] if key[0] == "node" else corosyncs[key[1]]) - value
           for key, value in before.items()}
    return result, cpu


def us_per_write(cpu, kind, messages):
    return [round(cpu[(kind, i)] / messages * 1e6, 1) for i in (1, 2, 3)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--windows", default="1,16,256")
    args = parser.parse_args()
    ckptnode = binary("AMF_CKPTNODE", "tests/tools/amf-ckptnode")
    cpg_plain = binary("CPG_PLAIN", "bench/cpg-plain")
    windows = [int(w) for w in args.windows.split(",")]

    lab = CkptLab(3, token=300, ckptnode=ckptnode)
    try:
        for i in (1, 2, 3):
            lab.start_node(i)
        lab.wait_synced([1, 2, 3])
        print("checkpoint writes of %d bytes from host 1, 3 hosts (token 300 ms), each acknowledged once on "
              "every host's disk:" % args.size)
        rates = {}
        for window in windows:
            n = args.messages if window > 1 else min(args.messages, 2000)
            result, cpu = ours(lab, n, args.size, window)
            rates[window] = result["per_second"]
            print("  window %4d: %8.0f writes/s   p50 %6.2f ms   p99 %6.2f ms   (%d writes, %d errors%s)" % (
                window, result["per_second"], result["p50_ms"], result["p99_ms"], n, result["errors"],
                ", " + result["last_error"] if result["errors"] else ""))
            print("               CPU per write: services %s us (writer first), Corosyncs %s us" % (
                us_per_write(cpu, "node", n), us_per_write(cpu, "corosync", n)))
        result, cpu = ours(lab, args.messages, args.size, max(windows), "async")
        print("  async, window %d: %8.0f writes/s   p50 %6.2f ms   p99 %6.2f ms" % (
            max(windows), result["per_second"], result["p50_ms"], result["p99_ms"]))
        bare = min(r["per_second"] for r in bare_client(lab, cpg_plain, args.messages, args.size))
        best = max(rates.values())
        print("bare libcpg client, %d messages of %d bytes: %8.0f messages/s (slowest member)" % (
            args.messages, args.size, bare))
        print("synchronous writes at window %d: %.2f of the bare client" % (max(rates, key=rates.get), best / bare))
        statuses = [lab.status(i) for i in (1, 2, 3)]
        print("  hosts agree: %s (seq %s); appends per host %s, 'applied' messages per host %s" % (
            len({s.get("seq") for s in statuses}) == 1, statuses[0].get("seq"),
            [s.get("diskWrites") for s in statuses], [s.get("appliedSent") for s in statuses]))
    finally:
        lab.cleanup()


if __name__ == "__main__":
    main()
