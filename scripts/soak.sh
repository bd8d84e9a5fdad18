#!/usr/bin/env bash
# A long soak of the control logic in simulated time: amf-sim fuzz over random fault schedules of
# a configuration (default: examples/*.yaml, 10,000 seeds). Each schedule that violates an
# invariant is kept as a scenario file under OUT/ that replays it exactly with `amf-sim run`.
# Usage: scripts/soak.sh [--seeds N] [--first-seed S] [--out DIR] [CONFIG.yaml...]
# Exit: 0 no violation, 1 some (listed with the command that replays each).
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=10000 first=1 out=soak-violations
files=()
while (($#)); do
  case $1 in
    --seeds) seeds=$2; shift 2 ;;
    --first-seed) first=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -*) echo "soak.sh: unknown option $1" >&2; exit 64 ;;
    *) files+=("$1"); shift ;;
  esac
done
((${#files[@]})) || files=(examples/*.yaml)
sim=build/cmd/amf-sim/amf-sim
[[ -x $sim ]] || { cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null && ninja -C build amf-sim >/dev/null; }
mkdir -p "$out"
echo "soak: $seeds schedules from seed $first over ${files[*]}; violating schedules go to $out/"
set +e
"$sim" fuzz -f "${files[@]}" --seeds "$seeds" --first-seed "$first" --keep "$out" >"$out/report.json"
rc=$?
set -e
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
r = json.load(open(out + "/report.json"))
print("soak: %d schedules, %.0f simulated s in %.0f wall s, %d violations" % (
    r["runs"], r["simulatedSeconds"], r["wallSeconds"], len(r["violations"])))
for v in r["violations"]:
    print("  seed %d: %s at %d ms: %s\n    replay: build/cmd/amf-sim/amf-sim run %s/seed-%d.yaml" % (
        v["seed"], v["invariant"], v["tMs"], v["detail"], out, v["seed"]))
PY
exit $rc
