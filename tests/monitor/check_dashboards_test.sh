#!/usr/bin/env bash
# The dashboards load as Grafana's JSON model and every query names a metric the endpoint serves
# (monitor-sample: an endpoint with every collector holding data); and the checker fails on each
# kind of broken dashboard.
# Usage: check_dashboards_test.sh SOURCE_DIR MONITOR_SAMPLE
set -u
src=$1
sample=$2
check="$src/scripts/check_dashboards.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

"$sample" >"$tmp/metrics.txt" || { echo "FAIL: monitor-sample"; exit 1; }
if python3 "$check" --metrics "$tmp/metrics.txt" "$src"/monitor/dashboards/*.json; then
  echo "ok: the dashboards against the endpoint's output"
else
  echo "FAIL: the dashboards against the endpoint's output"
  fail=1
fi
count=$(ls "$src"/monitor/dashboards/*.json | wc -l)
[ "$count" -ge 4 ] || { echo "FAIL: $count dashboards, expected cluster, service group, VM and failures"; fail=1; }

# expect_broken DESCRIPTION PATTERN PYTHON: edits a copy of the cluster dashboard (`b`), which
# must then fail the check with a line matching PATTERN.
expect_broken() {
  local what=$1 pattern=$2 edit=$3
  python3 - "$src/monitor/dashboards/cluster.json" "$tmp/broken.json" <<PY
import json, sys
b = json.load(open(sys.argv[1]))
$edit
json.dump(b, open(sys.argv[2], "w"))
PY
  out=$(python3 "$check" --metrics "$tmp/metrics.txt" "$tmp/broken.json" 2>&1)
  if [ $? -ne 1 ] || ! grep -q -- "$pattern" <<<"$out"; then
    echo "FAIL: $what"; echo "$out"; fail=1
  else
    echo "ok: $what"
  fi
}

expect_broken "a metric the endpoint does not serve" "amf_vm_cpu_second_total is not served" \
  'b["panels"][1]["targets"][0]["expr"] = "rate(amf_vm_cpu_second_total[5m])"'
expect_broken "two panels with one id" "id 2 twice" 'b["panels"][2]["id"] = 2'
expect_broken "a panel outside the grid" "outside the 24-column grid" 'b["panels"][1]["gridPos"]["w"] = 30'
expect_broken "overlapping panels" "overlaps" 'b["panels"][2]["gridPos"] = dict(b["panels"][1]["gridPos"])'
expect_broken "an undefined variable" "\$nowhere is not defined" \
  'b["panels"][1]["targets"][0]["expr"] = "max(amf_cluster_quorate{node=\"\$nowhere\"})"'
expect_broken "a target without an expression" "no expr" 'del b["panels"][1]["targets"][0]["expr"]'
expect_broken "an old schema" "schemaVersion 27" 'b["schemaVersion"] = 27'
expect_broken "a datasource that is no Prometheus reference" "datasource must be" \
  'b["panels"][1]["datasource"] = "Prometheus"'
expect_broken "no uid" "'uid' must be a str" 'del b["uid"]'

exit $fail
