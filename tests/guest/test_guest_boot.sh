#!/usr/bin/env bash
# Builds the test guest (reusing IMAGE_DIR between runs) and boots it twice under QEMU TCG:
#   1. kvmamf.mode=poweroff: the "KVM-AMF-GUEST up" marker appears and QEMU exits by itself (rc 0);
#   2. the same plus kvmamf.ip=10.99.0.2/24 and a virtio-net NIC on a user-mode netdev: the guest reports
#      "KVM-AMF-GUEST net eth0 10.99.0.2/24", i.e. eth0 exists and holds the address.
# Prints the launch-to-marker time of each boot (a figure to read, not a pass criterion).
# Usage: test_guest_boot.sh SOURCE_DIR IMAGE_DIR. Exit 77 (skipped) when QEMU or python3 is missing.
set -euo pipefail
export LC_ALL=C

src=$1
image=$2
boot_timeout=60

for tool in qemu-system-x86_64 python3 apt-get dpkg-deb; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP: $tool not installed (scripts/setup.sh)"
    exit 77
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build_start=$EPOCHREALTIME
"$src/guest/image/build-test-guest.sh" "$image"
build_end=$EPOCHREALTIME
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
echo "image build: $(elapsed "$build_start" "$build_end") s"

failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# boot NAME APPEND [EXTRA_QEMU_ARGS...]: boots with the console in $work/NAME.log. Sets boot_rc (QEMU's
# exit status, 124 on timeout) and boot_time (launch to the "up" marker in seconds, empty if none).
boot() {
  local name=$1 append=$2
  shift 2
  local log=$work/$name.log rcfile=$work/$name.rc t0 t_up="" line
  t0=$EPOCHREALTIME
  while IFS= read -r line; do
    line=${line%$'\r'}
    printf '%s\n' "$line" >>"$log"
    if [ -z "$t_up" ] && [[ $line == *"KVM-AMF-GUEST up "* ]]; then
      t_up=$EPOCHREALTIME
    fi
  done < <(
    rc=0
    KVMAMF_APPEND=$append timeout "$boot_timeout" "$src/guest/image/run-test-guest.sh" "$image" "$@" \
      </dev/null 2>&1 || rc=$?
    echo "$rc" >"$rcfile"
  )
  boot_rc=$(cat "$rcfile")
  boot_time=""
  if [ -n "$t_up" ]; then
    boot_time=$(elapsed "$t0" "$t_up")
  fi
}

show_log() {
  echo "--- console of $1 (last 30 lines) ---"
  tail -n 30 "$work/$1.log"
  echo "---"
}

# 1. plain boot to the marker, then poweroff
boot poweroff "kvmamf.mode=poweroff"
if [ -z "$boot_time" ]; then
  fail "poweroff boot: no 'KVM-AMF-GUEST up' marker within ${boot_timeout} s (qemu rc $boot_rc)"
  show_log poweroff
elif [ "$boot_rc" != 0 ]; then
  fail "poweroff boot: QEMU did not exit cleanly after poweroff (rc $boot_rc)"
  show_log poweroff
else
  echo "boot (launch -> marker, -M pc, TCG): $boot_time s"
fi

# 2. virtio-net NIC configured from the kernel command line. romfile= skips the iPXE option ROM.
boot net "kvmamf.mode=poweroff kvmamf.ip=10.99.0.2/24" \
  -netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile=
if ! grep -q "KVM-AMF-GUEST net eth0 10.99.0.2/24" "$work/net.log"; then
  fail "net boot: no 'KVM-AMF-GUEST net eth0 10.99.0.2/24' marker (qemu rc $boot_rc)"
  show_log net
elif [ "$boot_rc" != 0 ]; then
  fail "net boot: QEMU did not exit cleanly after poweroff (rc $boot_rc)"
  show_log net
else
  echo "boot with virtio-net (launch -> marker): $boot_time s; eth0 = 10.99.0.2/24"
fi

if [ "$failures" -ne 0 ]; then
  exit 1
fi
echo "PASS"
