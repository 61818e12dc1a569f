#!/usr/bin/env bash
# The library's device tests on a GPU machine: the engine against the naive
# one-cell loop, patch sites, attribution, generation, probes, the study
# layer, the synthetic study and LoRA finetuning, all on tiny models with
# random weights (no real weights need to travel), with JAX's default
# backend the GPU. Real-model tests (`-m slow`), the tokenizer/task tests
# and the parity tests (they need torch and transformers) stay on the CPU.
#
#   OUT=/path/to/out bash scripts/gpu_tests.sh [extra pytest args]
#
# For the device tool (its python3 has jax, flax, optax, orbax; pytest may
# be missing there, so carry unpacked wheels, made here with
#   pip download --no-deps -d W pytest pluggy iniconfig packaging pygments \
#     pytest-xdist execnet && for w in W/*.whl; do unzip -q -o $w -d .gpu_vendor; done):
#   run(command="OUT=$OUT PY=python3 bash scripts/gpu_tests.sh",
#       carry=[".gpu_vendor"], timeout_s=600)
# MAX_SECONDS (default 540) bounds pytest so the command ends inside the
# device's 10-minute limit; WORKERS (default 8) pytest-xdist processes when
# xdist is importable (compiling is CPU work; the GPU is shared).
#
# Writes to $OUT: gpu_env.txt, gpu_tests.log (pytest -v: one line per test
# as it finishes, so a run cut by MAX_SECONDS still says what passed; then
# the slowest tests), gpu_tests.xml (JUnit, written when pytest ends).
set -uo pipefail
OUT=${OUT:?set OUT to the folder that receives the results}
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
VENDOR=${VENDOR:-.gpu_vendor}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# Unpacked wheels go last on the path: packages the machine has win.
[[ -d "$VENDOR" ]] && export PYTHONPATH="$PYTHONPATH:$PWD/$VENDOR"
if ! "$PY" -c "import pytest" 2>/dev/null; then
  echo "pytest is not importable by $PY (nor from $VENDOR)" >&2
  exit 2
fi

source scripts/gpu_env.sh  # gpu_env.txt, BACKEND; exits unless GPU

PAR=()
if "$PY" -c "import xdist" 2>/dev/null && [[ "${WORKERS:-8}" -gt 1 ]]; then
  PAR=(-n "${WORKERS:-8}")
fi
T0=$(date +%s)
timeout "${MAX_SECONDS:-540}" "$PY" -m pytest -v -m "not slow" \
  -p no:cacheprovider --durations=15 --junitxml="$OUT/gpu_tests.xml" \
  "${PAR[@]}" tests/interventions tests/models/test_generation.py \
  tests/probes tests/studies tests/synthetic tests/finetune "$@" \
  2>&1 | tee "$OUT/gpu_tests.log"
RC=${PIPESTATUS[0]}
echo "gpu tests rc=$RC wall=$(( $(date +%s) - T0 ))s backend=$BACKEND" \
  "workers=${PAR[1]:-1}" | tee -a "$OUT/gpu_tests.log"
exit $RC
