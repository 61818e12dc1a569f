r"""exp10: demo-region zeroing, and a true attention knockout.

    python experiments/demo_zeroing.py --model=gemma3-270m --n=10

For each task's N prompts (5 fixed demos + the task's first test inputs):

  zero_demo      the residual after block L is zeroed at the demo positions
                 on the prompt forward (patched K/V persist) -- what the
                 original's "attention knockout" really did (protocol 8.10);
  knockout_demo  a true attention knockout: at block L, the query tokens
                 (and, with --knockout_generated, every generated token) may
                 not attend to the demo positions; nothing else changes
                 (`interventions.blockwise`). --knockout_window=w knocks
                 blocks [L, L + w) at once;
  zero_bos       control: only the BOS residual is zeroed (the original's
                 region included BOS, an attention sink; no control isolated
                 it). Skipped for tokenizers without BOS.

Demo positions: faithful = the study's [0, demo_end) (BOS and every demo
token but the final "\n\n"), disruption = baseline acc - acc (absolute),
faithful scorers; aligned = the layout's demo tokens (separators included,
BOS excluded), relative disruption (baseline - acc) / baseline, strict
scorers. Baseline = the same prompts' clean continuation. The original's
grid [4, 8, 12, 16, 20] (of 28) is `--layers=study`; default: every layer.
The plan is `icl_jax.studies.ablation_plans.zeroing_plan`.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common
from icl_jax.studies.ablation_plans import ZEROING_CONDITIONS as CONDITIONS

common.define_common_flags(default_n=10)
flags.DEFINE_list("tasks", ["uppercase", "first_letter", "repeat_word",
                            "length"], "tasks (the original: first four)")
flags.DEFINE_list("conditions", list(CONDITIONS), "edits to run")
flags.DEFINE_boolean("knockout_generated", True,
                     "the knockout also applies to generated tokens")
flags.DEFINE_integer("knockout_window", 1,
                     "blocks knocked out per cell: [L, L + window) (clipped "
                     "to the model); 1 = block L only", lower_bound=1)
F = flags.FLAGS
EXPERIMENT = "demo_zeroing"


def main(argv):
  del argv
  from icl_jax.analysis.heatmaps import heatmap
  from icl_jax.studies import ablation, ablation_plans
  from icl_jax.studies.study import check_choices

  tasks, modes = common.parse_task_flags()
  conditions = check_choices(F.conditions, CONDITIONS, "--conditions")
  lm, layers = common.load_model_and_layers(EXPERIMENT)
  if F.knockout_window < 1:
    raise ValueError("--knockout_window must be >= 1")
  config = dict(model=F.model, tasks=tasks, conditions=conditions,
                layers=layers, modes=modes, n=F.n,
                knockout_generated=F.knockout_generated,
                knockout_window=F.knockout_window,
                max_new_tokens=F.max_new_tokens)
  study = common.open_run(lm, EXPERIMENT, config)
  plan = ablation_plans.zeroing_plan(
      lm.tokenizer, layers=layers, conditions=conditions,
      d_model=lm.config.d_model, n_layers=lm.n_layers,
      knockout_window=F.knockout_window,
      knockout_generated=F.knockout_generated)
  study.start(len(modes) * len(tasks), unit="task")
  ablation.run_task_ablations(study, tasks=tasks, modes=modes, n=F.n,
                              plan=plan)
  rows = study.rows()
  study.finish()
  edits = [r for r in rows if r["condition"] != "baseline"]
  heatmap(edits, study.path / "disruption.png", x="layer", y="target_task",
          value="disruption", panel=("mode", "condition"), vmin=-1, vmax=1,
          cmap="RdBu_r", xlabel="layer (block)",
          title="disruption (faithful: absolute, aligned: relative)")
  heatmap(edits, study.path / "accuracy.png", x="layer", y="target_task",
          value="accuracy", panel=("mode", "condition"), xlabel="layer",
          title="accuracy under the edit")
  print(f"{len(rows)} rows under {study.path}")


if __name__ == "__main__":
  app.run(main)
