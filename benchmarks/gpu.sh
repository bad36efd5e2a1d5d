#!/usr/bin/env bash
# The scan benchmark on one NVIDIA GPU, in under 8 minutes, with no network
# and nothing installed: recurrax is imported from this checkout.
#
#     bash benchmarks/gpu.sh [OUT_DIR]      # default: $OUT if set, else results/bench/gpu
#     GPU_SMOKE=1 bash benchmarks/gpu.sh /tmp/smoke   # the same steps, tiny shapes (CPU is fine)
#
# Needs python3 with jax (CUDA), flax, equinox, matplotlib; torch (cuDNN) is
# optional. Runs four parts, each under a hard `timeout` and a softer
# `--budget` (stop starting new measurements) so that a slow part cannot
# push the total past 8 minutes, all appending to one scan.jsonl under one
# run id; then writes the report. Files in OUT_DIR: scan.jsonl, scan.md,
# scan_throughput.png, scan_compile.png, scan_memory.png, gpu.log.
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
set -uo pipefail

source "$(dirname "$0")/device_env.sh" results/bench/gpu "${1:-}"
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}"  # room for torch
JSONL="$OUT_DIR/scan.jsonl"
RUN_ID="gpu-$(date -u +%Y%m%d-%H%M%S)"
START=$(date +%s)

if [ "${GPU_SMOKE:-0}" = 1 ]; then
    REFERENCE=(--tiny)
    SWEEP=(--centre 2,8,16 --batch 1,2 --hidden 8,16 --steps 4,8 --rounds 1)
    BF16=(--batch 2 --hidden 16 --steps 8 --rounds 1)
    COMPILE=(--compile-shape 2,8,16 --compile-lengths 4,8 --max-full-unroll 4
             --memory-shape 2,8,16 --memory-lengths 4,8)
else
    REFERENCE=(--quick --rounds 5)
    SWEEP=(--centre 64,256,512 --batch 1,16,64,256 --hidden 128,256,512,1024
           --steps 64,256,1024 --rounds 5)
    BF16=(--batch 16,64,256 --hidden 512 --steps 256 --rounds 5)
    COMPILE=(--compile-shape 16,128,256 --compile-lengths 16,64,256,1024 --max-full-unroll 64
             --memory-shape 64,256,512 --memory-lengths 64,256,1024,4096)
fi

part() {  # part NAME TIMEOUT_S BUDGET_S ARGS...: one benchmark process under a hard limit
    local name=$1 limit=$2 budget=$3
    shift 3
    echo "=== part $name (at most ${limit} s) at $(( $(date +%s) - START )) s"
    timeout -k 10 "$limit" "$PY" -m benchmarks.scan --out "$JSONL" --run-id "$RUN_ID" \
        --no-report --budget "$budget" "$@"
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

part reference 120 75 "${REFERENCE[@]}" --parts throughput --cells lstm,gru,mut1 \
    --dtypes float32
part sweep 105 60 "${SWEEP[@]}" --grid star --cells lstm --parts throughput --dtypes float32 \
    --passes forward+backward --hoist auto,true \
    --impls recurrax,flax-OptimizedLSTMCell,equinox,torch,jax-cudnn,limit
part bfloat16 60 25 "${BF16[@]}" --cells lstm --parts throughput --dtypes bfloat16 \
    --impls recurrax,flax-OptimizedLSTMCell,equinox,torch,limit
part compile 90 60 "${COMPILE[@]}" --parts memory,compile --unrolls 1,4,16,T

echo "=== report at $(( $(date +%s) - START )) s"
timeout -k 5 40 "$PY" -m benchmarks.report "$JSONL" --run-id "$RUN_ID" \
    || echo "=== report failed"
echo "=== done in $(( $(date +%s) - START )) s; files:"
ls -la "$OUT_DIR"
}

main 2>&1 | tee -a "$OUT_DIR/gpu.log"
