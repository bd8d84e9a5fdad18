"""amf-lab demo: the README's main job on a lab. Brings the lab up for the configuration (unless one
is up), waits until every SI is served, shows amf-admin status, crashes the host of the active unit
of the first 2N SI that has a service address, and shows the recovery: the cluster's events, the
outage the client saw, status again. The lab keeps running afterwards."""
import time

from .lab import Lab
from .probe import Probe, client_outage
from .scenario import Recorder
from .util import LabError, now_ms, wait_for


def served(status, si):
    for entry in status["sis"] if status else []:
        if entry["name"] == si:
            return [a["su"] for a in entry["assignments"] if a["ha"] == "active" and a["acked"]]
    return []


def all_served(lab):
    status = lab.status()
    if not status:
        return None
    wanted = [si for si in status["sis"] if si["admin"] == "unlocked"]
    ready = all(served(status, si["name"]) for si in wanted) and all(
        su["presence"] == "instantiated" for su in status["sus"] if su["admin"] == "unlocked")
    return status if ready else None


def show(lab, title):
    print("\n$ amf-admin status        # %s" % title)
    print(lab.admin(lab.hosts()[0] if lab.amfd_pid(lab.hosts()[0]) else lab.hosts()[1], "status",
                    output="table").stdout.rstrip())


def run_demo(lab, args):
    if not lab.state:
        lab.up(args.file, prefix=args.prefix, image=args.image, cache=args.cache, boot_s=args.boot)
    started = time.time()
    status = wait_for("every SI served and every unit running", lambda: all_served(lab), timeout=300, poll=0.2)
    print("\nEvery service instance is served, %.1f s after the lab was up." % (time.time() - started))
    show(lab, "the cluster at a glance")
    models = {g["name"]: g["model"] for g in status["sgs"]}
    candidates = [si for si in status["sis"] if models[si["sg"]] == "2N" and si["name"] in lab.state["services"]]
    if not candidates:
        raise LabError("the configuration has no 2N SI with a service address (an attribute like ip: A.B.C.D/N)")
    si = candidates[0]["name"]
    address = lab.state["services"][si]
    active = served(status, si)[0]
    node = [su["node"] for su in status["sus"] if su["name"] == active][0]
    probes = {name: Probe(lab.client_ns(), ip) for name, ip in sorted(lab.state["services"].items())}
    probe = probes[si]
    for p in probes.values():
        wait_for("the client reaching %s" % p.address, lambda p=p: p.answered_since(now_ms() - 100), timeout=60)
    recorder = Recorder(lab, now_ms())
    recorder.start()
    time.sleep(1)
    print("\nThe client pings every service address every 20 ms; su/%s holds si/%s (%s) active on %s." % (
        active, si, address, node))
    print("$ amf-lab power-off %s      # the host crashes: every process of it is killed at once" % node)
    fault = now_ms()
    recorder.t0 = fault
    lab.power_off(lab.host_of(node))
    wait_for("si/%s served by another unit" % si, lambda: [u for u in served(lab.status(), si) if u != active],
             timeout=120, poll=0.05)
    wait_for("the client reaching %s again" % address, lambda: probe.answered_since(now_ms() - 100), timeout=60,
             poll=0.05)
    outage = client_outage(probe, fault, now_ms())
    wait_for("every SI served again", lambda: all_served(lab) and all(
        p.answered_since(now_ms() - 100) for p in probes.values()), timeout=180, poll=0.1)
    recorder.stop()
    for p in probes.values():
        p.stop()
    print("\nWhat the cluster did (amf-admin events), from the crash:")
    for e in sorted(recorder.events, key=lambda e: e["tMs"]):
        if e["tMs"] >= 0:
            print("  %+8.3fs  %-9s %s" % (e["tMs"] / 1000.0, e["type"], e["detail"]))
    print("\nThe client saw si/%s (2N, hot standby) unanswered for %d ms after the crash (Corosync token %d ms)." % (
        si, outage, lab.config().token_ms))
    for name, p in probes.items():
        other = client_outage(p, fault, now_ms())
        if name != si and other:
            print("It saw si/%s unanswered for %d ms: its unit ran on %s too and was started cold elsewhere." % (
                name, other, node))
    show(lab, "after the failover")
    print("""
The lab keeps running; the fence agent powers %s on again in %g s and it rejoins.
  %s status                  hosts, daemons, VMs, and amf-admin status
  %s admin get sis           any amf-admin verb against the cluster
  %s kill-vm %s-vm        kill -9 the active VM's QEMU (see docs/lab.md for every fault)
  %s down                    take the lab down""" % (node, lab.state["bootSeconds"], *([lab.tools.lab] * 3),
                                                       served(lab.status(), si)[0], lab.tools.lab))
    return 0


def demo(directory, tools, args):
    try:
        lab = Lab.load(directory, tools)
    except LabError:
        lab = Lab(directory, tools)
    return run_demo(lab, args)
