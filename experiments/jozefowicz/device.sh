#!/usr/bin/env bash
# The study's paper preset (arithmetic and XML, all ten cells, 1M-parameter
# budget) on one accelerator, within one device call:
#
#     bash experiments/jozefowicz/device.sh [OUT_DIR]     # default: $OUT, else results/jozefowicz/device
#     TRIALS=8 EPOCHS=3 ARITH_TRAIN=20000 XML_TRAIN=4000 SECONDS_LEFT=480 bash ...
#
# Trains as many trials as fit in SECONDS_LEFT (the run is killed then; every
# finished population is already in the results file, and rerunning resumes),
# one layer (the paper draws 1 to 4; one depth keeps to one compile per cell),
# at most EPOCHS epochs of ARITH_TRAIN problems and XML_TRAIN documents
# (the paper preset's definitions otherwise: 8-digit numbers, names of 2-10 letters). Writes paper.jsonl, the
# report (paper.md, paper.json, paper.png) and device.log into OUT_DIR.
set -uo pipefail
OUT_DIR="${1:-${OUT:-results/jozefowicz/device}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
cd "$(dirname "$0")/../.."                 # the repository root
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
{
    date -u; "$PY" -c "import jax; print(jax.__version__, jax.devices())"
    start=$(date +%s)
    timeout "${SECONDS_LEFT:-480}" "$PY" -m experiments.jozefowicz run --preset paper \
        --tasks arithmetic xml --trials "${TRIALS:-8}" --set "layers=(1,)" \
        --set "epochs=${EPOCHS:-3}" --set "arithmetic.n_train=${ARITH_TRAIN:-20000}" \
        --set "xml.n_train=${XML_TRAIN:-4000}" --stall-seconds 0 --results "$OUT_DIR/paper.jsonl"
    echo "run: exit $?, $(( $(date +%s) - start )) s"
    "$PY" -m experiments.jozefowicz report "$OUT_DIR/paper.jsonl" > "$OUT_DIR/paper.md"
    "$PY" -m experiments.jozefowicz report "$OUT_DIR/paper.jsonl" --json > "$OUT_DIR/paper.json"
    cat "$OUT_DIR/paper.md"
} 2>&1 | tee "$OUT_DIR/device.log"
