#!/usr/bin/env python3
"""What amfd costs: resident memory and CPU of each amfd on a real three-host lab supervising 20 VMs
(ten 2N pairs of test guests, guest heartbeat every 200 ms, timeout 1 s), idle and during a host
failover. Prints each amfd's RSS and CPU (% of one core) over an idle window, the same per VM it
supervises, and the survivors' CPU over the 20 s after a host is powered off.

Usage: bench_amfd_cost.py [--build DIR] [--pairs N] [--idle S]   (root; after a build)
"""
import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts", "lab"))
from amf_lab.examples import relocated  # noqa: E402
from amf_lab.lab import Lab, Tools  # noqa: E402
from amf_lab.util import wait_for  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def pair(name, image, consoles):
    vm = """        - name: %s-%s-vm
          vcpus: 1
          memory: 160Mi
          boot:
            kernel: %s/vmlinux
            initrd: %s/initrd.cpio.gz
            cmdline: console=ttyS0 quiet cryptomgr.notests mitigations=off no_timer_check audit=0
          console: {type: file, path: %s/%s-%s-vm.console}
"""
    units = "".join("    - name: %s-%s\n      vms:\n%s" % (name, u, vm % (name, u, image, image, consoles, name, u))
                    for u in ("a", "b"))
    return """---
apiVersion: kvm-amf/v1
kind: ServiceGroup
metadata: {name: %s}
spec:
  redundancy: {model: 2N}
  nodeGroup: all
  recovery: {vmRestartMax: 0, defaultAction: failover}
  health:
    heartbeat: {interval: 200ms, timeout: 1s}
  units:
%s  serviceInstances:
    - name: %s-si
""" % (name, units, name)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_mib(pid):
    """(resident; proportional: shared pages divided among the processes sharing them; of the resident,
    anonymous: the process's own, not the libraries' pages)."""
    fields = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) / 1024.0
    return fields.get("Rss", 0.0), fields.get("Pss", 0.0), fields.get("Anonymous", 0.0)


def largest_mappings(pid, count=5):
    """The files whose pages make up most of the process's resident memory: [(MiB, file)]."""
    sizes, name = {}, None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if parts and not parts[0].endswith(":"):
                name = os.path.basename(parts[5]) if len(parts) > 5 else "[anonymous]"
            elif parts and parts[0] == "Rss:" and name:
                sizes[name] = sizes.get(name, 0.0) + int(parts[1]) / 1024.0
    return sorted(((mib, n) for n, mib in sizes.items()), reverse=True)[:count]


def settled(lab, pairs):
    status = lab.status()
    if not status or not all(n["status"] == "up" for n in status["nodes"]):
        return None
    ok = sum(1 for si in status["sis"] if sorted(a["ha"] for a in si["assignments"] if a["acked"]) ==
             ["active", "standby"])
    return status if ok == pairs else None


def measure(lab, seconds):
    pids = {i: lab.amfd_pid(i) for i in lab.hosts() if lab.amfd_pid(i)}
    before = {i: cpu_seconds(p) for i, p in pids.items()}
    time.sleep(seconds)
    return {i: ((cpu_seconds(p) - before[i]) / seconds * 100.0, memory_mib(p)) for i, p in pids.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(HERE, "..", "..", "build"))
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--idle", type=float, default=60)
    args = parser.parse_args()
    tools = Tools.of_build(args.build)
    directory = tempfile.mkdtemp(prefix="bench-amfd-")
    image = os.path.join(os.path.abspath(args.build), "guest-image-agent")
    os.makedirs(os.path.join(directory, "consoles"))
    files = relocated(directory, image, names=("cluster.yaml",))
    groups = os.path.join(directory, "pairs.yaml")
    with open(groups, "w") as f:
        for k in range(args.pairs):
            f.write(pair("p%02d" % (k + 1), image, os.path.join(directory, "consoles")))
    lab = Lab(os.path.join(directory, "lab"), tools)
    lab.up(files + [groups], prefix="bc", image=image,
           cache=os.path.join(os.path.abspath(args.build), "libvirt-lab-cache"), boot_s=5, log=lambda *a: None)
    try:
        started = time.time()
        wait_for("every pair active and standby", lambda: settled(lab, args.pairs), timeout=900, poll=1)
        print("%d VMs instantiated, every SI active and standby, after %.0f s" % (2 * args.pairs,
                                                                                 time.time() - started))
        time.sleep(10)
        per_host = {i: len(lab.qemus(i)) for i in lab.hosts()}
        idle = measure(lab, args.idle)
        print("\nidle, %.0f s (heartbeats every 200 ms):" % args.idle)
        for i, (cpu, (rss, pss, anon)) in sorted(idle.items()):
            print("  amfd %s: %d VMs, RSS %.1f MiB (PSS %.1f; %.1f MiB its own, the rest shared libraries), "
                  "CPU %.2f%% of a core (%.3f%% per VM)" % (lab.node_name(i), per_host[i], rss, pss, anon, cpu,
                                                           cpu / max(1, per_host[i])))
        first = min(idle)
        print("  largest parts of amfd %s's RSS: %s" % (lab.node_name(first), ", ".join(
            "%s %.1f MiB" % (n, mib) for mib, n in largest_mappings(lab.amfd_pid(first)))))
        total_cpu = sum(c for c, _ in idle.values())
        print("  all amfds: CPU %.2f%% of a core for %d VMs: %.3f%% per VM; RSS %.1f MiB each at most" % (
            total_cpu, sum(per_host.values()), total_cpu / sum(per_host.values()),
            max(m[0] for _, m in idle.values())))
        victim = max(per_host, key=lambda i: per_host[i])
        lab.power_off(victim)
        print("\npower-off of %s (%d VMs): the survivors over the next 20 s:" % (lab.node_name(victim),
                                                                                per_host[victim]))
        busy = measure(lab, 20)
        for i, (cpu, (rss, pss, anon)) in sorted(busy.items()):
            print("  amfd %s: RSS %.1f MiB (PSS %.1f, %.1f MiB its own), CPU %.2f%% of a core" % (
                lab.node_name(i), rss, pss, anon, cpu))
    finally:
        lab.down()
        os.system("rm -rf '%s'" % directory)


if __name__ == "__main__":
    main()
