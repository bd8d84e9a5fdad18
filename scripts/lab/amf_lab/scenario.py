"""amf-lab run: an amf-sim scenario (docs/simulation.md) carried out for real on a lab built for its
configuration, in real time, with the same JSON report plus the client's view of each outage.

t = 0 is when every amfd has started, as at the start of a simulated run. The scenario's `timing`
is the simulator's, except `boot`: the lab's fence agent powers a fenced host on again after it.
The report's outages and invariants come from outside the node managers' state where the lab can
see it: which QEMU runs on which host, and the client's probes; `outages` from amfd's status
(no acknowledged active), `clientOutages` from the probes of each SI's address.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

from .probe import Probe
from .util import LabError, now_ms, run

POLL_S = 0.1
UNSUPPORTED = {"io-error": "a failing disk", "op-fail": "failing hypervisor or fence operations"}


class Recorder(threading.Thread):
    """Follows the lab while a scenario runs: events from every amfd's stream (each event once),
    SI outages and invariants from status and the hosts' QEMUs."""

    def __init__(self, lab, t0):
        super().__init__(daemon=True)
        self.lab, self.t0 = lab, t0
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.events = []
        self.violations = []
        self.outages = []        # {"si", "startMs", "endMs"}
        self.served = {}         # si -> served now
        self.served_ever = set()
        self.actives = {}        # si -> the units status shows active
        self.partition = None    # the sides while the lab is partitioned
        self.followers = {}
        self.seen = {}
        self.doubled = set()     # VMs running on two hosts now (reported once per occurrence)

    def event(self, t_ms, kind, detail):
        with self.lock:
            self.events.append({"tMs": t_ms - self.t0, "type": kind, "detail": detail})

    def violation(self, invariant, detail):
        with self.lock:
            self.violations.append({"tMs": now_ms() - self.t0, "invariant": invariant, "detail": detail})

    # ---- the amfds' event streams --------------------------------------------------------------------
    def follow(self, i):
        proc = subprocess.Popen([self.lab.tools.admin, "--endpoint", self.lab.endpoint(i), "-o", "json", "events",
                                 "--follow"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.followers[i] = proc
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc):
        for line in proc.stdout:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e["type"] not in ("report", "decision"):
                continue
            key = (e["type"], e["text"])
            with self.lock:
                # Every amfd publishes every report and decision it applies: keep the first copy.
                last = self.seen.get(key)
                if last is not None and abs(e["timeMs"] - last) < 2000:
                    continue
                self.seen[key] = e["timeMs"]
            self.event(e["timeMs"], e["type"], e["text"])

    def refollow(self):
        for i in self.lab.hosts():
            proc = self.followers.get(i)
            if (proc is None or proc.poll() is not None) and self.lab.amfd_pid(i) and \
                    os.path.exists(os.path.join(self.lab.amfd_dir(i), "events.sock")):
                self.follow(i)

    # ---- status and the truth ----------------------------------------------------------------------
    def run(self):
        while not self.stopped.wait(POLL_S):
            self.refollow()
            self.check_vms()
            status = self.lab.status()
            if status:
                self.check_sis(status)

    def check_vms(self):
        where = {}
        for i in self.lab.hosts():
            for vm in self.lab.qemus(i):
                where.setdefault(vm, []).append(self.lab.node_name(i))
        doubled = {vm for vm, nodes in where.items() if len(nodes) > 1}
        for vm in doubled - self.doubled:
            nodes = where[vm]
            # Hosts on two sides of a partition: the cluster recovered a VM its cut-off host still ran.
            together = not self.partition or any(set(nodes) <= set(side) for side in self.partition)
            self.violation("vm-on-two-hosts" if together else "recovered-before-fence",
                           "vm/%s runs on %s" % (vm, ", ".join(nodes)))
        self.doubled = doubled

    def check_sis(self, status):
        t = now_ms()
        models = {g["name"]: g["model"] for g in status["sgs"]}
        for si in status["sis"]:
            name = si["name"]
            actives = sorted(a["su"] for a in si["assignments"] if a["ha"] == "active")
            allowed = 1 if models.get(si["sg"]) != "N-Way-Active" else max(1, len(actives))
            if len(actives) > allowed and actives != self.actives.get(name):
                self.violation("dual-active", "si/%s is active on %s" % (name, ", ".join(actives)))
            self.actives[name] = actives
            served = any(a["ha"] == "active" and a["acked"] for a in si["assignments"])
            if served:
                self.served_ever.add(name)
            was = self.served.get(name)
            if was and not served:
                self.outages.append({"si": name, "startMs": t - self.t0, "endMs": None})
            elif was is False and served:
                for o in reversed(self.outages):
                    if o["si"] == name and o["endMs"] is None:
                        o["endMs"] = t - self.t0
                        break
            if name in self.served_ever:
                self.served[name] = served

    def stop(self):
        self.stopped.set()
        self.join(10)
        for proc in self.followers.values():
            proc.terminate()


def perform(lab, recorder, step):
    fault = step.get("fault")
    if not fault:
        words = step["admin"].split()
        for i in lab.hosts():
            if lab.amfd_pid(i):
                result = lab.admin(i, *words, output="table", timeout=30)
                return "%s: exit %d %s" % (step["admin"], result.returncode,
                                           (result.stdout or result.stderr).strip().replace("\n", " "))
        return step["admin"] + ": no amfd runs"
    kind = fault["kind"]
    host = lambda: lab.host_of(fault["node"])  # noqa: E731
    if kind == "node-crash":
        lab.power_off(host())
    elif kind == "node-start":
        lab.power_on(host())
    elif kind == "vm-crash":
        lab.kill_qemu(fault["vm"])
    elif kind == "guest-hang":
        lab.kill_qemu(fault["vm"], signal.SIGSTOP)
    elif kind == "partition":
        recorder.partition = fault["groups"]
        lab.partition(fault["groups"])
    elif kind == "heal":
        recorder.partition = None
        lab.heal()
    elif kind == "amfd-crash":
        lab.kill_amfd(host())
    elif kind == "amfd-start":
        lab.start_amfd(host())
    return None


def final_state(status):
    nodes = [{"name": n["name"], "member": n["member"], "status": n["status"]} for n in status["nodes"]]
    sus = sorted(({k: su[k] for k in ("name", "node", "admin", "oper", "presence", "readiness")}
                  for su in status["sus"]), key=lambda s: s["name"])
    sis = sorted(({"name": si["name"], "assignments": [{"su": a["su"], "ha": a["ha"]} for a in si["assignments"]]}
                  for si in status["sis"]), key=lambda s: s["name"])
    return {"nodes": nodes, "sus": sus, "sis": sis}


def final_words(status, target):
    """The words an expectation compares, as amf-sim's: docs/simulation.md."""
    kind, name = target.split("/", 1)
    for su in status["sus"] if kind == "su" else []:
        if su["name"] == name:
            return {"node": su["node"] or "null", "admin": su["admin"], "oper": su["oper"],
                    "presence": su["presence"], "readiness": su["readiness"]}
    for si in status["sis"] if kind == "si" else []:
        if si["name"] == name:
            pick = lambda ha: ",".join(sorted(a["su"] for a in si["assignments"] if a["ha"] == ha))  # noqa: E731
            return {"active": pick("active"), "standby": pick("standby"), "admin": si["admin"]}
    for n in status["nodes"] if kind == "node" else []:
        if n["name"] == name:
            return {"member": "true" if n["member"] else "false", "status": n["status"], "admin": n["admin"],
                    "oper": n["oper"]}
    return {}


def run_scenario(lab, args):
    result = subprocess.run([lab.tools.sim, "plan", args.scenario], capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        return result.returncode
    plan = json.loads(result.stdout)
    for step in plan["steps"]:
        kind = step.get("fault", {}).get("kind")
        if kind in UNSUPPORTED:
            raise LabError("%s: step at %d ms: %s (%s) is not injected by the lab yet" % (
                args.scenario, step["atMs"], kind, UNSUPPORTED[kind]))
    quiet = args.output == "json"
    log = (lambda *a: print(*a, file=sys.stderr)) if quiet else print
    lab.up(plan["config"], prefix=args.prefix, image=args.image, cache=args.cache,
           boot_s=plan["timing"]["bootMs"] / 1000.0, log=log)
    t0 = now_ms()
    recorder = Recorder(lab, t0)
    recorder.start()
    probes = {si: Probe(lab.client_ns(), ip) for si, ip in sorted(lab.state["services"].items())}
    failed = True
    try:
        for step in plan["steps"]:
            delay = (t0 + step["atMs"] - now_ms()) / 1000.0
            if delay > 0:
                time.sleep(delay)
            recorder.event(now_ms(), "fault" if "fault" in step else "admin", step["text"])
            outcome = perform(lab, recorder, step)
            if outcome:
                recorder.event(now_ms(), "admin-reply", outcome)
        delay = (t0 + plan["untilMs"] - now_ms()) / 1000.0
        if delay > 0:
            time.sleep(delay)
        end = now_ms()
        recorder.stop()
        for probe in probes.values():
            probe.stop()
        status = lab.status()
        report = report_of(plan, recorder, probes, status, t0, end)
        failed = bool(report["invariants"]["violations"] or report["expectations"]["unmet"])
    finally:
        recorder.stopped.set()
        for probe in probes.values():
            probe.stop()
        if not args.keep:
            lab.down()
    if args.output == "json":
        print(json.dumps(report, indent=2))
    else:
        print(report_text(report))
    return 1 if failed else 0


def report_of(plan, recorder, probes, status, t0, end):
    client = []
    for si, probe in probes.items():
        served = probe.replies and probe.replies[0]
        for start, stop in probe.outages(served or end, end) if served else []:
            client.append({"si": si, "address": probe.address, "startMs": start - t0,
                           "endMs": None if stop is None else stop - t0})
    unmet = []
    if status is None:
        unmet.append("no amfd answered at the end of the run")
    for target, expected in plan["expect"]["final"].items():
        actual = final_words(status, target) if status else {}
        for key, value in expected.items():
            got = actual.get(key, "(none)")
            if got != value:
                unmet.append("%s %s: expected %s, got %s" % (target, key, value, got))
    for si, bound in plan["expect"]["maxOutageMs"].items():
        spans = [o for o in client if o["si"] == si] if si in probes else \
            [o for o in recorder.outages if o["si"] == si]
        for o in spans:
            length = (o["endMs"] if o["endMs"] is not None else end - t0) - o["startMs"]
            if length > bound:
                unmet.append("si/%s outage %dms at %dms exceeds %dms" % (si, length, o["startMs"], bound))
    events = sorted(recorder.events, key=lambda e: e["tMs"])
    return {
        "seed": plan["seed"],
        "events": events,
        "final": final_state(status) if status else {"nodes": [], "sus": [], "sis": []},
        "outages": recorder.outages,
        "clientOutages": client,
        "invariants": {"violations": recorder.violations},
        "expectations": {"unmet": unmet},
    }


def report_text(report):
    out = ["seed %d (real time: the seed does not steer the lab)" % report["seed"], "", "timeline"]
    for e in report["events"]:
        out.append("%9.3fs  %-11s %s" % (e["tMs"] / 1000.0, e["type"], e["detail"]))
    out += ["", "nodes"]
    for n in report["final"]["nodes"]:
        out.append("  %s  %s  %s" % (n["name"], "member" if n["member"] else "not a member", n["status"]))
    out += ["", "service units"]
    for su in report["final"]["sus"]:
        out.append("  %s  %s  %s  %s  %s  %s" % (su["name"], su["node"] or "-", su["admin"], su["oper"],
                                                su["presence"], su["readiness"]))
    out += ["", "service instances"]
    for si in report["final"]["sis"]:
        out.append("  %s  %s" % (si["name"], " ".join("%s=%s" % (a["su"], a["ha"]) for a in si["assignments"])))
    for title, key in (("outages (amfd's status)", "outages"), ("outages the client saw", "clientOutages")):
        out += ["", title]
        for o in report[key]:
            out.append("  %s  from %9.3fs  %s" % (o["si"], o["startMs"] / 1000.0, "not over" if o["endMs"] is None
                                                  else "for %dms" % (o["endMs"] - o["startMs"])))
        if not report[key]:
            out.append("  none")
    out += ["", "invariant violations"]
    for v in report["invariants"]["violations"]:
        out.append("%9.3fs  %s: %s" % (v["tMs"] / 1000.0, v["invariant"], v["detail"]))
    if not report["invariants"]["violations"]:
        out.append("  none")
    if report["expectations"]["unmet"]:
        out += ["", "unmet expectations"] + ["  " + u for u in report["expectations"]["unmet"]]
    return "\n".join(out)
