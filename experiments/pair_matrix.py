r"""exp29: the 56-pair transfer matrix (protocol 8.21, reference 9.7).

    python experiments/pair_matrix.py --model=gemma3-270m --layers=study

exp8's protocol with the `all_demo` condition for every ordered pair of the
8 core tasks (itertools.permutations order; each pair advances the source's
and then the target's RNG, as in the original), N=10 target prompts, at
every layer (default) or `--layers=study` = layer_at_fraction(0.30) (the
original's layer 8 of Llama-3B).

Outputs under <out_dir>/pair_matrix/: results.jsonl, summary.json (per mode
and layer: mean transfer over the pairs and the >=0.5 / 0.1-0.49 / <0.1
split), transfer_matrix_<mode>.png (8x8 at the study layer and at the best
layer), transfer_matrix_<mode>_by_layer.png (one 8x8 panel per layer).
"""

from __future__ import annotations

import itertools

from absl import app, flags

from experiments import common
from icl_jax.tasks import CORE_TASKS

ALL_PAIRS = tuple(itertools.permutations(CORE_TASKS, 2))
common.define_common_flags(default_pairs=ALL_PAIRS, default_n=10)
common.define_conditions_flag(["all_demo"])
common.define_on_mismatch_flag()
F = flags.FLAGS
EXPERIMENT = "pair_matrix"


def main(argv):
  del argv
  from icl_jax.analysis.plots import pair_matrices
  from icl_jax.studies import pair_matrix, plans, setups
  from icl_jax.studies.layers import study_fraction_layer

  modes, pairs, n = common.parse_pair_flags()
  common.check_conditions(F.conditions, modes)
  st = common.open_pair_study(EXPERIMENT, modes, pairs, n,
                              dict(conditions=list(F.conditions)),
                              study_layers=study_fraction_layer)
  jobs = [plans.transfer_job(mode, setup, st.layers, F.conditions,
                             on_mismatch=F.on_mismatch)
          for mode in modes for setup in setups.setup_pairs(pairs, n,
                                                            seed=F.seed)]
  rows = st.run(jobs)
  summary = pair_matrix.summarize(rows, st.n_layers)
  pair_matrices(rows, st.path, F.model, st.n_layers, summary, CORE_TASKS)
  st.finish(summary)
  text = pair_matrix.format_summary(summary, len(st.layers))
  if text:
    print(text)
  print(f"results under {st.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
