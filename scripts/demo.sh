#!/usr/bin/env bash
# The main job: sets up, builds, and shows kvm-amf on the example configuration.
# Today: validates the example cluster and service groups and prints them, summary and canonical form.
# Usage: scripts/demo.sh            (as root: it installs missing packages first)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build amf-admin >/dev/null
echo
echo "\$ amf-admin validate -f examples/*.yaml"
build/cmd/amf-admin/amf-admin validate -f examples/*.yaml
echo
echo "\$ amf-admin -o yaml validate -f examples/*.yaml    # canonical form, every default written out"
build/cmd/amf-admin/amf-admin -o yaml validate -f examples/*.yaml
