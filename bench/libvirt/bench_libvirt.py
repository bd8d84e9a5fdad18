#!/usr/bin/env python3
"""Failure detection on real libvirt and QEMU (TCG): one lab libvirt host running the test guest,
driven by amf-vmctl (the real LibvirtHypervisor and SocketGuestChannel).

  bench_libvirt.py [--crashes 20] [--hangs 10] [--boots 5]   (root; run from the build tree, or set
  AMF_VMCTL, AMF_GUEST_IMAGE (a test guest built with the agent) and AMF_LIBVIRT_CACHE)

Prints:
  - crash: SIGKILL of a VM's QEMU to the adapter's crash event (p50, max);
  - hang: the guest frozen (its QEMU paused) right after a heartbeat, to the channel's hang report,
    next to the configured heartbeat timeout (p50, max of the difference);
  - boot: `start` to the agent's first heartbeat (p50, max).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "vmm-adapter", "libvirt"))
from vm_lab import VmLab, now_ms, skip_unless_ready  # noqa: E402

INTERVAL_MS = 200
TIMEOUT_MS = 1000


def summary(values):
    return "p50 %d ms, max %d ms (n=%d)" % (statistics.median(values), max(values), len(values))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--crashes", type=int, default=20)
    parser.add_argument("--hangs", type=int, default=10)
    parser.add_argument("--boots", type=int, default=5)
    args = parser.parse_args()
    skip_unless_ready()
    build = os.path.join(REPO, "build")
    vmctl = os.environ.get("AMF_VMCTL", os.path.join(build, "tests", "tools", "amf-vmctl"))
    image = os.environ.get("AMF_GUEST_IMAGE", os.path.join(build, "guest-image-agent"))
    if not os.path.exists(os.path.join(image, "initrd.cpio.gz")):
        agent = os.path.join(build, "guest", "kvm-amf-agent")
        subprocess.run([os.path.join(REPO, "guest", "image", "build-test-guest.sh"), image, "--agent", agent],
                       check=True, stdout=subprocess.DEVNULL)
    lab = VmLab(hosts=1, prefix="lvb", vmctl=vmctl, image=image,
                cache=os.environ.get("AMF_LIBVIRT_CACHE", os.path.join(build, "libvirt-lab-cache")))
    try:
        lab.up()
        lab.add_vm("vm1", 1)
        ctl = lab.start_vmctl(1, lab.write_config(heartbeat="{interval: %dms, timeout: %dms}" % (INTERVAL_MS,
                                                                                                  TIMEOUT_MS)))
        boots = []
        for _ in range(args.boots):
            since = ctl.mark()
            started = now_ms()
            ctl.request("start vm1")
            beat = ctl.wait(lambda e: e.get("ev") == "heartbeat", 120, "the first heartbeat", since)
            boots.append(beat["t"] - started)
            ctl.request("destroy vm1")
        print("start to first heartbeat (TCG): %s" % summary(boots))

        ctl.request("start vm1")
        ctl.wait(lambda e: e.get("ev") == "heartbeat", 120, "the first heartbeat")
        hangs = []
        for _ in range(args.hangs):
            since = ctl.mark()
            ctl.wait(lambda e: e.get("ev") == "heartbeat", 10, "a heartbeat", since)
            lab.virsh(1, "suspend", "vm1")
            hung = ctl.wait(lambda e: e.get("ev") == "hung", 10, "the hang report", since)
            last = ctl.events(since, ev="heartbeat")[-1]
            hangs.append(hung["t"] - last["t"] - TIMEOUT_MS)
            lab.virsh(1, "resume", "vm1")
        print("hang report after the last heartbeat, beyond the %d ms timeout: %s" % (TIMEOUT_MS, summary(hangs)))
        ctl.request("destroy vm1")

        crashes = []
        for _ in range(args.crashes):
            ctl.request("start vm1")
            time.sleep(0.5)  # QEMU past its start-up
            since = ctl.mark()
            killed = now_ms()
            lab.kill_qemu(1, "vm1")
            event = ctl.wait(lambda e: e.get("ev") == "vm", 10, "the crash event", since)
            crashes.append(event["t"] - killed)
            ctl.request("destroy vm1")
        print("kill -9 of QEMU to the crash event: %s" % summary(crashes))
    finally:
        lab.down()


if __name__ == "__main__":
    main()
