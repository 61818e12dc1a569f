#!/usr/bin/env bash
# Runs every experiment of the study on one model, in both modes, at one of
# three size sets:
#
#   bash scripts/report_suite.sh MODEL OUT [--sizes=report|study|quick]
#
#   report (default) the configuration REPORT.md is built from, sized for a
#                    2-core CPU (smaller N or fewer layers than the study's
#                    where the study's took hours; some steps sweep every
#                    layer where the study ran a grid)
#   study            the original's sizes (protocol, dot_icl_protocol.md 8.x:
#                    its N, pairs, layer grids, noise scales, demo counts)
#   quick            a CI-sized smoke (N=2-5, one or two layers, one pair);
#                    runs on the tiny random test model too
#
#   bash scripts/report_suite.sh gemma3-270m runs/report/gemma3-270m
#   bash scripts/report_suite.sh smollm2-135m runs/report/smollm2-135m
#   .venv/bin/python experiments/report.py \
#       --results=runs/report/gemma3-270m,runs/report/smollm2-135m --out=REPORT.md
#
# Sizes per step (study = the original's; "grid" = --layers=study, the
# original's layer grid scaled to the model's depth; every step runs both
# modes unless noted):
#
# | step               | exp | study (the original)                      | report                  |
# |--------------------|-----|-------------------------------------------|-------------------------|
# | baseline           | 1   | N=50, 10 tasks, 5 fixed demos, faithful   | same                    |
# | main               | 8   | N=10, 6 pairs, 4 conditions, grid (4 l.)  | N=20, every layer       |
# | localization       | 2   | N=50 per task (400 prompts), every layer  | same                    |
# | trajectory         | 7   | N=20 per task (160 prompts), every layer  | same                    |
# | task_decodability  | Han | script defaults: N=40, shots 1,4,10       | same                    |
# | task_vectors       | Han | script defaults: N=30, 20 source prompts  | N=20                    |
# | single_position    | 3   | N=10, 64 pairs + controls, grid (1 layer) | N=10, every layer       |
# | layer_sweep        | 5   | N=10, 4 pairs, every layer                | same                    |
# | interpolation      | 4   | N=10, 6 pairs x 11 alphas + 3 triples,    | N=6, alphas 0,.5,1      |
# |                    |     | grid (1 layer)                            |                         |
# | ontology           | 6   | N=10 vectors per task, grid (1 layer)     | N=6, every layer        |
# | query_transplant   | 9   | N=10, 6 pairs, grid (12 layers)           | same                    |
# | demo_zeroing       | 10  | N=10, 4 tasks, grid (5 layers)            | same                    |
# | noise_tracing      | 11  | N=15, 8 tasks, 2 positions, scales        | N=10                    |
# |                    |     | 0.5,1,2,5 (Llama-3B run), grid            |                         |
# | layer_skip         | 12  | N=15, every 2nd layer + 4 groups          | N=10                    |
# | instance_analysis  | 13  | N=20, 4 pairs, grid (1 layer)             | same                    |
# | demo_ablation      | 14  | N=15, k=1..5, grid (1 layer)              | N=10                    |
# | cross_format       | 15  | N=20, 4 pairs + 2 controls, grid (1 l.)   | N=10                    |
# | proper_stats       | 23  | N=50, 6 pairs, 4 conditions, grid (4 l.)  | N=50, 2 pairs           |
# | controls           | 27  | N=20, 6 pairs, grid (1 layer)             | N=10, 1 pair            |
# | tokenization       | 28  | tokenizer only                            | same                    |
# | pair_matrix        | 29  | N=10, 56 pairs, grid (1 layer)            | N=4, layer frac 0.3     |
# | source_demo_count  | 30  | N=20, 3 pairs, k=1,2,3,5, grid (1 layer)  | N=10, 1 pair            |
# | output_positions   | 31  | N=20, 3 pairs, sizes 1-10 x 10 subsets    | N=10, 1 pair, 3 subsets |
# | sentiment_variants | 32  | N=20, 6 variant pairs + 2 controls        | N=10                    |
# | variable_length    | 33  | N=15, 6 pairs, grid (6 layers) + Part C   | N=8                     |
# | sweep              | --  | (not in the study) as report              | N=10, 3 pos. sets, all  |
# | head_map           | --  | (not in the study) as report              | N=10, study pair, AIE   |
# | template_similarity| 19  | no model (reads pair_matrix)              | same                    |
#
# quick: N=2 (5 for the probe steps: 5-fold CV), layer 0 (or the grid's
# first), one pair where a step takes pairs.
#
# Every script is resumable: re-running the suite skips finished cells. Each
# step prints a progress line with its ETA before it starts (a cost model:
# estimated generations / forward passes / probe fits per step times rates,
# icl_jax/analysis/suite_timing.py; rescaled by the steps finished in this
# run; a step that a recorded run of the same model and sizes has, with the
# same counts, is predicted from its recorded wall time instead, rescaled
# the same way: SUITE_REFERENCE=suite.json, default
# benchmarks/results/suite.json, the gemma3-270m study-size run; replayed
# on the recorded runs its error is ~4x smaller, benchmarks/eta_replay.py)
# and a line with its wall time, rate and XLA compile count after; the
# suite ends with a timing table and writes OUT/suite.json. The wall time of
# each step is also appended to OUT/suite_times.txt.
# JOBS=2 runs two steps at a time (default 1). On the 2-core CPU it gains
# nothing (measured: every step ran ~2.1x slower, 83.6 min elapsed against
# ~88 min sequential at the same day's engine rate; XLA already uses both
# cores); whether it helps on machines with more cores is not measured. The
# rows do not change (each step is its own process with the same inputs),
# only the per-step wall times (they overlap; suite.json keeps the elapsed
# time of the whole invocation beside their sum). template_similarity reads
# pair_matrix and ontology, so it starts after every other step.
# ONE_PROCESS=1 runs every step in one Python process
# (experiments/suite_process.py): one start, one set of imports, one model
# load, and programs compiled by a step stay in memory for later steps
# (dropped between steps past 10% of vm.max_map_count); same scripts, flags
# and rows (tests/experiments/test_report_suite.py), same ETA lines, logs
# and suite.json. A step that kills the process (out of memory) ends the
# suite there; rerunning resumes. Not with JOBS > 1. At study size it gains
# nothing on the 2-core CPU (13 steps side by side: 886 s in both modes;
# compiling is slower in the long-lived process; BUILD_NOTES "The
# study-size suite in one process"), so it is not the default.
# Environment: ONLY=name1,name2 runs a subset; DRY_RUN=1 prints the commands
# (and their estimated work) and runs nothing; PY=python to use;
# HEADLINE=F (the JSON that `benchmarks/sweep.py --method=engine > F` prints,
# measured the same day; --out is only written by the all-methods run) adds
# each step's gen/s as a ratio to the engine's rate.
set -uo pipefail
USAGE="usage: report_suite.sh MODEL OUT_DIR [--sizes=report|study|quick]"
MODEL=${1:?$USAGE}
OUT=${2:?$USAGE}
SIZES=report
for arg in "${@:3}"; do
  case $arg in
    --sizes=*) SIZES=${arg#--sizes=} ;;
    *) echo "$USAGE" >&2; exit 2 ;;
  esac
done
case $SIZES in report|study|quick) ;; *) echo "$USAGE" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DRY_RUN=${DRY_RUN:-}
JOBS=${JOBS:-1}
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "JOBS must be a positive integer" >&2; exit 2; }
ONE_PROCESS=${ONE_PROCESS:-}
if [[ -n $ONE_PROCESS && $JOBS != 1 ]]; then
  echo "ONE_PROCESS=1 runs the steps one after another: not with JOBS=$JOBS" >&2
  exit 2
fi
FAILED=0
TIMING="$PY -m icl_jax.analysis.suite_timing"
NL=$("$PY" -c "from icl_jax.studies.layers import model_depth as d; \
print(d('$MODEL') or 18)")
if [[ -z $DRY_RUN ]]; then
  mkdir -p "$OUT"
  rm -f "$OUT/suite_plan.jsonl" "$OUT/.suite_failed" "$OUT/.suite_queue.jsonl"
  date +%s > "$OUT/.suite_start"
  $TIMING reference "$OUT" "$MODEL" "$SIZES" \
    "${SUITE_REFERENCE:-benchmarks/results/suite.json}"
fi

# step NAME GENERATIONS FORWARDS PROBE_FITS -- SCRIPT ARGS...
# PHASE=plan records the estimated work; PHASE=run runs the step.
step() {
  local name=$1 gens=$2 fwds=$3 fits=$4; shift 5
  if [[ -n "${ONLY:-}" && ",$ONLY," != *",$name,"* ]]; then return; fi
  if [[ -n $DRY_RUN ]]; then
    [[ $PHASE == run ]] && echo "=== $name [$gens gens, $fwds fwd, $fits fits]: $*"
    return
  fi
  if [[ $PHASE == plan ]]; then
    $TIMING plan "$OUT" "$name" "$gens" "$fwds" "$fits"; return
  fi
  if (( JOBS > 1 )); then
    while (( $(jobs -rp | wc -l) >= JOBS )); do wait -n; done
    run_step "$name" "$@" &
  else
    run_step "$name" "$@"
  fi
}

# Runs one step in its own process through experiments/suite_process.py
# (the one implementation of a step's ETA line, run, compile count, record
# and failure note); a runner that dies (killed for memory) is recorded
# and noted here.
# ONE_PROCESS=1: queues the step for one suite_process run of them all.
run_step() {
  local name=$1; shift
  if [[ -n $ONE_PROCESS ]]; then
    "$PY" -c 'import json, sys; print(json.dumps({"name": sys.argv[1], "argv": sys.argv[2:]}))' \
      "$name" "$@" >> "$OUT/.suite_queue.jsonl"
    return
  fi
  local t0=$(date +%s) rc=0
  "$PY" -m experiments.suite_process "$OUT" --step "$name" -- "$@" || rc=$?
  if (( rc != 0 )); then
    $TIMING record "$OUT" "$name" $(( $(date +%s) - t0 )) "$rc" \
      | tee -a "$OUT/suite_times.txt"
    echo "$name FAILED (its runner exited rc=$rc, see $OUT/$name.log)"
    echo "$name" >> "$OUT/.suite_failed"
  fi
}

# Waits for the running steps (a step that reads earlier steps' rows).
barrier() {
  if [[ $PHASE == run && -z $DRY_RUN ]]; then wait; fi
}

M="--model=$MODEL --out_dir=$OUT"
P1=uppercase:repeat_word
ST=$(( NL / 14 > 0 ? NL / 14 : 1 ))  # exp11's grid step: max(1, n // 14)
# Per size: N of each step (n_*), layer flags (l_*: --layers=...) and layer
# counts (c_*) for the cost model; extra flags (x_*).
case $SIZES in
  study)
    n_base=50 n_main=10 n_loc=50 n_traj=20 n_td=40 n_tv=30 n_sp=10 n_ls=10
    n_int=10 n_ont=10 n_qt=10 n_dz=10 n_nt=15 n_skip=15 n_ia=20 n_da=15
    n_cf=20 n_ps=50 n_ctl=20 n_pm=10 n_sdc=20 n_op=20 n_sv=20 n_vl=15
    n_sw=10
    l_main=--layers=study c_main=4 l_sp=study c_sp=1 l_int=study c_int=1
    l_ont=study c_ont=1 l_all=--layers=all c_all=$NL l_pm=study c_pm=1
    c_qt=12 c_dz=5 c_nt=$(( (NL + ST - 1) / ST ))
    l_skip=--layers=study c_skip=$(( (NL + 1) / 2 )) c_ps=4 c_vl=6
    pairs_ps=6 pairs_ctl=6 pairs_sdc=3 pairs_op=3 subsets_op=10
    x_int="" x_ps="" x_ctl="" x_sdc="" x_op="" x_pm="" n_alpha=11
    x_nt="--faithful_scales=0.5,1,2,5" n_scales=5 pairs_pm=56 x_main=""
    pairs_main=6 pairs_sp=64 pairs_ls=4 x_td="--shots=1,4,10" n_shots=3
    ;;
  report)
    n_base=50 n_main=20 n_loc=50 n_traj=20 n_td=40 n_tv=20 n_sp=10 n_ls=10
    n_int=6 n_ont=6 n_qt=10 n_dz=10 n_nt=10 n_skip=10 n_ia=20 n_da=10
    n_cf=10 n_ps=50 n_ctl=10 n_pm=4 n_sdc=10 n_op=10 n_sv=10 n_vl=8
    n_sw=10
    l_main="" c_main=$NL l_sp=all c_sp=$NL l_int=study c_int=1
    l_ont=all c_ont=$NL l_all="" c_all=$NL l_pm=frac:0.3 c_pm=1
    c_qt=12 c_dz=5 c_nt=$(( (NL + ST - 1) / ST ))
    l_skip="" c_skip=$NL c_ps=4 c_vl=6
    pairs_ps=2 pairs_ctl=1 pairs_sdc=1 pairs_op=1 subsets_op=3
    x_int="--alphas=0.0,0.5,1.0" n_alpha=3
    x_ps="--pairs=$P1,sentiment:antonym" x_ctl="--pairs=$P1"
    x_sdc="--pairs=$P1" x_op="--pairs=$P1 --subsets=3" x_pm=""
    x_nt="" n_scales=5 pairs_pm=56 x_main="" pairs_main=6 pairs_sp=64
    pairs_ls=4 x_td="--shots=1,4,10" n_shots=3
    ;;
  quick)
    n_base=2 n_main=2 n_loc=5 n_traj=5 n_td=5 n_tv=2 n_sp=2 n_ls=2
    n_int=2 n_ont=3 n_qt=2 n_dz=2 n_nt=2 n_skip=2 n_ia=2 n_da=2
    n_cf=2 n_ps=2 n_ctl=2 n_pm=2 n_sdc=2 n_op=2 n_sv=2 n_vl=2 n_sw=2
    l_main=--layers=0 c_main=1 l_sp=0 c_sp=1 l_int=0 c_int=1 l_ont=0
    c_ont=1 l_all=--layers=0 c_all=1 l_pm=0 c_pm=1 c_qt=1 c_dz=1 c_nt=1
    l_skip=--layers=0 c_skip=1 c_ps=1
    c_vl=1 pairs_ps=1 pairs_ctl=1 pairs_sdc=1 pairs_op=1 subsets_op=1
    x_int="--alphas=0.0,1.0" n_alpha=2
    x_ps="--pairs=$P1" x_ctl="--pairs=$P1"
    x_sdc="--pairs=$P1" x_op="--pairs=$P1 --subsets=1 --sizes=1"
    x_pm="--pairs=$P1" pairs_pm=1
    x_nt="--faithful_scales=1" n_scales=2
    x_main="--pairs=$P1" pairs_main=1 pairs_sp=1 pairs_ls=1
    x_td="--shots=1,2 --peak_shots=2 --nologistic" n_shots=2
    ;;
esac
# --layers of the grid steps: study / study / 0.
if [[ $SIZES == quick ]]; then G=0; else G=study; fi

suite() {
# exp1 baseline (10 tasks; faithful)
step baseline $(( 10 * n_base )) 0 0 -- experiments/baseline.py $M \
  --n=$n_base --mode=faithful
# exp8 main job (6 pairs x 4 conditions x layers x 2 modes + baselines)
step main $(( 2 * pairs_main * (4 * c_main + 1) * n_main )) \
  $(( 2 * pairs_main * n_main )) 0 -- -m experiments.main $M --n=$n_main \
  $l_main $x_main
# exp2 localization, exp7 trajectory (forward-only probes)
step localization 0 $(( 2 * 8 * n_loc )) $(( 2 * 3 * c_all * 8 )) -- \
  experiments/localization.py $M --n=$n_loc $l_all
step trajectory 0 $(( 2 * 8 * n_traj )) $(( 2 * 2 * 6 * c_all )) -- \
  experiments/trajectory.py $M --n=$n_traj $l_all
# Han et al.: task decodability and task vectors
step task_decodability $(( 8 * n_td * n_shots )) $(( 8 * n_td * n_shots )) \
  $(( c_all * n_shots )) -- experiments/task_decodability.py $M --n=$n_td \
  $x_td
step task_vectors $(( 8 * n_tv * 5 )) $(( 8 * 20 )) 0 -- \
  experiments/task_vectors.py $M --n=$n_tv
# exp3 single-position transplant (64 pairs + 3 controls x 8 tasks), exp5
# its layer sweep (4 pairs, every layer)
step single_position $(( 2 * (pairs_sp + 24) * c_sp * n_sp )) \
  $(( 2 * 8 * n_sp )) 0 -- experiments/single_position.py $M --n=$n_sp \
  --layers=$l_sp $([[ $SIZES == quick ]] && echo "--pairs=$P1")
step layer_sweep $(( 2 * pairs_ls * c_all * n_ls )) $(( 2 * pairs_ls * n_ls )) \
  0 -- experiments/single_position.py $M --n=$n_ls --layers=$(
  [[ $SIZES == quick ]] && echo 0 || echo all) \
  --experiment=layer_sweep $([[ $SIZES == quick ]] && echo "--pairs=$P1")
# exp4 interpolation (6 pairs x alphas + 3 triples)
step interpolation $(( 2 * (6 * n_alpha + 3) * c_int * n_int )) \
  $(( 2 * 8 * n_int )) 0 -- experiments/interpolation.py $M --n=$n_int \
  --layers=$l_int $x_int
# exp6 task ontology
step ontology 0 $(( 8 * n_ont )) 0 -- experiments/ontology.py $M \
  --n=$n_ont --layers=$l_ont
# exp9 query transplant (6 pairs)
step query_transplant $(( 2 * 6 * c_qt * n_qt )) $(( 2 * 6 * n_qt )) 0 -- \
  experiments/query_transplant.py $M --n=$n_qt --layers=$G
# exp10 demo zeroing + true attention knockout (4 tasks, 2 edits)
step demo_zeroing $(( 2 * 4 * (2 * c_dz + 1) * n_dz )) 0 0 -- \
  experiments/demo_zeroing.py $M --n=$n_dz --layers=$G
# exp11 noise tracing (8 tasks x 2 positions x scales; unit noise as run,
# 3 sigma relative corrected)
step noise_tracing $(( 8 * (2 * c_nt * n_scales + 2) * n_nt )) \
  $(( 100 )) 0 -- experiments/noise_tracing.py $M --n=$n_nt --layers=$G \
  $x_nt
# exp12 layer skipping (8 tasks x every 2nd layer + 4 tasks x 4 groups)
step layer_skip $(( 2 * (8 * (c_skip + 1) + 16) * n_skip )) 0 0 -- \
  experiments/layer_skip.py $M --n=$n_skip $l_skip
# exp13 instance analysis (4 pairs, baseline + patched)
step instance_analysis $(( 2 * 4 * 2 * n_ia )) $(( 2 * 4 )) 0 -- \
  experiments/instance_analysis.py $M --n=$n_ia --layers=$G
# exp14 demo-count ablation (k=1..5: 8-task accuracy + 3 pairs; probe)
step demo_ablation $(( 2 * 5 * (8 + 3) * n_da )) $(( 2 * 5 * 8 * n_da )) 10 \
  -- experiments/demo_ablation.py $M --n=$n_da --layers=$G
# exp15 cross-format control (4 pairs + 2 controls, baseline + patched)
step cross_format $(( 2 * 6 * 2 * n_cf )) $(( 2 * 6 )) 0 -- \
  experiments/cross_format.py $M --n=$n_cf --layers=$G
# exp23 N=50 with Wilson + bootstrap (6 pairs x 4 conditions x 4 layers)
step proper_stats $(( 2 * pairs_ps * (4 * c_ps + 1) * n_ps )) \
  $(( 2 * pairs_ps * n_ps )) 0 -- experiments/proper_stats.py $M \
  --n=$n_ps --layers=$G $x_ps
# exp27 controls (4 conditions per pair)
step controls $(( 2 * pairs_ctl * 5 * n_ctl )) $(( 2 * pairs_ctl * n_ctl )) \
  0 -- experiments/controls.py $M --n=$n_ctl --layers=$G $x_ctl
# exp28 tokenization analysis (tokenizer only)
step tokenization 0 0 0 -- experiments/tokenization.py $M
# exp29 the 56-pair matrix (one layer at the study's ~30% depth)
step pair_matrix $(( 2 * pairs_pm * (c_pm + 1) * n_pm )) \
  $(( 2 * pairs_pm * n_pm )) 0 -- experiments/pair_matrix.py $M --n=$n_pm \
  --layers=$l_pm $x_pm
# exp30 source-demo count (k = 1, 2, 3, 5)
step source_demo_count $(( 2 * pairs_sdc * 5 * n_sdc )) \
  $(( 2 * pairs_sdc * 4 * n_sdc )) 0 -- experiments/source_demo_count.py $M \
  --n=$n_sdc --layers=$G $x_sdc
# exp31 output-position scaling (7 sizes x subsets + 7 fixed sets)
step output_positions $(( 2 * pairs_op * (7 * subsets_op + 8) * n_op )) \
  $(( 2 * pairs_op * n_op )) 0 -- experiments/output_positions.py $M \
  --n=$n_op --layers=$G $x_op
# exp32 sentiment variants (8 pairs + 3 baselines)
step sentiment_variants $(( 2 * 11 * n_sv )) $(( 2 * 8 * n_sv )) 0 -- \
  experiments/sentiment_variants.py $M --n=$n_sv --layers=$G \
  $([[ $SIZES == quick ]] && echo "--pairs=sentiment:antonym")
# exp33 variable length (Part A 5 tasks, Part B 6 pairs x layers, Part C 20)
step variable_length $(( 2 * (5 + 6 * c_vl + 1) * n_vl + 40 )) \
  $(( 2 * 6 * n_vl )) 0 -- experiments/variable_length.py $M --n=$n_vl \
  --layers=$G
# the generic entry point (experiments/sweep.py): the study pair, three
# position sets, every layer
step sweep $(( 2 * 3 * c_all * n_sw )) $(( 2 * n_sw )) 0 -- \
  experiments/sweep.py $M --n=$n_sw --layers=$(
  [[ $SIZES == quick ]] && echo 0 || echo all) --pairs=$P1 \
  --positions=all_demo,output_only,last_demo_token
# head x layer map of multi-position transfer + AIE ranking (not in the
# study; issue 19). Work estimated with 8 heads per layer and group sizes
# 2, 4 (the script reads the real head count).
n_hm=$([[ $SIZES == quick ]] && echo 2 || echo 10)
step head_map $(( 2 * (NL * 8 + NL + NL * 2 + 2) * n_hm )) \
  $(( 7 * (NL * 8 + 1) * n_hm )) 0 -- experiments/head_map.py $M \
  --n=$n_hm --pairs=$P1 $([[ $SIZES == quick ]] && \
  echo "--aie_tasks=uppercase,repeat_word")
# exp19 template similarity (reads the transfer results above)
barrier
step template_similarity 0 0 0 -- experiments/template_similarity.py \
  --out_dir=$OUT --model=$MODEL
}

PHASE=plan; suite
PHASE=run; suite
wait
if [[ -n $ONE_PROCESS && -z $DRY_RUN && -s $OUT/.suite_queue.jsonl ]]; then
  "$PY" -m experiments.suite_process "$OUT" "$OUT/.suite_queue.jsonl" || FAILED=1
fi
if [[ -z $DRY_RUN ]]; then
  [[ -s $OUT/.suite_failed ]] && FAILED=1
  echo "=== timing ($SIZES sizes, JOBS=$JOBS${ONE_PROCESS:+, one process}; counts estimated, wall times measured)"
  $TIMING table "$OUT" "$SIZES" "$MODEL" "${HEADLINE:-}" "$JOBS" "${ONE_PROCESS:-0}"
fi
exit $FAILED
