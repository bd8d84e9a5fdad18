#!/usr/bin/env bash
# The main job: sets up, builds, and runs kvm-amf for real on this one machine. amf-lab builds a
# three-host cluster (a network namespace per host with Corosync, a libvirt daemon and amfd; the
# service networks and a client probing them), supervises the example service groups of
# examples/lab/ (QEMU test guests with the guest agent), crashes the host of the active unit of the
# 2N pair and shows the recovery and the outage the client saw. The lab keeps running afterwards.
# Usage: scripts/demo.sh            (as root: it installs missing packages first)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build amfd amf-admin amf-sim kvm-amf-agent >/dev/null
lab=build/cmd/amf-lab/amf-lab
echo
echo "\$ amf-admin validate -f examples/lab/*.yaml"
build/cmd/amf-admin/amf-admin validate -f examples/lab/*.yaml
"$lab" down 2>/dev/null || true
echo
echo "\$ amf-lab up -f examples/lab/*.yaml      # three hosts on this machine; the test guest into /var/lib/kvm-amf/images"
exec "$lab" demo -f examples/lab/*.yaml --image /var/lib/kvm-amf/images --cache /var/cache/kvm-amf/libvirt-lab
