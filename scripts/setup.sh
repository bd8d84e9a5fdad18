#!/usr/bin/env bash
# Installs every Debian package kvm-amf needs to build, run and test.
# Non-interactive and idempotent: when everything is present it only checks (about a second).
# Usage: scripts/setup.sh            (as root)
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config git python3
  clang clang-format clang-tidy libclang-rt-14-dev
  # libraries
  libcorosync-common-dev libcpg-dev libquorum-dev libvotequorum-dev libcmap-dev
  libvirt-dev libprotobuf-dev protobuf-compiler libzmq3-dev cppzmq-dev
  libyaml-cpp-dev libyaml-dev prometheus-cpp-dev libcli11-dev nlohmann-json3-dev
  libspdlog-dev libfmt-dev libgtest-dev libgmock-dev
  libxml2-dev libxml2-utils  # the domain XML test: XPath, and xmllint for virt-xml-validate
  # run: cluster, hypervisor, guest image
  corosync libvirt-daemon libvirt-daemon-system libvirt-clients
  qemu-system-x86 qemu-utils ovmf seabios busybox-static tini
  # lab and tests
  iproute2 iputils-ping nftables iptables socat netcat-openbsd uuid-runtime procps psmisc
  prometheus curl
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages (${missing[*]}); run this script as root" >&2
  exit 1
fi

echo "setup: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Services must not start on install: this machine has no init system and the project starts its daemons itself.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
