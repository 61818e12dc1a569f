r"""exp12: layer skipping (a block's output replaced by its input).

    python experiments/layer_skip.py --model=gemma3-270m --n=15

  Part A: skip one block L (every layer in --layers) for every task.
  Part B: skip a group of consecutive blocks for --group_tasks; the
          original's early 0-7 / mid 8-15 / late 16-23 / final 24-27 (of 28
          layers) scaled to the model (round(b * n / 28)), or --skip_groups.

faithful (as run, protocol 8.12): the skip applies on the prompt forward
only -- the skipped block still computes its K/V from its real input and
runs normally for generated tokens; drop = baseline acc - acc (absolute);
faithful scorers. aligned: the block is removed for the whole generation
(skipped for generated tokens too), relative drop, strict scorers.
One-block skips run on the vectorized engine; group skips on
`interventions.blockwise` (each skipped block computes K/V from the input it
actually receives, as the original's chained hooks did).
`--layers=study` = every second layer (the original's Part A grid). The plan
is `icl_jax.studies.ablation_plans.skip_plan`.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common

CORE = ["uppercase", "first_letter", "repeat_word", "length", "linear_2x",
        "sentiment", "antonym", "pattern_completion"]
common.define_common_flags(default_n=15)
flags.DEFINE_list("tasks", CORE, "Part A tasks (8 core)")
flags.DEFINE_list("group_tasks", CORE[:4], "Part B tasks (the original: "
                  "first four); empty for no Part B")
flags.DEFINE_string("skip_groups", None, "Part B groups as name:a-b,... "
                    "(inclusive); default: the original's four, scaled")
F = flags.FLAGS
EXPERIMENT = "layer_skip"


def main(argv):
  del argv
  from icl_jax.analysis.heatmaps import heatmap
  from icl_jax.studies import ablation, ablation_plans
  from icl_jax.studies.layers import parse_layers
  from icl_jax.studies.study import parse_tasks

  tasks, modes = common.parse_task_flags()
  group_tasks = parse_tasks(F.group_tasks) if F.group_tasks else []
  lm = common.load_model(EXPERIMENT)
  L = lm.n_layers
  layers = parse_layers(F.layers, L, EXPERIMENT)
  groups = ablation.skip_groups(L, F.skip_groups) if group_tasks else {}
  config = dict(model=F.model, tasks=tasks, group_tasks=group_tasks,
                groups=groups, layers=layers, modes=modes, n=F.n,
                max_new_tokens=F.max_new_tokens)
  study = common.open_run(lm, EXPERIMENT, config)
  plan = ablation_plans.skip_plan(layers=layers, tasks=tasks,
                                  group_tasks=group_tasks, groups=groups,
                                  n_layers=L, d_model=lm.config.d_model)
  all_tasks = list(dict.fromkeys(tasks + group_tasks))
  study.start(len(modes) * len(all_tasks), unit="task")
  ablation.run_task_ablations(study, tasks=all_tasks, modes=modes, n=F.n,
                              plan=plan)
  rows = study.rows()
  study.finish({"skip_groups": groups})
  heatmap([r for r in rows if r["condition"] == "skip"],
          study.path / "drop_by_layer.png", x="layer", y="target_task",
          value="disruption", panel=("mode", "timing"), vmin=-1, vmax=1,
          cmap="RdBu_r", xlabel="skipped block",
          title="accuracy drop after skipping one block (faithful: "
                "absolute, aligned: relative)")
  heatmap([r for r in rows if r["condition"].startswith("skip_group")],
          study.path / "drop_by_group.png", x="condition", y="target_task",
          value="disruption", panel=("mode",), vmin=-1, vmax=1,
          cmap="RdBu_r", title="accuracy drop after skipping a group")
  print(f"{len(rows)} rows under {study.path}")


if __name__ == "__main__":
  app.run(main)
