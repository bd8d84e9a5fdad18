"""The client's view of the services: from the client namespace, every service address is pinged
every 20 ms; the replies' times show each outage as the client saw it."""
import bisect
import subprocess
import threading

INTERVAL_S = 0.02


class Probe:
    """Pings one address from the lab's client namespace until stopped; keeps every reply's time
    (milliseconds since the epoch, from ping -D)."""

    def __init__(self, netns, address):
        self.address = address
        self.replies = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "ping", "-D", "-n", "-i", str(INTERVAL_S), address],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            # "[1700000000.123456] 64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time=0.3 ms"
            if not line.startswith("[") or " bytes from " not in line:
                continue
            try:
                t = int(float(line[1:line.index("]")]) * 1000)
            except ValueError:
                continue
            with self.lock:
                self.replies.append(t)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.thread.join(5)

    def answered_since(self, t_ms):
        with self.lock:
            return bool(self.replies) and self.replies[-1] >= t_ms

    def last_before(self, t_ms):
        with self.lock:
            k = bisect.bisect_left(self.replies, t_ms)
            return self.replies[k - 1] if k > 0 else None

    def first_after(self, t_ms):
        with self.lock:
            k = bisect.bisect_right(self.replies, t_ms)
            return self.replies[k] if k < len(self.replies) else None

    def outages(self, start_ms, end_ms, min_gap_ms=100):
        """Spans within [start_ms, end_ms] without a reply for longer than min_gap_ms, as (last reply
        before, first reply after); None for a span still open at end_ms."""
        with self.lock:
            replies = [t for t in self.replies if start_ms <= t <= end_ms]
        out = []
        previous = start_ms
        for t in replies:
            if t - previous > min_gap_ms:
                out.append((previous, t))
            previous = t
        if end_ms - previous > min_gap_ms:
            out.append((previous, None))
        return out


def client_outage(probe, fault_ms, until_ms):
    """The outage a fault caused as the client saw it: from the fault to the first reply after the
    first silence (no reply for three intervals) that began after it; 0 when there was none before
    until_ms, None when the service had not answered again by then."""
    gaps = probe.outages(fault_ms, until_ms, min_gap_ms=int(3 * INTERVAL_S * 1000))
    if not gaps:
        return 0
    end = gaps[0][1]
    return None if end is None else end - fault_ms
