#!/usr/bin/env python3
"""Fails when a part reaches outside its boundary.

1. libvirt, Corosync, ZeroMQ, yaml-cpp and prometheus-cpp headers are included only in their own part
   (and in that part's tests); the checkpoint service's headers only where amfd is put together
   (daemon/), so that the engine, the membership and the hypervisor adapter never depend on it.
2. Library code neither reads the real clock nor sleeps: time comes from the injected clock.
   Executables (cmd/), tests, benchmarks and the guest agent may; so may the files in
   REAL_TIME_ALLOWED, the real implementations of the clock and timer interfaces.

Usage: check_boundaries.py [ROOT]   (default: the repository this script is in)
Prints FILE:LINE: what is wrong, for every violation; exits 1 if there is any.
"""
import os
import re
import sys

SOURCE_SUFFIXES = (".h", ".hh", ".hpp", ".c", ".cc", ".cpp")
SKIP_DIRS = {".git", "node_modules"}

# (what, include pattern, folders allowed to include it)
INCLUDE_RULES = [
    ("libvirt", re.compile(r'#\s*include\s*[<"]libvirt/'), ("vmm-adapter/libvirt/", "tests/vmm-adapter/libvirt/")),
    ("Corosync", re.compile(r'#\s*include\s*[<"](corosync/|qb/)'), ("cluster/corosync/", "tests/cluster/corosync/", "bench/corosync/")),
    ("ZeroMQ", re.compile(r'#\s*include\s*[<"]zmq(\.h|\.hpp|_addon\.hpp)[>"]'), ("admin/", "tests/admin/")),
    ("yaml-cpp", re.compile(r'#\s*include\s*[<"]yaml-cpp/'), ("amf/config/", "tests/amf/config/")),
    ("libyaml", re.compile(r'#\s*include\s*<yaml\.h>'), ("amf/config/", "tests/amf/config/")),
    ("the checkpoint service", re.compile(r'#\s*include\s*[<"]kvm_amf/ckpt/'),
     ("ckpt/", "daemon/", "cmd/", "tests/", "bench/")),
    ("prometheus-cpp", re.compile(r'#\s*include\s*[<"]prometheus/'), ("monitor/", "tests/monitor/")),
]

# Folders whose code may use real time: programs, tests, benchmarks, the guest agent.
REAL_TIME_FOLDERS = ("cmd/", "tests/", "bench/", "guest/", "scripts/")
# Real implementations of the clock and timer interfaces (paths relative to the root).
REAL_TIME_ALLOWED = {"common/src/event_loop.cc"}

REAL_TIME_PATTERNS = [
    ("reads the real clock", re.compile(r"\b(system_clock|steady_clock|high_resolution_clock)\s*::\s*now\b")),
    ("reads the real clock", re.compile(r"\b(clock_gettime|gettimeofday|timespec_get)\s*\(")),
    ("reads the real clock", re.compile(r"\btime\s*\(\s*(nullptr|NULL|0)\s*\)")),
    ("sleeps", re.compile(r"\b(sleep_for|sleep_until)\b")),
    ("sleeps", re.compile(r"(?<![\w.>:])(sleep|usleep|nanosleep)\s*\(")),
]


def strip_comments(text):
    """Blanks out comments and string literals, keeping line numbers."""
    def blank(match):
        return re.sub(r"[^\n]", " ", match.group(0))
    pattern = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"', re.S)
    out = []
    pos = 0
    for m in pattern.finditer(text):
        out.append(text[pos:m.start()])
        # keep #include "..." intact: only blank strings that are not include targets
        line_start = text.rfind("\n", 0, m.start()) + 1
        if m.group(0).startswith('"') and re.match(r"\s*#\s*include\s*$", text[line_start:m.start()]):
            out.append(m.group(0))
        else:
            out.append(blank(m))
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def check(root):
    problems = []
    for folder, dirs, files in os.walk(root):
        rel_folder = os.path.relpath(folder, root)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("build")
                         and not (rel_folder == "." and d.startswith(".")))
        for name in sorted(files):
            if not name.endswith(SOURCE_SUFFIXES):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            with open(path, encoding="utf-8", errors="replace") as f:
                text = strip_comments(f.read())
            for number, line in enumerate(text.split("\n"), 1):
                for what, pattern, allowed in INCLUDE_RULES:
                    if pattern.search(line) and not rel.startswith(allowed):
                        problems.append(f"{rel}:{number}: includes {what} outside {' or '.join(allowed)}")
                if rel.startswith(REAL_TIME_FOLDERS) or rel in REAL_TIME_ALLOWED:
                    continue
                for what, pattern in REAL_TIME_PATTERNS:
                    if pattern.search(line):
                        problems.append(f"{rel}:{number}: library code {what}; use the injected clock and timers")
                        break
    return problems


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    problems = check(root)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} boundary violation(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
