#!/usr/bin/env python3
"""amfd's metrics on a real three-host lab (amf-lab running examples/lab), scraped every second by a
real Prometheus server (Debian's package), asked through its HTTP API:

- every endpoint's output passes `promtool check metrics`;
- the series of docs/monitoring.md are there: AMF states, the VMs' figures, amfd's own, the
  failure path's histograms and counters;
- they move: a VM's CPU with the load its guest makes (kvmamf.load on oam-vm), the context switches
  and heartbeats as time passes, the states, the failure detection, the SI outage and the recovery
  actions when the 2N active's VM is killed, and the host's status, the host-lost detection and the
  fencing when the active's host is powered off;
- the dashboards' queries name only served metrics and Prometheus evaluates each of them.

Each host's amfd serves its metrics in its own network namespace on 0.0.0.0:9464, so that one
Prometheus on the lab's cluster network reaches all three: it runs in the hub namespace, with
address .254 on the hub's bridge. amfd gets --metrics and --stats-interval through its environment
(AMFD_METRICS, AMFD_STATS_INTERVAL): the lab starts amfd with a fixed command line and the test's
environment.

Usage: lab_test.py   (root; AMF_LAB, AMF_AMFD, AMF_ADMIN, AMF_SIM, AMF_AGENT, AMF_GUEST_IMAGE and
AMF_LIBVIRT_CACHE from ctest)
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SOURCE, "scripts", "lab"))
from amf_lab.examples import relocated  # noqa: E402
from amf_lab.lab import Lab, Tools, free_prefix  # noqa: E402
from amf_lab.util import Timeout, run, wait_for  # noqa: E402

PORT = 9464
PROMETHEUS = "http://127.0.0.1:9090"
LOAD_DELAY_S, LOAD_S = 50, 25  # oam-vm's guest is busy from 50 s after its agent started, for 25 s
DIRECTOR = " * on(instance) group_left() (amf_director == 1)"


def check(condition, message):
    if not condition:
        raise AssertionError(message)


class Prometheus:
    """Debian's Prometheus in the lab's hub namespace, scraping every amfd each second."""

    def __init__(self, lab, directory):
        self.hub = lab.prefix + "hub"
        subnet = lab.config().subnet
        self.targets = {lab.node_name(i): "%s.%d:%d" % (subnet, i, PORT) for i in lab.hosts()}
        run("ip", "-n", self.hub, "addr", "add", subnet + ".254/24", "dev", "br0")
        os.makedirs(directory)
        config = os.path.join(directory, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                    "scrape_configs:\n  - job_name: amfd\n    static_configs:\n      - targets: %s\n"
                    % json.dumps(sorted(self.targets.values())))
        self.log = open(os.path.join(directory, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.hub, "prometheus", "--config.file=" + config,
             "--storage.tsdb.path=" + os.path.join(directory, "data"), "--web.listen-address=127.0.0.1:9090"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, start_new_session=True)

    def ready(self):
        """Waits until the server answers (its TSDB and web handler started)."""
        def answers():
            check(self.proc.poll() is None, "Prometheus exited (see prometheus.log)")
            code = run("ip", "netns", "exec", self.hub, "curl", "-s", "-m", "2", "-o", "/dev/null",
                       "-w", "%{http_code}", PROMETHEUS + "/-/ready", check=False, timeout=10)
            return code.strip() == "200"
        wait_for("Prometheus ready", answers, timeout=60, poll=0.2)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def curl(self, *args):
        return run("ip", "netns", "exec", self.hub, "curl", "-sS", "-m", "10", *args, timeout=20)

    def query(self, expr):
        """[(labels, value)] of the instant query; raises if Prometheus refuses it."""
        answer = json.loads(self.curl("--data-urlencode", "query=" + expr, PROMETHEUS + "/api/v1/query"))
        check(answer["status"] == "success", "Prometheus refuses %s: %s" % (expr, answer))
        return [(r["metric"], float(r["value"][1])) for r in answer["data"]["result"]]

    def value(self, expr):
        """The single value of `expr` (None when it has no result)."""
        result = self.query(expr)
        check(len(result) <= 1, "%s has %d series: %s" % (expr, len(result), result))
        return result[0][1] if result else None

    def by_instance(self, expr):
        return {labels.get("instance"): value for labels, value in self.query(expr)}

    def metrics(self, node):
        return self.curl("http://%s/metrics" % self.targets[node])


def served(lab, si, other_than=None):
    """(active SU, its node) once si has one acknowledged active (another than other_than)."""
    status = lab.status()
    for entry in status["sis"] if status else []:
        if entry["name"] != si:
            continue
        actives = [a["su"] for a in entry["assignments"] if a["ha"] == "active" and a["acked"]]
        if len(actives) == 1 and actives[0] != other_than:
            return actives[0], [su["node"] for su in status["sus"] if su["name"] == actives[0]][0]
    return None


def standby(lab, si):
    status = lab.status()
    for entry in status["sis"] if status else []:
        if entry["name"] == si:
            return [a["su"] for a in entry["assignments"] if a["ha"] == "standby" and a["acked"]]
    return []


def console(directory, vm):
    try:
        with open(os.path.join(directory, "consoles", vm + ".console"), errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def configuration(directory):
    """examples/lab relocated, oam-vm's guest loaded for a while (kvmamf.load)."""
    files = relocated(directory, os.environ["AMF_GUEST_IMAGE"])
    oam = [f for f in files if f.endswith("sg-oam.yaml")][0]
    with open(oam) as f:
        text = f.read()
    check("kvmamf.ip=10.90.3.10/24" in text, "sg-oam.yaml's oam-vm changed: no kvmamf.ip=10.90.3.10/24")
    with open(oam, "w") as f:
        f.write(text.replace("kvmamf.ip=10.90.3.10/24", "kvmamf.ip=10.90.3.10/24 kvmamf.load=%d:%d" % (
            LOAD_DELAY_S, LOAD_S)))
    return files


def check_endpoints(lab, prom):
    for i in lab.hosts():
        node = lab.node_name(i)
        text = prom.metrics(node)
        result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        check(result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(),
              "promtool check metrics on %s's endpoint: exit %d\n%s%s" % (node, result.returncode, result.stdout,
                                                                           result.stderr))
        print("%s: %d samples, promtool: no finding" % (node, sum(1 for line in text.splitlines()
                                                                   if line and line[0] != "#")))


# Series every lab serves once settled: (expression, how many series at least).
PRESENT = [
    ('amf_su_presence_state{su="mme-a", state="instantiated"} == 1', 3),
    ('amf_su_ha_state{si="mme-si", state="active"} == 1', 3),
    ('amf_su_readiness_state{state="in-service"} == 1', 9),
    ('amf_node_status{status="up"} == 1', 9),
    ('amf_si_served == 1', 6),
    ('sum(amf_director) == 1', 1),
    ('amf_vm_cpu_seconds_total > 0', 3),
    ('amf_vm_memory_resident_bytes > 0', 3),
    ('amf_vm_memory_current_bytes > 0', 3),
    ('amf_vm_context_switches_total{kind="voluntary"} > 0', 3),
    ('amf_vm_qemu_threads > 0', 3),
    ('amf_vm_network_transmit_packets_total', 3),
    ('amf_vm_block_allocation_bytes{domain="oam-vm"}', 1),
    ('amf_vm_heartbeat_interval_seconds_count > 0', 3),
    ('amf_vm_heartbeat_age_seconds < 2', 3),
    ('amf_host_vms{state="running"}', 3),
    ('amf_node_placed_vcpus', 9),
    ('amf_process_cpu_seconds_total > 0', 3),
    ('amf_process_resident_memory_bytes > 1e6', 3),
    ('amf_event_loop_lag_seconds_count > 0', 3),
    ('amf_stats_collections_total{outcome="ok"} > 0', 3),
    ('amf_stats_interval_seconds == 1', 3),
    ('amf_admin_request_duration_seconds_count{request="query"} > 0', 1),
    ('amf_failure_detection_seconds_count{kind="crash"}', 3),
    ('amf_si_outage_seconds_count{si="mme-si"}', 3),
    ('amf_migration_downtime_seconds_count == 0', 3),
    ('amf_recovery_actions_total{kind="failover-su"}', 3),
    ('amf_notifications_total', 18),
]


def check_present(prom):
    for expr, least in PRESENT:
        result = wait_for("%d series of %s" % (least, expr), lambda e=expr, n=least: len(prom.query(e)) >= n,
                          timeout=30, poll=0.5)
        check(result, expr)
    print("%d kinds of series present" % len(PRESENT))


def check_time_moves(prom):
    """Counters that move by themselves: CPU, context switches, heartbeats, collections, the lag probe."""
    for expr in ("sum(rate(amf_vm_cpu_seconds_total[10s]))", "sum(rate(amf_vm_context_switches_total[10s]))",
                 "sum(rate(amf_vm_heartbeats_total[10s]))", "sum(rate(amf_stats_collections_total[10s]))",
                 "sum(rate(amf_event_loop_lag_seconds_count[10s]))", "sum(rate(amf_process_cpu_seconds_total[10s]))"):
        # A series just present has one sample: its rate needs a second scrape, so wait a little.
        try:
            wait_for("%s > 0" % expr, lambda e=expr: (prom.value(e) or 0) > 0, timeout=15, poll=0.5)
        except Timeout:
            pass
        rate = prom.value(expr)
        check(rate and rate > 0, "%s = %s: not moving" % (expr, rate))
        print("%s = %.3f" % (expr, rate))
    print("mean heartbeat interval as amfd received them: %s" % ", ".join(
        "%s %.3f s" % (labels["domain"], value) for labels, value in prom.query(
            "sum by (domain) (amf_vm_heartbeat_interval_seconds_sum) / sum by (domain) "
            "(amf_vm_heartbeat_interval_seconds_count)")))


def check_load(prom, directory):
    """oam-vm's CPU while its guest is busy, against after."""
    rate = 'sum(rate(amf_vm_cpu_seconds_total{domain="oam-vm"}[5s]))'
    wait_for("oam-vm's load to start", lambda: "KVM-AMF-GUEST load started" in console(directory, "oam-vm"),
             timeout=LOAD_DELAY_S + 240, poll=0.5)
    time.sleep(8)
    loaded = prom.value(rate)
    threads = prom.value('sum(rate(amf_vm_context_switches_total{domain="oam-vm"}[5s]))')
    wait_for("oam-vm's load to end", lambda: "KVM-AMF-GUEST load ended" in console(directory, "oam-vm"),
             timeout=LOAD_S + 60, poll=0.5)
    time.sleep(8)
    idle = prom.value(rate)
    print("oam-vm's CPU: %.3f cores loaded, %.3f after; its QEMU's context switches %.0f/s loaded, %.0f/s after" % (
        loaded, idle, threads, prom.value('sum(rate(amf_vm_context_switches_total{domain="oam-vm"}[5s]))')))
    check(loaded > 0.25 and loaded > 3 * idle, "oam-vm's CPU did not follow its load: %.3f loaded, %.3f after" % (
        loaded, idle))


# The failure path's figures, summed over the amfds that stay up.
FAILURE_PATH = {
    "crash": 'amf_failure_detection_seconds_count{kind="crash"}',
    "crash_s": 'amf_failure_detection_seconds_sum{kind="crash"}',
    "host_lost": 'amf_failure_detection_seconds_count{kind="host-lost"}',
    "outages": 'amf_si_outage_seconds_count{si="mme-si"}',
    "outage_s": 'amf_si_outage_seconds_sum{si="mme-si"}',
    "failovers": 'amf_recovery_actions_total{kind="failover-su"}',
    "fences": 'amf_recovery_actions_total{kind="fence"}',
    "fenced": 'amf_fence_operations_total{outcome="ok"}',
}


def figures(prom):
    return {key: prom.by_instance(expr) for key, expr in FAILURE_PATH.items()}


def moved(prom, before, instances, key):
    """How much figure `key` grew since `before`, summed over `instances` (each still running)."""
    now = prom.by_instance(FAILURE_PATH[key])
    return sum(now.get(i, 0) - before[key].get(i, 0) for i in instances)


def check_vm_kill(lab, prom):
    active, node = served(lab, "mme-si")
    instances = list(prom.targets.values())
    before = figures(prom)
    lab.kill_qemu(active + "-vm")
    new, _ = wait_for("mme-si served by another unit", lambda: served(lab, "mme-si", other_than=active),
                      timeout=120, poll=0.05)
    wait_for("the kill in the metrics", lambda: moved(prom, before, instances, "outages") >= 1 and
             moved(prom, before, instances, "crash") >= 1 and moved(prom, before, instances, "failovers") >= 1,
             timeout=20, poll=0.5)
    crash_s = moved(prom, before, instances, "crash_s")
    outage_s = moved(prom, before, instances, "outage_s")
    print("VM kill of %s on %s: detection %.3f s (the crash event to the decision), SI outage %.3f s; %s active" % (
        active, node, crash_s, outage_s, new))
    check(moved(prom, before, instances, "crash") == 1, "one crash, %s counted" % moved(prom, before, instances,
                                                                                       "crash"))
    check(moved(prom, before, instances, "outages") == 1 and outage_s > 0,
          "one outage of mme-si, %s counted, %.3f s" % (moved(prom, before, instances, "outages"), outage_s))
    check(prom.value('max(amf_su_ha_state{su="%s", si="mme-si", state="active"}%s)' % (new, DIRECTOR)) == 1,
          "the director's metrics do not show %s active" % new)
    wait_for("%s back as standby" % active, lambda: active in standby(lab, "mme-si"), timeout=120)


def check_host_crash(lab, prom):
    active, node = served(lab, "mme-si")
    victim = prom.targets[node]
    survivors = [t for n, t in prom.targets.items() if n != node]
    before = figures(prom)
    lab.power_off(lab.host_of(node))
    wait_for("mme-si served by another unit", lambda: served(lab, "mme-si", other_than=active), timeout=120,
             poll=0.05)
    wait_for("the crash in the metrics", lambda: moved(prom, before, survivors, "host_lost") >= 1 and
             moved(prom, before, survivors, "fenced") >= 1 and moved(prom, before, survivors, "outages") >= 1,
             timeout=30, poll=0.5)
    check(prom.value('up{instance="%s"}' % victim) == 0, "%s's endpoint is still up" % node)
    # Subqueries step on whole seconds: a sample newer than the last step shows a little later.
    hosts = 'min(min_over_time(amf_cluster_hosts{instance=~"%s"}[1m]))' % "|".join(survivors)
    wait_for("the survivors seeing two hosts", lambda: prom.value(hosts) == 2, timeout=10, poll=0.5)
    seen = 'max(max_over_time((amf_node_status{node="%s", status=~"lost|fencing|down"}%s)[1m:1s]))' % (
        node, DIRECTOR)
    wait_for("the director showing %s lost, fencing or down" % node, lambda: prom.value(seen) == 1, timeout=10,
             poll=0.5)
    check(moved(prom, before, survivors, "fences") >= 1, "no fence counted")
    print("host crash of %s: host-lost detection %.3f s after the view change, fenced, SI outage %.3f s after it" % (
        node, prom.value('sum(amf_failure_detection_seconds_sum{kind="host-lost"})') or 0,
        moved(prom, before, survivors, "outage_s")))
    wait_for("%s's amfd scraped again" % node, lambda: prom.value('up{instance="%s"}' % victim) == 1, timeout=120,
             poll=0.5)
    wait_for("%s up in the director's metrics" % node, lambda: prom.value(
        'max(amf_node_status{node="%s", status="up"}%s)' % (node, DIRECTOR)) == 1, timeout=120, poll=0.5)
    wait_for("%s back as standby" % active, lambda: active in standby(lab, "mme-si"), timeout=180)


def check_dashboards(prom):
    args = [sys.executable, os.path.join(SOURCE, "scripts", "check_dashboards.py"), "--prometheus", PROMETHEUS]
    for target in sorted(prom.targets.values()):
        args += ["--url", "http://%s/metrics" % target]
    boards = sorted(os.path.join(SOURCE, "monitor", "dashboards", f)
                    for f in os.listdir(os.path.join(SOURCE, "monitor", "dashboards")) if f.endswith(".json"))
    result = subprocess.run(["ip", "netns", "exec", prom.hub] + args + boards, capture_output=True, text=True)
    check(result.returncode == 0, "the dashboards against the lab:\n%s%s" % (result.stdout, result.stderr))
    print("%d dashboards: every query names a served metric and Prometheus evaluates it" % len(boards))


def main():
    if os.geteuid() != 0:
        print("SKIP: needs root")
        return 77
    for program in ("prometheus", "promtool", "curl"):
        if not shutil.which(program):
            print("SKIP: no %s (scripts/setup.sh installs it)" % program)
            return 77
    os.environ["AMFD_METRICS"] = "0.0.0.0:%d" % PORT
    os.environ["AMFD_STATS_INTERVAL"] = "1s"
    directory = tempfile.mkdtemp(prefix="amf-monitor-test-")
    tools = Tools(amfd=os.environ["AMF_AMFD"], admin=os.environ["AMF_ADMIN"], sim=os.environ["AMF_SIM"],
                  agent=os.environ["AMF_AGENT"], lab=os.environ["AMF_LAB"])
    lab = Lab(os.path.join(directory, "lab"), tools)
    prom = None
    ok = False
    try:
        lab.up(configuration(directory), prefix=free_prefix("amon"), cache=os.environ.get("AMF_LIBVIRT_CACHE") or None, boot_s=5)
        prom = Prometheus(lab, os.path.join(directory, "prometheus"))
        prom.ready()
        wait_for("Prometheus scraping every amfd", lambda: [v for _, v in prom.query("up")] == [1.0] * 3,
                 timeout=60, poll=0.5)
        wait_for("mme-si served", lambda: served(lab, "mme-si"), timeout=180)
        wait_for("mme-si's standby", lambda: standby(lab, "mme-si"), timeout=180)
        wait_for("oam-si served", lambda: served(lab, "oam-si"), timeout=180)
        check_endpoints(lab, prom)
        check_present(prom)
        check_time_moves(prom)
        check_load(prom, directory)
        check_vm_kill(lab, prom)
        check_host_crash(lab, prom)
        check_endpoints(lab, prom)
        check_dashboards(prom)
        ok = True
    finally:
        if prom:
            prom.stop()
        if not ok:
            print("kept for a look: %s (amfd logs in lab/amfd*/amfd.log, Prometheus in prometheus/)" % directory)
            lab.down(keep_files=True)
        else:
            lab.down()
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
