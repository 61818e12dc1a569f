r"""exp2 (localization): which (layer, position) encodes the task identity.

    python experiments/localization.py --model=gemma3-270m --n=50 --mode=both

Protocol section 8.2: the 8 core tasks x N prompts (N=50 -> 400), the residual
stream after every block at three positions, a nearest-centroid probe of the
task identity scored on StratifiedShuffleSplit(3, test 20%, seed 42) (mean of
the 3 split accuracies; chance 1/8). A held-out logistic probe (5-fold,
C=1, standardised; L-BFGS capped at --logistic_max_iter iterations, which
separable slices such as the faithful demo positions always reach) is
reported beside it (--probes).

Modes:

* faithful -- the study as run: fixed demos (every prompt of a task has the
  same demo block), the study's positions from ``get_position_index``:
  last_demo_token, separator_after_demo (both the "\n\n" token after the
  last demo, protocol 5.1), first_query_token. The demo positions score a
  trivial 100%: they precede the query, so with causal attention their
  hidden state is the *same vector* for every prompt of a task; the probe
  separates 8 points. The run measures this (``distinct_per_class``,
  ``within_between``) and says so in summary.json.
* aligned -- sampled demos per prompt (seeded), positions from real token
  offsets: last_demo_answer_token (the last demo's final answer token: what
  "last_demo_token" meant), last_demo_separator, first_query_token,
  final_token (the ":" that predicts the answer). Demo-position vectors now
  vary within a task, so the curve is an honest measure.

Outputs: <out_dir>/localization/results.jsonl (one row per mode x probe x
position x layer: accuracy = the study's mean split accuracy, its std,
pooled held-out accuracy with a Wilson CI, n), summary.json (tables, best
cells, the why-trivial diagnosis), probe_accuracy.png, and
features_<mode>.npz (the probe features, reused by benchmarks/probes.py).
See `icl_jax/studies/localization.py`.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common
from icl_jax.studies import localization
from icl_jax.studies.layers import parse_layers
from icl_jax.studies.modes import parse_modes

common.define_probe_flags(50, "prompts per task (the study: 50)")
flags.DEFINE_list("probes", ["centroid", "logistic"],
                  "centroid (the study's) and/or logistic (5-fold, C=1)")
flags.DEFINE_integer("logistic_max_iter", 100,
                     "L-BFGS iteration cap of the logistic probe",
                     lower_bound=1)
flags.DEFINE_float("logistic_tol", 1e-3, "gradient-norm tolerance of it")
flags.DEFINE_bool("save_features", True,
                  "write features_<mode>.npz (and reuse it when re-run)")
F = flags.FLAGS


def main(argv):
  del argv
  from icl_jax.studies.study import quiet_logs

  quiet_logs()
  localization.check_probes(F.probes)
  lm = common.load_model(localization.EXPERIMENT)
  layers = parse_layers(F.layers, lm.n_layers)
  mode_list = parse_modes(F.mode)
  _, summary = localization.run(
      lm, model=F.model, mode_list=mode_list, n=F.n, k=F.k, layers=layers,
      seed=F.seed, probes=F.probes, out_dir=F.out_dir,
      batch_size=F.batch_size, save_features=F.save_features,
      logistic_max_iter=F.logistic_max_iter, logistic_tol=F.logistic_tol)
  text = localization.format_tables(summary, mode_list, F.probes)
  if text:
    print(text)


if __name__ == "__main__":
  app.run(main)
