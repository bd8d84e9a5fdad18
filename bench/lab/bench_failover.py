#!/usr/bin/env python3
"""Failover on a real three-host lab (amf-lab, examples/lab): what the client sees, and where the time
goes. Prints p50 and max over N trials of each:

  vm-kill        kill -9 of the 2N active's QEMU -> the client reaches the service address again
  host-crash     power-off of the 2N active's host -> the same
  nored-crash    power-off of the No-Redundancy unit's host -> its QEMU runs on another host, and
                 the client reaches its address again (the guest booted and took it)

and, from the amfds' event streams, for the host crashes: the membership change (the first `view`
event without the host) to the director's decision to fence, the fence's report, and the start
(or active assignment) decision.

Usage: bench_failover.py [--build DIR] [--trials N]    (root; after a build; about 10 minutes)
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts", "lab"))
from amf_lab.examples import relocated  # noqa: E402
from amf_lab.lab import Lab, Tools  # noqa: E402
from amf_lab.probe import Probe, client_outage  # noqa: E402
from amf_lab.scenario import Recorder  # noqa: E402
from amf_lab.util import now_ms, wait_for  # noqa: E402

MME, OAM = "mme-si", "oam-si"


def holders(status, si, ha):
    for entry in status["sis"] if status else []:
        if entry["name"] == si:
            return [a["su"] for a in entry["assignments"] if a["ha"] == ha and a["acked"]]
    return []


def settled(lab, probes):
    status = lab.status()
    if not status or not all(n["status"] == "up" for n in status["nodes"]):
        return None
    if len(holders(status, MME, "active")) != 1 or len(holders(status, MME, "standby")) != 1:
        return None
    if len(holders(status, OAM, "active")) != 1:
        return None
    if not all(p.answered_since(now_ms() - 100) for p in probes.values()):
        return None
    return status


def node_of(status, su):
    return [s["node"] for s in status["sus"] if s["name"] == su][0]


def first(events, since, kind, *words):
    for e in events:
        if e["tMs"] >= since and e["type"] == kind and all(w in e["detail"] for w in words):
            return e["tMs"]
    return None


def pct(values):
    values = sorted(values)
    return "p50 %d ms, max %d ms" % (statistics.median(values), values[-1]) if values else "no trial"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(HERE, "..", "..", "build"))
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    tools = Tools.of_build(args.build)
    directory = tempfile.mkdtemp(prefix="bench-failover-")
    lab = Lab(os.path.join(directory, "lab"), tools)
    image = os.path.join(os.path.abspath(args.build), "guest-image-agent")
    files = relocated(directory, image)
    with open(files[0], "a") as f:
        # Repeated faults on purpose: the escalation ladder must not disable hosts and units here.
        f.write("  escalation: {suFailoverMax: 1000, suFailoverProbation: 1s}\n")
    lab.up(files, prefix="bf", image=image,
           cache=os.path.join(os.path.abspath(args.build), "libvirt-lab-cache"), boot_s=3, log=lambda *a: None)
    probes = {si: Probe(lab.client_ns(), ip) for si, ip in lab.state["services"].items()}
    recorder = Recorder(lab, 0)
    recorder.start()
    results = {k: [] for k in ("vm-kill", "vm-kill-acked", "host-crash", "host-crash-acked", "nored-qemu",
                               "nored-guest", "view-to-fence", "fence", "fenced-to-start", "view")}
    try:
        for trial in range(args.trials):
            for kind in ("vm-kill", "host-crash", "nored-crash"):
                status = wait_for("the lab settled", lambda: settled(lab, probes), timeout=300, poll=0.2)
                time.sleep(1)
                status = settled(lab, probes) or status
                fault = now_ms()
                if kind == "nored-crash":
                    node = node_of(status, "oam-1")
                    lab.power_off(lab.host_of(node))
                    wait_for("oam-vm's QEMU elsewhere", lambda: [i for i in lab.vm_host("oam-vm")
                                                                  if lab.node_name(i) != node], timeout=120, poll=0.01)
                    results["nored-qemu"].append(now_ms() - fault)
                    wait_for("oam-si answering", lambda: probes[OAM].answered_since(now_ms() - 50), timeout=120,
                             poll=0.02)
                    results["nored-guest"].append(client_outage(probes[OAM], fault, now_ms()))
                    line = "nored-crash: QEMU running elsewhere after %d ms, client served after %d ms" % (
                        results["nored-qemu"][-1], results["nored-guest"][-1])
                else:
                    active = holders(status, MME, "active")[0]
                    node = node_of(status, active)
                    if kind == "vm-kill":
                        lab.kill_qemu(active + "-vm")
                    else:
                        lab.power_off(lab.host_of(node))
                    wait_for("another active", lambda: [u for u in holders(lab.status(), MME, "active")
                                                        if u != active], timeout=60, poll=0.02)
                    wait_for("mme-si answering", lambda: probes[MME].answered_since(now_ms() - 50), timeout=60,
                             poll=0.02)
                    results[kind].append(client_outage(probes[MME], fault, now_ms()))
                    time.sleep(0.5)
                    acked = first(recorder.events, fault, "report", "acknowledged active for si/mme-si")
                    if acked:
                        results[kind + "-acked"].append(acked - fault)
                    line = "%s: client outage %d ms, new active acknowledged after %s ms" % (
                        kind, results[kind][-1], acked - fault if acked else "?")
                if kind != "vm-kill":
                    time.sleep(0.5)
                    lost = first(recorder.events, fault, "decision", "node %s lost" % node)
                    fenced = first(recorder.events, fault, "report", "fencing %s succeeded" % node)
                    start = first(recorder.events, fenced or fault, "decision", "start su/" if kind == "nored-crash"
                                  else "assign si/mme-si active")
                    if lost and fenced and start:
                        results["view"].append(lost - fault)
                        results["fence"].append(fenced - lost)
                        results["fenced-to-start"].append(start - fenced)
                        line += "; lost seen %d ms, fenced +%d ms, start/assign +%d ms" % (
                            lost - fault, fenced - lost, start - fenced)
                print("trial %d %s" % (trial + 1, line), flush=True)
    finally:
        recorder.stop()
        for p in probes.values():
            p.stop()
        lab.down()
        os.system("rm -rf '%s'" % directory)
    print()
    print("2N, active VM killed: client outage %s; new active acknowledged %s" % (
        pct(results["vm-kill"]), pct(results["vm-kill-acked"])))
    print("2N, active host crashed: client outage %s; new active acknowledged %s" % (
        pct(results["host-crash"]), pct(results["host-crash-acked"])))
    print("No-Redundancy, host crashed: QEMU running on a survivor %s; client served again %s" % (
        pct(results["nored-qemu"]), pct(results["nored-guest"])))
    print("host crashes: crash to the director's 'lost' decision %s; fencing %s; fenced to the start or "
          "assignment decision %s" % (pct(results["view"]), pct(results["fence"]), pct(results["fenced-to-start"])))


if __name__ == "__main__":
    main()
