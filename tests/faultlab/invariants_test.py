#!/usr/bin/env python3
"""The fault harness's invariant checkers (scripts/lab/amf_lab/invariants.py), each shown to catch
the violation it exists for, and to stay quiet when there is none, from observations made up here
(no lab). Label faultlab-ci."""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "lab"))
from amf_lab.invariants import (AckedWritesKept, ConfigConverged, DualActive, GuestBeliefs,  # noqa: E402
                                RecoveredBeforeFence, SiRecovered, SpuriousRecovery, VmOnTwoHosts)
from amf_lab.scenario import event_key  # noqa: E402


def obs(t, qemus=None, beliefs=None, status=None, sides=None, statuses=None):
    return {"tMs": t, "qemus": qemus or {}, "beliefs": beliefs or {}, "status": status, "sides": sides,
            "statuses": statuses}


def status(assignments, admin="unlocked", sg_admin="unlocked", digest="00000001", generation=1):
    return {"sgs": [{"name": "mme", "admin": sg_admin}], "generation": generation, "configDigest": digest,
            "sis": [{"name": "mme-si", "sg": "mme", "admin": admin,
                     "assignments": [{"su": su, "ha": ha, "acked": acked} for su, ha, acked in assignments]}]}


class DualActiveTest(unittest.TestCase):
    def checker(self):
        return DualActive({"a-vm": "a", "b-vm": "b"}, {"mme-si": 1})

    def test_two_running_guests_believing_active_is_a_violation_reported_once(self):
        c = self.checker()
        both = {"a-vm": {"mme-si": "active"}, "b-vm": {"mme-si": "active"}}
        c.observe(obs(10, {"n1": ["a-vm"], "n2": ["b-vm"]}, both))
        c.observe(obs(20, {"n1": ["a-vm"], "n2": ["b-vm"]}, both))
        self.assertEqual([v["tMs"] for v in c.violations], [10])
        self.assertEqual(c.violations[0]["invariant"], "dual-active")
        self.assertIn("a, b", c.violations[0]["detail"])

    def test_a_dead_guests_belief_does_not_count(self):
        c = self.checker()
        c.observe(obs(10, {"n2": ["b-vm"]}, {"a-vm": {"mme-si": "active"}, "b-vm": {"mme-si": "active"}}))
        self.assertEqual(c.violations, [])

    def test_active_and_standby_is_fine_and_n_way_active_allows_more(self):
        c = self.checker()
        c.observe(obs(10, {"n1": ["a-vm"], "n2": ["b-vm"]}, {"a-vm": {"mme-si": "active"},
                                                             "b-vm": {"mme-si": "standby"}}))
        self.assertEqual(c.violations, [])
        c = DualActive({"a-vm": "a", "b-vm": "b"}, {"mme-si": 2})
        c.observe(obs(10, {"n1": ["a-vm"], "n2": ["b-vm"]}, {"a-vm": {"mme-si": "active"},
                                                             "b-vm": {"mme-si": "active"}}))
        self.assertEqual(c.violations, [])


class VmOnTwoHostsTest(unittest.TestCase):
    def test_two_qemus_of_one_vm_is_a_violation(self):
        c = VmOnTwoHosts()
        c.observe(obs(5, {"n1": ["a-vm"], "n2": ["a-vm"]}))
        self.assertEqual([(v["invariant"], v["detail"]) for v in c.violations],
                         [("vm-on-two-hosts", "vm/a-vm runs on n1, n2")])

    def test_across_a_partition_it_is_a_recovery_before_fencing(self):
        c = VmOnTwoHosts()
        c.observe(obs(5, {"n1": ["a-vm"], "n3": ["a-vm"]}, sides=[["n1", "n2"], ["n3"]]))
        self.assertEqual(c.violations[0]["invariant"], "recovered-before-fence")

    def test_one_host_each_is_fine(self):
        c = VmOnTwoHosts()
        c.observe(obs(5, {"n1": ["a-vm"], "n2": ["b-vm"]}))
        self.assertEqual(c.violations, [])


class SiRecoveredTest(unittest.TestCase):
    def test_an_unserved_wanted_si_at_the_end_is_a_violation(self):
        c = SiRecovered()
        c.finish(obs(9, status=status([("a", "standby", True)])))
        self.assertIn("not served", c.violations[0]["detail"])

    def test_status_without_a_believing_guest_is_a_violation(self):
        c = SiRecovered()
        c.finish(obs(9, {"n1": ["a-vm"]}, {"a-vm": {"mme-si": "standby"}}, status([("a", "active", True)])))
        self.assertIn("no running guest believes", c.violations[0]["detail"])

    def test_served_or_locked_is_fine(self):
        c = SiRecovered()
        c.finish(obs(9, {"n1": ["a-vm"]}, {"a-vm": {"mme-si": "active"}}, status([("a", "active", True)])))
        c.finish(obs(9, status=status([], admin="locked")))
        self.assertEqual(c.violations, [])

    def test_no_amfd_answering_is_a_violation(self):
        c = SiRecovered()
        c.finish(obs(9))
        self.assertEqual(len(c.violations), 1)


class ConfigConvergedTest(unittest.TestCase):
    def test_different_digests_are_a_violation(self):
        c = ConfigConverged()
        c.finish(obs(9, statuses={"n1": status([], digest="aa"), "n2": status([], digest="bb", generation=2)}))
        self.assertIn("n2 generation 2 digest bb", c.violations[0]["detail"])

    def test_the_same_everywhere_is_fine(self):
        c = ConfigConverged()
        c.finish(obs(9, statuses={"n1": status([]), "n2": status([])}))
        self.assertEqual(c.violations, [])


class RecoveredBeforeFenceTest(unittest.TestCase):
    def checker(self):
        c = RecoveredBeforeFence({"a-vm": "a", "b-vm": "b"})
        c.event(1, "decision", "start su/a on node1; start su/b on node2")
        c.event(2, "report", "vm/a-vm started on node1")
        c.event(3, "report", "vm/b-vm started on node2")
        c.event(4, "decision", "assign si/mme-si active to su/a")
        c.event(5, "decision", "assign si/mme-si standby to su/b")
        return c

    def test_a_takeover_while_the_old_host_is_lost_is_a_violation(self):
        c = self.checker()
        c.event(10, "decision", "node node1 lost (left the membership); fence node1")
        c.event(11, "decision", "assign si/mme-si active to su/b")
        self.assertEqual([v["tMs"] for v in c.violations], [11])
        self.assertIn("su/a's host node1", c.violations[0]["detail"])

    def test_a_restart_elsewhere_while_the_host_is_lost_is_a_violation(self):
        c = self.checker()
        c.event(10, "decision", "node node1 amfd-down (its node manager left)")
        c.event(12, "decision", "start su/a on node3")
        self.assertEqual(len(c.violations), 1)
        self.assertEqual(c.violations[0]["invariant"], "recovered-before-fence")

    def test_after_the_fence_it_is_fine(self):
        c = self.checker()
        c.event(10, "decision", "node node1 lost (left the membership); fence node1")
        c.event(20, "report", "fencing node1 succeeded")
        c.event(21, "decision", "assign si/mme-si active to su/b; start su/a on node3")
        self.assertEqual(c.violations, [])

    def test_a_failed_fence_keeps_the_window_open_and_a_self_fence_closes_it(self):
        c = self.checker()
        c.event(10, "decision", "node node1 lost (left the membership); fence node1")
        c.event(20, "report", "fencing node1 failed: exit 1")
        c.event(21, "decision", "start su/a on node3")
        self.assertEqual(len(c.violations), 1)
        c = self.checker()
        c.event(10, "decision", "node node1 lost (left the membership)")
        c.event(20, "decision", "node node1 down (self-fenced: its bound has passed); start su/a on node3")
        self.assertEqual(c.violations, [])

    def test_a_crashed_vm_is_not_on_its_host_any_more(self):
        c = self.checker()
        c.event(10, "report", "vm/a-vm failed on node1: crash")
        c.event(11, "decision", "node node1 lost (left the membership)")
        c.event(12, "decision", "start su/a on node3")
        self.assertEqual(c.violations, [])


class SpuriousRecoveryTest(unittest.TestCase):
    def test_a_failover_under_loss_alone_is_a_violation(self):
        c = SpuriousRecovery()
        c.fault(10, "packet-loss", {"node": "node1", "percent": 5})
        c.event(20, "decision", "node node1 lost (left the membership); fence node1")
        self.assertEqual([v["detail"] for v in c.violations],
                         ["node node1 lost (left the membership) under packet loss on node1 only",
                          "fence node1 under packet loss on node1 only"])

    def test_after_the_loss_ends_or_with_another_fault_it_is_not_judged(self):
        c = SpuriousRecovery()
        c.fault(10, "packet-loss", {"node": "node1", "percent": 5})
        c.fault(20, "packet-loss", {"node": "node1", "percent": 0})
        c.event(30, "decision", "failover su/a")
        c.fault(40, "packet-loss", {"node": "node1", "percent": 5})
        c.fault(41, "node-crash", {"node": "node2"})
        c.event(50, "decision", "node node2 lost (left the membership)")
        self.assertEqual(c.violations, [])


class AckedWritesKeptTest(unittest.TestCase):
    def test_lost_and_torn_writes_are_violations(self):
        c = AckedWritesKept()
        c.finish(dict(obs(90), writes={"acked": 10, "failed": 2, "lost": [4], "torn": [11]}))
        self.assertEqual([v["detail"] for v in c.violations], [
            "acknowledged checkpoint write 4 is lost", "checkpoint write 11, not acknowledged, is there in part"])

    def test_nothing_to_read_back_is_a_violation_and_all_back_is_fine(self):
        c = AckedWritesKept()
        c.finish(dict(obs(90), writes={"acked": 10, "failed": 0, "lost": None, "torn": None}))
        self.assertEqual(len(c.violations), 1)
        c = AckedWritesKept()
        c.finish(dict(obs(90), writes={"acked": 10, "failed": 2, "lost": [], "torn": []}))
        self.assertEqual(c.violations, [])


class GuestBeliefsTest(unittest.TestCase):
    def test_markers_make_beliefs_and_a_new_qemu_forgets_them(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "a.console")
            with open(path, "w") as f:
                f.write("KVM-AMF-GUEST up uptime=3.1\nKVM-AMF-GUEST hook standby mme-si\n")
                f.write("KVM-AMF-GUEST hook active mme-si 10.0.0.1/24\nKVM-AMF-GUEST hook active ")  # partial line
            beliefs = GuestBeliefs({"a-vm": path})
            beliefs.pids["a-vm"] = 100  # known since before the markers were written
            self.assertEqual(beliefs.read({"a-vm": 100}), {"a-vm": {"mme-si": "active"}})
            with open(path, "a") as f:
                f.write("oam-si\nKVM-AMF-GUEST hook removed mme-si\n")
            self.assertEqual(beliefs.read({"a-vm": 100}), {"a-vm": {"oam-si": "active"}})
            with open(path, "a") as f:
                f.write("KVM-AMF-GUEST hook active mme-si 10.0.0.1/24\n")
            # Killed and started again: what the old guest wrote is skipped, it holds nothing.
            self.assertEqual(beliefs.read({"a-vm": 200}), {"a-vm": {}})
            with open(path, "a") as f:
                f.write("KVM-AMF-GUEST up uptime=2.0\nKVM-AMF-GUEST hook standby mme-si\n")
            self.assertEqual(beliefs.read({"a-vm": 200}), {"a-vm": {"mme-si": "standby"}})


class EventKeyTest(unittest.TestCase):
    """Copies of one event from several amfds are one event; the same words later in the order are
    another (a fence that succeeds twice within a second, as in a whole-cluster restart)."""

    def test_copies_match_and_repeats_at_another_place_do_not(self):
        def report(after, seq):
            return {"type": "report", "seq": seq, "text": "fencing node3 succeeded",
                    "data": {"what": "fencing node3 succeeded", "afterDecision": after}}

        def decision(n, seq):
            return {"type": "decision", "seq": seq, "text": "fence node3", "data": {"seq": n, "director": 1}}

        self.assertEqual(event_key(report(7, 30)), event_key(report(7, 41)))
        self.assertNotEqual(event_key(report(7, 30)), event_key(report(9, 31)))
        self.assertEqual(event_key(decision(8, 30)), event_key(decision(8, 52)))
        self.assertNotEqual(event_key(decision(8, 30)), event_key(decision(9, 31)))
        self.assertNotEqual(event_key(report(8, 1)), event_key(decision(8, 1)))


if __name__ == "__main__":
    unittest.main()
