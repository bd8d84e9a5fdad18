#!/usr/bin/env bash
# Builds the kvm-amf test guest: Debian's stock kernel as an uncompressed, PVH-bootable vmlinux plus a
# busybox initramfs whose /init is driven by kvmamf.* keys on the kernel command line
# (docs/test-guest.md lists them).
#
# Usage: guest/image/build-test-guest.sh OUTDIR [--agent PATH]
# Output: OUTDIR/vmlinux, OUTDIR/initrd.cpio.gz; downloads and extracted packages are kept in OUTDIR/cache.
# Idempotent, and safe to run concurrently on one OUTDIR (flock). Needs no root: the kernel and busybox
# packages are fetched with `apt-get download` (or taken from /boot and /lib/modules when that kernel is
# installed), and the cpio archive is written by python3, so device nodes and root ownership need no privileges.
# Needs: apt-get, apt-cache, dpkg-deb, tar, python3, flock.
set -euo pipefail

usage() {
  echo "usage: $0 OUTDIR [--agent PATH]" >&2
  exit 2
}

[ $# -ge 1 ] || usage
outdir=$1
shift
agent=""
while [ $# -gt 0 ]; do
  case $1 in
    --agent)
      [ $# -ge 2 ] || usage
      agent=$2
      shift 2
      ;;
    *) usage ;;
  esac
done
if [ -n "$agent" ] && [ ! -x "$agent" ]; then
  echo "build-test-guest: --agent $agent is not an executable file" >&2
  exit 2
fi

start_ns=$(date +%s%N)
mkdir -p "$outdir/cache"
outdir=$(cd "$outdir" && pwd)
cache=$outdir/cache

exec 9>"$outdir/.build.lock"
flock 9

log() { echo "build-test-guest: $*"; }

# Modules the guest loads. Their dependencies are resolved from each module's .modinfo and loaded first
# (e.g. virtio_ring before virtio; failover and net_failover before virtio_net).
wanted_modules=(
  virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_mmio
  virtio_console failover net_failover virtio_net virtio_blk virtio_balloon watchdog i6300esb
)

# The guest's /init (busybox sh). Markers on /dev/console, one line each, all starting "KVM-AMF-GUEST ":
#   up uptime=<s>                 userspace is up, modules loaded
#   net eth0 <addr>/<prefix>      eth0 has the address from kvmamf.ip (net-error ... if not)
#   poweroff                      kvmamf.mode=poweroff: about to power off
#   watchdog feeding|stopped      the /dev/watchdog feeder started / was killed (kvmamf.watchdog=stop-after:N)
#   agent started|exited rc=<n>   the guest agent was (re)started / died (it is respawned after 1 s)
#   hook <state> <si> [ip]        the agent ran the hook for an assignment (/etc/kvm-amf/hook)
#   counter resumed <n> | counter <n>   kvm-amf-counter (an SI with the attribute `counter`) took over at n
#                                 / had n acknowledged
#   load started|ended            kvmamf.load=DELAY:SECONDS: a CPU loop began / stopped
#   disk writing <dev>            kvmamf.disk-writer=DEV: a loop writes 64 KiB to /dev/DEV every 100 ms,
#                                 each to the next 64 KiB of it (so a qcow2 under it keeps growing),
#                                 and syncs each; disk write-error <n> when a write fails
write_init() {
  cat >"$1" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
addr='' gw='' mode='' wdstop='' agentstop='' debug='' load='' writer=''
read -r cmdline </proc/cmdline
# shellcheck disable=SC2086 # split into words on purpose
for arg in $cmdline; do
  case $arg in
    kvmamf.ip=*) addr=${arg#kvmamf.ip=} ;;
    kvmamf.gw=*) gw=${arg#kvmamf.gw=} ;;
    kvmamf.mode=*) mode=${arg#kvmamf.mode=} ;;
    kvmamf.watchdog=stop-after:*) wdstop=${arg#kvmamf.watchdog=stop-after:} ;;
    kvmamf.agent-stop-after=*) agentstop=${arg#kvmamf.agent-stop-after=} ;;
    kvmamf.debug=1) debug=1 ;;
    kvmamf.load=*:*) load=${arg#kvmamf.load=} ;;
    kvmamf.disk-writer=*) writer=${arg#kvmamf.disk-writer=} ;;
  esac
done
[ -n "$debug" ] && echo "KVM-AMF-GUEST init uptime=$(cut -d' ' -f1 /proc/uptime)"

while read -r m; do
  [ -n "$m" ] || continue
  insmod "/lib/modules/$m.ko" 2>/dev/null
  [ -n "$debug" ] && echo "KVM-AMF-GUEST insmod $m uptime=$(cut -d' ' -f1 /proc/uptime)"
done </lib/modules/load-order
echo "KVM-AMF-GUEST up uptime=$(cut -d' ' -f1 /proc/uptime)"

ip link set lo up
if [ -n "$addr" ]; then
  n=0
  while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 20 ]; do sleep 0.1; n=$((n + 1)); done
  ip addr add "$addr" dev eth0 && ip link set eth0 up
  [ -n "$gw" ] && ip route add default via "$gw"
  if ip -o -4 addr show dev eth0 2>/dev/null | grep -q " inet $addr "; then
    echo "KVM-AMF-GUEST net eth0 $addr"
  else
    echo "KVM-AMF-GUEST net-error eth0 $addr"
  fi
fi

if [ "$mode" = poweroff ]; then
  echo "KVM-AMF-GUEST poweroff"
  poweroff -f
fi

if [ -e /dev/watchdog ]; then
  # -F: stay in the foreground so the pid is ours. kill -9 stops feeding without the magic close,
  # so the (nowayout=0) timer keeps running and fires after -T seconds.
  watchdog -F -T 10 -t 1 /dev/watchdog &
  wdpid=$!
  echo "KVM-AMF-GUEST watchdog feeding"
  if [ -n "$wdstop" ]; then
    (sleep "$wdstop" && kill -9 "$wdpid" && echo "KVM-AMF-GUEST watchdog stopped") &
  fi
fi

if [ -x /sbin/kvm-amf-agent ]; then
  (
    while true; do
      echo "KVM-AMF-GUEST agent started"
      if [ -n "$agentstop" ]; then /sbin/kvm-amf-agent --stop-after "$agentstop"; else /sbin/kvm-amf-agent; fi
      echo "KVM-AMF-GUEST agent exited rc=$?"
      sleep 1
    done
  ) &
fi

if [ -n "$load" ]; then
  # DELAY seconds after this point, keep the vCPU busy for SECONDS: shell arithmetic only (no
  # process started per round), reading the uptime once per thousand rounds.
  (
    sleep "${load%%:*}"
    echo "KVM-AMF-GUEST load started"
    read -r up _ </proc/uptime
    end=$((${up%%.*} + ${load#*:}))
    while [ "${up%%.*}" -lt "$end" ]; do
      i=0
      while [ $i -lt 1000 ]; do i=$((i + 1)); done
      read -r up _ </proc/uptime
    done
    echo "KVM-AMF-GUEST load ended"
  ) &
fi

if [ -n "$writer" ]; then
  (
    blocks=$(($(cat /sys/block/$writer/size 2>/dev/null || echo 0) / 128))  # 64 KiB blocks
    [ "$blocks" -gt 0 ] || { echo "KVM-AMF-GUEST disk write-error no /dev/$writer"; exit 0; }
    echo "KVM-AMF-GUEST disk writing $writer"
    n=0
    while true; do
      dd if=/dev/urandom of=/dev/$writer bs=65536 count=1 seek=$((n % blocks)) conv=fsync 2>/dev/null ||
        echo "KVM-AMF-GUEST disk write-error $n"
      n=$((n + 1))
      sleep 0.1
    done
  ) &
fi

while true; do
  sleep 3600 &
  wait $!
done
INIT
}

# The assignment hook kvm-amf-agent runs (hook <state> <si>, attributes in KVMAMF_ATTR_*). With the SI
# attribute `ip` (ADDR/PREFIX), `active` puts that address on eth0 and announces it (gratuitous ARP);
# every other state removes it. With the SI attribute `counter` (a checkpoint name), `active` starts
# kvm-amf-counter on it and every other state stops it. It prints one marker per run.
write_hook() {
  cat >"$1" <<'HOOK'
#!/bin/busybox sh
state=$1 si=$2 ip=${KVMAMF_ATTR_IP:-} counter=${KVMAMF_ATTR_COUNTER:-}
if [ -n "$ip" ]; then
  if [ "$state" = active ]; then
    ip addr replace "$ip" dev eth0 || exit 1
    arping -U -c 1 -I eth0 "${ip%/*}" >/dev/null 2>&1
  else
    ip addr del "$ip" dev eth0 2>/dev/null
  fi
fi
if [ -n "$counter" ]; then
  mkdir -p /run/kvm-amf
  pidfile=/run/kvm-amf/counter.pid
  if [ "$state" = active ]; then
    if ! { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }; then
      setsid /bin/kvm-amf-counter "$counter" </dev/null >/dev/null 2>&1 &
      echo $! >"$pidfile"
    fi
  elif [ -f "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null
    rm -f "$pidfile"
  fi
fi
echo "KVM-AMF-GUEST hook $state $si $ip" >/dev/console
exit 0
HOOK
}

# kvm-amf-counter NAME: a guest application that keeps a counter in the cluster's checkpoint NAME
# (section `counter`) through the guest agent: it continues from the last acknowledged value, then
# writes the next one every KVMAMF_COUNTER_INTERVAL seconds (1), printing each acknowledged value.
write_counter() {
  cat >"$1" <<'COUNTER'
#!/bin/busybox sh
name=$1 error=/run/kvm-amf/counter.error
until value=$(kvm-amf-agent ckpt read "$name" counter 2>"$error"); do
  if grep -qE "no (section|checkpoint)" "$error"; then value=0; break; fi
  sleep 1   # no quorum yet, or the host's end of the channel is not open
done
echo "KVM-AMF-GUEST counter resumed $value" >/dev/console
while true; do
  next=$((value + 1))
  if kvm-amf-agent ckpt write "$name" counter "$next" 2>"$error"; then
    value=$next
    echo "KVM-AMF-GUEST counter $value" >/dev/console
  fi
  sleep "${KVMAMF_COUNTER_INTERVAL:-1}"
done
COUNTER
}

# --- 1. which kernel -------------------------------------------------------------------------------------
kernel_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
  awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }') || true
if [ -z "$kernel_pkg" ]; then
  # No apt lists (offline, or never `apt-get update`d): fall back to the newest package already cached.
  cached=$(find "$cache" -maxdepth 1 -name 'linux-image-[0-9]*.deb' -printf '%f\n' | sort -V | tail -n 1)
  if [ -z "$cached" ]; then
    echo "build-test-guest: cannot resolve linux-image-amd64 (run apt-get update) and no kernel in $cache" >&2
    exit 1
  fi
  kernel_pkg=${cached%%_*}
  log "apt-cache could not resolve linux-image-amd64; using cached $cached"
fi
kver=${kernel_pkg#linux-image-}
log "kernel package $kernel_pkg (version $kver)"

# --- 2. kernel tree: /boot + /lib/modules if installed, else the extracted .deb -----------------------------
kroot=""
if [ -f "/boot/vmlinuz-$kver" ] && [ -d "/lib/modules/$kver/kernel" ]; then
  kroot=/
  log "using installed /boot/vmlinuz-$kver"
else
  kroot=$cache/$kernel_pkg
  if [ ! -f "$kroot/.extracted" ]; then
    deb=$(find "$cache" -maxdepth 1 -name "${kernel_pkg}_*.deb" | sort -V | tail -n 1)
    if [ -z "$deb" ]; then
      log "downloading $kernel_pkg"
      (cd "$cache" && apt-get download -q "$kernel_pkg") >/dev/null
      deb=$(find "$cache" -maxdepth 1 -name "${kernel_pkg}_*.deb" | sort -V | tail -n 1)
    fi
    log "extracting $(basename "$deb")"
    rm -rf "$kroot"
    mkdir -p "$kroot"
    # Only the kernel image and the modules the guest can use (a few MB of 400). The package has no
    # modules.dep (depmod makes it on install), so dependencies are read from each module's .modinfo below.
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$kroot" --wildcards \
      './boot/vmlinuz-*' \
      "./lib/modules/$kver/modules.builtin" \
      "./lib/modules/$kver/kernel/drivers/virtio/*" \
      "./lib/modules/$kver/kernel/drivers/char/virtio_console.ko*" \
      "./lib/modules/$kver/kernel/drivers/net/virtio_net.ko*" \
      "./lib/modules/$kver/kernel/drivers/net/net_failover.ko*" \
      "./lib/modules/$kver/kernel/net/core/failover.ko*" \
      "./lib/modules/$kver/kernel/drivers/block/virtio_blk.ko*" \
      "./lib/modules/$kver/kernel/drivers/watchdog/watchdog.ko*" \
      "./lib/modules/$kver/kernel/drivers/watchdog/i6300esb.ko*"
    touch "$kroot/.extracted"
  fi
fi
vmlinuz=$kroot/boot/vmlinuz-$kver
moddir=$kroot/lib/modules/$kver

# --- 3. vmlinux: the xz payload of the bzImage is the ELF kernel with the PVH note --------------------------
if [ ! -f "$outdir/vmlinux" ] || [ "$vmlinuz" -nt "$outdir/vmlinux" ] ||
  [ "$(cat "$outdir/vmlinux.version" 2>/dev/null || true)" != "$kver" ]; then
  log "decompressing $vmlinuz"
  python3 - "$vmlinuz" "$outdir/vmlinux.tmp" <<'EOF'
import lzma, sys
data = open(sys.argv[1], "rb").read()
start = data.find(b"\xfd7zXZ\x00")
if start < 0:
    sys.exit("no xz payload in " + sys.argv[1])
elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
if elf[:4] != b"\x7fELF":
    sys.exit("xz payload of " + sys.argv[1] + " is not an ELF file")
open(sys.argv[2], "wb").write(elf)
EOF
  mv "$outdir/vmlinux.tmp" "$outdir/vmlinux"
  echo "$kver" >"$outdir/vmlinux.version"
fi

# --- 4. busybox-static ---------------------------------------------------------------------------------------
busybox=""
if dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
  busybox=/bin/busybox
else
  bbroot=$cache/busybox-static
  if [ ! -x "$bbroot/bin/busybox" ]; then
    deb=$(find "$cache" -maxdepth 1 -name 'busybox-static_*.deb' | sort -V | tail -n 1)
    if [ -z "$deb" ]; then
      log "downloading busybox-static"
      (cd "$cache" && apt-get download -q busybox-static) >/dev/null
      deb=$(find "$cache" -maxdepth 1 -name 'busybox-static_*.deb' | sort -V | tail -n 1)
    fi
    mkdir -p "$bbroot"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$bbroot" ./bin/busybox
  fi
  busybox=$bbroot/bin/busybox
fi

# --- 5. initramfs tree ---------------------------------------------------------------------------------------
stage=$outdir/stage
rm -rf "$stage"
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,lib/modules}
cp "$busybox" "$stage/bin/busybox"
write_init "$stage/init"
mkdir -p "$stage/etc/kvm-amf"
write_hook "$stage/etc/kvm-amf/hook"
write_counter "$stage/bin/kvm-amf-counter"
chmod 0755 "$stage/init" "$stage/bin/busybox" "$stage/etc/kvm-amf/hook" "$stage/bin/kvm-amf-counter"

# Resolve module dependencies (the "depends=" field of each module's .modinfo) into one load order:
# dependencies first, no repeats. Modules are stored uncompressed as /lib/modules/NAME.ko.
python3 - "$moddir" "$stage/lib/modules" "${wanted_modules[@]}" <<'EOF'
import lzma, os, re, sys
moddir, dest, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
def norm(name):
    return name.replace("-", "_")
path_of = {}
for root, _, files in os.walk(os.path.join(moddir, "kernel")):
    for fn in files:
        if ".ko" in fn:
            path_of[norm(fn.split(".ko")[0])] = os.path.join(root, fn)
builtin = set()
if os.path.exists(os.path.join(moddir, "modules.builtin")):
    builtin = {norm(os.path.basename(l.strip()).split(".ko")[0]) for l in open(os.path.join(moddir, "modules.builtin"))}
blobs, order, builtin_hit, missing = {}, [], [], []
def blob(name):
    if name not in blobs:
        data = open(path_of[name], "rb").read()
        blobs[name] = lzma.decompress(data) if path_of[name].endswith(".xz") else data
    return blobs[name]
def visit(name):
    if name in order or name in builtin_hit or name in missing:
        return
    if name not in path_of:
        (builtin_hit if name in builtin else missing).append(name)
        return
    m = re.search(rb"\0depends=([^\0]*)\0", blob(name))
    for dep in (m.group(1).decode().split(",") if m and m.group(1) else []):
        visit(norm(dep))
    order.append(name)
for name in wanted:
    visit(norm(name))
for name in order:
    open(os.path.join(dest, name + ".ko"), "wb").write(blob(name))
open(os.path.join(dest, "load-order"), "w").write("\n".join(order) + "\n")
print("build-test-guest: modules " + " ".join(order))
if builtin_hit:
    print("build-test-guest: built into the kernel: " + " ".join(builtin_hit))
if missing:
    print("build-test-guest: WARNING: no such module (the guest goes without): " + " ".join(missing))
EOF

if [ -n "$agent" ]; then
  cp "$agent" "$stage/sbin/kvm-amf-agent"
  chmod 0755 "$stage/sbin/kvm-amf-agent"
  # A dynamically linked agent gets its loader and libraries at their host paths.
  if ldd "$agent" >/dev/null 2>&1; then
    ldd "$agent" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
      mkdir -p "$stage$(dirname "$lib")"
      cp -L "$lib" "$stage$lib"
    done
  fi
  log "agent $agent -> /sbin/kvm-amf-agent"
fi

# --- 6. cpio (newc) + gzip, written by python3: all entries root-owned, plus /dev/console ---------------------
python3 - "$stage" "$outdir/initrd.cpio.gz.tmp" <<'EOF'
import gzip, os, stat, sys
stage, out = sys.argv[1], sys.argv[2]
ino = [300000]
def header(name, mode, size, nlink=1, rdev=(0, 0)):
    ino[0] += 1
    fields = [ino[0], mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    return b"070701" + b"".join(b"%08X" % f for f in fields)
def pad(n):
    return b"\0" * ((4 - n % 4) % 4)
with gzip.GzipFile(out, "wb", compresslevel=6, mtime=0) as f:
    def entry(name, mode, body=b"", rdev=(0, 0)):
        name_b = name.encode()
        h = header(name_b, mode, len(body), 2 if stat.S_ISDIR(mode) else 1, rdev) + name_b + b"\0"
        f.write(h + pad(len(h)) + body + pad(len(body)))
    for root, dirs, files in os.walk(stage):
        dirs.sort()
        rel = os.path.relpath(root, stage)
        if rel != ".":
            entry(rel, stat.S_IFDIR | 0o755)
        for fn in sorted(files):
            path = os.path.join(root, fn)
            name = os.path.normpath(os.path.join(rel, fn))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                entry(name, stat.S_IFLNK | 0o777, os.readlink(path).encode())
            else:
                entry(name, stat.S_IFREG | stat.S_IMODE(st.st_mode), open(path, "rb").read())
    entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    entry("TRAILER!!!", 0)
EOF
mv "$outdir/initrd.cpio.gz.tmp" "$outdir/initrd.cpio.gz"
rm -rf "$stage"

end_ns=$(date +%s%N)
log "built in $(((end_ns - start_ns) / 1000000)) ms:"
stat -c '%n %s' "$outdir/vmlinux" "$outdir/initrd.cpio.gz" | awk '{ printf "  %-50s %6.1f MB\n", $1, $2 / 1048576 }'
