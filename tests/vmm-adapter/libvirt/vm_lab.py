"""Lab libvirt hosts running the test guest, each driven by amf-vmctl (the real LibvirtHypervisor
and SocketGuestChannel). Shared by the real-VM tests and the libvirt benchmark.

Host i (1-based) is the network namespace PREFIX-nI with a bridge br0 holding 10.231.0.I/24; the
hosts' bridges are joined by veth pairs, so their VMs and their QEMUs' migration streams reach each
other. Its libvirtd runs under scripts/lab/libvirt-host.sh with all state in DIR/hostI; the VMs'
agent sockets are /run/libvirt/kvm-amf-agents inside the host (DIR/hostI/run/kvm-amf-agents), the
same path on every host, as on real machines.
"""
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
HOST_SCRIPT = os.path.join(SOURCE, "scripts", "lab", "libvirt-host.sh")
AGENT_DIR = "/run/libvirt/kvm-amf-agents"
BOOT_TWEAKS = ("console=ttyS0 quiet cryptomgr.notests mitigations=off rodata=off no_timer_check i8042.noaux "
               "i8042.nokbd i8042.nopnp audit=0 apparmor=0 security=none nowatchdog random.trust_cpu=on")


def now_ms():
    return int(time.time() * 1000)


class Timeout(AssertionError):
    pass


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def skip_unless_ready():
    """Exits 77 (skipped) when the lab cannot run here."""
    if os.geteuid() != 0:
        print("SKIP: needs root")
        raise SystemExit(77)
    for tool in ("libvirtd", "tini", "qemu-system-x86_64", "virsh"):
        if subprocess.run(["sh", "-c", "command -v " + tool], stdout=subprocess.DEVNULL).returncode != 0:
            print("SKIP: %s not installed (scripts/setup.sh)" % tool)
            raise SystemExit(77)


def tsc_khz():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return int(float(line.split(":")[1]) * 1000)
    except OSError:
        pass
    return 0


def sh(*args, check_rc=True, timeout=120):
    result = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check_rc and result.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s" % (" ".join(args), result.returncode, result.stdout))
    return result.stdout


class Vmctl:
    """One amf-vmctl on a host: commands in, JSON lines out (collected by a reader thread)."""

    def __init__(self, lab, host, config, first_heartbeat_ms=120000):
        self.lab = lab
        self.host = host
        self.stderr_path = os.path.join(lab.dir, "vmctl-host%d.%d.err" % (host, len(lab.vmctls)))
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [HOST_SCRIPT, "exec", lab.dir, "host%d" % host, lab.vmctl, "--config", config, "--agent-dir", AGENT_DIR,
             "--first-heartbeat-ms", str(first_heartbeat_ms)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, bufsize=1)
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait(lambda e: e.get("ev") == "ready", 30, "amf-vmctl ready on host%d" % host)

    def _read(self):
        out = open(self.stderr_path[:-len(".err")] + ".out", "w")
        for raw in self.proc.stdout:
            out.write(raw)
            out.flush()
            try:
                entry = json.loads(raw)
            except ValueError:
                entry = {"ev": "garbage", "raw": raw}
            with self.cond:
                self.lines.append(entry)
                self.cond.notify_all()
        out.close()
        with self.cond:
            self.lines.append({"ev": "exit"})
            self.cond.notify_all()

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait(self, predicate, timeout, what, since=0):
        """The first line from index `since` on that satisfies predicate."""
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for entry in self.lines[since:]:
                    if predicate(entry):
                        return entry
                    if entry.get("ev") == "exit":
                        raise AssertionError("amf-vmctl on host%d exited while waiting for %s; stderr: %s" %
                                             (self.host, what, self.stderr_path))
                left = deadline - time.time()
                if left <= 0:
                    raise Timeout("timed out after %.0f s waiting for %s on host%d" % (timeout, what, self.host))
                self.cond.wait(left)

    def mark(self):
        with self.cond:
            return len(self.lines)

    def events(self, since=0, **match):
        with self.cond:
            return [e for e in self.lines[since:] if all(e.get(k) == v for k, v in match.items())]

    def request(self, line, timeout=60, expect_ok=True):
        since = self.mark()
        words = line.split()
        verb, vm = words[0], (words[1] if len(words) > 1 else "")
        self.send(line)
        reply = self.wait(lambda e: e.get("reply") == verb and e.get("vm", "") == vm, timeout, "reply to '%s'" % line,
                          since)
        if expect_ok:
            check(reply["ok"], "'%s' failed: %s" % (line, reply["error"]))
        return reply

    def reply_data(self, verb, since):
        return self.wait(lambda e: e.get("reply") == verb, 5, verb, since)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        self.stderr.close()

    def sanitizer_reports(self):
        with open(self.stderr_path) as f:
            text = f.read()
        return [line for line in text.splitlines() if "ERROR: AddressSanitizer" in line or "runtime error:" in line or
                "ERROR: LeakSanitizer" in line]


class VmLab:
    def __init__(self, hosts=1, prefix="lvt", vmctl=None, image=None, cache=None):
        self.hosts = hosts
        self.prefix = prefix
        self.vmctl = vmctl or os.environ["AMF_VMCTL"]
        self.image = image or os.environ["AMF_GUEST_IMAGE"]
        self.cache = cache or os.environ.get("AMF_LIBVIRT_CACHE", "")
        self.dir = tempfile.mkdtemp(prefix="amf-vmlab-")
        self.vmctls = []
        self.vms = {}

    # -- set-up --------------------------------------------------------------------------------------------
    def netns(self, i):
        return "%s-n%d" % (self.prefix, i)

    def up(self):
        self._cleanup_namespaces()
        for i in range(1, self.hosts + 1):
            ns = self.netns(i)
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
            sh("ip", "-n", ns, "addr", "add", "10.231.0.%d/24" % i, "dev", "br0")
            sh("ip", "-n", ns, "link", "set", "br0", "up")
        for i in range(1, self.hosts):
            for j in range(i + 1, self.hosts + 1):
                a, b = "v%d%d" % (i, j), "v%d%d" % (j, i)
                sh("ip", "link", "add", a, "netns", self.netns(i), "type", "veth", "peer", "name", b, "netns",
                   self.netns(j))
                for ns, dev in ((self.netns(i), a), (self.netns(j), b)):
                    sh("ip", "-n", ns, "link", "set", dev, "master", "br0")
                    sh("ip", "-n", ns, "link", "set", dev, "up")
        for i in range(1, self.hosts + 1):
            args = [HOST_SCRIPT, "up", self.dir, "host%d" % i, "--netns", self.netns(i)]
            if self.cache:
                args += ["--cache", self.cache]
            sh(*args)
            os.makedirs(os.path.join(self.dir, "host%d" % i, "run", "kvm-amf-agents"), exist_ok=True)
        disk = os.path.join(self.dir, "disk.raw")
        with open(disk, "wb") as f:
            f.truncate(8 << 20)
        return self

    def _cleanup_namespaces(self):
        for i in range(1, 5):
            subprocess.run(["ip", "netns", "delete", self.netns(i)], stderr=subprocess.DEVNULL)

    def down(self, keep=False):
        """Stops everything; removes the lab's directory unless `keep` (to read its logs)."""
        for vmctl in self.vmctls:
            vmctl.close()
        for i in range(1, self.hosts + 1):
            subprocess.run([HOST_SCRIPT, "down", self.dir, "host%d" % i], stdout=subprocess.DEVNULL)
        self._cleanup_namespaces()
        if keep:
            print("lab directory kept: " + self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def sanitizer_reports(self):
        return [r for v in self.vmctls for r in v.sanitizer_reports()]

    # -- VMs -----------------------------------------------------------------------------------------------
    def add_vm(self, name, index, cmdline="", disk=False):
        """A VM of the configuration: 256 MiB, one vCPU, the test guest, NIC on br0 with MAC
        52:54:00:e7:00:INDEX and IP 10.231.0.(10+INDEX), console logged to DIR/NAME.console."""
        self.vms[name] = {"index": index, "cmdline": cmdline, "disk": disk}

    def mac(self, name):
        return "52:54:00:e7:00:%02x" % self.vms[name]["index"]

    def ip(self, name):
        return "10.231.0.%d" % (10 + self.vms[name]["index"])

    def console(self, name):
        return os.path.join(self.dir, name + ".console")

    def write_config(self, heartbeat="{interval: 200ms, timeout: 1s}", watchdog="{model: i6300esb, action: reset}"):
        tweaks = BOOT_TWEAKS + (" tsc_early_khz=%d" % tsc_khz() if tsc_khz() else "")
        units = []
        for name, vm in sorted(self.vms.items()):
            cmdline = "%s kvmamf.ip=%s/24 %s" % (tweaks, self.ip(name), vm["cmdline"])
            disks = ""
            if vm["disk"]:
                disks = "\n          disks:\n            - {source: %s, format: raw, target: vda}" % os.path.join(
                    self.dir, "disk.raw")
            units.append("""    - name: unit-%s
      vms:
        - name: %s
          vcpus: 1
          memory: 256Mi
          boot:
            kernel: %s/vmlinux
            initrd: %s/initrd.cpio.gz
            cmdline: "%s"
          nics:
            - {mac: "%s", bridge: br0}
          console: {type: file, path: %s}%s
""" % (name, name, self.image, self.image, cmdline.strip(), self.mac(name), self.console(name), disks))
        text = """apiVersion: kvm-amf/v1
kind: ServiceGroup
metadata:
  name: lab
spec:
  redundancy: {model: No-Redundancy}
  health:
    heartbeat: %s
    watchdog: %s
  units:
%s  serviceInstances:
    - name: si1
""" % (heartbeat, watchdog, "".join(units))
        path = os.path.join(self.dir, "config.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_vmctl(self, host, config, **kwargs):
        vmctl = Vmctl(self, host, config, **kwargs)
        self.vmctls.append(vmctl)
        return vmctl

    def exec(self, host, *args, check_rc=True, timeout=60):
        return sh(HOST_SCRIPT, "exec", self.dir, "host%d" % host, *args, check_rc=check_rc, timeout=timeout)

    def virsh(self, host, *args, check_rc=True):
        return self.exec(host, "virsh", "-q", "-c", "qemu:///system", *args, check_rc=check_rc)

    def kill_qemu(self, host, vm):
        sh(HOST_SCRIPT, "kill-qemu", self.dir, "host%d" % host, vm)

    def restart_libvirtd(self, host):
        sh(HOST_SCRIPT, "restart", self.dir, "host%d" % host)

    def qemu_pid(self, host, vm):
        try:
            with open(os.path.join(self.dir, "host%d" % host, "run", "qemu", vm + ".pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def libvirtd_pid(self, host):
        with open(os.path.join(self.dir, "host%d" % host, "libvirtd.pid")) as f:
            return int(f.read().strip())

    def wait_console(self, vm, marker, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with open(self.console(vm), errors="replace") as f:
                    if marker in f.read():
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise Timeout("no '%s' on the console of %s after %d s (%s)" % (marker, vm, timeout, self.console(vm)))
