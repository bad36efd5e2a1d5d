#!/usr/bin/env bash
# The scan benchmark on one NVIDIA GPU, in under 8 minutes, then the
# parallel-in-time one in under 4 more, with no network and nothing installed:
# recurrax is imported from this checkout.
#
#     bash benchmarks/gpu.sh [OUT_DIR]      # default: $OUT if set, else results/bench/gpu
#     GPU_SMOKE=1 bash benchmarks/gpu.sh /tmp/smoke   # the same steps, tiny shapes (CPU is fine)
#     GPU_ONLY=parallel bash benchmarks/gpu.sh      # part 5 alone (under 4 minutes)
#     GPU_ONLY=kernels bash benchmarks/gpu.sh       # part 6 alone (under 9 minutes)
#
# Needs python3 with jax (CUDA), flax, equinox, matplotlib; torch (cuDNN) is
# optional. Runs five parts, each under a hard `timeout` and a softer
# `--budget` (stop starting new measurements) so that a slow part cannot
# push the total past 8 minutes (parts 1–4) plus 4 (part 5), parts 1–4
# appending to one scan.jsonl, part 5 to parallel.jsonl, under one run id;
# then writes the reports. Files in OUT_DIR: scan.jsonl, scan.md,
# scan_throughput.png, scan_compile.png, scan_memory.png, parallel.jsonl,
# parallel.md, gpu.log.
#
#   1. reference  the three reference shapes (--quick): lstm with every peer
#                 (Flax, Equinox, PyTorch cuDNN, jax.experimental.rnn cuDNN,
#                 the limit), gru and mut1; float32, forward and forward+backward
#   2. sweep      lstm forward+backward around (B, T, H) = (64, 256, 512), one
#                 axis at a time: batch 1..256, hidden 128..1024, steps 64..1024;
#                 recurrax with its default hoist rule and with hoist=True
#   3. bfloat16   lstm at batch 16, 64, 256 (H 512, T 256), both passes
#   4. compile    memory_analysis of forward+backward against T with and
#                 without remat; lower+compile time against T for unroll 1, 4, 16,
#                 then full unroll (T <= 64: 48 s to compile T = 64 on the 2-core CPU)
#   5. parallel   (benchmarks/parallel.py, its own parallel.jsonl and parallel.md;
#                 under 4 minutes) recurrax.scan against recurrax.parallel: gru
#                 T = 100k, H = 64, B = 1 with quasi-DEER, forward and forward+backward;
#                 mingru T = 10k (its exact linear scan, and quasi-DEER); then lstm and
#                 gru at T = 10k and 1k, H 8..256, B 1 and 16, forward, every method
#                 (cut by its budget)
#   6. kernels    (GPU_ONLY=kernels; also after part 5 when GPU_ONLY is unset)
#                 the fused Pallas kernels: first checked against recurrax.scan on
#                 the GPU (every gated cell, values and gradients, both precisions:
#                 kernel_check.jsonl), then lstm forward+backward at B 1..256 ×
#                 H 256..1024 (T 256) beside cuDNN (JAX and PyTorch), Flax,
#                 Equinox, lax.scan and the limit in float32, then bfloat16, then
#                 the forward pass, then every gated cell at (64, 256, 512);
#                 kernel_rule.md: kernel / lax.scan and / cuDNN per shape, the
#                 goal's status and the PALLAS_FASTER set it implies
set -uo pipefail

source "$(dirname "$0")/device_env.sh" results/bench/gpu "${1:-}"
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}"  # room for torch
JSONL="$OUT_DIR/scan.jsonl"
PARALLEL_JSONL="$OUT_DIR/parallel.jsonl"
RUN_ID="gpu-$(date -u +%Y%m%d-%H%M%S)"
START=$(date +%s)

if [ "${GPU_SMOKE:-0}" = 1 ]; then
    REFERENCE=(--tiny)
    SWEEP=(--centre 2,8,16 --batch 1,2 --hidden 8,16 --steps 4,8 --rounds 1)
    BF16=(--batch 2 --hidden 16 --steps 8 --rounds 1)
    COMPILE=(--compile-shape 2,8,16 --compile-lengths 4,8 --max-full-unroll 4
             --memory-shape 2,8,16 --memory-lengths 4,8)
    PAR_LONG=(--steps 32 --hidden 4 --batch 1 --rounds 1 --warmup 0)
    PAR_MINGRU=(--steps 16 --hidden 4 --batch 1 --rounds 1 --warmup 0)
    PAR_GRID=(--steps 16 --hidden 4 --batch 2 --rounds 1 --warmup 0)
    K_CHECK=(--batch 2 --steps 4 --hidden 16)
    K_GRID=(--batch 1,2 --hidden 16 --steps 8 --rounds 1 --warmup 0)
    K_CELLS=(--batch 2 --hidden 16 --steps 8 --rounds 1 --warmup 0)
    export RECURRAX_BENCH_INTERPRET=1  # the kernels in Pallas's interpreter on a CPU
else
    REFERENCE=(--quick --rounds 5)
    SWEEP=(--centre 64,256,512 --batch 1,16,64,256 --hidden 128,256,512,1024
           --steps 64,256,1024 --rounds 5)
    BF16=(--batch 16,64,256 --hidden 512 --steps 256 --rounds 5)
    COMPILE=(--compile-shape 16,128,256 --compile-lengths 16,64,256,1024 --max-full-unroll 64
             --memory-shape 64,256,512 --memory-lengths 64,256,1024,4096)
    PAR_LONG=(--steps 100000 --hidden 64 --batch 1 --rounds 3)
    PAR_MINGRU=(--steps 10000 --hidden 64,256 --batch 1,16 --rounds 3)
    PAR_GRID=(--steps 10000,1000 --hidden 8,64,256 --batch 1,16 --rounds 3)
    K_CHECK=(--batch 16 --steps 32 --hidden 256)
    K_GRID=(--batch 1,16,32,64,256 --hidden 256,512,1024 --steps 256 --rounds 5)
    K_CELLS=(--batch 64 --hidden 512 --steps 256 --rounds 5)
fi

part() {  # part NAME TIMEOUT_S BUDGET_S ARGS...: one benchmark process under a hard limit
    local name=$1 limit=$2 budget=$3
    shift 3
    echo "=== part $name (at most ${limit} s) at $(( $(date +%s) - START )) s"
    timeout -k 10 "$limit" "$PY" -m "${BENCH:-benchmarks.scan}" --out "${BENCH_OUT:-$JSONL}" \
        --run-id "$RUN_ID" --no-report --budget "$budget" "$@"
    local rc=$?
    [ $rc -eq 0 ] || echo "=== part $name ended with exit status $rc (124: hit its time limit)"
}

main() {
echo "=== benchmarks/gpu.sh, run $RUN_ID, writing $OUT_DIR"
date -u
nvidia-smi -L || echo "(no nvidia-smi)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 45 "$PY" - <<'EOF' || echo "(version check failed or timed out)"
import importlib.metadata as md, platform
print("python", platform.python_version())
for name in ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "flax", "equinox",
             "optax", "torch", "numpy", "matplotlib"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        pass
import jax
print("jax devices:", jax.devices())
try:
    import torch
    print("torch cuda:", torch.cuda.is_available(), torch.version.cuda,
          "cudnn", torch.backends.cudnn.version())
except Exception as err:
    print("torch not importable:", err)
EOF

if [ -z "${GPU_ONLY:-}" ]; then
part reference 120 75 "${REFERENCE[@]}" --parts throughput --cells lstm,gru,mut1 \
    --dtypes float32
part sweep 105 60 "${SWEEP[@]}" --grid star --cells lstm --parts throughput --dtypes float32 \
    --passes forward+backward --hoist auto,true \
    --impls recurrax,flax-OptimizedLSTMCell,equinox,torch,jax-cudnn,limit
part bfloat16 60 25 "${BF16[@]}" --cells lstm --parts throughput --dtypes bfloat16 \
    --impls recurrax,flax-OptimizedLSTMCell,equinox,torch,limit
part compile 90 60 "${COMPILE[@]}" --parts memory,compile --unrolls 1,4,16,T
fi
parallel_part() { BENCH=benchmarks.parallel BENCH_OUT="$PARALLEL_JSONL" part "$@"; }
if [ "${GPU_ONLY:-parallel}" = parallel ]; then
parallel_part parallel-long 75 45 "${PAR_LONG[@]}" --cells gru --methods quasi-deer \
    --memory-cap-gib 16 --max-work 1e11
parallel_part parallel-mingru 60 35 "${PAR_MINGRU[@]}" --cells mingru --methods quasi-deer \
    --memory-cap-gib 16 --max-work 1e11
parallel_part parallel-grid 120 90 "${PAR_GRID[@]}" --cells gru,lstm --passes forward \
    --memory-cap-gib 16 --max-work 1e11
fi

if [ "${GPU_ONLY:-kernels}" = kernels ]; then
echo "=== part kernel-check at $(( $(date +%s) - START )) s"
timeout -k 10 120 "$PY" -m benchmarks.kernel_check "${K_CHECK[@]}" \
    --out "$OUT_DIR/kernel_check.jsonl" --run-id "$RUN_ID" \
    || echo "=== part kernel-check: a cell failed or the part timed out (see above)"
part kernels-float32 240 170 "${K_GRID[@]}" --grid cross --cells lstm --parts throughput \
    --dtypes float32 --passes forward+backward \
    --impls recurrax,recurrax-pallas,jax-cudnn,torch,flax-OptimizedLSTMCell,equinox,limit
part kernels-bfloat16 75 50 "${K_GRID[@]}" --grid cross --cells lstm --parts throughput \
    --dtypes bfloat16 --passes forward+backward --impls recurrax,recurrax-pallas,torch,limit
part kernels-forward 60 35 "${K_GRID[@]}" --grid cross --cells lstm --parts throughput \
    --dtypes float32 --passes forward --impls recurrax,recurrax-pallas,jax-cudnn,torch
part kernels-cells 90 60 "${K_CELLS[@]}" --grid cross --parts throughput --dtypes float32 \
    --passes forward+backward --impls recurrax,recurrax-pallas,recurrax-reset-after-pallas \
    --cells lstm,lstm-i,lstm-f,lstm-o,lstm-b,gru,mut1,mut2,mut3
fi

echo "=== report at $(( $(date +%s) - START )) s"
[ "${GPU_ONLY:-}" = parallel ] || timeout -k 5 40 "$PY" -m benchmarks.report "$JSONL" \
    --run-id "$RUN_ID" || echo "=== report failed"
[ "${GPU_ONLY:-kernels}" != kernels ] || timeout -k 5 30 "$PY" -m benchmarks.kernel_rule \
    "$JSONL" --run-id "$RUN_ID" > "$OUT_DIR/kernel_rule.md" || echo "=== kernel rule failed"
[ "${GPU_ONLY:-}" = kernels ] || timeout -k 5 30 "$PY" -m benchmarks.parallel --report \
    "$PARALLEL_JSONL" --run-id "$RUN_ID" || echo "=== parallel report failed"
echo "=== done in $(( $(date +%s) - START )) s; files:"
ls -la "$OUT_DIR"
}

main 2>&1 | tee -a "$OUT_DIR/gpu.log"
