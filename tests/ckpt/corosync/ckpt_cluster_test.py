#!/usr/bin/env python3
"""The checkpoint service on real Corosync: three hosts in network namespaces, each running
amf-ckptnode (the real CheckpointService, CorosyncGroup, event loop and disk log).

Usage: ckpt_cluster_test.py CASE    (root; AMF_CKPTNODE names the binary)
Cases:
  writer-killed  a stream of synchronous 1 KiB writes runs while the writer's host dies (its
                 service and Corosync killed at once): every acknowledged write is on both
                 survivors, in memory and on disk, and no write is there in part
  restart        every service and Corosync killed and started again: every checkpoint is back
  join           a host with an empty disk joins a cluster that has checkpoints, and a write
                 then waits for it like for the others
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ckpt_lab import CkptLab  # noqa: E402

SIZE = 1024


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def value_of(data, host):
    """The counter a stream's section holds, checking that it is one whole write."""
    check(data is not None, "host %d has no counter" % host)
    check(len(data) == SIZE, "host %d holds %d bytes, not one whole write of %d" % (host, len(data), SIZE))
    number, _, padding = data.partition(".")
    check(number.isdigit() and set(padding) <= {"."} and len(number) + 1 + len(padding) == SIZE,
          "host %d holds a write in part: %r" % (host, data[:64]))
    return int(number)


def start(lab, hosts):
    for i in hosts:
        lab.start_node(i)
    lab.wait_synced(hosts)


def case_writer_killed(lab):
    start(lab, [1, 2, 3])
    lab.control(1, "stream app counter 4 %d" % SIZE)
    lab.wait("200 acknowledged writes", lambda: len(lab.acked(1)) >= 200, timeout=60)
    lab.crash_host(1)
    acked = max(lab.acked(1))  # the journal of a killed writer: what it was told
    lab.wait_synced([2, 3], members=[2, 3], timeout=30)
    values = [value_of(lab.read(i, "app", "counter"), i) for i in (2, 3)]
    check(values[0] == values[1], "the survivors differ: %s" % values)
    check(values[0] >= acked, "an acknowledged write is lost: %d was acknowledged, the survivors hold %d" %
          (acked, values[0]))
    # What the survivors have on disk: stop them and start them again from their disks alone.
    for i in (2, 3):
        lab.kill_node(i)
    start(lab, [2, 3])
    for i in (2, 3):
        check(value_of(lab.read(i, "app", "counter"), i) == values[0], "host %d lost the value from its disk" % i)
    print("writer-killed: %d writes acknowledged before the crash; the survivors hold %d" % (acked, values[0]))


def case_restart(lab):
    start(lab, [1, 2, 3])
    lab.control(2, "create kept")
    lab.control(3, "stream app counter 1 %d" % SIZE)
    lab.wait("100 acknowledged writes", lambda: len(lab.acked(3)) >= 100, timeout=60)
    lab.kill_node(3)
    acked = max(lab.acked(3))
    lab.wait_synced([1, 2], members=[1, 2])
    before = value_of(lab.read(1, "app", "counter"), 1)
    check(before >= acked, "lost an acknowledged write before the restart")
    for i in (1, 2):
        lab.kill_node(i)
    for i in (1, 2, 3):
        lab.kill_corosync(i)
    time.sleep(1)
    for i in (1, 2, 3):
        lab.start_corosync(i)
    start(lab, [1, 2, 3])
    for i in (1, 2, 3):
        check(value_of(lab.read(i, "app", "counter"), i) == before, "host %d came back without the last write" % i)
        status = lab.status(i)
        check(status.get("checkpoints") == 2, "host %d has %s checkpoints, not 2" % (i, status.get("checkpoints")))


def case_join(lab):
    start(lab, [1, 2])
    lab.control(1, "stream app counter 2 %d" % SIZE)
    lab.wait("50 acknowledged writes", lambda: len(lab.acked(1)) >= 50, timeout=60)
    lab.start_node(3)
    lab.wait_synced([1, 2, 3], timeout=30)
    count = len(lab.acked(1))
    lab.wait("50 more acknowledged writes with host 3", lambda: len(lab.acked(1)) >= count + 50, timeout=60)
    lab.kill_node(1)
    lab.wait_synced([2, 3], members=[2, 3])
    values = [value_of(lab.read(i, "app", "counter"), i) for i in (2, 3)]
    check(values[0] == values[1] and values[0] >= max(lab.acked(1)),
          "host 3 joined without the state, or lost writes: %s, acknowledged %d" % (values, max(lab.acked(1))))


CASES = {"writer-killed": case_writer_killed, "restart": case_restart, "join": case_join}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print(__doc__, file=sys.stderr)
        return 64
    started = time.time()
    lab = CkptLab(3, token=300, ckptnode=os.environ["AMF_CKPTNODE"])
    try:
        CASES[sys.argv[1]](lab)
    finally:
        lab.cleanup()
    print("%s: passed in %.1f s" % (sys.argv[1], time.time() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
