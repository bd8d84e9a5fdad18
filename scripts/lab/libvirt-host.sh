#!/usr/bin/env bash
# Lab libvirt hosts: one libvirtd per lab host, each in its own network, mount and UTS namespace, with all
# of its state under DIR/NAME/ (docs/lab.md). Root only.
#
# Usage:
#   libvirt-host.sh up DIR NAME [--netns NS] [--cache CACHEDIR] [--wait SEC]
#       Writes DIR/NAME/libvirtd.conf and DIR/NAME/etc/qemu.conf (unix socket only, QEMU as root,
#       remember_owner = 0, cgroup_controllers = [ ], host_uuid derived from DIR/NAME) and starts
#       `tini -s -- libvirtd` in network namespace NS (default: a new one named NAME, deleted by down),
#       a new UTS namespace (hostname NAME) and a private mount namespace in which DIR/NAME/{run,lib,etc,
#       log,cache} are bind-mounted over /run/libvirt, /var/lib/libvirt, /etc/libvirt, /var/log/libvirt
#       and /var/cache/libvirt. Waits up to SEC seconds (default 60) until `virsh -c qemu:///system list`
#       answers through exec and prints the time. The QEMU capabilities cache is seeded from CACHEDIR
#       (default DIR/.libvirt-cache) and saved there after a cold start (which probes QEMU for ~8 s).
#   libvirt-host.sh exec DIR NAME CMD...      run CMD as host NAME (its netns, hostname and bind mounts:
#                                             `virsh -c qemu:///system` reaches its libvirtd)
#   libvirt-host.sh restart DIR NAME [--wait SEC]   SIGTERM libvirtd, start it again; running VMs survive
#   libvirt-host.sh kill-qemu DIR NAME VM     SIGKILL the QEMU of domain VM
#   libvirt-host.sh down DIR NAME             destroy every domain, stop libvirtd, kill whatever is left
#                                             in the host's namespaces, delete the netns up created.
#                                             Idempotent: succeeds when nothing is up.
#
# Files: DIR/NAME/{libvirtd.conf,libvirtd.pid,libvirtd.out,netns,namespaces,run/,lib/,etc/,log/,cache/};
# libvirtd's log is DIR/NAME/log/libvirtd.log, a domain's QEMU log DIR/NAME/log/qemu/VM.log, its QEMU
# pid DIR/NAME/run/qemu/VM.pid. libvirtd.out holds what tini and libvirtd wrote before the log was open.
set -euo pipefail

readonly BIND_DIRS="run:/run/libvirt lib:/var/lib/libvirt etc:/etc/libvirt log:/var/log/libvirt cache:/var/cache/libvirt"

readonly LAB_SCRIPT=libvirt-host.sh
# shellcheck source=scripts/lab/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  sed -n '5,24p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 64
}

libvirtd_pid() {
  local pidfile=$1/libvirtd.pid pid
  [[ -r $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ -n $pid ]] && alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == libvirtd ]] && echo "$pid"
}

host_netns() { cat "$1/netns" 2>/dev/null; }

# The inner sh of start and exec: hostname, the bind mounts, then exec "$@".
# shellcheck disable=SC2016  # expanded by the inner sh
readonly INNER='hostname "$1" && h=$2 && shift 2 &&
for pair in '"$BIND_DIRS"'; do
  mkdir -p "${pair#*:}" && mount --bind "$h/${pair%%:*}" "${pair#*:}" || exit 1
done && exec "$@"'

# in_host HOSTDIR NAME CMD...: CMD in the host's netns, a new UTS namespace named NAME and a private mount
# namespace with the bind mounts.
in_host() {
  local h=$1 name=$2 ns
  shift 2
  ns=$(host_netns "$h") || die "no $h/netns (is host $name up?)"
  ip netns exec "$ns" unshare -m -u --propagation private sh -c "$INNER" sh "$name" "$h" "$@"
}

# Records the mount and UTS namespaces of PID, so that down finds everything that runs in them.
record_namespaces() {
  local h=$1 pid=$2 t
  for t in mnt uts; do readlink "/proc/$pid/ns/$t" >>"$h/namespaces" 2>/dev/null || true; done
  sort -u -o "$h/namespaces" "$h/namespaces"
}

# Pids of this host: every process in a recorded mount or UTS namespace (libvirtd, tini, QEMU, exec'd
# commands) and the QEMUs named by libvirt's pid files.
host_pids() {
  local h=$1 pid t id f
  local -A known=()
  if [[ -r $h/namespaces ]]; then
    while read -r id; do [[ -n $id ]] && known[$id]=1; done <"$h/namespaces"
  fi
  if ((${#known[@]})); then
    for f in /proc/[0-9]*; do
      pid=${f#/proc/}
      [[ $pid == "$$" ]] && continue
      for t in mnt uts; do
        id=$(readlink "$f/ns/$t" 2>/dev/null) || continue
        if [[ -n ${known[$id]:-} ]]; then
          echo "$pid"
          break
        fi
      done
    done
  fi
  for f in "$h"/run/qemu/*.pid; do
    [[ -r $f ]] || continue
    pid=$(<"$f")
    [[ -n $pid ]] && alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == qemu-system* ]] && echo "$pid"
  done
  return 0
}

host_uuid() {
  local hex
  hex=$(printf '%s' "$1" | md5sum | cut -c1-32)
  echo "${hex:0:8}-${hex:8:4}-4${hex:13:3}-8${hex:17:3}-${hex:20:12}"
}

write_config() {
  local h=$1
  cat >"$h/libvirtd.conf" <<EOF
# Written by scripts/lab/libvirt-host.sh up. Unix socket only (/run/libvirt is $h/run).
listen_tls = 0
listen_tcp = 0
unix_sock_group = "root"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
host_uuid = "$(host_uuid "$h")"
log_outputs = "3:file:$h/log/libvirtd.log"
EOF
  cat >"$h/etc/qemu.conf" <<EOF
# Written by scripts/lab/libvirt-host.sh up.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
EOF
}

# Starts the host's libvirtd in the background (does not wait).
start_daemon() {
  local h=$1 name=$2 pid
  if pid=$(libvirtd_pid "$h"); then die "host $name's libvirtd is already running (pid $pid)"; fi
  rm -f "$h/libvirtd.pid"
  # Not through in_host: a backgrounded function would be a subshell, and $! must be tini itself.
  setsid ip netns exec "$(host_netns "$h")" unshare -m -u --propagation private sh -c "$INNER" sh "$name" "$h" \
    tini -s -- libvirtd -f "$h/libvirtd.conf" -p "$h/libvirtd.pid" </dev/null >>"$h/libvirtd.out" 2>&1 &
  echo $! >"$h/tini.pid"
}

# Waits up to SEC seconds until virsh answers through exec; prints the milliseconds it took.
wait_ready() {
  local h=$1 name=$2 wait_s=$3 start deadline tini pid
  start=$(now_ms)
  deadline=$((start + wait_s * 1000))
  tini=$(<"$h/tini.pid")
  while ! in_host "$h" "$name" virsh -q -c qemu:///system list >/dev/null 2>&1; do
    alive "$tini" || die "host $name's libvirtd exited; see $h/libvirtd.out and $h/log/libvirtd.log (run down to clean up)"
    (($(now_ms) < deadline)) ||
      die "host $name's libvirtd does not answer after ${wait_s}s; see $h/log/libvirtd.log (run down to clean up)"
    sleep 0.05
  done
  pid=$(libvirtd_pid "$h") || die "host $name answers but $h/libvirtd.pid names no libvirtd"
  record_namespaces "$h" "$pid"
  echo $(($(now_ms) - start))
}

cmd_up() {
  local dir=$1 name=$2
  shift 2
  local ns="" cache="" wait_s=60 created=false
  while (($#)); do
    case $1 in
      --netns) ns=${2:?--netns needs a namespace}; shift 2 ;;
      --cache) cache=${2:?--cache needs a directory}; shift 2 ;;
      --wait) wait_s=${2:?--wait needs seconds}; shift 2 ;;
      *) die "up: unknown option '$1'" ;;
    esac
  done
  [[ $wait_s =~ ^[1-9][0-9]*$ ]] || die "up: --wait must be seconds, not '$wait_s'"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [[ $dir != *[\"\ ]* ]] || die "up: DIR must not contain blanks or quotes"
  local h=$dir/$name
  [[ -e $h/netns ]] && die "up: host $name is up already in $dir (run down first)"
  cache=${cache:-$dir/.libvirt-cache}
  if [[ -z $ns ]]; then
    ns=$name
    ns_exists "$ns" && die "up: namespace $ns exists already (pass --netns $ns to use it)"
    created=true
  else
    ns_exists "$ns" || die "up: no network namespace '$ns'"
  fi

  local d
  for d in run lib etc log cache; do mkdir -p "$h/$d"; done
  rm -f "$h/namespaces" "$h/netns-created"
  write_config "$h"
  local seeded=cold
  if [[ -d $cache/qemu/capabilities ]] && [[ -n $(ls -A "$cache/qemu/capabilities") ]]; then
    rm -rf "$h/cache/qemu"
    cp -a "$cache/qemu" "$h/cache/qemu"
    seeded=seeded
  fi
  if [[ $created == true ]]; then
    ip netns add "$ns"
    touch "$h/netns-created"
    ip -n "$ns" link set lo up
  fi
  echo "$ns" >"$h/netns"

  local ms
  start_daemon "$h" "$name"
  ms=$(wait_ready "$h" "$name" "$wait_s")
  if [[ $seeded == cold ]]; then
    # libvirtd probes QEMU lazily, on the first call that needs its capabilities (list does not):
    # trigger the probe now so that the cache can be saved.
    local t0
    t0=$(now_ms)
    in_host "$h" "$name" timeout "$wait_s" virsh -q -c qemu:///system version >/dev/null ||
      die "up: virsh version fails on host $name; see $h/log/libvirtd.log (run down to clean up)"
    printf 'up: QEMU capabilities probed in %d ms\n' $(($(now_ms) - t0))
  fi
  if [[ $seeded == cold ]] && [[ -n $(ls -A "$h/cache/qemu/capabilities" 2>/dev/null) ]]; then
    # Copied, then renamed into place: a concurrent up sees the whole cache or none.
    mkdir -p "$cache"
    local tmp
    tmp=$(mktemp -d "$cache/.qemu.XXXXXX")
    cp -a "$h/cache/qemu/." "$tmp/"
    if [[ -e $cache/qemu ]]; then rm -rf "$tmp"; else mv "$tmp" "$cache/qemu"; fi
    seeded="cold, saved to $cache"
  fi
  printf 'up: host %s (netns %s, state %s) ready after %d.%03d s (capabilities cache %s)\n' \
    "$name" "$ns" "$h" $((ms / 1000)) $((ms % 1000)) "$seeded"
}

cmd_restart() {
  local h=$1 name=$2
  shift 2
  local wait_s=60 pid tini ms
  while (($#)); do
    case $1 in
      --wait) wait_s=${2:?--wait needs seconds}; shift 2 ;;
      *) die "restart: unknown option '$1'" ;;
    esac
  done
  [[ -r $h/netns ]] || die "restart: host $name is not up in ${h%/*}"
  if pid=$(libvirtd_pid "$h"); then
    kill -TERM "$pid"
    wait_gone 15000 "$pid" || die "restart: libvirtd (pid $pid) still runs 15 s after SIGTERM"
  fi
  tini=$(cat "$h/tini.pid" 2>/dev/null || true)
  if [[ -n $tini ]]; then wait_gone 5000 "$tini" || die "restart: tini (pid $tini) did not exit"; fi
  start_daemon "$h" "$name"
  ms=$(wait_ready "$h" "$name" "$wait_s")
  printf 'restart: host %s ready after %d.%03d s\n' "$name" $((ms / 1000)) $((ms % 1000))
}

cmd_kill_qemu() {
  local h=$1 name=$2 vm=$3 pid
  [[ -r $h/run/qemu/$vm.pid ]] || die "kill-qemu: domain $vm of host $name is not running (no $h/run/qemu/$vm.pid)"
  pid=$(<"$h/run/qemu/$vm.pid")
  if ! { [[ -n $pid ]] && alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == qemu-system* ]]; }; then
    die "kill-qemu: pid '$pid' of domain $vm is not a running QEMU"
  fi
  kill -KILL "$pid"
}

cmd_down() {
  local h=$1 name=$2 pid vm ns pids=()
  [[ -d $h ]] || return 0
  if pid=$(libvirtd_pid "$h"); then
    while read -r vm; do
      [[ -n $vm ]] || continue
      in_host "$h" "$name" timeout 20 virsh -q -c qemu:///system destroy "$vm" >/dev/null 2>&1 ||
        echo "libvirt-host.sh: down: virsh destroy $vm failed; its QEMU is killed below" >&2
    done < <(in_host "$h" "$name" timeout 10 virsh -q -c qemu:///system list --name 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    wait_gone 10000 "$pid" || true
  fi
  mapfile -t pids < <(host_pids "$h")
  # A zombie's namespaces cannot be read: tini (which exits with libvirtd) is named by its pid file.
  pid=$(cat "$h/tini.pid" 2>/dev/null || true)
  [[ -n $pid && -e /proc/$pid ]] && pids+=("$pid")
  ns=$(host_netns "$h" || true)
  if [[ -n $ns ]] && [[ -e $h/netns-created ]] && ns_exists "$ns"; then
    while read -r pid; do [[ -n $pid ]] && pids+=("$pid"); done < <(ip netns pids "$ns" 2>/dev/null || true)
  fi
  # Orphans are reaped late by this machine's PID 1: stop_pids waits until not even a zombie is listed.
  stop_pids "${pids[@]}" || die "down: processes survive SIGKILL: ${pids[*]}"
  # The bind mounts live only in the host's mount namespaces, which are gone with their processes.
  if grep -qF " $h/" /proc/self/mountinfo; then
    die "down: mounts of $h are left in this mount namespace"
  fi
  if [[ -n $ns ]] && [[ -e $h/netns-created ]]; then
    ip netns delete "$ns" 2>/dev/null || true
    ns_exists "$ns" && die "down: namespace $ns could not be deleted"
  fi
  rm -f "$h/netns" "$h/netns-created" "$h/namespaces" "$h/libvirtd.pid" "$h/tini.pid"
}

cmd_exec() {
  local h=$1 name=$2
  shift 2
  (($#)) || die "exec: no command"
  [[ -r $h/netns ]] || die "exec: host $name is not up in ${h%/*}"
  # Every step execs, so that the caller's child is CMD itself (its pid is CMD's).
  exec ip netns exec "$(host_netns "$h")" unshare -m -u --propagation private sh -c "$INNER" sh "$name" "$h" "$@"
}

main() {
  (($# >= 1)) || usage
  local verb=$1
  shift
  case $verb in
    -h | --help | help) usage ;;
  esac
  (($# >= 2)) || usage
  need_root
  local dir=$1 name=$2
  [[ $name =~ ^[A-Za-z][A-Za-z0-9_-]{0,14}$ ]] || die "NAME must be letters, digits, '-' or '_' (at most 15)"
  if [[ $verb != up ]]; then
    [[ -d $dir ]] && dir=$(cd "$dir" && pwd)
  fi
  shift 2
  case $verb in
    up) cmd_up "$dir" "$name" "$@" ;;
    exec) cmd_exec "$dir/$name" "$name" "$@" ;;
    restart) cmd_restart "$dir/$name" "$name" "$@" ;;
    kill-qemu) (($# == 1)) || usage; cmd_kill_qemu "$dir/$name" "$name" "$1" ;;
    down) (($# == 0)) || usage; cmd_down "$dir/$name" "$name" ;;
    *) usage ;;
  esac
}

main "$@"
