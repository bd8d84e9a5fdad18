#!/usr/bin/env python3
"""The fault harness's invariant checkers (scripts/lab/amf_lab/invariants.py), each shown to catch
the violation it exists for, and to stay quiet when there is none, from observations made up here
(no lab). Label faultlab-ci."""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "lab"))
from amf_lab.invariants import ConfigConverged, DualActive, GuestBeliefs, SiRecovered, VmOnTwoHosts  # noqa: E402


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


if __name__ == "__main__":
    unittest.main()
