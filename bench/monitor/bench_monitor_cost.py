#!/usr/bin/env python3
"""What collecting the VMs' statistics costs: on a real three-host lab supervising 20 VMs (ten 2N pairs
of test guests, guest heartbeat every 200 ms), each amfd's CPU and resident memory, each libvirtd's CPU
and the VMs' CPU time (their QEMUs'), with the statistics collected every 1 s, every 15 s, and not at
all (--stats-interval 0: the endpoint still serves everything else). Every amfd is restarted with
the interval of the round (AMFD_STATS_INTERVAL; restarted, amfd reattaches to its VMs), then measured
over a window; the rounds are repeated to average out the machine's other load. No Prometheus
scrapes during the windows: what a scrape costs is printed apart (one scrape of every endpoint).

Usage: bench_monitor_cost.py [--build DIR] [--pairs N] [--window S] [--rounds N]   (root; after a build)
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts", "lab"))
from amf_lab.examples import relocated  # noqa: E402
from amf_lab.lab import Lab, Tools  # noqa: E402
from amf_lab.util import wait_for  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
INTERVALS = [("off", "0"), ("15 s", "15s"), ("1 s", "1s")]


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
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def settled(lab, pairs):
    status = lab.status()
    if not status or not all(n["status"] == "up" for n in status["nodes"]):
        return None
    ok = sum(1 for si in status["sis"] if sorted(a["ha"] for a in si["assignments"] if a["acked"]) ==
             ["active", "standby"])
    return status if ok == pairs else None


def restart_amfds(lab, interval):
    os.environ["AMFD_STATS_INTERVAL"] = interval
    for i in lab.hosts():
        lab.kill_amfd(i, signal.SIGTERM)
    for i in lab.hosts():
        lab.start_amfd(i)
    for i in lab.hosts():
        wait_for("amfd on %s answering" % lab.node_name(i), lambda i=i: lab.status(i), timeout=60)


def measure(lab, seconds):
    """CPU (cores) of the amfds, the libvirtds and the QEMUs over `seconds`; the amfds' largest RSS."""
    groups = {"amfd": [lab.amfd_pid(i) for i in lab.hosts()],
              "libvirtd": [lab.libvirtd_pid(i) for i in lab.hosts()],
              "qemu": [pid for i in lab.hosts() for pid in lab.qemus(i).values()]}
    before = {g: {p: cpu_seconds(p) for p in pids if p} for g, pids in groups.items()}
    time.sleep(seconds)
    out = {}
    for g, pids in before.items():
        used = [cpu_seconds(p) - t for p, t in pids.items() if t is not None and cpu_seconds(p) is not None]
        out[g] = sum(used) / seconds
    out["vms"] = len(groups["qemu"])
    out["rss"] = max(rss_mib(p) for p in groups["amfd"] if p)
    return out


def scrape_cost(lab):
    """amfd CPU seconds of one scrape of each endpoint (through the host's namespace)."""
    pids = [lab.amfd_pid(i) for i in lab.hosts()]
    before = [cpu_seconds(p) for p in pids]
    sizes = []
    for _ in range(20):
        for i in lab.hosts():
            out = subprocess.run(["ip", "netns", "exec", lab.netns(i), "curl", "-s", "http://127.0.0.1:9464/metrics"],
                                 capture_output=True, text=True).stdout
            sizes.append(len(out))
    after = [cpu_seconds(p) for p in pids]
    return sum(a - b for a, b in zip(after, before)) / (20 * len(pids)), max(sizes)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(HERE, "..", "..", "build"))
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--window", type=float, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    tools = Tools.of_build(args.build)
    directory = tempfile.mkdtemp(prefix="bench-monitor-")
    image = os.path.join(os.path.abspath(args.build), "guest-image-agent")
    os.makedirs(os.path.join(directory, "consoles"))
    files = relocated(directory, image, names=("cluster.yaml",))
    groups = os.path.join(directory, "pairs.yaml")
    with open(groups, "w") as f:
        for k in range(args.pairs):
            f.write(pair("p%02d" % (k + 1), image, os.path.join(directory, "consoles")))
    os.environ["AMFD_METRICS"] = "127.0.0.1:9464"
    os.environ["AMFD_STATS_INTERVAL"] = "0"
    lab = Lab(os.path.join(directory, "lab"), tools)
    try:
        lab.up(files + [groups], prefix="bmon", image=image,
               cache=os.path.join(os.path.abspath(args.build), "libvirt-lab-cache"), boot_s=5, log=lambda *a: None)
        started = time.time()
        wait_for("every pair active and standby", lambda: settled(lab, args.pairs), timeout=900, poll=1)
        print("%d VMs instantiated, every SI active and standby, after %.0f s; windows of %.0f s, %d rounds" % (
            2 * args.pairs, time.time() - started, args.window, args.rounds))
        results = {name: [] for name, _ in INTERVALS}
        for r in range(args.rounds):
            for name, interval in INTERVALS:
                restart_amfds(lab, interval)
                wait_for("every pair active and standby", lambda: settled(lab, args.pairs), timeout=300, poll=1)
                time.sleep(10)
                m = measure(lab, args.window)
                results[name].append(m)
                print("  round %d, statistics %-4s: amfds %.2f%%, libvirtds %.2f%%, %d QEMUs %.1f%% of a core; "
                      "amfd RSS %.1f MiB" % (r + 1, name, 100 * m["amfd"], 100 * m["libvirtd"], m["vms"],
                                             100 * m["qemu"], m["rss"]))
        print("\nmean over %d rounds (CPU in %% of one core, summed over the 3 hosts):" % args.rounds)
        print("  statistics  amfds   libvirtds  QEMUs (%d VMs)  all     amfd RSS (largest)" % (2 * args.pairs))
        mean = {}
        for name, _ in INTERVALS:
            runs = results[name]
            mean[name] = {k: sum(m[k] for m in runs) / len(runs) for k in ("amfd", "libvirtd", "qemu", "rss")}
            m = mean[name]
            print("  %-10s  %5.2f   %5.2f      %6.2f          %6.2f  %.1f MiB" % (
                name, 100 * m["amfd"], 100 * m["libvirtd"], 100 * m["qemu"],
                100 * (m["amfd"] + m["libvirtd"] + m["qemu"]), m["rss"]))
        for name in ("15 s", "1 s"):
            delta = {k: mean[name][k] - mean["off"][k] for k in ("amfd", "libvirtd", "qemu")}
            print("  collecting every %s costs %+.2f%% of a core: amfds %+.2f, libvirtds %+.2f, QEMUs %+.2f" % (
                name, 100 * sum(delta.values()), 100 * delta["amfd"], 100 * delta["libvirtd"], 100 * delta["qemu"]))
        per_scrape, size = scrape_cost(lab)
        print("  one scrape of an endpoint: %.2f ms of amfd's CPU, %d bytes" % (1000 * per_scrape, size))
    finally:
        lab.down()
        os.system("rm -rf '%s'" % directory)


if __name__ == "__main__":
    main()
