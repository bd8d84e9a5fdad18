"""Small helpers shared by the lab's modules: commands, waiting, errors."""
import os
import subprocess
import time


class LabError(Exception):
    """A lab operation that cannot be done; the message says why and what to do."""


class Timeout(LabError):
    pass


def now_ms():
    return int(time.time() * 1000)


def run(*args, check=True, timeout=120, env=None):
    """Runs a command; returns its output (stdout and stderr together). Raises LabError on failure."""
    try:
        result = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        raise LabError("%s did not finish within %d s" % (" ".join(map(str, args)), timeout)) from e
    if check and result.returncode != 0:
        raise LabError("%s failed (exit %d):\n%s" % (" ".join(map(str, args)), result.returncode, result.stdout))
    return result.stdout


def fill(path):
    """Writes zeros to the file at path until its file system is full (the write that finds no room
    ends it); the file stays, to be removed to free the room."""
    chunk = b"\0" * (1 << 20)
    with open(path, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass


def wait_for(what, predicate, timeout=60.0, poll=0.1):
    """Calls predicate until it returns something true; returns that. Raises Timeout naming `what`."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() >= deadline:
            raise Timeout("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(poll)


def alive(pid):
    """True while any thread of the process runs: a killed multi-threaded process shows its main
    thread as a zombie while its other threads still exit, holding its files (its listening
    sockets) open until the last one is gone."""
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return False
    for task in tasks:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, task)) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError, ValueError):
            continue
        if state not in ("Z", "X"):
            return True
    return False


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def parse_duration_ms(text):
    """'300ms', '2s', '1m', '1h' -> milliseconds."""
    for unit, factor in (("ms", 1), ("s", 1000), ("m", 60000), ("h", 3600000)):
        if text.endswith(unit) and text[:-len(unit)].isdigit():
            return int(text[:-len(unit)]) * factor
    raise LabError("'%s' is not a duration" % text)
