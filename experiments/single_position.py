r"""exp3 single-position transplant and exp5 its layer sweep.

    python experiments/single_position.py --experiment=transplant \
        --model=gemma3-270m --n=10 --layers=study
    python experiments/single_position.py --experiment=layer_sweep --n=10

A task vector (the mean over N source prompts of the residual after block L
at the source prompt's own `last_demo_token`) replaces the target prompt's
residual at the target's own position (protocol 8.3, 8.5).

  transplant  (exp3): all 64 ordered pairs of the 8 core tasks (diagonal
              included) plus per-task controls (no intervention, a zero
              vector, a random direction at the mean task-vector norm).
              The original ran layer 14 of 28 only (`--layers=study`).
  layer_sweep (exp5): the four pairs uppercase->sentiment,
              linear_2x->pattern_completion, sentiment->linear_2x,
              first_letter->antonym at every layer; summary.json holds the
              localization index (variance over layers) and peak layer.

faithful: the study's positions (`last_demo_token` = the "\n\n" separator on
Llama/Gemma), decoder D2 (only the first generated token is patched),
faithful scorers. aligned: the last demo's final answer token, patched K/V
persist for the whole answer (like the multi-position experiments), strict
scorers. `--timing` overrides the decoder in both modes.

--layers: all (default), study (this experiment's original grid, scaled to
the model's depth) or a comma list. Results: <out_dir>/<experiment>/.
"""

from __future__ import annotations

import itertools

from absl import app, flags

from experiments import common
from icl_jax.studies.modes import parse_modes
from icl_jax.studies.study import parse_pairs

EXP5_PAIRS = (("uppercase", "sentiment"), ("linear_2x", "pattern_completion"),
              ("sentiment", "linear_2x"), ("first_letter", "antonym"))
common.define_common_flags(default_pairs=EXP5_PAIRS, default_n=10)
flags.DEFINE_enum("experiment", "transplant", ["transplant", "layer_sweep"],
                  "exp3 (all core pairs + controls) or exp5 (4 pairs)")
flags.DEFINE_list("conditions", ["last_demo_token"],
                  "single positions: last_demo_token, separator_after_demo, "
                  "first_query_token")
common.define_timing_flag("decoder of the patch: study = D2 (first_token) "
                          "in faithful mode, prefill in aligned mode")
flags.DEFINE_boolean("controls", None, "exp3's per-task controls (default: "
                     "on for transplant, off for layer_sweep)")
F = flags.FLAGS


def main(argv):
  del argv
  from absl import logging as absl_logging

  from icl_jax.studies import single_position as sp
  from icl_jax.studies.study import check_choices
  from icl_jax.analysis.heatmaps import heatmap, pair_label
  from icl_jax.studies.modes import SINGLE_POSITION
  from icl_jax.tasks import CORE_TASKS

  absl_logging.set_verbosity(absl_logging.WARNING)
  exp = F.experiment
  if exp == "transplant" and not F["pairs"].present:
    pairs = list(itertools.product(CORE_TASKS, CORE_TASKS))  # 64, diagonal
  else:
    pairs = parse_pairs(F.pairs)
  conditions = check_choices(F.conditions, SINGLE_POSITION,
                                    "--conditions")
  modes = parse_modes(F.mode)
  controls = (exp == "transplant") if F.controls is None else F.controls
  control_tasks = list(dict.fromkeys(t for p in pairs for t in p))
  lm, layers = common.load_model_and_layers(exp)
  config = dict(model=F.model, experiment=exp, pairs=[list(p) for p in pairs],
                layers=layers, modes=modes, n=F.n, conditions=conditions,
                timing=F.timing, controls=controls, seed=F.seed,
                max_new_tokens=F.max_new_tokens)
  study = common.open_run(lm, exp, config)
  study.start(len(modes) * (len(pairs) + (len(control_tasks) if controls
                                          else 0)), unit="pair")
  # exp3 computed one task vector per task at start-up; exp5 per pair.
  sp.run_transplant(study, pairs=pairs, conditions=conditions, layers=layers,
                    modes=modes, n=F.n, seed=F.seed, timing=F.timing,
                    source_calls="once" if exp == "transplant"
                    else "per_pair")
  extra = {}
  if controls:
    norms = sp.run_controls(study, tasks=control_tasks, layers=layers,
                            modes=modes, n=F.n, condition=conditions[0],
                            seed=F.seed, timing=F.timing)
    extra["mean_task_vector_norm"] = norms
  rows = study.rows()
  pair_rows = [r for r in rows if not r["condition"].startswith("control")]
  extra["localization"] = sp.localization(pair_rows)
  extra["mean_offdiagonal_transfer"] = sp.offdiagonal_mean(pair_rows)
  study.finish(extra)
  heatmap(pair_rows, study.path / "transfer_by_layer.png", x="layer",
          y=pair_label, value="transfer", panel=("mode", "condition",
                                                 "timing"),
          xlabel="layer (block output)", title=f"{exp} transfer, {F.model}")
  mid = min(layers, key=lambda l: abs(l - lm.n_layers / 2))
  heatmap([r for r in pair_rows if r["layer"] == mid],
          study.path / "transfer_matrix.png", x="target_task",
          y="source_task", value="transfer",
          panel=("mode", "condition", "layer"), xlabel="target",
          ylabel="source", title=f"transfer matrix at layer {mid}")
  if controls:
    heatmap([r for r in rows if r["condition"].startswith("control")
             and r["layer"] is not None], study.path / "controls.png",
            x="layer", y="target_task", value="accuracy",
            panel=("mode", "condition"), title="controls: accuracy")
  print(f"{len(rows)} rows under {study.path}")


if __name__ == "__main__":
  app.run(main)
