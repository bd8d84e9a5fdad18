#!/usr/bin/env python3
"""The libvirt adapter and the guest channel against real libvirt daemons and QEMU guests.

Usage: real_vm_test.py CASE   (root; AMF_VMCTL, AMF_GUEST_IMAGE and AMF_LIBVIRT_CACHE from ctest)
Cases:
  heartbeat      start: HELLO and heartbeats arrive; an assignment runs the guest's hook (the service
                 IP answers ping) and is acknowledged; stats carry CPU, memory, block and network
                 figures; pause, resume, reboot, reset, suspend, restore and shutdown work and none is
                 reported as a failure
  crash          kill -9 of QEMU: the crash event
  hang           the agent stops sending heartbeats: the hang report within the timeout
  watchdog       the guest stops feeding its i6300esb: the watchdog event
  migrate        live migration to a second libvirt host: the VM keeps running (heartbeats go on
                 through the destination's channel) and keeps its MAC and service IP
  daemon-restart libvirtd restarts under a running VM: no failure reported, same QEMU, still served
  cycles         50 start/destroy cycles leave no domain, tap device, socket, file or descriptor
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vm_lab import VmLab, check, now_ms  # noqa: E402

HEARTBEAT_TIMEOUT_MS = 1000


def first_heartbeat(vmctl, vm, since=0, timeout=90):
    return vmctl.wait(lambda e: e.get("ev") == "heartbeat" and e.get("vm") == vm, timeout, "a heartbeat of " + vm, since)


def no_failure_events(vmctl, since=0):
    bad = [e for e in vmctl.lines[since:] if e.get("ev") in ("vm", "hung", "unhealthy")]
    check(not bad, "unexpected failure reports: %s" % bad)


def ping(lab, host, ip, count=3):
    out = lab.exec(host, "ping", "-c", str(count), "-i", "0.2", "-W", "2", ip, check_rc=False)
    return " 0% packet loss" in out or (" %d received" % count) in out or "bytes from" in out


def case_heartbeat(lab):
    lab.add_vm("vm1", 1, disk=True)
    config = lab.write_config()
    ctl = lab.start_vmctl(1, config)
    started = now_ms()
    ctl.request("start vm1")
    hello = ctl.wait(lambda e: e.get("ev") == "hello" and e["vm"] == "vm1", 90, "HELLO of vm1")
    beat = first_heartbeat(ctl, "vm1")
    print("start to first heartbeat: %d ms (agent %s)" % (beat["t"] - started, hello["agent"]))
    check(beat["healthy"], "the first heartbeat is not healthy: %s" % beat)

    ctl.request("assign vm1 si1 active ip=10.231.0.100/24", timeout=40)
    lab.wait_console("vm1", "KVM-AMF-GUEST hook active si1 10.231.0.100/24", 10)
    check(ping(lab, 1, "10.231.0.100"), "the service IP 10.231.0.100 does not answer after the assignment")
    ctl.request("assign vm1 si1 standby ip=10.231.0.100/24", timeout=40)
    lab.wait_console("vm1", "KVM-AMF-GUEST hook standby si1", 10)
    ctl.request("unassign vm1 si1", timeout=40)
    lab.wait_console("vm1", "KVM-AMF-GUEST hook removed si1", 10)

    since = ctl.mark()
    ctl.request("stats")
    stats = ctl.reply_data("stats-vms", since)["vms"]
    mine = [s for s in stats if s["vm"] == "vm1"]
    check(len(mine) == 1, "stats has no vm1: %s" % stats)
    s = mine[0]
    print("stats: %s" % s)
    check(s["running"] and s["cpuTimeNs"] > 0 and s["memoryKiB"] > 0, "no CPU or memory figures: %s" % s)
    check(s["disks"] and s["disks"][0]["readRequests"] > 0, "no block figures: %s" % s)
    check(s["nics"] and s["nics"][0]["rxPackets"] > 0 and s["nics"][0]["txPackets"] > 0, "no network figures: %s" % s)

    mark = ctl.mark()
    ctl.request("pause vm1")
    check("paused" in lab.virsh(1, "domstate", "vm1"), "vm1 is not paused")
    ctl.request("resume vm1")
    check("running" in lab.virsh(1, "domstate", "vm1"), "vm1 is not running after resume")
    ctl.request("reset vm1")
    lab.wait_console("vm1", "KVM-AMF-GUEST up", 5)  # printed again after the reset (the file appends)
    first_heartbeat(ctl, "vm1", ctl.mark())
    ctl.request("suspend vm1", timeout=90)
    check("shut off" in lab.virsh(1, "domstate", "vm1"), "vm1 is not shut off after suspend")
    ctl.request("restore vm1", timeout=90)
    first_heartbeat(ctl, "vm1", ctl.mark(), timeout=30)
    ctl.request("shutdown vm1 5000", timeout=30)
    check(lab.virsh(1, "list", "--all", "--name").strip() == "", "a domain is left after shutdown")
    no_failure_events(ctl, mark)


def case_crash(lab):
    lab.add_vm("vm1", 1)
    ctl = lab.start_vmctl(1, lab.write_config())
    ctl.request("start vm1")
    first_heartbeat(ctl, "vm1")
    since = ctl.mark()
    killed = now_ms()
    lab.kill_qemu(1, "vm1")
    event = ctl.wait(lambda e: e.get("ev") == "vm" and e["vm"] == "vm1", 10, "the crash event", since)
    check(event["kind"] == "crashed", "expected crashed, got %s" % event)
    print("kill -9 to crash event: %d ms" % (event["t"] - killed))
    # The guest is gone: its heartbeats stop and the channel reports a hang too, unless unwatched.
    ctl.request("destroy vm1")


def case_hang(lab):
    lab.add_vm("vm1", 1, cmdline="kvmamf.agent-stop-after=5")
    ctl = lab.start_vmctl(1, lab.write_config(heartbeat="{interval: 200ms, timeout: %dms}" % HEARTBEAT_TIMEOUT_MS))
    ctl.request("start vm1")
    last = ctl.wait(lambda e: e.get("ev") == "heartbeat" and e["vm"] == "vm1" and e["seq"] == 5, 90, "heartbeat 5")
    hung = ctl.wait(lambda e: e.get("ev") == "hung" and e["vm"] == "vm1", 10, "the hang report")
    gap = hung["t"] - last["t"]
    print("last heartbeat to hang report: %d ms (timeout %d ms)" % (gap, HEARTBEAT_TIMEOUT_MS))
    check(HEARTBEAT_TIMEOUT_MS - 20 <= gap <= HEARTBEAT_TIMEOUT_MS + 500, "hang reported after %d ms" % gap)
    check(not ctl.events(ctl.lines.index(last) + 1, ev="heartbeat", vm="vm1"), "heartbeats after the 5th")
    check(len(ctl.events(0, ev="hung")) == 1, "the hang is reported more than once")
    # A hung guest still serves its agent's requests: the channel is alive.
    ctl.request("assign vm1 si1 active", timeout=40)
    guest = ctl.request("guest vm1")
    check(guest["connected"] and guest["hangs"] == 1 and guest["badLines"] == 0, "guest stats: %s" % guest)
    ctl.request("destroy vm1")


def case_watchdog(lab):
    lab.add_vm("vm1", 1, cmdline="kvmamf.watchdog=stop-after:1")
    ctl = lab.start_vmctl(1, lab.write_config())
    ctl.request("start vm1")
    lab.wait_console("vm1", "KVM-AMF-GUEST watchdog stopped", 90)
    stopped = now_ms()
    event = ctl.wait(lambda e: e.get("ev") == "vm" and e["vm"] == "vm1", 40, "the watchdog event")
    check(event["kind"] == "watchdog", "expected watchdog, got %s" % event)
    print("feeder killed to watchdog event: %d ms (the feeder's timeout is 10 s)" % (event["t"] - stopped))
    ctl.request("destroy vm1")


def case_migrate(lab):
    lab.add_vm("vm1", 1)
    config = lab.write_config()
    source = lab.start_vmctl(1, config)
    destination = lab.start_vmctl(2, config)
    source.request("start vm1")
    first_heartbeat(source, "vm1")
    source.request("assign vm1 si1 active ip=10.231.0.100/24", timeout=40)
    check(ping(lab, 2, "10.231.0.100"), "the service IP does not answer before the migration")
    mac_before = lab.virsh(1, "domiflist", "vm1")
    check(lab.mac("vm1") in mac_before, "vm1 has not its MAC: %s" % mac_before)
    pid_before = lab.qemu_pid(1, "vm1")
    # A settled guest: under TCG, a guest migrated while it still boots (modules, hook) was seen
    # to panic on the destination once (docs/libvirt-adapter.md); an idle one never was.
    settled = source.mark()
    source.wait(lambda e: e.get("ev") == "heartbeat" and len(source.events(settled, ev="heartbeat")) >= 15, 30,
                "3 s of heartbeats before the migration", settled)

    mark = source.mark()
    destination.request("watch vm1")
    uri = "qemu+unix:///system?socket=%s/host2/run/libvirt-sock" % lab.dir
    reply = source.request("migrate vm1 %s tcp://10.231.0.2 - 300 0 120000" % uri, timeout=180)
    outcome = source.reply_data("migrate-outcome", mark)
    progress = source.events(mark, ev="progress")
    print("migration: %d ms total, %d ms downtime, %d bytes, %d progress reports (call %d ms)" %
          (outcome["totalMs"], outcome["downtimeMs"], outcome["dataTransferred"], len(progress), reply["ms"]))
    check("running" in lab.virsh(2, "domstate", "vm1"), "vm1 does not run on host2")
    check(lab.virsh(1, "list", "--all", "--name").strip() == "", "vm1 is still defined on host1")
    check(lab.mac("vm1") in lab.virsh(2, "domiflist", "vm1"), "vm1 lost its MAC on host2")
    check(pid_before is not None and lab.qemu_pid(1, "vm1") is None, "the source QEMU is still there")
    # The guest was not restarted: the destination's channel sees the same agent's sequence go on.
    beat = first_heartbeat(destination, "vm1", 0, timeout=30)
    last_source = source.events(0, ev="heartbeat", vm="vm1")[-1]
    check(beat["seq"] > last_source["seq"], "the guest's heartbeat sequence restarted: %d after %d" %
          (beat["seq"], last_source["seq"]))
    check(ping(lab, 1, "10.231.0.100"), "the service IP does not answer after the migration")
    announced = destination.wait(lambda e: e.get("ev") == "announced" and e["vm"] == "vm1", 10, "the announcement")
    check(announced["ok"], "announce-self failed on host2: %s" % announced)
    no_failure_events(source, mark)
    no_failure_events(destination)
    destination.request("destroy vm1")


def case_daemon_restart(lab):
    lab.add_vm("vm1", 1)
    ctl = lab.start_vmctl(1, lab.write_config())
    ctl.request("start vm1")
    first_heartbeat(ctl, "vm1")
    pid = lab.qemu_pid(1, "vm1")
    mark = ctl.mark()
    lab.restart_libvirtd(1)
    time.sleep(3)  # the adapter reconnects every second; give it a few rounds
    ctl.request("list")
    since = ctl.mark()
    ctl.request("stats")
    check(any(s["vm"] == "vm1" and s["running"] for s in ctl.reply_data("stats-vms", since)["vms"]),
          "no stats of vm1 after the restart")
    check(lab.qemu_pid(1, "vm1") == pid, "vm1's QEMU changed across the libvirtd restart")
    beats = ctl.events(mark, ev="heartbeat", vm="vm1")
    check(len(beats) >= 10, "only %d heartbeats during the restart" % len(beats))
    no_failure_events(ctl, mark)
    # Events still arrive through the new connection.
    killed = now_ms()
    lab.kill_qemu(1, "vm1")
    event = ctl.wait(lambda e: e.get("ev") == "vm" and e["vm"] == "vm1", 10, "the crash event after the restart")
    check(event["kind"] == "crashed", "expected crashed, got %s" % event)
    print("after the restart, kill -9 to crash event: %d ms" % (event["t"] - killed))
    ctl.request("destroy vm1")


def host_leftovers(lab, host):
    """What a VM can leave on a host: domains, tap devices, agent sockets, libvirt's files of it
    (/run/libvirt/qemu, /var/lib/libvirt/qemu, /etc/libvirt/qemu)."""
    domains = lab.virsh(host, "list", "--all", "--name").split()
    links = [line.split(":")[1].strip().split("@")[0]
             for line in lab.exec(host, "ip", "-o", "link").splitlines()]
    taps = [link for link in links if link.startswith("vnet") or link.startswith("tap")]
    agents = os.listdir(os.path.join(lab.dir, "host%d" % host, "run", "kvm-amf-agents"))
    def listing(*path):
        where = os.path.join(lab.dir, "host%d" % host, *path)
        return sorted(os.listdir(where)) if os.path.isdir(where) else []
    return {"domains": domains, "taps": taps, "agent sockets": agents, "run/qemu": listing("run", "qemu"),
            "lib/qemu": listing("lib", "qemu"), "etc/qemu": listing("etc", "qemu")}


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def case_cycles(lab, cycles=50):
    lab.add_vm("vm1", 1)
    ctl = lab.start_vmctl(1, lab.write_config())
    # One warm-up cycle: libvirt opens some descriptors once (e.g. for the QEMU capabilities).
    ctl.request("start vm1")
    ctl.request("destroy vm1")
    time.sleep(0.5)
    before = {"amf-vmctl": ctl.request("fds")["fds"], "libvirtd": fd_count(lab.libvirtd_pid(1))}
    clean = host_leftovers(lab, 1)
    started = time.time()
    for i in range(cycles):
        ctl.request("start vm1")
        check(lab.qemu_pid(1, "vm1") is not None, "cycle %d: no QEMU after start" % i)
        ctl.request("destroy vm1")
    elapsed = time.time() - started
    time.sleep(0.5)
    after = {"amf-vmctl": ctl.request("fds")["fds"], "libvirtd": fd_count(lab.libvirtd_pid(1))}
    left = host_leftovers(lab, 1)
    print("%d cycles in %.1f s; descriptors before %s, after %s; host %s" % (cycles, elapsed, before, after, left))
    check(left == clean and not left["domains"] and not left["taps"] and not left["agent sockets"],
          "left behind: %s (before: %s)" % (left, clean))
    check(after == before, "descriptors leaked: before %s, after %s" % (before, after))
    no_failure_events(ctl)


CASES = {
    "heartbeat": (case_heartbeat, 1),
    "crash": (case_crash, 1),
    "hang": (case_hang, 1),
    "watchdog": (case_watchdog, 1),
    "migrate": (case_migrate, 2),
    "daemon-restart": (case_daemon_restart, 1),
    "cycles": (case_cycles, 1),
}


def main():
    from vm_lab import skip_unless_ready
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print(__doc__)
        return 2
    skip_unless_ready()
    case, hosts = CASES[sys.argv[1]]
    lab = VmLab(hosts=hosts)
    failed = True
    try:
        lab.up()
        case(lab)
        reports = lab.sanitizer_reports()
        check(not reports, "sanitizer reports: %s" % reports)
        failed = False
    except BaseException:
        for vmctl in lab.vmctls:
            print("--- amf-vmctl host%d stderr (tail):" % vmctl.host)
            with open(vmctl.stderr_path) as f:
                print("".join(f.readlines()[-30:]))
        for name in lab.vms:
            if os.path.exists(lab.console(name)):
                print("--- console of %s (tail):" % name)
                with open(lab.console(name), errors="replace") as f:
                    print("".join(f.readlines()[-20:]))
        raise
    finally:
        lab.down(keep=failed)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
