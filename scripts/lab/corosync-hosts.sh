#!/usr/bin/env bash
# The lab's hosts with Corosync: one network namespace per host, all joined by a bridge in a hub
# namespace, each host running its own corosync with a private /run; see docs/membership.md.
# Used by tests and by the lab tool. Needs root, iproute2, util-linux (unshare), nftables, corosync.
#
#   corosync-hosts.sh up DIR PREFIX N [--token MS] [--no-crypto] [--subnet A.B.C] [--wait SEC]
#                        [--cluster FILE]
#       Namespaces PREFIXhub (bridge br0) and PREFIX1..PREFIXN; host I has address A.B.C.I/24 on
#       its veth c<I> (the hub side is h<I>). A.B.C defaults to 10.X.0 with X derived from PREFIX.
#       Writes DIR/cluster.yaml (nodes node1..nodeN, ids 1..N, membership.token MS, default 300,
#       fencing self), or copies FILE there (a Cluster document whose node I has address A.B.C.I),
#       makes DIR/hostI/corosync.conf with amf-admin corosync-conf (binary: $AMF_ADMIN, else
#       build/cmd/amf-admin/amf-admin in this repository; crypto on unless --no-crypto, shared key
#       DIR/authkey), starts every corosync, and waits up to SEC seconds
#       (default 20) until host 1 sees all N nodes and quorum. Prints the time that took.
#   corosync-hosts.sh down DIR PREFIX
#       SIGTERM to everything running in the namespaces, SIGKILL after 5 s, delete the namespaces.
#       Idempotent: succeeds when nothing is up.
#   corosync-hosts.sh kill DIR PREFIX I         SIGKILL host I's corosync
#   corosync-hosts.sh start DIR PREFIX I        start host I's corosync again (does not wait)
#   corosync-hosts.sh cut DIR PREFIX I          link of host I down (at the hub's bridge port)
#   corosync-hosts.sh heal DIR PREFIX I         link of host I up again
#   corosync-hosts.sh partition DIR PREFIX I... drop Corosync traffic (udp 5405) between the hosts
#                                               listed and the others (replaces an earlier partition)
#   corosync-hosts.sh unpartition DIR PREFIX    remove the partition
#   corosync-hosts.sh exec DIR PREFIX I CMD...  run CMD as host I: in its network namespace (libqb IPC
#                                               sockets are abstract, so per netns: Corosync clients
#                                               reach host I's corosync) with its private /run
#
# Files: DIR/cluster.yaml, DIR/authkey, DIR/amf-admin.log, DIR/hostI/{corosync.conf,corosync.log,corosync.out,
# corosync.pid,run/,state/}. corosync.out holds what corosync wrote before its log file was open.
set -euo pipefail

readonly PARTITION_TABLE=amf_lab_partition
readonly COROSYNC_PORT=5405

readonly LAB_SCRIPT=corosync-hosts.sh
# shellcheck source=scripts/lab/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  sed -n '6,29p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 64
}

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd; }

amf_admin() {
  local bin=${AMF_ADMIN:-$(repo_root)/build/cmd/amf-admin/amf-admin}
  [[ -x $bin ]] || die "amf-admin not found at $bin (build it, or set AMF_ADMIN)"
  echo "$bin"
}

host_ns() { echo "$1$2"; }  # PREFIX I
hub_ns() { echo "$1hub"; }

# The namespaces of this lab: PREFIXhub and PREFIX<number>.
lab_namespaces() {
  local prefix=$1 name
  while read -r name _; do
    if [[ $name == "${prefix}hub" ]] || [[ ${name#"$prefix"} =~ ^[0-9]+$ && $name == "$prefix"* ]]; then
      echo "$name"
    fi
  done < <(ip netns list)
}

check_index() {
  local dir=$1 i=$2
  [[ $i =~ ^[1-9][0-9]*$ ]] || die "host index '$i' is not a number >= 1"
  [[ -d $dir/host$i ]] || die "no host $i in $dir (is the lab up?)"
}

corosync_pid() {
  local pidfile=$1/host$2/corosync.pid pid
  [[ -r $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ -n $pid ]] && alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == corosync ]] && echo "$pid"
}

# Starts host I's corosync in the background: ip netns exec, unshare and sh all exec, so $! is
# corosync itself. A private mount namespace gets the host's own /run (corosync locks
# /run/corosync.pid) and a UTS namespace named after the node (so corosync finds itself by name).
start_corosync() {
  local dir=$1 prefix=$2 i=$3 ns pid
  ns=$(host_ns "$prefix" "$i")
  if pid=$(corosync_pid "$dir" "$i"); then die "host $i's corosync is already running (pid $pid)"; fi
  mkdir -p "$dir/host$i/run" "$dir/host$i/state"
  # shellcheck disable=SC2016  # $1.. are expanded by the inner sh
  setsid ip netns exec "$ns" unshare -m -u --propagation private \
    sh -c 'hostname "$1" && mount --bind "$2" /run && exec corosync -f -c "$3"' sh \
    "node$i" "$dir/host$i/run" "$dir/host$i/corosync.conf" \
    </dev/null >>"$dir/host$i/corosync.out" 2>&1 &
  echo $! >"$dir/host$i/corosync.pid"
}

# "NODES QUORATE" as host I sees them, e.g. "3 Yes"; "0 No" when its corosync does not answer.
membership() {
  local dir=$1 prefix=$2 i=$3 out
  out=$(cmd_exec "$dir" "$prefix" "$i" corosync-quorumtool -s 2>/dev/null || true)
  awk 'BEGIN { n = 0; q = "No" } /^Nodes:/ { n = $2 } /^Quorate:/ { q = $2 } END { print n, q }' <<<"$out"
}

cmd_up() {
  local dir=$1 prefix=$2 n=$3
  shift 3
  local token=300 crypto=true subnet="" wait_s=20 cluster=""
  while (($#)); do
    case $1 in
      --cluster) cluster=${2:?--cluster needs a file}; shift 2 ;;
      --token) token=${2:?--token needs a value in ms}; shift 2 ;;
      --no-crypto) crypto=false; shift ;;
      --subnet) subnet=${2:?--subnet needs A.B.C}; shift 2 ;;
      --wait) wait_s=${2:?--wait needs seconds}; shift 2 ;;
      *) die "up: unknown option '$1'" ;;
    esac
  done
  if ! [[ $n =~ ^[1-9][0-9]*$ ]] || ((n > 254)); then die "up: N must be 1..254, not '$n'"; fi
  [[ $token =~ ^[1-9][0-9]*$ ]] || die "up: --token must be milliseconds, not '$token'"
  [[ $prefix =~ ^[A-Za-z][A-Za-z0-9_-]*$ ]] || die "up: PREFIX must be letters, digits, '-' or '_'"
  if [[ -z $subnet ]]; then
    # Each lab is its own set of namespaces, so equal addresses in two labs cannot meet; distinct
    # subnets still keep captures and logs of two labs apart.
    subnet="10.$((16 + $(printf '%s' "$prefix" | cksum | cut -d' ' -f1) % 200)).0"
  fi
  [[ $subnet =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "up: --subnet must look like 10.88.0, not '$subnet'"
  local admin hub i ns started
  admin=$(amf_admin)
  hub=$(hub_ns "$prefix")
  ns_exists "$hub" && die "up: namespace $hub exists: this lab is up already (run down first)"
  started=$(date +%s.%N)

  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [[ -n $cluster ]]; then
    cp "$cluster" "$dir/cluster.yaml" || die "up: cannot copy $cluster"
  else {
    echo "# The lab's Cluster document, written by corosync-hosts.sh up."
    echo "apiVersion: kvm-amf/v1"
    echo "kind: Cluster"
    echo "metadata:"
    echo "  name: lab"
    echo "spec:"
    echo "  nodes:"
    for ((i = 1; i <= n; i++)); do
      echo "    - {name: node$i, id: $i, address: $subnet.$i}"
    done
    echo "  membership:"
    echo "    token: ${token}ms"
    echo "    crypto: $crypto"
    echo "  fencing:"
    echo "    mode: self"
  } >"$dir/cluster.yaml"
  fi

  ip netns add "$hub"
  ip -n "$hub" link set lo up
  ip -n "$hub" link add br0 type bridge
  ip -n "$hub" link set br0 up
  for ((i = 1; i <= n; i++)); do
    ns=$(host_ns "$prefix" "$i")
    ip netns add "$ns"
    # Both ends are created inside their namespaces: no name is ever taken in the root namespace.
    ip link add "c$i" netns "$ns" type veth peer name "h$i" netns "$hub"
    ip -n "$hub" link set "h$i" master br0
    ip -n "$hub" link set "h$i" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$subnet.$i/24" dev "c$i"
    ip -n "$ns" link set "c$i" up

    mkdir -p "$dir/host$i/run" "$dir/host$i/state"
    local crypto_args=()
    [[ $crypto == true ]] && crypto_args=(--authkey "$dir/authkey")
    "$admin" corosync-conf -f "$dir/cluster.yaml" "${crypto_args[@]}" --state-dir "$dir/host$i/state" \
      --log-file "$dir/host$i/corosync.log" --out "$dir/host$i/corosync.conf" 2>>"$dir/amf-admin.log" ||
      die "up: amf-admin corosync-conf failed: $(cat "$dir/amf-admin.log")"
  done
  for ((i = 1; i <= n; i++)); do start_corosync "$dir" "$prefix" "$i"; done

  local deadline seen now
  deadline=$(($(date +%s) + wait_s))
  while :; do
    seen=$(membership "$dir" "$prefix" 1)
    if [[ $seen == "$n Yes" ]]; then break; fi
    for ((i = 1; i <= n; i++)); do
      # Alive is enough: until its exec chain (ip netns exec, unshare, sh) ends, it is not yet
      # called corosync.
      alive "$(cat "$dir/host$i/corosync.pid")" ||
        die "up: host $i's corosync is not running; see $dir/host$i/corosync.out and corosync.log (run down to clean up)"
    done
    if (($(date +%s) >= deadline)); then
      die "up: host 1 sees '${seen}' (nodes, quorate) after ${wait_s}s, not '$n Yes'; see $dir/host*/corosync.log (run down to clean up)"
    fi
    sleep 0.1
  done
  now=$(date +%s.%N)
  printf 'up: %d hosts in %s (%s.1-%d), quorate after %.2f s, crypto %s\n' \
    "$n" "$dir" "$subnet" "$n" "$(awk -v a="$started" -v b="$now" 'BEGIN { print b - a }')" \
    "$([[ $crypto == true ]] && echo on || echo off)"
}

cmd_down() {
  local dir=$1 prefix=$2 namespaces pids=() pid ns f
  mapfile -t namespaces < <(lab_namespaces "$prefix")
  for ns in "${namespaces[@]}"; do
    while read -r pid; do [[ -n $pid ]] && pids+=("$pid"); done < <(ip netns pids "$ns" 2>/dev/null || true)
  done
  # A corosync whose namespace is already gone would not be listed above.
  for f in "$dir"/host*/corosync.pid; do
    [[ -r $f ]] || continue
    pid=$(<"$f")
    if [[ -n $pid ]] && alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == corosync ]]; then pids+=("$pid"); fi
  done
  # Waits for the orphans to be reaped too, so that no corosync, not even a zombie, is listed once
  # down returns.
  stop_pids "${pids[@]}" || true
  for ns in "${namespaces[@]}"; do ip netns delete "$ns" 2>/dev/null || true; done
  for ns in "${namespaces[@]}"; do ns_exists "$ns" && die "down: namespace $ns could not be deleted"; done
  rm -f "$dir"/host*/corosync.pid 2>/dev/null || true
}

cmd_kill() {
  local dir=$1 prefix=$2 i=$3 pid
  check_index "$dir" "$i"
  pid=$(corosync_pid "$dir" "$i") || die "kill: host $i's corosync is not running"
  kill -KILL "$pid"
  for _ in $(seq 100); do alive "$pid" || return 0; sleep 0.02; done
  die "kill: host $i's corosync (pid $pid) survived SIGKILL for 2 s"
}

cmd_start() {
  local dir=$1 prefix=$2 i=$3
  check_index "$dir" "$i"
  ns_exists "$(host_ns "$prefix" "$i")" || die "start: no namespace $(host_ns "$prefix" "$i") (is the lab up?)"
  start_corosync "$dir" "$prefix" "$i"
}

cmd_link() {
  local dir=$1 prefix=$2 i=$3 state=$4
  check_index "$dir" "$i"
  ip -n "$(hub_ns "$prefix")" link set "h$i" "$state"
}

# Address of host I, from the host's own interface.
host_address() {
  ip -n "$(host_ns "$1" "$2")" -4 -o addr show dev "c$2" | awk '{split($4, a, "/"); print a[1]; exit}'
}

cmd_unpartition() {
  local prefix=$2 ns
  while read -r ns; do
    [[ $ns == "${prefix}hub" ]] && continue
    ip netns exec "$ns" nft delete table inet "$PARTITION_TABLE" 2>/dev/null || true
  done < <(lab_namespaces "$prefix")
}

cmd_partition() {
  local dir=$1 prefix=$2
  shift 2
  (($#)) || die "partition: name at least one host"
  local -A inside=()
  local i
  for i in "$@"; do check_index "$dir" "$i"; inside[$i]=1; done
  cmd_unpartition "$dir" "$prefix"
  local hosts=() ns
  while read -r ns; do
    [[ $ns == "${prefix}hub" ]] && continue
    hosts+=("${ns#"$prefix"}")
  done < <(lab_namespaces "$prefix")
  local a b side others
  for a in "${hosts[@]}"; do
    side=${inside[$a]:-0}
    others=()
    for b in "${hosts[@]}"; do
      [[ ${inside[$b]:-0} != "$side" ]] && others+=("$(host_address "$prefix" "$b")")
    done
    ((${#others[@]})) || continue
    local set
    set=$(IFS=,; echo "${others[*]}")
    ip netns exec "$(host_ns "$prefix" "$a")" nft -f - <<EOF
table inet $PARTITION_TABLE {
  chain input { type filter hook input priority 0; policy accept; ip saddr { $set } udp dport $COROSYNC_PORT drop; }
  chain output { type filter hook output priority 0; policy accept; ip daddr { $set } udp dport $COROSYNC_PORT drop; }
}
EOF
  done
}

# Clients need no more than the netns for Corosync's IPC; the private /run is mounted as well so
# that CMD sees the host as its corosync does (/run/corosync.pid, and the per-host /run of later
# daemons).
cmd_exec() {
  local dir=$1 prefix=$2 i=$3
  shift 3
  (($#)) || die "exec: no command"
  check_index "$dir" "$i"
  # shellcheck disable=SC2016  # $1 and $@ are expanded by the inner sh
  ip netns exec "$(host_ns "$prefix" "$i")" unshare -m --propagation private \
    sh -c 'mount --bind "$1" /run && shift && exec "$@"' sh "$dir/host$i/run" "$@"
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
  local dir=$1 prefix=$2
  [[ -n $prefix ]] || die "PREFIX must not be empty"
  case $verb in
    up) (($# >= 3)) || usage; cmd_up "$@" ;;
    down) (($# == 2)) || usage; cmd_down "$dir" "$prefix" ;;
    kill) (($# == 3)) || usage; cmd_kill "$@" ;;
    start) (($# == 3)) || usage; cmd_start "$@" ;;
    cut) (($# == 3)) || usage; cmd_link "$@" down ;;
    heal) (($# == 3)) || usage; cmd_link "$@" up ;;
    partition) cmd_partition "$@" ;;
    unpartition) (($# == 2)) || usage; cmd_unpartition "$dir" "$prefix" ;;
    exec) (($# >= 4)) || usage; cmd_exec "$@" ;;
    *) usage ;;
  esac
}

main "$@"
