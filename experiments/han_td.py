r"""Task decodability on Han et al.'s own task families (POS, bitwise), and
whether it predicts ICL accuracy.

    python experiments/han_td.py --model=gemma3-270m --n=100 --shots=1,4,10

Per family and shot count: N prompts per class (6 tasks + Null, queries from
the eval split, demos from train; icl_jax.tasks.han), the residual after
every block at the last prompt token (the "->" before the answer);
leave-one-out 10-NN TD (Euclidean; cosine as a check) with Null in the kNN
set, TD_z per class, mean TD over the 6 tasks, a shuffled-label null band,
pairwise 2-class TD matrices (Han Fig. 23), a held-out logistic probe; greedy
exact-match accuracy of the same prompts. Then TD_z at the 4-shot peak layer
vs accuracy (6 tasks x shots = 18 points): R^2 of the least-squares line with
a bootstrap-over-tasks interval, next to Han's table.

The POS family needs the Penn Treebank sample (CC-BY-NC-4.0), fetched by
scripts/setup_env.sh with npm; --families=bitwise runs without it.

Outputs: <out_dir>/han_td/results.jsonl, summary.json (curves, peaks, R^2,
pairwise matrix at the peak, Han's reference numbers, the assumptions),
td_by_layer_<family>.png, td_vs_accuracy_<family>.png,
features_<family>_<k>shot.npz. See icl_jax/studies/han_td.py.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common
from icl_jax.studies import han_td
from icl_jax.studies import task_decodability as td
from icl_jax.studies.layers import parse_layers

common.define_model_flags(100, "prompts per class and shot count (Han: 100)",
                          mode=False, layers_help=common.LIST_LAYERS_HELP,
                          seed_help="seed of the sampled prompts")
flags.DEFINE_list("families", ["pos", "bitwise"], "Han task families")
flags.DEFINE_list("shots", ["1", "4", "10"], "demos per prompt")
flags.DEFINE_integer("peak_shots", 4,
                     "shot count whose mean-TD peak layer is used for the "
                     "TD-vs-accuracy fit (Han: 4)", lower_bound=1)
common.define_td_flags()
flags.DEFINE_integer("null_perms", 20, "label permutations of the null band",
                     lower_bound=1)
flags.DEFINE_integer("max_new_tokens", 8, "generated tokens per prompt",
                     lower_bound=1)
F = flags.FLAGS


def main(argv):
  del argv
  from icl_jax.studies.study import quiet_logs
  from icl_jax.tasks import han

  quiet_logs()
  for family in F.families:
    han.family_tasks(family)  # unknown names fail before the model loads
  shots = td.parse_shots(F.shots)
  lm = common.load_model(han_td.EXPERIMENT)
  layers = parse_layers(F.layers, lm.n_layers)
  results = han_td.run(
      lm, model=F.model, families=list(F.families), shots=shots, n=F.n,
      layers=layers, seed=F.seed, knn=F.knn, peak_shots=F.peak_shots,
      out_dir=F.out_dir, null_perms=F.null_perms, logistic=F.logistic,
      logistic_max_iter=F.logistic_max_iter, batch_size=F.batch_size,
      max_new_tokens=F.max_new_tokens)
  print(han_td.format_report(results))


if __name__ == "__main__":
  app.run(main)
