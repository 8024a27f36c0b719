#!/usr/bin/env bash
# moe-cpu's kernel sets amx and avx512 side by side on an Intel Xeon with AMX, with the peers
# in the same run: the C++ kernel tests under MOE_CPU_ISA=amx, then moe_bench (gpt-oss-20b,
# cold weights) once per kernel set, ggml's bench_moe beside each (when GGML_BENCH names a
# built one), and PyTorch (bench/torch_peer.py, when python3 has torch). Needs cmake and a C++
# compiler only (no Node).
#
#   bench/amx.sh [OUT_DIR]    env: DTYPES (bf16), TOKENS (1,8,64,256), THREADS (1,all),
#                             ISAS (kernel sets to bench, "amx avx512"), AVX512_TOKENS (the avx512 run's, default TOKENS), GGML_BENCH
#                             (path of ggml's bench_moe), SKIP_TESTS=1, SKIP_BENCH=1, SKIP_TORCH=1
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/moe-amx}
mkdir -p "$out"
build=${BUILD_DIR:-/tmp/moe-amx-build}
DTYPES=${DTYPES:-bf16} TOKENS=${TOKENS:-1,8,64,256} THREADS=${THREADS:-1,all}

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >"$build.log" 2>&1
cmake --build "$build" -j"$(nproc)" --target moe_kernel_tests moe_bench >>"$build.log" 2>&1 || { tail -30 "$build.log"; exit 1; }
{ grep -o -w -E "amx_(tile|bf16|int8)" /proc/cpuinfo || echo "no AMX in /proc/cpuinfo"; } | sort -u | tr "\n" " "; echo

if [ "${SKIP_TESTS:-0}" != 1 ]; then
  for isa in amx avx512; do
    echo "=== C++ kernel tests, MOE_CPU_ISA=$isa"
    MOE_CPU_ISA=$isa "$build/moe_kernel_tests" >"$out/tests-$isa.log" 2>&1 || true
    grep -E "^(FAIL|SKIP)" "$out/tests-$isa.log" | head -20 || true
    tail -1 "$out/tests-$isa.log"
  done
fi

[ "${SKIP_BENCH:-0}" = 1 ] && exit 0
peer=()
[ -n "${GGML_BENCH:-}" ] && peer=(--peer-ggml "$GGML_BENCH")
for isa in ${ISAS:-amx avx512}; do
  echo "=== moe_bench, MOE_CPU_ISA=$isa"
  tokens=$TOKENS
  [ $isa = avx512 ] && tokens=${AVX512_TOKENS:-$TOKENS}
  MOE_CPU_ISA=$isa "$build/moe_bench" --preset gpt-oss-20b --dtype "$DTYPES" --tokens "$tokens" --threads "$THREADS" \
    --cases limits,moe --json "$out/bench-$isa.json" "${peer[@]}" >"$out/bench-$isa.log" 2>&1 || { tail -20 "$out/bench-$isa.log"; }
  # only the first kernel set runs ggml
  peer=()
  grep -E "^ *(T=|threads|[0-9]+ +[0-9.]+ \(|gpt-oss|  limits|  AMX|  tiles)|summary|kernels" "$out/bench-$isa.log" | head -60 || true
done

if [ "${SKIP_TORCH:-0}" != 1 ] && python3 -c "import torch" 2>/dev/null; then
  echo "=== PyTorch"
  threads=${THREADS/all/$(nproc)}
  PYTHONUNBUFFERED=1 python3 bench/torch_peer.py --threads "$threads" --tokens "$TOKENS" --json "$out/torch.json" | tee "$out/torch.log"
fi
