"""amf-lab's command line (docs/lab.md)."""
import argparse
import json
import os
import signal
import sys
import time

from .lab import DEFAULT_DIR, Lab, Tools
from .util import LabError, now_ms

USAGE = """amf-lab [--dir DIR] VERB ...

  up -f FILE... [--image DIR] [--cache DIR] [--prefix P] [--boot S]
                           build the lab for this configuration and start every amfd
  down                     stop everything and delete the lab
  status [-o json]         the hosts' processes and VMs, then amf-admin status
  admin [--host NODE] ARGS...   amf-admin against a host's amfd (default: the first that answers)
  env [NODE]               the shell line that points amf-admin at a host's amfd
  power-off NODE           the host crashes: every process of it is killed at once
  power-on [--after S] NODE     the host boots: Corosync, libvirt and amfd start
  fence NODE               the fence agent: power-off now, power-on after the lab's boot time
  kill-vm VM               kill -9 the VM's QEMU
  stop-vm VM | cont-vm VM  SIGSTOP / SIGCONT the VM's QEMU (a hung VM)
  kill-amfd NODE | start-amfd NODE
  partition NODE,... NODE,...   cut Corosync's traffic between two sides; heal ends it
  heal
  probe [--seconds S]      ping every service address from the client, print each outage
  run SCENARIO.yaml [-o json|text] [--keep] [...]   a scenario of amf-sim, for real
  campaign SCENARIO.yaml... --report DIR [...]      each on a fresh lab; DIR/report.md and .json
  demo -f FILE... [...]    up (unless a lab is up), then a host crash under a 2N SI, shown
"""


def tools_from(defaults):
    return Tools(**defaults)


def cmd_up(lab, args):
    lab.up(args.file, prefix=args.prefix, image=args.image, cache=args.cache, boot_s=args.boot)
    print("\nThe lab runs in %s. Try:" % lab.dir)
    print("  %s --dir %s status" % (lab.tools.lab, lab.dir))
    print("  %s --dir %s admin get sus" % (lab.tools.lab, lab.dir))
    print("  %s --dir %s down" % (lab.tools.lab, lab.dir))
    return 0


def cmd_status(lab, args):
    hosts = []
    for i in lab.hosts():
        hosts.append({"node": lab.node_name(i), "host": i, "corosync": lab.corosync_pid(i),
                      "libvirtd": lab.libvirtd_pid(i), "amfd": lab.amfd_pid(i), "vms": sorted(lab.qemus(i))})
    if args.output == "json":
        print(json.dumps({"dir": lab.dir, "hosts": hosts, "status": lab.status()}, indent=2))
        return 0
    print("LAB %s (namespaces %s1..%d, client %s)" % (lab.dir, lab.prefix, len(hosts), lab.client_ns()))
    print("  %-8s %-10s %-10s %-10s %s" % ("NODE", "COROSYNC", "LIBVIRTD", "AMFD", "VMS"))
    for h in hosts:
        word = lambda pid: "pid %d" % pid if pid else "down"  # noqa: E731
        print("  %-8s %-10s %-10s %-10s %s" % (h["node"], word(h["corosync"]), word(h["libvirtd"]), word(h["amfd"]),
                                                ", ".join(h["vms"]) or "-"))
    print()
    for i in lab.hosts():
        if lab.amfd_pid(i):
            result = lab.admin(i, "status", output="table")
            sys.stdout.write(result.stdout or result.stderr)
            return 0 if result.returncode == 0 else result.returncode
    print("no amfd runs")
    return 69


def cmd_admin(lab, args):
    hosts = [lab.host_of(args.host)] if args.host else [i for i in lab.hosts() if lab.amfd_pid(i)] or lab.hosts()
    os.execv(lab.tools.admin, [lab.tools.admin, "--endpoint", lab.endpoint(hosts[0]), *args.words])


def cmd_env(lab, args):
    i = lab.host_of(args.node) if args.node else lab.hosts()[0]
    print("export AMF_ENDPOINT=%s" % lab.endpoint(i))
    return 0


def cmd_power_on(lab, args):
    if args.after:
        time.sleep(args.after)
    lab.power_on(lab.host_of(args.node))
    print("%d powered on %s" % (now_ms(), args.node))
    return 0


def cmd_probe(lab, args):
    from .probe import Probe
    services = lab.state["services"]
    if not services:
        print("the configuration has no service addresses (SI attributes like ip: 10.0.0.100/24)")
        return 1
    probes = {si: Probe(lab.client_ns(), ip) for si, ip in sorted(services.items())}
    start = now_ms()
    try:
        time.sleep(args.seconds)
    except KeyboardInterrupt:
        pass
    end = now_ms()
    for si, probe in probes.items():
        probe.stop()
        gaps = probe.outages(start, end)
        print("si/%s %s: %d replies; %s" % (si, probe.address, len(probe.replies),
                                            "; ".join("outage %s ms" % (b - a if b else "open") for a, b in gaps)
                                            or "no outage"))
    return 0


def main(argv, defaults):
    parser = argparse.ArgumentParser(prog="amf-lab", usage=USAGE)
    parser.add_argument("--dir", default=os.environ.get("AMF_LAB_DIR", DEFAULT_DIR))
    verbs = parser.add_subparsers(dest="verb", required=True)
    for name in ("up", "demo"):
        up = verbs.add_parser(name)
        up.add_argument("-f", "--file", nargs="+", required=True, action="extend")
        up.add_argument("--image", help="build the test guest here first")
        up.add_argument("--cache", help="libvirt's QEMU capabilities cache, kept between labs")
        up.add_argument("--prefix", default="amf")
        up.add_argument("--boot", type=float, default=20, help="seconds a fenced host takes to boot")
    verbs.add_parser("down")
    st = verbs.add_parser("status")
    st.add_argument("-o", "--output", choices=["table", "json"], default="table")
    ad = verbs.add_parser("admin")
    ad.add_argument("--host")
    ad.add_argument("words", nargs=argparse.REMAINDER)
    env = verbs.add_parser("env")
    env.add_argument("node", nargs="?")
    for name in ("power-off", "fence", "kill-amfd", "start-amfd"):
        verbs.add_parser(name).add_argument("node")
    on = verbs.add_parser("power-on")
    on.add_argument("--after", type=float, default=0)
    on.add_argument("node")
    for name in ("kill-vm", "stop-vm", "cont-vm"):
        verbs.add_parser(name).add_argument("vm")
    part = verbs.add_parser("partition")
    part.add_argument("sides", nargs=2)
    verbs.add_parser("heal")
    pr = verbs.add_parser("probe")
    pr.add_argument("--seconds", type=float, default=10)
    rn = verbs.add_parser("run")
    rn.add_argument("scenario")
    rn.add_argument("-o", "--output", choices=["json", "text"], default="text")
    rn.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    rn.add_argument("--image")
    rn.add_argument("--cache")
    rn.add_argument("--prefix", default="amf")
    cp = verbs.add_parser("campaign")
    cp.add_argument("scenarios", nargs="+")
    cp.add_argument("--report", required=True, help="a folder for the reports")
    cp.add_argument("--image")
    cp.add_argument("--cache")
    cp.add_argument("--prefix", default="amf")
    args = parser.parse_args(argv)
    tools = tools_from(defaults)
    try:
        if os.geteuid() != 0:
            raise LabError("must run as root (namespaces, mounts, daemons)")
        if args.verb == "up":
            return cmd_up(Lab(args.dir, tools), args)
        if args.verb == "demo":
            from .demo import demo
            return demo(args.dir, tools, args)
        if args.verb == "run":
            from .scenario import run_scenario
            return run_scenario(Lab(args.dir, tools), args)
        if args.verb == "campaign":
            from .scenario import run_campaign
            return run_campaign(lambda name: Lab(args.dir, tools), tools, args)
        lab = Lab.load(args.dir, tools)
        if args.verb == "down":
            lab.down()
            return 0
        if args.verb == "status":
            return cmd_status(lab, args)
        if args.verb == "admin":
            return cmd_admin(lab, args)
        if args.verb == "env":
            return cmd_env(lab, args)
        if args.verb == "power-off":
            lab.power_off(lab.host_of(args.node))
        elif args.verb == "power-on":
            return cmd_power_on(lab, args)
        elif args.verb == "fence":
            lab.fence(args.node)
        elif args.verb == "kill-amfd":
            lab.kill_amfd(lab.host_of(args.node))
        elif args.verb == "start-amfd":
            lab.start_amfd(lab.host_of(args.node))
        elif args.verb == "kill-vm":
            lab.kill_qemu(args.vm)
        elif args.verb == "stop-vm":
            lab.kill_qemu(args.vm, signal.SIGSTOP)
        elif args.verb == "cont-vm":
            lab.kill_qemu(args.vm, signal.SIGCONT)
        elif args.verb == "partition":
            lab.partition([s.split(",") for s in args.sides])
        elif args.verb == "heal":
            lab.heal()
        elif args.verb == "probe":
            return cmd_probe(lab, args)
        return 0
    except LabError as e:
        print("amf-lab: %s" % e, file=sys.stderr)
        return 1
