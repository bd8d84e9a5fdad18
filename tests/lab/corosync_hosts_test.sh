#!/usr/bin/env bash
# scripts/lab/corosync-hosts.sh against real Corosync: three hosts in network namespaces form a
# quorate cluster with knet crypto; a killed corosync, a cut link and a partition are seen, and
# undone; down leaves no namespace and no corosync behind.
# Usage: corosync_hosts_test.sh SOURCE_DIR AMF_ADMIN. Exits 77 (skipped) without root or corosync.
set -euo pipefail
src=$1
export AMF_ADMIN=$2
lab="$src/scripts/lab/corosync-hosts.sh"

if [[ $(id -u) -ne 0 ]] || ! command -v corosync >/dev/null || ! command -v nft >/dev/null; then
  echo "skipped: needs root, corosync and nft"
  exit 77
fi

dir=$(mktemp -d /tmp/corosync-hosts-test.XXXXXX)
prefix="cht$$x"
cleanup() {
  "$lab" down "$dir" "$prefix" || echo "FAIL: down in cleanup"
  rm -rf "$dir"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  for f in "$dir"/host*/corosync.log; do
    [[ -r $f ]] && { echo "--- tail of $f"; tail -n 15 "$f"; }
  done
  exit 1
}

# "NODES QUORATE" as host I sees it.
membership() {
  "$lab" exec "$dir" "$prefix" "$1" corosync-quorumtool -s 2>/dev/null |
    awk 'BEGIN { n = 0; q = "No" } /^Nodes:/ { n = $2 } /^Quorate:/ { q = $2 } END { print n, q }' || true
}

# expect HOST "NODES QUORATE" WHAT: waits (up to 20 s; a generous bound, not a speed check) until
# host HOST sees that membership, and prints how long it took.
expect() {
  local host=$1 want=$2 what=$3 start seen
  start=$(date +%s%N)
  while :; do
    seen=$(membership "$host")
    [[ $seen == "$want" ]] && break
    (($(date +%s%N) - start < 20000000000)) || fail "$what: host $host sees '$seen' (nodes, quorate), wanted '$want'"
    sleep 0.05
  done
  printf 'ok: %s: host %s sees %s after %d ms\n' "$what" "$host" "$want" $((($(date +%s%N) - start) / 1000000))
}

"$lab" up "$dir" "$prefix" 3 || fail "up"
expect 1 "3 Yes" "up"
expect 3 "3 Yes" "up"

grep -q '^  crypto_cipher: aes256$' "$dir/host1/corosync.conf" || fail "crypto_cipher aes256 not in corosync.conf"
grep -q "^  keyfile: $dir/authkey\$" "$dir/host2/corosync.conf" || fail "keyfile not in corosync.conf"
[[ $(stat -c '%a %s' "$dir/authkey") == "400 256" ]] || fail "authkey is not 256 bytes with mode 0400"
cipher=$("$lab" exec "$dir" "$prefix" 1 corosync-cmapctl -g totem.crypto_cipher) || fail "cmapctl"
[[ $cipher == *"= aes256" ]] || fail "the running corosync has crypto_cipher '$cipher'"
echo "ok: crypto on (aes256/sha256) and the cluster formed with it"

"$lab" kill "$dir" "$prefix" 3
expect 1 "2 Yes" "host 3's corosync killed"
"$lab" start "$dir" "$prefix" 3
expect 1 "3 Yes" "host 3's corosync restarted"
expect 3 "3 Yes" "host 3's corosync restarted"

"$lab" cut "$dir" "$prefix" 2
expect 2 "1 No" "host 2's link cut"
expect 1 "2 Yes" "host 2's link cut"
"$lab" heal "$dir" "$prefix" 2
expect 1 "3 Yes" "host 2's link healed"
expect 2 "3 Yes" "host 2's link healed"

"$lab" partition "$dir" "$prefix" 3
expect 3 "1 No" "host 3 partitioned"
expect 1 "2 Yes" "host 3 partitioned"
"$lab" unpartition "$dir" "$prefix"
expect 3 "3 Yes" "partition removed"

pids=$(cat "$dir"/host*/corosync.pid)
"$lab" down "$dir" "$prefix" || fail "down"
left=$(ip netns list | awk '{print $1}' | grep -E "^${prefix}(hub|[0-9]+)\$" || true)
[[ -z $left ]] || fail "down left namespaces: $left"
for pid in $pids; do
  [[ ! -e /proc/$pid ]] || fail "down left corosync pid $pid: $(cat "/proc/$pid/stat" 2>/dev/null)"
done
"$lab" down "$dir" "$prefix" || fail "a second down"
echo "ok: down leaves no namespace and no corosync, and is idempotent"
