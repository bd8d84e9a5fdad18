"""The invariants a fault-injection run checks at every instant, each from outside the node managers'
state where the lab can see it (docs/lab.md, "Invariants"). Each checker takes observations in time
order and keeps its violations; the checkers hold no lab: tests feed them observations directly.

An observation is a dict:
  tMs       milliseconds since the run's start
  qemus     {node: [vm, ...]}: the VMs whose QEMU runs on each host (libvirt's pid files)
  beliefs   {vm: {si: ha}}: what each guest last said it holds (its hook's console markers);
            a VM whose QEMU runs nowhere believes nothing
  status    amfd's status document (from an amfd with a director), or None
  sides     the partition's sides (lists of nodes) while the lab is partitioned, else None
  writes    at the end only: the checkpoint writer's count (ckpt_writer.py), or None

Checkers that judge the cluster's decisions also take each event of the amfds' streams (`event`) and
each fault as it is injected (`fault`), in time order with the observations.
"""
import os
import re

HOOK = re.compile(r"KVM-AMF-GUEST hook (\S+) (\S+)")
BOOT = "KVM-AMF-GUEST up "


class Checker:
    name = "invariant"

    def __init__(self):
        self.violations = []

    def violate(self, t_ms, detail):
        self.violations.append({"tMs": t_ms, "invariant": self.name, "detail": detail})

    def observe(self, obs):
        """An observation of the lab (above)."""

    def event(self, t_ms, kind, detail):
        """An event of the amfds' streams: kind "report" or "decision", detail its text."""

    def fault(self, t_ms, kind, fault):
        """A fault injected now: its kind and the scenario's fault (a dict)."""

    def finish(self, obs):
        """The end of the run (obs: the last observation)."""


class DualActive(Checker):
    """More units hold an SI active than its model allows: a unit holds it when a VM of it, running
    anywhere (hung or not), believes it holds the SI active. Reported once each time it goes over."""
    name = "dual-active"

    def __init__(self, unit_of, allowed):
        super().__init__()
        self.unit_of = unit_of    # vm -> su
        self.allowed = allowed    # si -> how many actives its model allows
        self.over = set()

    def observe(self, obs):
        running = {vm for vms in obs["qemus"].values() for vm in vms}
        holders = {}
        for vm, held in obs["beliefs"].items():
            if vm not in running:
                continue
            for si, ha in held.items():
                if ha == "active":
                    holders.setdefault(si, set()).add(self.unit_of.get(vm, vm))
        over = {si for si, units in holders.items() if len(units) > self.allowed.get(si, 1)}
        for si in sorted(over - self.over):
            self.violate(obs["tMs"], "si/%s is held active by %s" % (si, ", ".join(sorted(holders[si]))))
        self.over = over


class VmOnTwoHosts(Checker):
    """A VM's QEMU runs on two hosts at once. Hosts on two sides of a partition: the cluster recovered a
    VM that its cut-off host still ran (recovered-before-fence); otherwise vm-on-two-hosts."""
    name = "vm-on-two-hosts"

    def __init__(self):
        super().__init__()
        self.doubled = set()

    def observe(self, obs):
        where = {}
        for node, vms in obs["qemus"].items():
            for vm in vms:
                where.setdefault(vm, []).append(node)
        doubled = {vm for vm, nodes in where.items() if len(nodes) > 1}
        for vm in sorted(doubled - self.doubled):
            nodes = sorted(where[vm])
            sides = obs.get("sides")
            together = not sides or any(set(nodes) <= set(side) for side in sides)
            self.violations.append({"tMs": obs["tMs"], "invariant": "vm-on-two-hosts" if together
                                    else "recovered-before-fence", "detail": "vm/%s runs on %s" % (
                                        vm, ", ".join(nodes))})
        self.doubled = doubled


class SiRecovered(Checker):
    """Every SI the cluster wants (it and its group unlocked) is served at the end of the run: some unit
    holds it active, acknowledged, in amfd's status, and its guest believes so."""
    name = "si-not-recovered"

    def observe(self, obs):
        self.last = obs

    def finish(self, obs):
        status = obs.get("status")
        if not status:
            self.violate(obs["tMs"], "no amfd with a director answered at the end of the run")
            return
        groups = {g["name"]: g for g in status["sgs"]}
        believed = {si for vm, held in obs["beliefs"].items() for si, ha in held.items() if ha == "active"}
        for si in status["sis"]:
            if si["admin"] != "unlocked" or groups[si["sg"]]["admin"] != "unlocked":
                continue
            acked = [a["su"] for a in si["assignments"] if a["ha"] == "active" and a["acked"]]
            if not acked:
                self.violate(obs["tMs"], "si/%s is not served at the end of the run" % si["name"])
            elif si["name"] not in believed:
                self.violate(obs["tMs"], "si/%s: status says %s, but no running guest believes it holds it" % (
                    si["name"], ", ".join(acked)))


class RecoveredBeforeFence(Checker):
    """The cluster started a unit elsewhere, or made another unit active for its SI, while the unit's
    host was lost (out of the membership, or its node manager gone) and not yet fenced: its VM may
    still run there. Judged from the amfds' events: the decision `node N lost|amfd-down|fencing`
    opens the window; the report `fencing N succeeded` or the decision `node N down|up` closes it
    (fenced, self-fenced past its bound, or back)."""
    name = "recovered-before-fence"
    NODE = re.compile(r"^node (\S+) (lost|amfd-down|fencing|down|up) \(")
    START = re.compile(r"^start su/(\S+) on (\S+)$")
    ASSIGN = re.compile(r"^assign si/(\S+) (\S+) to su/(\S+)$")
    UNASSIGN = re.compile(r"^unassign si/(\S+) from su/(\S+)$")
    FENCED = re.compile(r"^fencing (\S+) succeeded$")
    VM = re.compile(r"^vm/(\S+) (started on|stopped on|failed on) (\S+?)(: crash)?$")

    def __init__(self, unit_of):
        super().__init__()
        self.unit_of = unit_of  # vm -> su
        self.unsafe = set()     # nodes lost and not fenced
        self.node_of = {}       # su -> the node it was last started on
        self.active = {}        # si -> the su it was last assigned active to

    def event(self, t_ms, kind, detail):
        if kind == "report":
            fenced = self.FENCED.match(detail)
            if fenced:
                self.unsafe.discard(fenced.group(1))
                return
            m = self.VM.match(detail)
            su = self.unit_of.get(m.group(1)) if m else None
            if su and m.group(2) == "started on":
                self.node_of[su] = m.group(3)
            elif su and (m.group(2) == "stopped on" or m.group(4)) and self.node_of.get(su) == m.group(3):
                del self.node_of[su]  # its QEMU is gone: nothing of it runs there any more
            return
        if kind != "decision":
            return
        for part in detail.split("; "):
            m = self.NODE.match(part)
            if m:
                (self.unsafe.add if m.group(2) in ("lost", "amfd-down", "fencing") else self.unsafe.discard)(m.group(1))
                continue
            m = self.START.match(part)
            if m:
                su, node = m.groups()
                old = self.node_of.get(su)
                if old in self.unsafe and node != old:
                    self.violate(t_ms, "su/%s started on %s while %s, where it ran, was not fenced" % (su, node, old))
                self.node_of[su] = node
                continue
            m = self.ASSIGN.match(part)
            if m and m.group(2) == "active":
                si, _, su = m.groups()
                old = self.active.get(si)
                if old and old != su and self.node_of.get(old) in self.unsafe:
                    self.violate(t_ms, "si/%s made active on su/%s while su/%s's host %s was not fenced" % (
                        si, su, old, self.node_of[old]))
                self.active[si] = su
                continue
            m = self.UNASSIGN.match(part)
            if m and self.active.get(m.group(1)) == m.group(2):
                del self.active[m.group(1)]


class SpuriousRecovery(Checker):
    """Packet loss and delay below what the token tolerates must not cost a member: while loss or delay
    is injected and no other fault has been, a node lost, a fence or a failover is spurious."""
    name = "spurious-recovery"
    WORDS = re.compile(r"^(node \S+ lost|fence |failover su/)")

    def __init__(self):
        super().__init__()
        self.lossy = set()
        self.other = False

    def fault(self, t_ms, kind, fault):
        if kind == "packet-loss":
            bad = fault.get("percent", 0) > 0 or fault.get("delayMs", 0) > 0
            (self.lossy.add if bad else self.lossy.discard)(fault.get("node"))
        else:
            self.other = True

    def event(self, t_ms, kind, detail):
        if kind != "decision" or not self.lossy or self.other:
            return
        for part in detail.split("; "):
            if self.WORDS.match(part):
                self.violate(t_ms, "%s under packet loss on %s only" % (part, ", ".join(sorted(self.lossy))))


class AckedWritesKept(Checker):
    """Every checkpoint write the cluster acknowledged during the run reads back at the end, and none it
    did not acknowledge is there in part (the writer's count, obs["writes"])."""
    name = "ckpt-write-lost"

    def finish(self, obs):
        writes = obs.get("writes")
        if not writes:
            return
        if writes["lost"] is None:
            self.violate(obs["tMs"], "no amfd answered to read the %d acknowledged writes back" % writes["acked"])
            return
        for n in writes["lost"]:
            self.violate(obs["tMs"], "acknowledged checkpoint write %d is lost" % n)
        for n in writes["torn"]:
            self.violate(obs["tMs"], "checkpoint write %d, not acknowledged, is there in part" % n)


class ConfigConverged(Checker):
    """At the end, every amfd that answers holds the same configuration (generation and digest)."""
    name = "config-diverged"

    def observe(self, obs):
        pass

    def finish(self, obs):
        seen = {node: (doc["generation"], doc["configDigest"]) for node, doc in (obs.get("statuses") or {}).items()}
        if len(set(seen.values())) > 1:
            self.violate(obs["tMs"], "amfds hold different configurations: " + ", ".join(
                "%s generation %d digest %s" % (node, g, d) for node, (g, d) in sorted(seen.items())))


class GuestBeliefs:
    """Follows the VMs' console files for the test guest's markers: `KVM-AMF-GUEST hook STATE SI ...`
    (what the guest now holds) and `KVM-AMF-GUEST up` (it booted: it holds nothing). A VM whose QEMU
    is gone or is another process now (restarted, or migrated: a miss, never a false alarm) holds
    nothing until its guest says otherwise."""

    def __init__(self, consoles):
        self.consoles = consoles  # vm -> console file
        self.offsets = {}
        self.pids = {}
        self.beliefs = {vm: {} for vm in consoles}

    def read(self, pids):
        """pids: {vm: the pid of its QEMU, or None}. Returns {vm: {si: ha}}."""
        for vm, path in self.consoles.items():
            if pids.get(vm) != self.pids.get(vm):
                # What the old QEMU wrote and was not read yet is the old guest's: skipped.
                self.beliefs[vm] = {}
                self.pids[vm] = pids.get(vm)
                try:
                    self.offsets[vm] = os.path.getsize(path)
                except OSError:
                    self.offsets[vm] = 0
        for vm, path in self.consoles.items():
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets.get(vm, 0))
                    data = f.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1  # whole lines only
            self.offsets[vm] = self.offsets.get(vm, 0) + end
            for line in data[:end].decode("utf-8", "replace").splitlines():
                self.line(vm, line)
        return self.beliefs

    def line(self, vm, line):
        if BOOT in line:
            self.beliefs[vm] = {}
            return
        m = HOOK.search(line)
        if not m:
            return
        state, si = m.groups()
        if state in ("active", "standby", "quiescing", "quiesced"):
            self.beliefs[vm][si] = state
        else:
            self.beliefs[vm].pop(si, None)


def checkers_for(config):
    """The checkers of a run over `config` (a LabConfig)."""
    unit_of = {vm["name"]: unit["name"] for _, unit, vm in config.vms()}
    allowed = {}
    for group in config.groups:
        red = group["spec"]["redundancy"]
        n = max(1, red.get("activeUnits", 1)) if red["model"] == "N-Way-Active" else 1
        for si in group["spec"].get("serviceInstances", []):
            allowed[si["name"]] = n
    return [DualActive(unit_of, allowed), VmOnTwoHosts(), SiRecovered(), ConfigConverged(),
            RecoveredBeforeFence(unit_of), SpuriousRecovery(), AckedWritesKept()]
