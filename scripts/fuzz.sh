#!/usr/bin/env bash
# Fuzzes the configuration loader with libFuzzer (clang, ASan, UBSan).
# Usage: scripts/fuzz.sh [SECONDS=300]
# New interesting inputs are kept in build-fuzz/corpus; a crashing input is written to
# build-fuzz/crash-* and replays with: build-fuzz/tests/fuzz/config_loader_fuzz FILE
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DKVM_AMF_FUZZ=ON -DKVM_AMF_SANITIZE=ON -DKVM_AMF_TESTS=OFF >/dev/null
ninja -C build-fuzz config_loader_fuzz >/dev/null
mkdir -p build-fuzz/corpus
build-fuzz/tests/fuzz/config_loader_fuzz build-fuzz/corpus tests/fuzz/corpus/config_loader \
  -dict=tests/fuzz/yaml.dict -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix=build-fuzz/ -print_final_stats=1 2>&1 | grep -E '^(#[0-9]+.*(DONE|pulse)|stat::|==|SUMMARY|artifact)' || true
test -z "$(ls build-fuzz/crash-* build-fuzz/timeout-* build-fuzz/oom-* 2>/dev/null)"
