#!/usr/bin/env python3
"""amfd on a real three-host cluster (tests/lab/cluster_lab.py): Corosync, libvirt, QEMU guests
with the agent, amf-admin over the admin API, and a client on the service network.

Usage: amfd_test.py CASE   (root; AMF_AMFD, AMF_ADMIN, AMF_GUEST_IMAGE, AMF_LIBVIRT_CACHE from ctest)
Cases:
  vm-kill   a 2N pair of test guests: the active unit's guest takes the SI's service IP through
            its hook; its QEMU is killed; the standby becomes active and the client reaches the
            service IP again; amf-admin status shows one active at every step
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_lab import ClusterLab, check, now_ms  # noqa: E402

SERVICE_IP = "10.231.0.100"


def pair_groups(lab):
    return """apiVersion: kvm-amf/v1
kind: ServiceGroup
metadata:
  name: pair
spec:
  redundancy: {model: 2N}
  nodeGroup: all
  recovery: {vmRestartMax: 0, defaultAction: failover}
  health:
    heartbeat: {interval: 200ms, timeout: 1s}
  units:
    - name: pair-a
      nodes: [node1, node2, node3]
      vms:
%s    - name: pair-b
      nodes: [node2, node3, node1]
      vms:
%s  serviceInstances:
    - name: pair-si
      attributes: {ip: %s/24}
""" % (lab.vm_yaml("pair-a-vm", 1), lab.vm_yaml("pair-b-vm", 2), SERVICE_IP)


def served(lab, si):
    """(active SU, its host) once `si` is active and acknowledged, as host 1's amfd sees it."""
    status = lab.status(1)
    if not status:
        return None
    active = lab.active_of(status, si)
    if not active:
        return None
    node = [su["node"] for su in status["sus"] if su["name"] == active][0]
    return active, node


def case_vm_kill(lab):
    lab.up(pair_groups(lab))
    for i in range(1, lab.n + 1):
        lab.start_amfd(i)
    started = now_ms()
    active, node = lab.wait("pair-si served", lambda: served(lab, "pair-si"), timeout=120)
    print("pair-si active on %s (%s) %d ms after the amfds started" % (active, node, now_ms() - started))
    lab.wait("the service IP answering", lambda: lab.ping_from_client(SERVICE_IP), timeout=30)
    host = int(node[len("node"):])
    vm = active + "-vm"
    check(lab.qemu_pid(host, vm), "no QEMU for %s on host %d" % (vm, host))
    killed = now_ms()
    lab.kill_qemu(host, vm)
    lab.wait("the service IP answering again",
             lambda: lab.ping_from_client(SERVICE_IP, wait_s=1) and served(lab, "pair-si") and
             served(lab, "pair-si")[0] != active, timeout=60, poll=0.05)
    print("client-seen outage after the kill: %d ms" % (now_ms() - killed))
    new_active, new_node = served(lab, "pair-si")
    print("pair-si now active on %s (%s)" % (new_active, new_node))
    # The killed unit comes back as standby.
    def standby_back():
        status = lab.status(1)
        return status and any(a["su"] == active and a["ha"] == "standby" and a["acked"]
                              for si in status["sis"] for a in si["assignments"])
    lab.wait("%s back as standby" % active, standby_back, timeout=120)
    table = lab.admin_cmd(1, "status", output="table", check_rc=True).stdout
    print(table)


CASES = {"vm-kill": case_vm_kill}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print(__doc__)
        return 2
    if os.geteuid() != 0:
        print("SKIP: needs root")
        return 77
    lab = ClusterLab()
    failed = True
    try:
        CASES[sys.argv[1]](lab)
        failed = False
    except BaseException:
        print(lab.logs())
        raise
    finally:
        lab.down(keep=failed)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
