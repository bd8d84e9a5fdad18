#!/usr/bin/env python3
"""One scenario of the fault-injection catalogue (tests/faultlab/scenarios) on a real lab: the
scenario and its configuration moved into a temporary directory (the build's guest image, consoles
and disks there), `amf-lab run -o json`, its summary printed. Exit: amf-lab run's (0 passed, 1 an
invariant violated or an expectation unmet, 65 invalid), 77 without root.

Usage: run_scenario.py SCENARIO.yaml   (AMF_LAB, AMF_GUEST_IMAGE, AMF_LIBVIRT_CACHE from ctest)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "lab"))
from amf_lab.examples import relocated_scenario  # noqa: E402
from amf_lab.lab import free_prefix  # noqa: E402


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 64
    if os.geteuid() != 0:
        print("SKIP: needs root")
        return 77
    directory = tempfile.mkdtemp(prefix="faultlab-")
    scenario = relocated_scenario(sys.argv[1], directory, os.environ["AMF_GUEST_IMAGE"])
    args = [os.environ["AMF_LAB"], "--dir", os.path.join(directory, "lab"), "run", scenario, "-o", "json",
            "--prefix", free_prefix("fl")]
    if os.environ.get("AMF_LIBVIRT_CACHE"):
        args += ["--cache", os.environ["AMF_LIBVIRT_CACHE"]]
    result = subprocess.run(args, capture_output=True, text=True, timeout=900)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        print(result.stdout + result.stderr)
        print("files kept in " + directory)
        return result.returncode or 1
    print(json.dumps({k: report[k] for k in ("summary", "simulated", "invariants", "expectations", "outages",
                                             "clientOutages")}, indent=1))
    for e in report["events"]:
        if e["type"] in ("fault", "fault-reply", "admin", "admin-reply"):
            print("%9.3fs  %-11s %s" % (e["tMs"] / 1000.0, e["type"], e["detail"]))
    if result.returncode != 0:
        print("every event:")
        for e in report["events"]:
            print("%9.3fs  %-11s %s" % (e["tMs"] / 1000.0, e["type"], e["detail"]))
        print(result.stderr[-4000:])
        print("files kept in " + directory)
    else:
        shutil.rmtree(directory, ignore_errors=True)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
