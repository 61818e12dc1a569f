#!/usr/bin/env bash
# Runs the study suite (scripts/report_suite.sh) on a GPU machine and bundles
# what it wrote under $OUT (e.g. the device machine's $OUT folder).
#
#   OUT=/path/to/out bash scripts/gpu_suite.sh [MODEL] [report_suite args...]
#   OUT=$OUT bash scripts/gpu_suite.sh gemma3-270m --sizes=study
#
# Nothing here is GPU-specific code: JAX picks the GPU up by itself (a jax
# with CUDA support must be installed), the engine shards cells over every
# visible GPU and sizes its chunks from each device's free memory
# (icl_jax/interventions/sharding.py: default_memory_budget), and decode
# compaction is off on accelerators. The script refuses to run on a machine
# whose JAX backend is not a GPU (ALLOW_CPU=1 overrides, for a dry run).
#
# Writes: $OUT/gpu_env.txt (nvidia-smi, jax devices, versions),
# $OUT/runs/NAME/ (the suite's results, logs, suite_times.txt; NAME = the
# model's last path component) and $OUT/gpu_suite_NAME.tar.gz
# (results.jsonl, summary.json, config.json, plots, logs and timings; no
# .npz arrays).
set -uo pipefail
OUT=${OUT:?set OUT to the folder that receives the results}
MODEL=${1:-gemma3-270m}
NAME=$(basename "$MODEL")  # a model directory or file: its last component
shift $(( $# > 0 ? 1 : 0 ))
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT/runs"
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-true}

source scripts/gpu_env.sh  # gpu_env.txt, BACKEND; exits unless GPU

T0=$(date +%s)
PY="$PY" bash scripts/report_suite.sh "$MODEL" "$OUT/runs/$NAME" "$@"
RC=$?
echo "suite rc=$RC wall=$(( $(date +%s) - T0 ))s backend=$BACKEND" \
  | tee -a "$OUT/runs/$NAME/suite_times.txt"

cp "$OUT/gpu_env.txt" "$OUT/runs/$NAME/" 2>/dev/null
(cd "$OUT/runs" && find "$NAME" -type f \( -name '*.jsonl' -o -name '*.json' \
   -o -name '*.png' -o -name '*.log' -o -name '*.txt' -o -name '*.md' \) \
   -print0 | tar --null -czf "$OUT/gpu_suite_$NAME.tar.gz" -T -)
echo "bundle: $OUT/gpu_suite_$NAME.tar.gz"
exit $RC
