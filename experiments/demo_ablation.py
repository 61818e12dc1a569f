r"""exp14: demo-count ablation, k = 1..5 demos in every prompt.

    python experiments/demo_ablation.py --model=gemma3-270m --n=15

  Part A: clean accuracy of every task with k demos (D3).
  Part B: single-position transplant at `last_demo_token` with k demos in
          both source and target prompts (pairs uppercase->sentiment,
          linear_2x->first_letter, pattern_completion->repeat_word).
  Part C: nearest-centroid probe of the task identity at the first query
          token (8 tasks x N prompts, 5 stratified 80/20 splits, seed 42),
          written to <out_dir>/demo_ablation_probe/.

faithful: the study's positions, Part B with the D2 decoder, faithful
scorers. aligned: layout positions (last demo's final answer token, first
query-value token), Part B with prefill decoding (patched K/V persist),
strict scorers. Each (part, k) uses fresh Task objects (the first RNG call
of each task; the original's call order across parts is not documented).
`--layers=study`: Part B at 14 of 28, Part C at 12 of 28 (scaled); default:
every layer for both.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common

EXP14_PAIRS = (("uppercase", "sentiment"), ("linear_2x", "first_letter"),
               ("pattern_completion", "repeat_word"))
CORE = ["uppercase", "first_letter", "repeat_word", "length", "linear_2x",
        "sentiment", "antonym", "pattern_completion"]
common.define_common_flags(default_pairs=EXP14_PAIRS, default_n=15)
flags.DEFINE_list("ks", ["1", "2", "3", "4", "5"], "demo counts")
flags.DEFINE_list("tasks", CORE, "Part A and Part C tasks")
flags.DEFINE_list("parts", ["A", "B", "C"], "parts to run")
common.define_timing_flag(
    "Part B decoder: study = D2 in faithful, prefill in aligned")
F = flags.FLAGS
EXPERIMENT = "demo_ablation"


def main(argv):
  del argv
  from icl_jax.studies import ablation, single_position as sp, layers
  from icl_jax.studies.run import Study
  from icl_jax.studies.study import (check_choices, check_probe_split,
                                     parse_demo_counts, parse_tasks)
  from icl_jax.analysis.heatmaps import heatmap, pair_label

  pairs, modes = common.parse_pairs_and_modes()
  tasks = parse_tasks(F.tasks)
  parts = check_choices(F.parts, ["A", "B", "C"], "--parts")
  ks = parse_demo_counts(F.ks)
  if "C" in parts:
    check_probe_split(F.n, len(tasks))
  lm = common.load_model(EXPERIMENT)
  layers_b = layers.parse_layers(F.layers, lm.n_layers, EXPERIMENT)
  layers_c = layers.parse_layers(F.layers, lm.n_layers,
                                 "demo_ablation_probe")
  config = dict(model=F.model, pairs=[list(p) for p in pairs], tasks=tasks,
                parts=parts, ks=ks, layers_b=layers_b, layers_c=layers_c,
                modes=modes, n=F.n, timing=F.timing, seed=F.seed,
                max_new_tokens=F.max_new_tokens)
  study = common.open_run(lm, EXPERIMENT, config, key_extra=("k", "part"))
  probe = (Study(lm, experiment=EXPERIMENT + "_probe", model=F.model,
                 config=config, out_dir=F.out_dir, key_extra=("k",),
                 progress=False) if "C" in parts else None)
  n_units = len(ks) * len(modes) * (
      len(tasks) * ("A" in parts) + len(pairs) * ("B" in parts) +
      ("C" in parts))
  study.start(n_units, unit="unit")
  for k in ks:
    if "A" in parts:
      ablation.run_task_ablations(study, tasks=tasks, modes=modes, n=F.n,
                                  k=k, plan=lambda mode, tp: [],
                                  extra={"k": k, "part": "A"})
    if "B" in parts:
      sp.run_transplant(study, pairs=pairs, conditions=["last_demo_token"],
                        layers=layers_b, modes=modes, n=F.n, k=k,
                        seed=F.seed, timing=F.timing,
                        extra={"k": k, "part": "B"})
    if "C" in parts:
      captures = {}  # the modes share the prompts of this k
      for mode in modes:
        sp.run_probe(probe, tasks=tasks, layers=layers_c, mode=mode, n=F.n,
                     k=k, engine=study.engine(), captures=captures)
        study.tick(note=f"{mode} probe k={k}")
  rows = study.rows()
  study.finish()
  a = [r for r in rows if r.get("part") == "A"]
  heatmap(a, study.path / "accuracy_by_k.png", x="k", y="target_task",
          value="accuracy", panel=("mode",), xlabel="demos (k)",
          title="Part A: clean accuracy with k demos")
  b = [r for r in rows if r.get("part") == "B"]
  heatmap(b, study.path / "transfer_by_k.png", x="k", y="layer",
          value="transfer", panel=("mode", pair_label), xlabel="demos (k)",
          ylabel="layer", title="Part B: single-position transfer")
  if probe is not None:
    prow = probe.finish()
    heatmap(prow, probe.path / "probe_by_k.png", x="k", y="layer",
            value="probe_accuracy", panel=("mode",), xlabel="demos (k)",
            ylabel="layer", title="Part C: task probe at the first query "
            "token (mean split accuracy)")
  print(f"{len(rows)} rows under {study.path}")


if __name__ == "__main__":
  app.run(main)
