#!/usr/bin/env bash
# The boundary check passes on the source tree and fails on each kind of violation.
# Usage: boundary_check_test.sh SOURCE_DIR
set -u
src=$1
check="$src/scripts/check_boundaries.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

expect() {  # expect EXIT_CODE DESCRIPTION [PATTERN]: runs the check on $tmp
  local want=$1 what=$2 pattern=${3:-}
  out=$("$check" "$tmp" 2>&1); got=$?
  if [ "$got" -ne "$want" ] || { [ -n "$pattern" ] && ! grep -q -- "$pattern" <<<"$out"; }; then
    echo "FAIL: $what (exit $got, wanted $want)"; echo "$out"; fail=1
  else
    echo "ok: $what"
  fi
}

"$check" "$src" || { echo "FAIL: the source tree violates its boundaries"; fail=1; }

mkdir -p "$tmp/amf/engine" "$tmp/vmm-adapter/libvirt" "$tmp/cmd/x" "$tmp/cluster/corosync"
printf '#include <libvirt/libvirt.h>\n' > "$tmp/vmm-adapter/libvirt/domain.cc"
printf '#include <corosync/cpg.h>\n' > "$tmp/cluster/corosync/group.cc"
printf 'auto t = std::chrono::steady_clock::now();\nvoid f() { sleep(1); }\n' > "$tmp/cmd/x/main.cc"
printf '// steady_clock::now() in a comment is fine\nconst char* s = "sleep(1)";\n' > "$tmp/amf/engine/ok.cc"
expect 0 "allowed includes, real time in cmd/, comments and strings"

printf '#include <libvirt/libvirt.h>\n' > "$tmp/amf/bad.cc"
expect 1 "libvirt included in amf/" "amf/bad.cc:1: includes libvirt"
rm "$tmp/amf/bad.cc"

printf '#include "yaml-cpp/yaml.h"\n' > "$tmp/cluster/corosync/y.h"
expect 1 "yaml-cpp included in cluster/" "cluster/corosync/y.h:1: includes yaml-cpp"
rm "$tmp/cluster/corosync/y.h"

printf '#include <zmq.hpp>\n#include <corosync/quorum.h>\n' > "$tmp/amf/engine/z.cc"
expect 1 "ZeroMQ and Corosync included in amf/" "amf/engine/z.cc:2: includes Corosync"
rm "$tmp/amf/engine/z.cc"

mkdir -p "$tmp/vmm-adapter/guest"
printf '#include "kvm_amf/ckpt/checkpoint_service.h"\n' > "$tmp/vmm-adapter/guest/channel.cc"
expect 1 "the checkpoint service included in vmm-adapter/" "vmm-adapter/guest/channel.cc:1: includes the checkpoint service"
rm "$tmp/vmm-adapter/guest/channel.cc"
mkdir -p "$tmp/monitor" "$tmp/daemon"
printf '#include <prometheus/registry.h>\n' > "$tmp/monitor/registry.h"
expect 0 "prometheus-cpp included in monitor/"
printf '#include "prometheus/exposer.h"\n' > "$tmp/daemon/amfd.cc"
expect 1 "prometheus-cpp included in daemon/" "daemon/amfd.cc:1: includes prometheus-cpp"
rm "$tmp/daemon/amfd.cc" "$tmp/monitor/registry.h"

printf 'void f() {\n  auto now = std::chrono::system_clock::now();\n}\n' > "$tmp/amf/engine/clock.cc"
expect 1 "library code reads the real clock" "amf/engine/clock.cc:2: library code reads the real clock"
rm "$tmp/amf/engine/clock.cc"

printf 'void f() { std::this_thread::sleep_for(1ms); }\n' > "$tmp/amf/engine/nap.cc"
expect 1 "library code sleeps" "amf/engine/nap.cc:1: library code sleeps"
rm "$tmp/amf/engine/nap.cc"

exit $fail
