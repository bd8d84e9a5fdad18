#!/usr/bin/env python3
"""netdelay.py (the lab's packet delay) in a network namespace of its own: UDP datagrams to port 5405
through an NFQUEUE rule arrive DELAY later while it runs, at once after it is stopped (the rule's
bypass), and none is lost; bad arguments exit 64 naming them. Root; label faultlab-ci."""
import os
import socket
import subprocess
import sys
import time

LAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "lab")
NS = "amfnd%d" % os.getpid()
DELAY_MS = 80


def check(ok, message):
    if not ok:
        raise AssertionError(message)


def delays(count):
    """Sends count datagrams one at a time to 127.0.0.1:5405 in the namespace; their delays in ms."""
    code = ("import socket, time\n"
            "r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(('127.0.0.1', 5405)); r.settimeout(2)\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "for i in range(%d):\n"
            "    t = time.monotonic(); s.sendto(b'x', ('127.0.0.1', 5405))\n"
            "    try:\n        r.recv(16); print((time.monotonic() - t) * 1000)\n"
            "    except socket.timeout:\n        print('lost')\n" % count)
    out = subprocess.run(["ip", "netns", "exec", NS, sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    check("lost" not in out, "datagrams lost: %s" % out)
    return [float(v) for v in out]


def main():
    if os.geteuid() != 0:
        print("SKIP: needs root")
        return 77
    bad = subprocess.run([sys.executable, "-m", "amf_lab.netdelay", "7", "soon"], cwd=LAB, capture_output=True,
                         text=True)
    check(bad.returncode == 64 and "soon" in bad.stderr, "bad DELAY_MS: exit %d %s" % (bad.returncode, bad.stderr))
    subprocess.run(["ip", "netns", "add", NS], check=True)
    delayer = None
    try:
        subprocess.run(["ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", NS, "iptables-legacy", "-A", "OUTPUT", "-p", "udp", "--dport", "5405",
                        "-j", "NFQUEUE", "--queue-num", "7", "--queue-bypass"], check=True)
        before = delays(5)
        print("no delayer (bypass): %s ms" % ", ".join("%.1f" % d for d in before))
        check(max(before) < DELAY_MS / 2, "without a delayer the rule held datagrams: %s" % before)
        delayer = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-m", "amf_lab.netdelay", "7",
                                    str(DELAY_MS)], cwd=LAB, stdout=subprocess.PIPE, text=True)
        check(delayer.stdout.readline().startswith("netdelay: queue 7"), "the delayer did not start")
        held = delays(10)
        print("delay %d ms: %s ms" % (DELAY_MS, ", ".join("%.1f" % d for d in held)))
        check(min(held) >= DELAY_MS and max(held) < DELAY_MS + 50, "delays out of [%d, %d) ms: %s" % (
            DELAY_MS, DELAY_MS + 50, held))
        delayer.terminate()
        check(delayer.wait(5) == 0, "the delayer exited %s" % delayer.returncode)
        after = delays(5)
        print("delayer stopped: %s ms" % ", ".join("%.1f" % d for d in after))
        check(max(after) < DELAY_MS / 2, "after the delayer stopped datagrams were held: %s" % after)
    finally:
        if delayer and delayer.poll() is None:
            delayer.kill()
        subprocess.run(["ip", "netns", "delete", NS])
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
