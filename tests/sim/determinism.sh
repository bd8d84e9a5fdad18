#!/usr/bin/env bash
# Runs a scenario twice with -o json and requires the two reports to be identical, byte for byte.
# Usage: determinism.sh AMF_SIM SCENARIO
set -u
if [ $# -ne 2 ]; then echo "usage: $0 AMF_SIM SCENARIO" >&2; exit 64; fi
sim=$1 scenario=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$sim" run "$scenario" -o json >"$tmp/first.json" 2>"$tmp/first.err"; rc1=$?
"$sim" run "$scenario" -o json >"$tmp/second.json" 2>"$tmp/second.err"; rc2=$?
if [ "$rc1" -ne 0 ] && [ "$rc1" -ne 1 ]; then
  echo "FAIL: amf-sim exited $rc1 on $scenario"; cat "$tmp/first.err"; exit 1
fi
if [ ! -s "$tmp/first.json" ]; then echo "FAIL: no JSON report for $scenario"; exit 1; fi
if [ "$rc1" -ne "$rc2" ]; then echo "FAIL: exit codes differ ($rc1, then $rc2)"; exit 1; fi
if ! cmp -s "$tmp/first.json" "$tmp/second.json"; then
  echo "FAIL: two runs of $scenario gave different reports"
  diff "$tmp/first.json" "$tmp/second.json" | head -40
  exit 1
fi
echo "ok: two runs of $scenario are identical ($(wc -c <"$tmp/first.json") bytes, exit $rc1)"
