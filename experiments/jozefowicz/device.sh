#!/usr/bin/env bash
# The study's paper preset (arithmetic and XML, all ten cells, 1M-parameter
# budget) on one accelerator, within one device call:
#
#     bash experiments/jozefowicz/device.sh [OUT_DIR]     # default: $OUT, else results/jozefowicz/device
#     TRIALS=8 EPOCHS=3 ARITH_TRAIN=20000 XML_TRAIN=4000 SECONDS_LEFT=480 bash ...
#     ARCHS="lstm gru" TRIALS=2 EPOCHS=1 ARITH_TRAIN=300 XML_TRAIN=150 bash ...   # a CPU smoke test
#
# Trains as many trials as fit in SECONDS_LEFT (the run is killed then; every
# finished population is already in the results file, and rerunning resumes),
# one layer (the paper draws 1 to 4; one depth keeps to one compile per cell),
# at most EPOCHS epochs of ARITH_TRAIN problems and XML_TRAIN documents (the
# paper preset's definitions otherwise: numbers of up to 8 digits, tag names of
# 2-10 letters). Writes paper.jsonl, the report (paper.md, paper.json,
# paper.png) and device.log into OUT_DIR.
set -uo pipefail
source "$(dirname "$0")/../../benchmarks/device_env.sh" results/jozefowicz/device "${1:-}"
{
    date -u; "$PY" -c "import jax; print(jax.__version__, jax.devices())"
    start=$(date +%s)
    timeout "${SECONDS_LEFT:-480}" "$PY" -m experiments.jozefowicz run --preset paper \
        --tasks arithmetic xml ${ARCHS:+--archs $ARCHS} --trials "${TRIALS:-8}" \
        --set "layers=(1,)" --set "epochs=${EPOCHS:-3}" --set "arithmetic.n_train=${ARITH_TRAIN:-20000}" \
        --set "xml.n_train=${XML_TRAIN:-4000}" --stall-seconds 0 --results "$OUT_DIR/paper.jsonl"
    echo "run: exit $?, $(( $(date +%s) - start )) s"
    "$PY" -m experiments.jozefowicz report "$OUT_DIR/paper.jsonl" > "$OUT_DIR/paper.md"
    "$PY" -m experiments.jozefowicz report "$OUT_DIR/paper.jsonl" --json > "$OUT_DIR/paper.json"
    cat "$OUT_DIR/paper.md"
} 2>&1 | tee "$OUT_DIR/device.log"
