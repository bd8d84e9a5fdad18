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

from .ckpt_writer import CheckpointWriter
from .invariants import GuestBeliefs, checkers_for
from .probe import Probe
from .util import LabError, now_ms, run

POLL_S = 0.1
UNSUPPORTED = {"op-fail": "failing hypervisor or fence operations"}
# Decisions by the kind of recovery they take (counted in the report).
RECOVERY_WORDS = (("restart vm/", "vm-restart"), ("restart su/", "su-restart"), ("failover su/", "su-failover"),
                  ("fence ", "fence"), ("start su/", "su-start"), ("disable node/", "node-failover"))


def event_key(e):
    """What a copy of a report or decision published by another amfd shares with it: its place in the
    cluster's total order (a decision's seq; the decisions applied before a report) and its text. Two
    reports of the same words at different places (a fence that succeeds twice) are two events."""
    data = e.get("data") if isinstance(e.get("data"), dict) else {}
    place = data.get("seq") if e["type"] == "decision" else data.get("afterDecision")
    return (e["type"], place, e["text"])


class Recorder(threading.Thread):
    """Follows the lab while a scenario runs: events from every amfd's stream (each event once),
    SI outages and invariants from status and the hosts' QEMUs."""

    def __init__(self, lab, t0, checkers=None):
        super().__init__(daemon=True)
        self.lab, self.t0 = lab, t0
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.events = []
        self.violations = []
        self.checkers = checkers if checkers is not None else []
        self.beliefs = GuestBeliefs(lab.state.get("consoles", {}))
        self.applies = 0
        self.observation = None
        self.outages = []        # {"si", "startMs", "endMs"}
        self.served = {}         # si -> served now
        self.served_ever = set()
        self.actives = {}        # si -> the units status shows active
        self.partition = None    # the sides while the lab is partitioned
        self.followers = {}
        self.seen = {}

    def event(self, t_ms, kind, detail):
        with self.lock:
            self.events.append({"tMs": t_ms - self.t0, "type": kind, "detail": detail})
            for checker in self.checkers:
                checker.event(t_ms - self.t0, kind, detail)

    def fault(self, kind, fault):
        with self.lock:
            for checker in self.checkers:
                checker.fault(now_ms() - self.t0, kind, fault)

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
            key = event_key(e)
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
            obs = self.observe()
            for checker in self.checkers:
                checker.observe(obs)
            if obs["status"]:
                self.check_sis(obs["status"])

    def observe(self, every_amfd=False):
        """One observation (invariants.py) of the lab now; with every_amfd, each amfd's status too."""
        qemus, pids = {}, {}
        for i in self.lab.hosts():
            running = self.lab.qemus(i)
            qemus[self.lab.node_name(i)] = sorted(running)
            pids.update(running)
        obs = {"tMs": now_ms() - self.t0, "qemus": qemus, "beliefs": self.beliefs.read(pids),
               "status": self.lab.status(), "sides": self.partition, "statuses": None}
        if every_amfd:
            obs["statuses"] = {self.lab.node_name(i): doc for i in self.lab.hosts()
                               if self.lab.amfd_pid(i) for doc in [self.lab.status(i)] if doc}
        self.observation = obs
        return obs

    def finish(self, writes=None):
        """Stops following and runs the checkers' end-of-run checks (writes: the checkpoint writer's
        count)."""
        self.stopped.set()
        self.join(10)
        obs = self.observe(every_amfd=True)
        obs["writes"] = writes
        for checker in self.checkers:
            checker.observe(obs)
            checker.finish(obs)
        for proc in self.followers.values():
            proc.terminate()
        return obs

    def check_sis(self, status):
        t = now_ms()
        models = {g["name"]: g["model"] for g in status["sgs"]}
        for si in status["sis"]:
            name = si["name"]
            actives = sorted(a["su"] for a in si["assignments"] if a["ha"] == "active")
            allowed = 1 if models.get(si["sg"]) != "N-Way-Active" else max(1, len(actives))
            if len(actives) > allowed and actives != self.actives.get(name):
                self.violation("dual-active-status", "amfd's status shows si/%s active on %s" % (
                    name, ", ".join(actives)))
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

    def all_violations(self):
        out = list(self.violations)
        for checker in self.checkers:
            out += checker.violations
        return sorted(out, key=lambda v: v["tMs"])


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
    recorder.fault(kind, fault)
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
    elif kind == "guest-resume":
        lab.kill_qemu(fault["vm"], signal.SIGCONT)
    elif kind == "vm-crash-loop":
        lab.crash_loop(fault["vm"], fault["count"])
    elif kind == "amfd-hang":
        lab.signal_amfd(host(), signal.SIGSTOP)
    elif kind == "amfd-resume":
        lab.signal_amfd(host(), signal.SIGCONT)
    elif kind == "libvirt-restart":
        lab.restart_libvirtd(host())
    elif kind == "corosync-crash":
        lab.kill_corosync(host())
    elif kind == "corosync-start":
        lab.start_corosync(host())
    elif kind == "link-flap":
        lab.link_flap(host(), fault["count"], fault["periodMs"] / 1000.0)
    elif kind == "io-error":
        vm, since = fault["vm"], now_ms() - recorder.t0
        reported = lambda: any(e["tMs"] >= since and e["type"] == "report" and  # noqa: E731
                               e["detail"].startswith("vm/%s failed on " % vm) for e in list(recorder.events))
        full = lab.io_error(vm, failed=reported)
        return "io-error: vm/%s's storage full for %d ms%s" % (vm, full, "" if reported() else
                                                                 " (no failure reported)")
    elif kind == "packet-loss":
        held = lab.packet_loss(host(), fault["percent"], fault.get("delayMs", 0))
        if held:
            return "packet-loss: %s's %s" % (fault["node"], held)
    elif kind == "state-disk-full":
        lab.state_disk(host(), True)
    elif kind == "state-disk-free":
        lab.state_disk(host(), False)
    elif kind == "hostile-frames":
        return "hostile-frames: " + lab.hostile_frames(host()).strip().replace("\n", "; ")
    elif kind == "apply":
        # In a thread: applies at the same time run at once, each through another host's amfd.
        hosts = [i for i in lab.hosts() if lab.amfd_pid(i)]
        if not hosts:
            return "apply: no amfd runs"
        recorder.applies += 1
        i = hosts[recorder.applies % len(hosts)]

        def apply():
            result = lab.admin(i, "apply", "-f", fault["file"], output="table", timeout=30)
            recorder.event(now_ms(), "fault-reply", "apply %s on %s: exit %d %s" % (
                os.path.basename(fault["file"]), lab.node_name(i), result.returncode,
                (result.stdout or result.stderr).strip().replace("\n", " ")))

        threading.Thread(target=apply, daemon=True).start()
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


def plan_of(tools, path):
    """The scenario as amf-sim reads it (`amf-sim plan`); LabError with its FILE:LINE:COLUMN errors."""
    result = subprocess.run([tools.sim, "plan", path], capture_output=True, text=True)
    if result.returncode != 0:
        raise ScenarioInvalid(result.stderr)
    plan = json.loads(result.stdout)
    for step in plan["steps"]:
        kind = step.get("fault", {}).get("kind")
        if kind in UNSUPPORTED:
            raise LabError("%s: step at %d ms: %s (%s) is not injected by the lab yet" % (
                path, step["atMs"], kind, UNSUPPORTED[kind]))
    return plan


class ScenarioInvalid(LabError):
    pass


def simulated(tools, path):
    """What amf-sim predicts for the same scenario: its report (JSON), or None if it cannot run it."""
    result = subprocess.run([tools.sim, "run", path, "-o", "json"], capture_output=True, text=True, timeout=600)
    try:
        return json.loads(result.stdout)
    except ValueError:
        return None


def run_once(lab, path, prefix="amf", image=None, cache=None, log=print, keep=False):
    """Brings a lab up for the scenario at `path`, carries its steps out, takes the lab down (unless
    keep), and returns the report (report_of)."""
    plan = plan_of(lab.tools, path)
    lab.up(plan["config"], prefix=prefix, image=image, cache=cache, boot_s=plan["timing"]["bootMs"] / 1000.0,
           log=log)
    t0 = now_ms()
    recorder = Recorder(lab, t0, checkers_for(lab.config()))
    recorder.start()
    writer = CheckpointWriter(lab)
    writer.start()
    probes = {si: Probe(lab.client_ns(), ip) for si, ip in sorted(lab.state["services"].items())}
    try:
        for step in plan["steps"]:
            delay = (t0 + step["atMs"] - now_ms()) / 1000.0
            if delay > 0:
                time.sleep(delay)
            recorder.event(now_ms(), "fault" if "fault" in step else "admin", step["text"])
            try:
                outcome = perform(lab, recorder, step)
            except LabError as e:
                outcome = "%s failed: %s" % (step["text"], e)
            if outcome:
                recorder.event(now_ms(), "admin-reply" if "admin" in step else "fault-reply", outcome)
        delay = (t0 + plan["untilMs"] - now_ms()) / 1000.0
        if delay > 0:
            time.sleep(delay)
        end = now_ms()
        final = recorder.finish(writer.finish())
        for probe in probes.values():
            probe.stop()
        report = report_of(plan, recorder, probes, final["status"], t0, end, final["writes"])
    finally:
        recorder.stopped.set()
        writer.stopped.set()
        for probe in probes.values():
            probe.stop()
        if not keep:
            lab.down()
    report["simulated"] = summary_of_sim(simulated(lab.tools, path))
    return report


def run_scenario(lab, args):
    log = (lambda *a: print(*a, file=sys.stderr)) if args.output == "json" else print
    try:
        report = run_once(lab, args.scenario, args.prefix, args.image, args.cache, log, args.keep)
    except ScenarioInvalid as e:
        sys.stderr.write(str(e))
        return 65
    if args.output == "json":
        print(json.dumps(report, indent=2))
    else:
        print(report_text(report))
    return 1 if failed(report) else 0


def failed(report):
    return bool(report["invariants"]["violations"] or report["expectations"]["unmet"])


def run_campaign(lab_for, tools, args):
    """Runs each scenario on a fresh lab; writes DIR/NAME.json per scenario and DIR/report.json and
    DIR/report.md for all; returns 1 if any failed."""
    os.makedirs(args.report, exist_ok=True)
    rows = []
    for path in args.scenarios:
        name = os.path.splitext(os.path.basename(path))[0]
        print("== %s" % name, flush=True)
        started = time.time()
        try:
            report = run_once(lab_for(name), path, args.prefix, args.image, args.cache, log=lambda *a: None)
        except LabError as e:
            report = {"error": str(e).strip()}
        report["scenario"] = name
        report["wallSeconds"] = round(time.time() - started, 1)
        with open(os.path.join(args.report, name + ".json"), "w") as f:
            json.dump(report, f, indent=2)
        row = row_of(report)
        rows.append(row)
        print("   %s in %.0f s: %s" % ("FAILED" if row["failed"] else "passed", report["wallSeconds"],
                                       "; ".join(row["problems"]) or "no violation, every expectation met"),
              flush=True)
    with open(os.path.join(args.report, "report.json"), "w") as f:
        json.dump({"scenarios": rows}, f, indent=2)
    with open(os.path.join(args.report, "report.md"), "w") as f:
        f.write(markdown(rows))
    print("\n" + markdown(rows))
    return 1 if any(r["failed"] for r in rows) else 0


def row_of(report):
    if "error" in report:
        return {"scenario": report["scenario"], "failed": True, "problems": [report["error"]]}
    summary = report["summary"]
    problems = ["%s: %s" % (v["invariant"], v["detail"]) for v in report["invariants"]["violations"]]
    problems += report["expectations"]["unmet"]
    return {"scenario": report["scenario"], "failed": failed(report), "problems": problems,
            "faults": summary["faults"], "detectionMs": summary["detectionMs"],
            "clientOutageMs": summary["clientOutageMs"], "dualActive": summary["dualActive"],
            "lostWrites": summary["lostWrites"], "checkpointWrites": summary.get("checkpointWrites"),
            "recoveryActions": summary["recoveryActions"],
            "simulated": report["simulated"], "wallSeconds": report["wallSeconds"]}


def markdown(rows):
    out = ["| Scenario | Result | Faults | Detection (ms) | Client outage max / p50 (ms) | Dual-active | "
           "Lost writes / acknowledged | Recovery actions | amf-sim predicted outage max (ms) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "faults" not in r:
            out.append("| %s | **error**: %s | | | | | | | |" % (r["scenario"], "; ".join(r["problems"])[:200]))
            continue
        outage = r["clientOutageMs"]
        sim = r["simulated"] or {}
        out.append("| %s | %s | %s | %s | %s | %d | %s | %s | %s |" % (
            r["scenario"], "**FAILED**: " + "; ".join(r["problems"])[:300] if r["failed"] else "passed",
            ", ".join(r["faults"]), ", ".join("-" if d is None else str(d) for d in r["detectionMs"]) or "-",
            "%s / %s" % (outage["max"], outage["p50"]) if outage["count"] else "none", r["dualActive"],
            "-" if r["lostWrites"] is None else "%d / %d" % (r["lostWrites"], r["checkpointWrites"]),
            ", ".join("%s %d" % kv for kv in sorted(r["recoveryActions"].items())) or "none",
            sim.get("maxOutageMs", "-") if sim else "-"))
    return "\n".join(out) + "\n"


def summary_of_sim(report):
    if not report:
        return None
    lengths = [(o["endMs"] if o["endMs"] is not None else report.get("untilMs", o["startMs"])) - o["startMs"]
               for o in report["outages"]]
    return {"outages": report["outages"], "maxOutageMs": max(lengths) if lengths else 0,
            "violations": len(report["invariants"]["violations"])}


# A client outage is a silence of the SI's address longer than this: shorter ones happen on these 2
# cores when a TCG guest boots beside the one that serves (its replies come late, not never).
CLIENT_GAP_MS = 250


def report_of(plan, recorder, probes, status, t0, end, writes=None):
    client = []
    for si, probe in probes.items():
        served = probe.replies and probe.replies[0]
        for start, stop in probe.outages(served or end, end, min_gap_ms=CLIENT_GAP_MS) if served else []:
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
    violations = recorder.all_violations()
    return {
        "seed": plan["seed"],
        "events": events,
        "final": final_state(status) if status else {"nodes": [], "sus": [], "sis": []},
        "outages": recorder.outages,
        "clientOutages": client,
        "invariants": {"violations": violations},
        "expectations": {"unmet": unmet},
        "summary": summary(plan, events, client, violations, end - t0, writes),
    }


def summary(plan, events, client, violations, until_ms, writes=None):
    """The report's figures: the faults; for each, how long until the cluster first reacted (its first
    report or decision after it); the client's outages; dual actives; the checkpoint writes
    acknowledged and lost (writes: the writer's count); recovery actions by kind."""
    faults, detection = [], []
    for step in plan["steps"]:
        if "fault" not in step:
            continue
        faults.append(step["text"])
        reaction = next((e["tMs"] for e in events if e["tMs"] >= step["atMs"] and e["type"] in ("report", "decision")
                         and "admin request" not in e["detail"]), None)
        detection.append(None if reaction is None else reaction - step["atMs"])
    lengths = sorted(((o["endMs"] if o["endMs"] is not None else until_ms) - o["startMs"]) for o in client)
    actions = {}
    for e in events:
        if e["type"] != "decision":
            continue
        for part in e["detail"].split("; "):
            for word, kind in RECOVERY_WORDS:
                if part.startswith(word):
                    actions[kind] = actions.get(kind, 0) + 1
                    break
    return {
        "faults": faults,
        "detectionMs": detection,
        "clientOutageMs": {"count": len(lengths), "max": lengths[-1] if lengths else 0,
                           "p50": lengths[len(lengths) // 2] if lengths else 0},
        "dualActive": sum(1 for v in violations if v["invariant"].startswith("dual-active")),
        "checkpointWrites": None if writes is None else writes["acked"],
        "lostWrites": None if writes is None or writes["lost"] is None else len(writes["lost"]),
        "recoveryActions": actions,
    }


def report_text(report):
    out = ["seed %d (real time: the seed does not steer the lab)" % report["seed"], "", "timeline"]
    summary = report.get("summary")
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
    if summary:
        outage = summary["clientOutageMs"]
        out += ["", "summary",
                "  faults: %s" % (", ".join(summary["faults"]) or "none"),
                "  first reaction after each fault (ms): %s" % (
                    ", ".join("-" if d is None else str(d) for d in summary["detectionMs"]) or "-"),
                "  client outages: %d, max %d ms, p50 %d ms" % (outage["count"], outage["max"], outage["p50"]),
                "  dual actives: %d" % summary["dualActive"],
                "  recovery actions: %s" % (", ".join("%s %d" % kv for kv in sorted(summary["recoveryActions"].items()))
                                            or "none")]
    sim = report.get("simulated")
    if sim:
        out.append("  amf-sim predicted: %d outages, the longest %d ms; %d violations" % (
            len(sim["outages"]), sim["maxOutageMs"], sim["violations"]))
    return "\n".join(out)
