#!/usr/bin/env bash
# A scenario with errors is refused: exit 65 (invalid input data), every error reported as FILE:LINE:COLUMN: message.
# Usage: bad_scenario.sh AMF_SIM BAD_SCENARIO
set -u
if [ $# -ne 2 ]; then echo "usage: $0 AMF_SIM BAD_SCENARIO" >&2; exit 64; fi
sim=$1 scenario=$2
err=$("$sim" run "$scenario" 2>&1 >/dev/null); rc=$?
fail=0
if [ "$rc" -ne 65 ]; then echo "FAIL: exit $rc, wanted 65"; fail=1; fi
name=$(basename "$scenario")
# Each line of the bad file that holds a mistake must be reported with its line and column.
for line in 7 10 12 15; do
  if ! grep -Eq "^[^:]*${name}:${line}:[0-9]+: " <<<"$err"; then
    echo "FAIL: no ${name}:${line}:COLUMN: error on stderr"; fail=1
  fi
done
if [ "$fail" -ne 0 ]; then echo "--- stderr:"; echo "$err"; exit 1; fi
echo "ok: exit 65 with $(grep -Ec "^[^:]*${name}:[0-9]+:[0-9]+: " <<<"$err") FILE:LINE:COLUMN errors"
