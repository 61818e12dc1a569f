#!/usr/bin/env bash
# Han et al.'s synthetic study at the paper's size (12 layers, 8 heads,
# d=256, batch 128, 80K steps) in one call on a GPU machine, bringing back
# its rows, curves and plots under $OUT (at most 8 files, flat).
#
#   OUT=/path/to/out bash scripts/gpu_synthetic.sh
#
# For the device tool (one command, no venv there: the machine's python3
# has jax, flax, optax, orbax, absl, matplotlib and tqdm):
#   run(command="OUT=$OUT PY=python3 bash scripts/gpu_synthetic.sh",
#       timeout_s=600)
# MAX_SECONDS (default 480) bounds the training so the command ends inside
# the device's 10-minute limit; the run is checkpointed and its rows and
# plots are written from the steps it reached (summary.json says which).
# A run that stops short is a partial paper-size run, to be reported so.
# STEPS_PER_CALL (default 100) optimizer steps per jitted call;
# PRESET (default paper; tiny for a dry run) and ALLOW_CPU=1 (refused on a
# non-GPU backend otherwise) exist for checking this script on a CPU.
#
# Writes to $OUT: gpu_env.txt, results.jsonl (DESIGN.md rows), summary.json,
# config.json, emergence.png, projection.png, mse_vs_examples.png, run.log.
set -uo pipefail
OUT=${OUT:?set OUT to the folder that receives the results}
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PRESET=${PRESET:-paper}
RUN_DIR=${RUN_DIR:-/tmp/synthetic_$PRESET}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

source scripts/gpu_env.sh  # gpu_env.txt, BACKEND; exits unless GPU

T0=$(date +%s)
"$PY" -m experiments.synthetic_emergence --preset="$PRESET" \
  --run_dir="$RUN_DIR" --max_seconds="${MAX_SECONDS:-480}" \
  --steps_per_call="${STEPS_PER_CALL:-100}" --progress=false "$@" \
  2>&1 | tee "$OUT/run.log"
RC=${PIPESTATUS[0]}
echo "synthetic rc=$RC wall=$(( $(date +%s) - T0 ))s backend=$BACKEND" \
  | tee -a "$OUT/run.log"
for f in results.jsonl summary.json config.json emergence.png \
         projection.png mse_vs_examples.png; do
  cp "$RUN_DIR/$f" "$OUT/" 2>/dev/null || echo "missing: $f" | tee -a "$OUT/run.log"
done
exit $RC
