# shellcheck shell=bash
# Shell functions the lab's scripts share. Sourced, not run; the sourcing script sets LAB_SCRIPT
# (its name, for messages) first.

die() {
  echo "$LAB_SCRIPT: $*" >&2
  exit 1
}

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (namespaces, mounts)"; }

now_ms() { echo $(($(date +%s%N) / 1000000)); }

ns_exists() { ip netns list | awk '{print $1}' | grep -qxF -- "$1"; }

# True while PID exists and is not a zombie (a killed daemon stays a zombie until it is reaped).
alive() {
  local pid=$1 state
  [[ -r /proc/$pid/stat ]] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# Waits up to MS milliseconds until none of the PIDs is alive; false if some still are.
wait_gone() {
  local ms=$1 deadline pid any
  shift
  deadline=$(($(now_ms) + ms))
  while :; do
    any=false
    for pid in "$@"; do alive "$pid" && any=true; done
    [[ $any == false ]] && return 0
    (($(now_ms) < deadline)) || return 1
    sleep 0.05
  done
}

# Waits up to MS milliseconds until none of the PIDs exists at all, zombies included: killed
# orphans are reaped by this machine's PID 1, about a second late.
wait_reaped() {
  local ms=$1 deadline pid any
  shift
  deadline=$(($(now_ms) + ms))
  while (($(now_ms) < deadline)); do
    any=false
    for pid in "$@"; do [[ -e /proc/$pid ]] && any=true; done
    [[ $any == false ]] && return 0
    sleep 0.05
  done
  return 1
}

# SIGTERM to the PIDs, SIGKILL to those still alive after 5 s, then waits for them to be reaped.
# False if some survive SIGKILL.
stop_pids() {
  (($#)) || return 0
  local pid left=()
  kill -TERM "$@" 2>/dev/null || true
  if ! wait_gone 5000 "$@"; then
    for pid in "$@"; do alive "$pid" && left+=("$pid"); done
    echo "$LAB_SCRIPT: SIGKILL to ${left[*]} (still running 5 s after SIGTERM)" >&2
    kill -KILL "${left[@]}" 2>/dev/null || true
    wait_gone 5000 "${left[@]}" || return 1
  fi
  wait_reaped 3000 "$@" || true
}
