#!/usr/bin/env python3
"""amf-lab run: an amf-sim scenario carried out on a real lab (scripts/lab/amf_lab/scenario.py).

Usage: lab_run_test.py CASE   (root; AMF_LAB, AMF_SIM, AMF_GUEST_IMAGE, AMF_LIBVIRT_CACHE from ctest)
Cases:
  host-crash  examples/lab (paths moved into the test's directory): node1 crashed at 10 s and
              started at 16 s (if it hosted units, the lab's fence agent has power-cycled it
              already), an si-swap at 22 s. Exit 0; the report has the keys of amf-sim's plus
              clientOutages, the steps in its events with the cluster's reports and decisions, no
              violation, node1 back, the SI's outages within the scenario's bound
  refusals    an invalid scenario exits 65 with FILE:LINE:COLUMN; a fault the lab cannot inject
              (op-fail) is refused, naming the step, before anything is built
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from amfd_test import configuration, check  # noqa: E402
from amf_lab.lab import free_prefix  # noqa: E402


def scenario(directory, steps, expect=""):
    files = configuration(directory)
    path = os.path.join(directory, "scenario.yaml")
    with open(path, "w") as f:
        f.write("config: [%s]\nseed: 3\ntiming: {boot: 5s}\nuntil: 32s\nsteps:\n%s%s" % (
            ", ".join(files), steps, expect))
    return path


def amf_lab(directory, *args):
    return subprocess.run([os.environ["AMF_LAB"], "--dir", os.path.join(directory, "lab"), *args],
                          capture_output=True, text=True, timeout=600)


def case_host_crash(directory):
    path = scenario(directory, """  - at: 10s
    fault: {node-crash: node1}
  - at: 16s
    fault: {node-start: node1}
  - at: 22s
    admin: "si-swap si/mme-si"
""", """expect:
  final:
    node/node1: {member: "true", status: up}
    su/mme-a: {presence: instantiated}
    su/mme-b: {presence: instantiated}
  maxOutage: {mme-si: 2500ms}
""")
    args = ["run", path, "-o", "json", "--prefix", free_prefix("lr")]
    if os.environ.get("AMF_LIBVIRT_CACHE"):
        args += ["--cache", os.environ["AMF_LIBVIRT_CACHE"]]
    result = amf_lab(directory, *args)
    sys.stdout.write(result.stderr)
    check(result.returncode in (0, 1), "amf-lab run: exit %d\n%s" % (result.returncode, result.stdout))
    report = json.loads(result.stdout)
    print(json.dumps({k: report[k] for k in ("outages", "clientOutages", "invariants", "expectations")}, indent=1))
    for key in ("seed", "events", "final", "outages", "clientOutages", "invariants", "expectations"):
        check(key in report, "the report has no %s" % key)
    check(report["seed"] == 3, "seed %s" % report["seed"])
    details = [(e["type"], e["detail"]) for e in report["events"]]
    check(("fault", "node-crash node1") in details, "no node-crash event")
    check(("admin", "si-swap si/mme-si") in details, "no si-swap event")
    check(any(t == "decision" and "node1 lost" in d for t, d in details), "no decision saw node1 lost")
    check(("fault", "node-start node1") in details, "no node-start event")
    check(not report["invariants"]["violations"], "violations: %s" % report["invariants"]["violations"])
    check(not report["expectations"]["unmet"], "unmet: %s" % report["expectations"]["unmet"])
    check(result.returncode == 0, "exit %d without violation or unmet expectation" % result.returncode)
    names = sorted(su["name"] for su in report["final"]["sus"])
    check(names == ["mme-a", "mme-b", "oam-1"], "final sus %s" % names)


def case_refusals(directory):
    bad = os.path.join(directory, "bad.yaml")
    with open(bad, "w") as f:
        f.write("config: [nowhere.yaml]\nuntil: soon\n")
    result = amf_lab(directory, "run", bad)
    check(result.returncode == 65, "invalid scenario: exit %d %s" % (result.returncode, result.stderr))
    check(bad + ":2:" in result.stderr, "no FILE:LINE in: %s" % result.stderr)
    path = scenario(directory, """  - at: 5s
    fault: {op-fail: {node: node1, op: start}}
""")
    result = amf_lab(directory, "run", path)
    check(result.returncode == 1, "op-fail: exit %d %s" % (result.returncode, result.stderr))
    check("op-fail" in result.stderr and "5000 ms" in result.stderr, "refusal: %s" % result.stderr)
    check(not os.path.exists(os.path.join(directory, "lab")), "a lab was built for a refused scenario")


CASES = {"host-crash": case_host_crash, "refusals": case_refusals}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print(__doc__)
        return 64
    if os.geteuid() != 0:
        print("SKIP: needs root")
        return 77
    directory = tempfile.mkdtemp(prefix="amf-lab-run-")
    try:
        CASES[sys.argv[1]](directory)
    except BaseException:
        print("files kept in " + directory)
        raise
    subprocess.run(["rm", "-rf", directory])
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
