r"""exp19: does surface template similarity predict transfer? (8.17)

    python experiments/template_similarity.py --out_dir=runs/gemma3-270m

No model. Per task, 10 surface features of its 5 demo pairs
(`icl_jax/analysis/similarity.py`); pair similarity = cosine of the feature
vectors; Pearson r (two-sided t-test p, bootstrap CI with 10,000 pair
resamples, RandomState(42)) against transfer rates over the ordered pairs:

  * the original's exp29 matrix (Llama-3B, layer 8): reproduces r = -0.0536,
    CI [-0.2635, 0.1537];
  * the original's "activation similarity" (exp6 layer-14 cosine vs exp29),
    which the paper quotes as r = 0.31 but never computed: 0.378;
  * our own exp29 rows found in <out_dir>/pair_matrix/results.jsonl (and
    --transfer_results), per model, mode and layer; and, where
    <out_dir>/ontology/results.jsonl has the same model/mode/layer, our
    activation-similarity correlation.

Writes <out_dir>/template_similarity/: results.jsonl (one row per
correlation), task_features.csv, pair_similarity.csv, summary.json,
similarity_vs_transfer.png. Re-running recomputes everything (cheap). See
`icl_jax/studies/template_similarity.py`.
"""

from __future__ import annotations

import itertools

from absl import app, flags

from icl_jax.tasks import CORE_TASKS

flags.DEFINE_string("out_dir", "runs", "results root (reads pair_matrix/ and "
                    "ontology/ there; writes template_similarity/)")
flags.DEFINE_string("model", None, "only use our results of this model "
                    "(default: every model found)")
flags.DEFINE_enum("mode", "both", ["faithful", "aligned", "both"],
                  "modes of our results to use")
flags.DEFINE_string("pairs", ",".join(
    f"{s}:{t}" for s, t in itertools.permutations(CORE_TASKS, 2)),
                    "ordered pairs to correlate over")
flags.DEFINE_list("transfer_results", [],
                  "extra results.jsonl files with transfer rows")
flags.DEFINE_string("condition", "all_demo", "condition of our transfer rows")
F = flags.FLAGS


def main(argv):
  del argv
  from icl_jax.studies import modes as modes_lib
  from icl_jax.studies import study
  from icl_jax.studies import template_similarity as ts

  pairs = study.parse_pairs(F.pairs)
  modes = modes_lib.parse_modes(F.mode)
  rows, path = ts.run(pairs=pairs, modes=modes, out_dir=F.out_dir,
                      model_filter=F.model, condition=F.condition,
                      transfer_results=F.transfer_results)
  text = ts.format_rows(rows)
  if text:
    print(text)
  print(f"results under {path.resolve()}")


if __name__ == "__main__":
  app.run(main)
