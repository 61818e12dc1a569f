#!/usr/bin/env bash
# Runs every experiment of the study on one model, in both modes, in the
# configuration REPORT.md is built from (sized for a 2-core CPU: the per-
# experiment N is smaller than the study's where the study's would take hours;
# each script's own defaults reproduce the study's sizes).
#
#   bash scripts/report_suite.sh gemma3-270m runs/report/gemma3-270m
#   bash scripts/report_suite.sh smollm2-135m runs/report/smollm2-135m
#   .venv/bin/python experiments/report.py \
#       --results=runs/report/gemma3-270m,runs/report/smollm2-135m --out=REPORT.md
#
# Every script is resumable: re-running the suite skips finished cells. The
# wall time of each step is appended to OUT/suite_times.txt. ONLY=name1,name2
# runs a subset.
set -uo pipefail
MODEL=${1:?usage: report_suite.sh MODEL OUT_DIR}
OUT=${2:?usage: report_suite.sh MODEL OUT_DIR}
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
FAILED=0

step() {
  local name=$1; shift
  if [[ -n "${ONLY:-}" && ",$ONLY," != *",$name,"* ]]; then return; fi
  local t0=$(date +%s)
  echo "=== $name: $*"
  if "$PY" "$@" > "$OUT/$name.log" 2>&1; then
    echo "$name ok $(( $(date +%s) - t0 ))s" | tee -a "$OUT/suite_times.txt"
  else
    echo "$name FAILED (rc=$?, see $OUT/$name.log)" | tee -a "$OUT/suite_times.txt"
    tail -5 "$OUT/$name.log"
    FAILED=1
  fi
}

M="--model=$MODEL --out_dir=$OUT"
STUDY_PAIR=uppercase:repeat_word
# exp1 baseline (study: N=50, fixed demos; both modes)
step baseline experiments/baseline.py $M --n=50 --mode=faithful
# main job (exp8 pairs, every layer, both modes, N=20, single position D3+D2)
step main -m experiments.main $M --n=20
# exp2 localization, exp7 trajectory (probes)
step localization experiments/localization.py $M --n=50
step trajectory experiments/trajectory.py $M --n=20
# Han et al.: task decodability (1/4/10 shots) and task vectors
step task_decodability experiments/task_decodability.py $M --n=40 --shots=1,4,10
step task_vectors experiments/task_vectors.py $M --n=20
# exp3 single-position transplant, exp5 single-position layer sweep (all layers)
step single_position experiments/single_position.py $M --n=10 --layers=all
step layer_sweep experiments/single_position.py $M --n=10 --layers=all \
  --experiment=layer_sweep
# exp4 interpolation
step interpolation experiments/interpolation.py $M --n=6 --layers=study \
  --alphas=0.0,0.5,1.0
# exp6 task ontology
step ontology experiments/ontology.py $M --n=6 --layers=all
# exp9 query transplant
step query_transplant experiments/query_transplant.py $M --n=10 --layers=study
# exp10 demo zeroing + true attention knockout
step demo_zeroing experiments/demo_zeroing.py $M --n=10 --layers=study
# exp11 noise tracing (unit noise as run; 3 sigma relative corrected)
step noise_tracing experiments/noise_tracing.py $M --n=10 --layers=study
# exp12 layer skipping
step layer_skip experiments/layer_skip.py $M --n=10
# exp13 instance analysis
step instance_analysis experiments/instance_analysis.py $M --n=20 --layers=study
# exp14 demo-count ablation
step demo_ablation experiments/demo_ablation.py $M --n=10 --layers=study
# exp15 cross-format control
step cross_format experiments/cross_format.py $M --n=10 --layers=study
# exp23 N=50 with Wilson + bootstrap (the headline pair and one more)
step proper_stats experiments/proper_stats.py $M --n=50 --layers=study \
  --pairs=$STUDY_PAIR,sentiment:antonym
# exp27 controls
step controls experiments/controls.py $M --n=10 --layers=study --pairs=$STUDY_PAIR
# exp28 tokenization analysis
step tokenization experiments/tokenization.py $M
# exp29 the 56-pair matrix (one layer at the study's ~30% depth)
step pair_matrix experiments/pair_matrix.py $M --n=4 --layers=frac:0.3
# exp30 source-demo count
step source_demo_count experiments/source_demo_count.py $M --n=10 --layers=study \
  --pairs=$STUDY_PAIR
# exp31 output-position scaling
step output_positions experiments/output_positions.py $M --n=10 --layers=study \
  --pairs=$STUDY_PAIR --subsets=3
# exp32 sentiment variants
step sentiment_variants experiments/sentiment_variants.py $M --n=10 --layers=study
# exp33 variable length
step variable_length experiments/variable_length.py $M --n=8 --layers=study
# the generic entry point (experiments/sweep.py): the study pair, three
# position sets, every layer
step sweep experiments/sweep.py $M --n=10 --layers=all --pairs=$STUDY_PAIR \
  --positions=all_demo,output_only,last_demo_token
# exp19 template similarity (reads the transfer results above)
step template_similarity experiments/template_similarity.py --out_dir=$OUT \
  --model=$MODEL
exit $FAILED
