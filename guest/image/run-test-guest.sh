#!/usr/bin/env bash
# Boots the test guest built by build-test-guest.sh with plain QEMU, console on this terminal.
#
# Usage: guest/image/run-test-guest.sh [--kvm] OUTDIR [EXTRA_QEMU_ARGS...]
#   --kvm          try KVM first (falls back to TCG only if KVM cannot start at all). On the lab machines
#                  /dev/kvm is PVM and stock guests hang under it, so TCG is the default.
#   KVMAMF_APPEND  extra kernel command line, e.g. "kvmamf.mode=poweroff" or
#                  "kvmamf.ip=10.0.2.15/24 kvmamf.gw=10.0.2.2"
# Examples:
#   KVMAMF_APPEND=kvmamf.mode=poweroff guest/image/run-test-guest.sh build/guest-image
#   KVMAMF_APPEND=kvmamf.ip=10.0.2.15/24 guest/image/run-test-guest.sh build/guest-image \
#       -netdev user,id=n0 -device virtio-net-pci,netdev=n0
#   guest/image/run-test-guest.sh build/guest-image -device i6300esb -action watchdog=pause
# Leave QEMU with Ctrl-A x.
set -euo pipefail

accel=(-accel tcg)
if [ "${1:-}" = "--kvm" ]; then
  accel=(-accel kvm -accel tcg)
  shift
  if [ ! -w /dev/kvm ]; then
    echo "run-test-guest: /dev/kvm is not usable; QEMU will fall back to TCG" >&2
  fi
fi
if [ $# -lt 1 ]; then
  echo "usage: $0 [--kvm] OUTDIR [EXTRA_QEMU_ARGS...]" >&2
  exit 2
fi
outdir=$1
shift
for f in vmlinux initrd.cpio.gz; do
  if [ ! -f "$outdir/$f" ]; then
    echo "run-test-guest: $outdir/$f missing; run guest/image/build-test-guest.sh $outdir first" >&2
    exit 1
  fi
done

# Boot tweaks that shorten a TCG boot. tsc_early_khz spares the guest the PIT calibration; it is taken
# from this host's CPU clock, which TCG's TSC follows.
append="console=ttyS0 quiet cryptomgr.notests mitigations=off rodata=off no_timer_check i8042.noaux"
append+=" i8042.nokbd i8042.nopnp audit=0 apparmor=0 security=none nowatchdog random.trust_cpu=on"
tsc_khz=$(awk -F': *' '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo 2>/dev/null || true)
if [ -n "$tsc_khz" ] && [ "$tsc_khz" -gt 0 ]; then
  append+=" tsc_early_khz=$tsc_khz"
fi
if [ -n "${KVMAMF_APPEND:-}" ]; then
  append+=" $KVMAMF_APPEND"
fi

exec qemu-system-x86_64 "${accel[@]}" -M pc -m 256 -nodefaults -nographic -serial stdio \
  -kernel "$outdir/vmlinux" -initrd "$outdir/initrd.cpio.gz" -append "$append" "$@"
