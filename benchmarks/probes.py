r"""Probe fitting: one vmapped Optax program vs a per-slice scikit-learn loop.

    python benchmarks/probes.py --model=gemma3-270m \
        --features=runs/probes_acc/localization/features_aligned.npz

Data: gemma3-270m residuals of 400 prompts (8 core tasks x 50, sampled
demos), every layer (the output of each of the 18 blocks) x 3 positions
(last_demo_answer_token, last_demo_separator, first_query_token) = 54 probe
slices of [400, 640]. By default they are read from the localization run's
``features_aligned.npz``; without it they are computed here.

Task: a multinomial logistic probe of the task identity (8 classes) per
slice, trained on one stratified 80/20 split (320 train / 80 test, seed 42),
standardised on the training rows, C = 1, tol 1e-4, max_iter 1000 -- the
same objective on both sides (scikit-learn's mean-loss lbfgs objective,
``l2 = 1/(C n_train)``):

* ours: ``icl_jax.probes.logistic.fit_logistic`` -- all 54 slices in one
  jit-compiled program (vmap over slices, L-BFGS in a while_loop). Timed cold
  (compile included) and warm (median of --repeats calls, compiled).
* scikit-learn: ``StandardScaler -> LogisticRegression(lbfgs)`` in a Python
  loop over the 54 slices (one thread per BLAS call as configured).

Reports both wall times, the ratio (sklearn / ours warm, and / ours cold),
test accuracies and their agreement, and the machine load (the machine is
shared; load average is recorded before and after). Writes
benchmarks/results/probes.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

from absl import app, flags

flags.DEFINE_string("model", "gemma3-270m", "model the features come from")
flags.DEFINE_string("features", "runs/probes_acc/localization/"
                    "features_aligned.npz",
                    "localization features (computed if missing)")
flags.DEFINE_list("positions", ["last_demo_answer_token",
                                "last_demo_separator", "first_query_token"],
                  "the 3 position sets")
flags.DEFINE_integer("n", 50, "prompts per task when computing features")
flags.DEFINE_integer("repeats", 3, "warm timed repetitions (median)")
flags.DEFINE_float("C", 1.0, "inverse regularisation (both sides)")
flags.DEFINE_float("tol", 1e-4, "tolerance (both sides)")
flags.DEFINE_integer("max_iter", 1000, "iteration cap (both sides)")
flags.DEFINE_string("out", str(Path(__file__).parent / "results" /
                               "probes.json"), "output JSON")
F = flags.FLAGS


def load_features():
  import numpy as np

  path = Path(F.features)
  if path.exists():
    z = np.load(path)
    feats = np.stack([z[f"feat__{p}"] for p in F.positions], axis=1)
    return feats, z["labels"], [int(l) for l in z["layers"]], str(path)
  import icl_jax
  from icl_jax import tasks as T
  from icl_jax.probes import features

  lm = icl_jax.load(F.model)
  specs, labels = [], []
  for name in T.CORE_TASKS:
    eps = T.make_episodes(T.get_task(name), F.n, k=5, demo_mode="sampled",
                          seed=0)
    specs += [e.prompt() for e in eps]
    labels += [name] * len(eps)
  ids, sets = features.layout_index_sets(lm.tokenizer, specs, F.positions)
  layers = list(range(lm.n_layers))
  f = features.collect(lm, ids, sets, residual_indices=[l + 1 for l in layers])
  feats = np.stack([f[p] for p in F.positions], axis=1)
  return feats, np.asarray(labels), layers, "computed"


def main(argv):
  del argv
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.WARNING)
  import jax
  import numpy as np
  import sklearn
  from sklearn.linear_model import LogisticRegression
  from sklearn.preprocessing import StandardScaler

  import icl_jax
  from icl_jax.probes import evaluation, logistic
  from icl_jax.probes import splits as splits_lib

  feats, labels, layers, source = load_features()
  n_l, n_p, m, d = feats.shape
  x = np.ascontiguousarray(feats.reshape(n_l * n_p, m, d), np.float32)
  classes, y = evaluation.encode_labels(labels)
  (tr_idx, te_idx), = splits_lib.stratified_shuffle_split(
      y, n_splits=1, test_size=0.2, seed=42)
  train = np.zeros(m, bool)
  train[tr_idx] = True
  g = x.shape[0]
  load_before = os.getloadavg()
  print(f"{g} slices of [{m}, {d}] ({n_l} layers x {n_p} positions), "
        f"{len(tr_idx)} train / {len(te_idx)} test; load {load_before}",
        flush=True)

  x_tr = np.ascontiguousarray(x[:, tr_idx])

  def fit_ours():
    probe = logistic.fit_logistic(x_tr, y[tr_idx], num_classes=len(classes),
                                  C=F.C, standardize=True,
                                  max_iter=F.max_iter, tol=F.tol,
                                  tol_norm="max")
    jax.block_until_ready(probe.w)
    return probe

  t0 = time.perf_counter()
  probe = fit_ours()
  cold = time.perf_counter() - t0
  warm = []
  for _ in range(F.repeats):
    t0 = time.perf_counter()
    probe = fit_ours()
    warm.append(time.perf_counter() - t0)
  pred = np.asarray(logistic.logistic_predict(probe, x))  # [G, M]
  acc_ours = (pred[:, te_idx] == y[te_idx]).mean(axis=1)
  print(f"ours: cold {cold:.2f}s, warm {statistics.median(warm):.2f}s "
        f"(iterations max {int(np.max(probe.num_iter))})", flush=True)

  t0 = time.perf_counter()
  acc_sk, iters, pred_sk, loss_sk = [], [], [], []
  l2 = 1.0 / (F.C * len(tr_idx))
  for s in range(g):
    scaler = StandardScaler().fit(x[s, tr_idx])
    clf = LogisticRegression(C=F.C, max_iter=F.max_iter, tol=F.tol)
    clf.fit(scaler.transform(x[s, tr_idx]), y[tr_idx])
    p = clf.predict(scaler.transform(x[s]))
    pred_sk.append(p)
    acc_sk.append(float((p[te_idx] == y[te_idx]).mean()))
    iters.append(int(np.max(clf.n_iter_)))
    # Objective of sklearn's solution in our (= sklearn's mean) form.
    z = scaler.transform(x[s, tr_idx])
    logit = z @ clf.coef_.T + clf.intercept_
    logit -= logit.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logit).sum(axis=1))
    ce = lse - logit[np.arange(len(tr_idx)), y[tr_idx]]
    loss_sk.append(float(ce.mean() + 0.5 * l2 * np.sum(clf.coef_ ** 2)))
  t_sk = time.perf_counter() - t0
  pred_sk = np.stack(pred_sk)
  acc_sk = np.asarray(acc_sk)
  load_after = os.getloadavg()
  print(f"sklearn loop: {t_sk:.2f}s (iterations max {max(iters)})",
        flush=True)
  w = statistics.median(warm)
  result = {
      "task": "multinomial logistic probe of task identity (8 classes) per "
              "(layer, position) slice, one stratified 80/20 split",
      "model": F.model, "features": source,
      "slices": g, "layers": layers, "positions": list(F.positions),
      "n_examples": int(m), "n_train": int(len(tr_idx)),
      "n_test": int(len(te_idx)), "d_model": int(d),
      "settings": {"C": F.C, "l2_mean_objective": l2, "tol": F.tol,
                   "max_iter": F.max_iter, "standardize": True,
                   "ours": "optax.lbfgs (zoom line search), vmap over "
                           "slices, one jit program; stop at max |grad| < "
                           "tol (tol_norm='max')",
                   "sklearn": "StandardScaler + LogisticRegression(lbfgs) "
                              "per slice; stop at max |proj grad| < tol"},
      "seconds": {"ours_cold_incl_compile": cold, "ours_warm_median": w,
                  "ours_warm_all": warm, "sklearn_loop": t_sk},
      "ratio_sklearn_over_ours_warm": t_sk / w,
      "ratio_sklearn_over_ours_cold": t_sk / cold,
      "agreement": {
          "test_accuracy_ours_mean": float(acc_ours.mean()),
          "test_accuracy_sklearn_mean": float(acc_sk.mean()),
          "max_abs_test_accuracy_diff": float(np.max(np.abs(acc_ours -
                                                            acc_sk))),
          "prediction_agreement_all_rows": float((pred == pred_sk).mean()),
          "objective_ours_minus_sklearn_max": float(np.max(
              np.asarray(probe.loss) - np.asarray(loss_sk))),
          "objective_rel_diff_max": float(np.max(
              np.abs(np.asarray(probe.loss) - np.asarray(loss_sk)) /
              np.asarray(loss_sk))),
          "iterations_ours_max": int(np.max(probe.num_iter)),
          "iterations_ours_sum": int(np.sum(probe.num_iter)),
          "iterations_sklearn_max": int(max(iters)),
          "iterations_sklearn_sum": int(sum(iters)),
          "note": "under vmap every slice runs until the slowest has "
                  "converged (finished slices are frozen but still "
                  "computed): ours costs slices x max iterations, the "
                  "loop costs the sum",
      },
      "test_accuracy_by_slice": {
          "ours": np.round(acc_ours, 4).reshape(n_l, n_p).tolist(),
          "sklearn": np.round(acc_sk, 4).reshape(n_l, n_p).tolist()},
      "machine": {"platform": platform.platform(),
                  "cpu_count": os.cpu_count(),
                  "jax_devices": [str(dv) for dv in jax.devices()],
                  "load_average_before": list(load_before),
                  "load_average_after": list(load_after),
                  "note": "shared machine: other jobs were running; both "
                          "sides ran in the same process one after the "
                          "other"},
      "versions": {"jax": jax.__version__, "sklearn": sklearn.__version__,
                   "numpy": np.__version__, "icl_jax": icl_jax.__version__},
      "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
  }
  Path(F.out).parent.mkdir(parents=True, exist_ok=True)
  Path(F.out).write_text(json.dumps(result, indent=1))
  print(json.dumps({k: result[k] for k in (
      "seconds", "ratio_sklearn_over_ours_warm",
      "ratio_sklearn_over_ours_cold", "agreement")}, indent=1))


if __name__ == "__main__":
  app.run(main)
