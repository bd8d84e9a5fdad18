#!/usr/bin/env python3
"""Node managers on real Corosync (three hosts in network namespaces, or one on loopback).

Usage: cluster_test.py CASE    (root; AMF_TESTNODE and AMF_ADMIN name the binaries)
Cases: loopback, membership, partition, old-state, director-killed, restart, fence-agent, amfd-restart,
       churn
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import Lab, now_ms  # noqa: E402


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def decisions_of(lab, i):
    """The decisions host i applied, as (seq, director, actions), in order."""
    return [(d["seq"], d["director"], tuple(d["actions"])) for d in lab.journal(i, "decision")]


def check_exactly_once(lab, hosts, since_seq=0):
    """Every host applied each decision once, in sequence, never going back: between state
    transfers the numbers follow each other; a transfer continues from the adopted state, which
    is never older than what the host had applied. Decisions with the same number are the same
    decision on every host."""
    seen = {}
    for i in hosts:
        last = 0
        expected = None
        for entry in lab.journal(i):
            if entry["ev"] == "synced":
                check(entry["decisions"] >= last, "host %d adopted an older state (%d decisions after %d)" %
                      (i, entry["decisions"], last))
                expected = entry["decisions"] + 1
                last = entry["decisions"]
            elif entry["ev"] == "decision":
                check(entry["seq"] == expected, "host %d applied decision %s, expected %s" % (i, entry["seq"], expected))
                expected += 1
                last = entry["seq"]
                if entry["seq"] <= since_seq:
                    continue
                key = (entry["director"], tuple(entry["actions"]))
                check(seen.setdefault(entry["seq"], key) == key,
                      "decision %d differs between hosts: %s / %s" % (entry["seq"], seen[entry["seq"]], key))


def start_all(lab, hosts, order=None):
    """Starts the node managers (in `order`: the first two decide the first placement) and waits
    until they agree and every SI is served."""
    for i in order or hosts:
        lab.start_node(i)
        if order:
            time.sleep(0.5)
    lab.wait_synced(hosts)
    return lab.wait_settled(hosts)


# ---- cases ------------------------------------------------------------------------------------

def case_loopback(testnode, admin):
    """One host, Corosync on 127.0.0.1: quorate alone, decides, keeps its state across restarts,
    refuses a corrupt state file."""
    work = tempfile.mkdtemp(prefix="amf-loopback-")
    ns = "aclo%d" % (os.getpid() % 10000)
    cluster = os.path.join(work, "cluster.yaml")
    with open(cluster, "w") as f:
        f.write("""apiVersion: kvm-amf/v1
kind: Cluster
metadata: {name: loop}
spec:
  nodes:
    - {name: node1, address: 127.0.0.1, capacity: {vcpus: 8, memory: 8Gi}}
  nodeGroups:
    - {name: all, nodes: [node1]}
  membership: {token: 300ms}
  fencing: {mode: self}
""")
    groups = os.path.join(work, "sg.yaml")
    with open(groups, "w") as f:
        f.write("""apiVersion: kvm-amf/v1
kind: ServiceGroup
metadata: {name: solo}
spec:
  redundancy: {model: No-Redundancy}
  nodeGroup: all
  units:
    - name: solo-1
      vms: [{name: solo-vm, vcpus: 1, memory: 128Mi, boot: {kernel: /k}}]
  serviceInstances: [{name: solo-si}]
""")
    for sub in ("run", "state", "node"):
        os.makedirs(os.path.join(work, sub))
    subprocess.run([admin, "corosync-conf", "-f", cluster, "--authkey", os.path.join(work, "authkey"),
                    "--state-dir", os.path.join(work, "state"), "--log-file", os.path.join(work, "corosync.log"),
                    "--out", os.path.join(work, "corosync.conf")], check=True)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    procs = []

    def in_ns(*argv, **kw):
        return subprocess.Popen(["ip", "netns", "exec", ns, "unshare", "-m", "--propagation", "private", "sh", "-c",
                                 'mount --bind "$1" /run && shift && exec "$@"', "sh", os.path.join(work, "run"),
                                 *argv], **kw)

    node_dir = os.path.join(work, "node")

    def status():
        import json
        try:
            with open(os.path.join(node_dir, "status")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def wait(what, predicate, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError("timed out waiting for %s: %s" % (what, status()))

    def journal(ev):
        import json
        with open(os.path.join(node_dir, "journal")) as f:
            return [json.loads(line) for line in f if line.strip() and json.loads(line).get("ev") == ev]

    def node():
        if os.path.exists(os.path.join(node_dir, "status")):
            os.unlink(os.path.join(node_dir, "status"))
        return in_ns(testnode, "--name", "node1", "--config", cluster, "--config", groups, "--dir", node_dir,
                     stderr=open(os.path.join(work, "node.err"), "a"))

    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        procs.append(in_ns("corosync", "-f", "-c", os.path.join(work, "corosync.conf")))
        p = node()
        wait("node1 quorate, director, solo-si active",
             lambda: status().get("director") == 1 and status().get("sis", {}).get("solo-si", {}).get("solo-1") == "active")
        s = status()
        check(s["quorate"] and s["hosts"] == [1] and s["members"] == [1], "loopback view: %s" % s)
        fd = os.open(os.path.join(node_dir, "control"), os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, b"admin lock su/solo-1\n")
        os.close(fd)
        wait("the lock's reply", lambda: any(r["cmd"] == "lock su/solo-1" and r["ok"] for r in journal("reply")))
        wait("solo-si unassigned", lambda: status().get("sis", {}).get("solo-si") == {})
        decisions = status()["decisions"]
        p.terminate()
        p.wait(timeout=10)
        p = node()
        wait("restarted node synced", lambda: status().get("synced") and status().get("decisions", 0) >= decisions)
        loaded = journal("state-loaded")
        check(loaded and loaded[-1]["decisions"] == decisions, "state not loaded from disk: %s" % loaded)
        check(status()["sis"]["solo-si"] == {}, "the lock did not survive the restart")
        p.terminate()
        p.wait(timeout=10)
        # Corrupt the state file: refused with a clear error, nothing believed.
        path = os.path.join(node_dir, "state")
        data = bytearray(open(path, "rb").read())
        data[len(data) // 2] ^= 0x40
        open(path, "wb").write(bytes(data))
        p = node()
        wait("the corrupt state refused", lambda: os.path.exists(os.path.join(node_dir, "journal")) and journal("state-refused"))
        check("checksum mismatch" in journal("state-refused")[-1]["error"], journal("state-refused")[-1])
        time.sleep(1)
        check(not status().get("synced"), "a host with no state and no peers must not invent one")
        p.terminate()
        p.wait(timeout=10)
    finally:
        err_path = os.path.join(work, "node.err")
        err = open(err_path, errors="replace").read() if os.path.exists(err_path) else ""
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns])
        if "Sanitizer" in err or "runtime error:" in err:
            print("sanitizer reports (kept in %s):\n%s" % (work, err[-6000:]))
            raise AssertionError("sanitizer reports from amf-testnode")
        subprocess.run(["rm", "-rf", work])


def case_membership(lab):
    """Membership changes: a killed Corosync, its restart, a cut link and its heal."""
    start_all(lab, [1, 2, 3])
    check(lab.status(1)["director"] == 1, "the director is the lowest node id")

    lab.kill_corosync(3)
    lab.wait("hosts 1 and 2 see host 3 gone",
             lambda: all(lab.status(i).get("hosts") == [1, 2] and lab.status(i).get("members") == [1, 2] for i in (1, 2)))
    lab.wait("node 3 alone and not quorate",
             lambda: lab.status(3).get("members") == [3] and not lab.status(3).get("quorate"))
    lab.wait("node3 lost or down in the survivors' state",
             lambda: lab.status(1).get("nodes", {}).get("node3", {}).get("status") in ("lost", "fencing", "down"))
    lab.start_corosync(3)
    lab.wait_synced([1, 2, 3])
    lab.wait_settled([1, 2, 3])

    lab.cut(2)
    lab.wait("host 2 alone without quorum",
             lambda: lab.status(2).get("hosts") == [2] and not lab.status(2).get("quorate"))
    lab.wait("hosts 1 and 3 quorate without 2",
             lambda: all(lab.status(i).get("hosts") == [1, 3] and lab.status(i).get("quorate") for i in (1, 3)))
    lab.heal(2)
    lab.wait_synced([1, 2, 3])
    lab.wait_settled([1, 2, 3])
    check_exactly_once(lab, [1, 3])


VM_OF = {"pair-a": "pair-a-vm", "pair-b": "pair-b-vm", "solo-1": "solo-vm"}


def case_partition(lab):
    """A 2/1 split: only the majority decides; the minority stops its VMs by itself (fencing mode
    self) within its bound, and the majority recovers them only after that bound; after the heal
    the minority takes the majority's state."""
    before = start_all(lab, [1, 2, 3], order=[3, 2, 1])
    on3 = [su for su, host in before["sus"].items() if host == "node3"]
    check(on3, "node3 should run solo-1 (its first choice): %s" % before["sus"])
    split = now_ms()
    lab.partition(3)
    lab.wait("the split seen on both sides",
             lambda: lab.status(3).get("hosts") == [3] and lab.status(1).get("hosts") == [1, 2])
    check(not lab.status(3).get("quorate") and lab.status(3).get("director") == 0, "the minority must not direct")
    for su in on3:
        vm = VM_OF[su]
        stopped = lab.wait("node3 stops %s by itself" % vm,
                           lambda v=vm: next((e["t"] for e in lab.journal(3, "vm")
                                              if e["vm"] == v and not e["running"] and e["t"] >= split), None), timeout=10)
        check(stopped - split <= 2000 + 1000, "%s stopped %d ms after the split; the bound is 2000 ms + detection" %
              (vm, stopped - split))
        restarted = lab.wait("the majority recovers " + su,
                             lambda u=su: next((d["t"] for d in lab.journal(1, "decision") if d["t"] >= split and
                                                any(a.startswith("start su/%s on" % u) for a in d["actions"])), None),
                             timeout=20)
        check(restarted >= stopped and restarted - split >= 2500,
              "%s restarted at +%d ms, before node3's bound (+2500 ms) or its stop (+%d ms)" %
              (su, restarted - split, stopped - split))
    minority_before = lab.status(3).get("decisions")
    lab.admin(1, "lock su/pair-b")
    lab.wait("the majority locks pair-b",
             lambda: any(r["cmd"] == "lock su/pair-b" and r["ok"] for r in lab.journal(1, "reply")))
    time.sleep(1)
    check(lab.status(3).get("decisions") == minority_before, "the minority applied a decision while split")
    lab.unpartition()
    lab.wait_synced([1, 2, 3])
    lab.wait_settled([1, 2, 3])
    lab.wait("node 3 has the majority's decisions",
             lambda: lab.status(3).get("decisions") == lab.status(1).get("decisions"))
    check(lab.status(3)["sis"] == lab.status(1)["sis"], "the minority kept a different state")
    check_exactly_once(lab, [1, 2])


def case_old_state(lab):
    """A host that comes back with an older state takes the cluster's; it never overwrites it. One
    whose state file is corrupt refuses it and takes the state from its peers."""
    start_all(lab, [1, 2, 3])
    lab.stop_node(3)
    lab.wait_synced([1, 2], members=[1, 2])
    for words in ("lock su/pair-b", "unlock su/pair-b", "lock su/pair-b"):
        lab.admin(1, words)
        lab.wait("reply to " + words, lambda w=words: sum(r["cmd"] == w for r in lab.journal(1, "reply")) >= 1)
    lab.wait_settled([1, 2])
    newer = lab.status(1)["decisions"]
    lab.start_node(3)
    lab.wait_synced([1, 2, 3])
    lab.wait_settled([1, 2, 3])
    loaded = lab.journal(3, "state-loaded")
    check(loaded and loaded[-1]["decisions"] < newer, "node 3 should have come back with an older state: %s" % loaded)
    check(lab.status(1)["decisions"] >= newer and lab.status(3)["decisions"] == lab.status(1)["decisions"],
          "the older state won")
    check("pair-b" not in lab.status(3)["sis"]["pair-si"], "node 3 did not take the cluster's state")

    # A corrupt state file is refused with a clear error, and the host takes the state from its peers.
    lab.stop_node(3)
    path = os.path.join(lab.node_dir(3), "state")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 3] ^= 0x01
    open(path, "wb").write(bytes(data))
    lab.start_node(3)
    lab.wait_synced([1, 2, 3])
    lab.wait_settled([1, 2, 3])
    refused = lab.journal(3, "state-refused")
    check(refused and "checksum mismatch" in refused[-1]["error"] and path in refused[-1]["error"],
          "the corrupt state file was not refused with a clear error: %s" % refused)
    check(lab.status(3)["decisions"] == lab.status(1)["decisions"], "node 3 did not take the state from its peers")


def case_director_killed(lab):
    """The director killed during a stream of decisions: every decision applied exactly once on
    every survivor, and every command a survivor sent answered exactly once."""
    start_all(lab, [1, 2, 3])
    base = lab.status(2)["decisions"]
    lab.control(2, "stream 300 sg-adjust sg/solo")
    lab.control(3, "stream 300 sg-adjust sg/pair")
    lab.wait("the stream under way", lambda: lab.status(2).get("decisions", 0) >= base + 100, timeout=20)
    lab.kill_node(1)
    lab.wait("every command answered",
             lambda: len(lab.journal(2, "reply")) >= 300 and len(lab.journal(3, "reply")) >= 300, timeout=60)
    time.sleep(0.5)
    for i in (2, 3):
        replies = lab.journal(i, "reply")
        check(len(replies) == 300, "host %d got %d replies to 300 commands" % (i, len(replies)))
    check_exactly_once(lab, [2, 3])
    directors = {d[1] for d in decisions_of(lab, 2) if d[0] > base}
    check(directors == {1, 2}, "the decisions should come from the old and the new director: %s" % directors)


def case_restart(lab):
    """A whole-cluster stop and start keeps the configuration and the last placement."""
    before = start_all(lab, [1, 2, 3])
    lab.admin(1, "lock su/pair-b")
    lab.wait("the lock", lambda: any(r["cmd"] == "lock su/pair-b" and r["ok"] for r in lab.journal(1, "reply")))
    lab.wait("pair-b out of service", lambda: "pair-b" not in lab.status(1).get("sis", {}).get("pair-si", {"pair-b": 1}))
    before = lab.wait_settled([1, 2, 3])
    stopped = now_ms()
    for i in (1, 2, 3):
        lab.kill_node(i)
    for i in (1, 2, 3):
        lab.kill_corosync(i)
    for i in (1, 2, 3):
        lab.start_corosync(i)
    start_all(lab, [1, 2, 3])
    after = lab.wait_settled([1, 2, 3])
    for i in (1, 2, 3):
        loaded = lab.journal(i, "state-loaded")
        check(loaded and loaded[-1]["decisions"] >= before["decisions"], "host %d did not load its state" % i)
        check(loaded[-1]["sus"] == before["sus"], "host %d: placement not restored: %s" % (i, loaded[-1]["sus"]))
    # The VMs kept running (only amfd and Corosync stopped): reattached, none started again.
    check(after["sus"] == before["sus"] and after["sis"] == before["sis"],
          "the cluster came back different: %s -> %s" % ((before["sus"], before["sis"]), (after["sus"], after["sis"])))
    check(starts_since(lab, 1, stopped) == [], "VMs started again after the restart: %s" % starts_since(lab, 1, stopped))


def case_fence_agent(lab):
    """fencing.mode agent: while the command fails nothing is recovered and the alarm shows; once it
    succeeds, recovery follows."""
    before = start_all(lab, [1, 2, 3])
    victim = int(before["sus"]["solo-1"][len("node"):])
    survivor = 1 if victim != 1 else 2
    name = "node%d" % victim
    lab.kill_corosync(victim)
    lab.wait("a fence attempt failed and the alarm is raised",
             lambda: lab.status(survivor).get("nodes", {}).get(name, {}).get("alarm"), timeout=20)
    time.sleep(2)
    s = lab.status(survivor)
    check(s["sus"]["solo-1"] == name and s["sis"]["solo-si"] in ({}, {"solo-1": "active"}),
          "solo-1 recovered before %s was fenced: %s" % (name, s))
    open(os.path.join(lab.dir, "fence-ok"), "w").close()
    lab.wait("solo-1 recovered on another host after the fence",
             lambda: lab.status(survivor).get("sus", {}).get("solo-1") not in (name, None, "")
             and lab.status(survivor).get("sis", {}).get("solo-si", {}).get("solo-1") == "active", timeout=30)
    check(os.path.exists(os.path.join(lab.dir, "fenced-" + name)), "the fence command did not run with {node}")
    check(not lab.status(survivor)["nodes"][name]["alarm"], "the alarm stays after a successful fence")


def starts_since(lab, i, since):
    """The SUs started by decisions host i applied since `since` (ms)."""
    return [a for d in lab.journal(i, "decision") if d["t"] >= since for a in d["actions"] if a.startswith("start su/")]


def case_amfd_restart(lab):
    """The node manager of a host killed while its Corosync stays up: its VMs keep running; back
    within the grace period it reattaches to them without restarting any; past the grace the host
    is fenced and its service units recovered elsewhere."""
    before = start_all(lab, [1, 2, 3], order=[3, 2, 1])
    on3 = [su for su, host in before["sus"].items() if host == "node3"]
    check(on3, "node3 should run solo-1 (its first choice): %s" % before["sus"])
    vms = lab.vms(3)
    stamps = {vm: open(os.path.join(lab.vm_dir(3), vm)).read() for vm in vms}
    killed = now_ms()
    lab.kill_node(3)
    lab.wait("node3's node manager seen gone (grace period)",
             lambda: lab.status(1).get("nodes", {}).get("node3", {}).get("status") == "amfd-down")
    check(lab.vms(3) == vms, "node3's VMs stopped with its node manager: %s -> %s" % (vms, lab.vms(3)))
    lab.start_node(3)
    lab.wait_synced([1, 2, 3])
    lab.wait("node3 up again", lambda: lab.status(1).get("nodes", {}).get("node3", {}).get("status") == "up")
    lab.wait_settled([1, 2, 3])
    check(now_ms() - killed < 3000, "the node manager took longer than the grace to come back; the test is void")
    check(starts_since(lab, 1, killed) == [], "VMs restarted after a restart within the grace: %s" %
          starts_since(lab, 1, killed))
    check({vm: open(os.path.join(lab.vm_dir(3), vm)).read() for vm in lab.vms(3)} == stamps,
          "node3's VMs were started again instead of reattached")
    check(lab.status(1)["sus"] == before["sus"], "placement changed: %s -> %s" % (before["sus"], lab.status(1)["sus"]))

    killed = now_ms()
    lab.kill_node(3)
    for su in on3:
        lab.wait("%s recovered elsewhere after the grace and the fence" % su,
                 lambda u=su: lab.status(1).get("sus", {}).get(u) in ("node1", "node2"), timeout=20)
    fenced = os.path.getmtime(os.path.join(lab.dir, "fenced-node3")) * 1000
    check(fenced - killed >= 3000, "node3 fenced %d ms after its node manager died, within the grace" % (fenced - killed))
    check(lab.vms(3) == [], "node3 still runs VMs after it was fenced: %s" % lab.vms(3))
    lab.wait_settled([1, 2])


def case_churn(lab):
    """Hosts lost and back, one after the other (Corosync killed and restarted, links cut and
    healed): Corosync's ring reforms several times as a host rejoins and members need not see the
    same views; after every round all three are members again, in one state, every host up."""
    start_all(lab, [1, 2, 3])
    for round_ in range(6):
        victim = round_ % 3 + 1
        if round_ % 2 == 0:
            lab.kill_corosync(victim)
        else:
            lab.cut(victim)
        others = [i for i in (1, 2, 3) if i != victim]
        lab.wait("round %d: host %d seen gone" % (round_, victim),
                 lambda: all(lab.status(i).get("members") == others for i in others))
        if round_ % 2 == 0:
            lab.start_corosync(victim)
        else:
            lab.heal(victim)
        lab.wait_synced([1, 2, 3], timeout=30)
        lab.wait("round %d: every host up" % round_,
                 lambda: all(n.get("status") == "up" for n in lab.status(1).get("nodes", {}).values())
                 and len(lab.status(1).get("nodes", {})) == 3, timeout=30)
        lab.wait_settled([1, 2, 3])
    check_exactly_once(lab, [1, 2, 3])


CASES = {
    "membership": case_membership,
    "partition": case_partition,
    "old-state": case_old_state,
    "director-killed": case_director_killed,
    "restart": case_restart,
    "fence-agent": case_fence_agent,
    "amfd-restart": case_amfd_restart,
    "churn": case_churn,
}


def main():
    if len(sys.argv) != 2 or (sys.argv[1] not in CASES and sys.argv[1] != "loopback"):
        print(__doc__, file=sys.stderr)
        return 64
    testnode = os.environ["AMF_TESTNODE"]
    admin = os.environ["AMF_ADMIN"]
    case = sys.argv[1]
    started = time.time()
    if case == "loopback":
        case_loopback(testnode, admin)
    else:
        fencing = "mode: self"
        grace = 10000
        if case in ("fence-agent", "amfd-restart"):
            # Powers the host off: its VMs are gone. In fence-agent, only once fence-ok exists.
            condition = "test -e @LABDIR@/fence-ok && " if case == "fence-agent" else ""
            fencing = ("mode: agent\nagent:\n  command: %srm -rf @LABDIR@/vms-{node} && touch @LABDIR@/fenced-{node}\n"
                       "  timeout: 2s\n  retryInterval: 500ms" % condition)
            grace = 3000
        lab = Lab(3, testnode=testnode, admin=admin, fencing=fencing, grace=grace)
        try:
            CASES[case](lab)
        finally:
            lab.cleanup()
    print("%s: passed in %.1f s" % (case, time.time() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
