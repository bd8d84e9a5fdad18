#!/usr/bin/env bash
# The main job: sets up, builds, and shows kvm-amf on the example configuration.
# Today: validates the example cluster and service groups and prints them, then shows a failover
# in simulated time: the complete node managers over a simulated three-host cluster (amf-sim).
# Usage: scripts/demo.sh            (as root: it installs missing packages first)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build amf-admin amf-sim >/dev/null
echo
echo "\$ amf-admin validate -f examples/*.yaml"
build/cmd/amf-admin/amf-admin validate -f examples/*.yaml
echo
echo "\$ amf-admin -o yaml validate -f examples/*.yaml    # canonical form, every default written out"
build/cmd/amf-admin/amf-admin -o yaml validate -f examples/*.yaml
echo
echo "\$ amf-sim run tests/sim/scenarios/2n-host-crash.yaml    # the 2N pair's active host crashes at 30s"
build/cmd/amf-sim/amf-sim run tests/sim/scenarios/2n-host-crash.yaml
