# Sourced by the scripts run on a lent accelerator (benchmarks/gpu.sh,
# experiments/jozefowicz/device.sh):  source benchmarks/device_env.sh DEFAULT_OUT [OUT_DIR]
# Sets OUT_DIR (made, absolute: the argument, else $OUT, else DEFAULT_OUT),
# moves to the repository root, puts it on PYTHONPATH and sets PY.
OUT_DIR="${2:-${OUT:-$1}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1     # the repository root
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-1}"
PY="${PYTHON:-python3}"
