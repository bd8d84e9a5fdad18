#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite: the checks, then every test in a normal build and
# in an AddressSanitizer + UndefinedBehaviorSanitizer build. Exits non-zero on any failure.
# Usage: scripts/test.sh            (as root: it installs missing packages first)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

step() { printf '\n== %s\n' "$*"; }

step "setup"
scripts/setup.sh

step "boundaries"
python3 scripts/check_boundaries.py
echo "no boundary violations"

step "format"
mapfile -t sources < <(git ls-files '*.cc' '*.h' 2>/dev/null || find . -path ./build\* -prune -o \( -name '*.cc' -o -name '*.h' \) -print)
clang-format --dry-run --Werror "${sources[@]}"
echo "${#sources[@]} files formatted"

step "build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build

step "clang-tidy"
mapfile -t units < <(printf '%s\n' "${sources[@]}" | grep '\.cc$' | grep -v '^tests/' || true)
printf '%s\n' "${units[@]}" | xargs -P "$jobs" -n 4 clang-tidy -p build --quiet 2>/dev/null
echo "${#units[@]} files clean"

step "build with AddressSanitizer and UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DKVM_AMF_SANITIZE=ON >/dev/null
ninja -C build-asan

step "tests"
# The fault-injection catalogue's scenarios outside its CI subset (label faultlab-full) take about
# 20 minutes: `ctest -L faultlab` runs them all (docs/lab.md).
(cd build && ctest -j "$jobs" --output-on-failure -LE faultlab-full)

step "tests under AddressSanitizer and UndefinedBehaviorSanitizer"
# Every test but the 200-schedule fuzz run (sim.fuzz), which the normal build runs: under the
# sanitizers it would take most of the suite's time, and the scenario corpus covers the same code.
# Of the real-lab cases, those whose amfd code the others already run (a partition, lock/unlock,
# si-swap, the scenario runs, the checkpoint and Prometheus labs, whose services the unit and
# Corosync tests run under the sanitizers, the VM operations, whose engine and adapter code the unit
# tests run), the 50 VM cycles, and the real VM's heartbeat, watchdog and migration (the adapter
# against libvirt's test driver covers their code) run in the normal build only: each costs booted
# guests.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest -j "$jobs" --output-on-failure -LE faultlab-scenario \
  -E '^(sim\.fuzz|lab\.amfd\.(partition|lock-unlock|si-swap)|lab\.run\.host-crash|lab\.ckpt\..*|lab\.amfd\.vm-operations|monitor\.lab|libvirt\.vm\.(cycles|heartbeat|watchdog|migrate))$')
