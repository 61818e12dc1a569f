r"""exp6: task ontology from task vectors (protocol 8.6).

    python experiments/ontology.py --model=gemma3-270m --layers=study

Per task (the 8 core tasks, `--tasks`), N prompts (fixed demos + the first
RNG call's test inputs); the task vector at a layer is the mean over the
prompts of the residual after that block at one position:

  faithful: the study's `last_demo_token` (`get_position_index`: on Llama
            and Gemma the "\n\n" separator before the query -- identical for
            every prompt of a task);
  aligned:  the last demo's final answer token (`last_demo_answer_token`).

`--position` overrides (faithful: last_demo_token, separator_after_demo,
first_query_token; aligned: any layout position set with one token).

Per (mode, layer): cosine similarity matrix (tasks alphabetical), average
linkage on cosine distance (as run; the paper says Ward), PCA (2/3 comps),
silhouette (cosine) w.r.t. the 6 regime labels with a 1000-permutation test
(RandomState(42)), mean within- vs between-regime cosine. Every layer by
default; the original used layer 14 of 28 (`--layers=study` = depth 0.5).

No generation: one forward per prompt. Rows (one per mode x layer) carry
the statistics; plots: silhouette_by_layer.png, similarity_<mode>.png,
pca_<mode>.png at the study layer. See `icl_jax/studies/ontology.py`.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common
from icl_jax.tasks import CORE_TASKS

common.define_model_flags(
    10, "prompts per task",
    layers_help="'all', 'study' (depth 0.5, the original's layer 14 of 28) "
                "or a comma list",
    seed_help="unused (fixed demos); kept for the common flag set")
flags.DEFINE_list("tasks", list(CORE_TASKS), "tasks (>= 3)")
flags.DEFINE_string("position", None, "position override (see docstring)")
flags.DEFINE_integer("permutations", 1000, "label permutations",
                     lower_bound=1)
F = flags.FLAGS


def main(argv):
  del argv
  from icl_jax.analysis.results import hold_run_dir
  from icl_jax.studies import layers as layers_lib
  from icl_jax.studies import modes as modes_lib
  from icl_jax.studies import ontology, study

  study.quiet_logs()
  modes = modes_lib.parse_modes(F.mode)
  n = study.check_positive(F.n, "--n")
  tasks = ontology.check_options(F.tasks, modes, F.position)
  layers_lib.check_layers_early(F.layers, F.model, ontology.study_layers)
  hold_run_dir(F.out_dir, ontology.EXPERIMENT)  # a 2nd process: refused now
  lm = common.load(F.model, F.dtype)
  layers = layers_lib.parse_layers(F.layers, lm.n_layers,
                                   ontology.study_layers)
  rows, path = ontology.run(lm, model=F.model, modes=modes, tasks=tasks, n=n,
                            layers=layers, position=F.position,
                            permutations=F.permutations, dtype=F.dtype,
                            out_dir=F.out_dir)
  text = ontology.format_rows(rows, layers, lm.n_layers)
  if text:
    print(text)
  print(f"results under {path.resolve()}")


if __name__ == "__main__":
  app.run(main)
