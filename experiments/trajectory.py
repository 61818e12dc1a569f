r"""exp7 (trajectory): how the task representation evolves across layers.

    python experiments/trajectory.py --model=gemma3-270m --n=20 --mode=both

Protocol section 8.7: 20 prompts per core task (160), the hidden state at
``last_demo_token`` after every block; a logistic probe
(LogisticRegression(C=1, lbfgs, multinomial, max_iter=1000), unscaled
features) fitted *and scored on the same 160 samples* (training accuracy);
representational change between consecutive layers
``1 - mean_i cos(h_L[i], h_L+1[i])``; crystallization = first layer with
accuracy >= 0.8 / 0.9 / 0.95; a separate probe for the "procedural" regime
(uppercase, first_letter, repeat_word: the only regime with >= 2 tasks).

Modes:

* faithful -- as run: fixed demos, the study's ``last_demo_token`` (the
  "\n\n" token, protocol 5.1). Its vector is identical for every prompt of a
  task (it precedes the query), so the training accuracy is 1.0 at every
  layer and "crystallization" is layer 0 by construction.
* aligned -- sampled demos per prompt, ``last_demo_answer_token``.

Both modes report the study's training accuracy and a held-out accuracy
(5-fold, the same C=1 probe; pooled, with a Wilson CI). With d_model >= 160
samples any non-duplicated data is linearly separable, so the training
accuracy is ~1.0 whatever the features encode; the held-out accuracy is the
informative number.

Outputs: <out_dir>/trajectory/results.jsonl (row per mode x subset x probe
x layer: accuracy, n, cosine change to the next layer), summary.json,
trajectory.png.
"""

from __future__ import annotations

import time

from absl import app, flags

from experiments import common
from icl_jax.studies.layers import parse_layers
from icl_jax.studies.modes import parse_modes

common.define_probe_flags(20, "prompts per task (the study: 20)")
F = flags.FLAGS

EXPERIMENT = "trajectory"
POSITION = {"faithful": "last_demo_token", "aligned": "last_demo_answer_token"}
PROCEDURAL = ("uppercase", "first_letter", "repeat_word")
THRESHOLDS = (0.8, 0.9, 0.95)
# Protocol 8.7 (Llama-3.2-3B, results/exp7/representational_change.csv):
# cosine distance L -> L+1 for L = 0..26; training accuracy 1.0 everywhere.
STUDY_COS_CHANGE = (.212, .162, .220, .223, .217, .257, .254, .233, .198,
                    .186, .236, .180, .172, .197, .160, .108, .106, .089,
                    .081, .066, .086, .053, .060, .083, .066, .084, .359)


def build(n, k, mode, seed, tokenizer):
  from icl_jax import tasks as T
  from icl_jax.probes import features

  specs, labels = [], []
  for name in T.CORE_TASKS:
    eps = T.make_episodes(T.get_task(name), n, k=k,
                          demo_mode="fixed" if mode == "faithful"
                          else "sampled", seed=seed)
    specs += [e.prompt() for e in eps]
    labels += [name] * len(eps)
  pos = POSITION[mode]
  if mode == "faithful":
    ids, sets = features.faithful_index_sets(
        tokenizer, [s.text for s in specs], [pos])
  else:
    ids, sets = features.layout_index_sets(tokenizer, specs, [pos])
  return labels, ids, sets


def probe_curves(feats, labels):
  """{(subset, probe): values} for the "all" and "procedural" subsets.

  One compiled program per subset fits 5 cross-validation folds plus one
  all-rows probe (the study's training accuracy), C=1 on unscaled features,
  max_iter 1000 (as run).
  """
  import numpy as np

  from icl_jax.probes import evaluation, logistic
  from icl_jax.probes import splits as splits_lib

  labels = np.asarray(labels)
  subsets = {"all": np.ones(len(labels), bool),
             "procedural": np.isin(labels, PROCEDURAL)}
  out = {}
  for subset, sel in subsets.items():
    x, y = feats[:, sel], labels[sel]
    classes, ids = evaluation.encode_labels(y)
    folds = splits_lib.stratified_kfold(ids, n_splits=5, seed=0)
    train, test = splits_lib.split_masks(folds, len(ids))
    masks = np.concatenate([train, np.ones((1, len(ids)), bool)])
    _, pred = logistic.fit_predict(x, ids, masks, num_classes=len(classes),
                                   C=1.0, standardize=False, max_iter=1000,
                                   tol=1e-5)
    out[(subset, "train_accuracy")] = (pred[-1] == ids).mean(axis=-1)
    ev = evaluation.evaluate_predictions(pred[:-1], ids, test, classes)
    out[(subset, "heldout_accuracy")] = (ev.accuracy, ev.ci_low, ev.ci_high,
                                         ev.n_total)
  return out


def plot(rows, path, model, n_layers):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
  for key in sorted({(r["mode"], r["source_task"], r["probe"])
                     for r in rows}):
    pts = sorted((r["layer"], r["accuracy"]) for r in rows
                 if (r["mode"], r["source_task"], r["probe"]) == key)
    a1.plot([p[0] for p in pts], [p[1] for p in pts], marker=".",
            ls="-" if key[0] == "faithful" else "--",
            label=f"{key[0]} {key[1]} {key[2]}")
  a1.axhline(1 / 8, color="k", lw=0.6, ls=":")
  a1.set_ylim(0, 1.05)
  a1.set_xlabel("layer (block output)")
  a1.set_ylabel("probe accuracy")
  a1.legend(fontsize=6)
  a1.grid(alpha=0.3)
  for mode in dict.fromkeys(r["mode"] for r in rows):
    pts = sorted((r["layer"], r["cos_change_to_next"]) for r in rows
                 if r["mode"] == mode and r["source_task"] == "all"
                 and r["probe"] == "train_accuracy"
                 and r["cos_change_to_next"] is not None)
    a2.plot([p[0] for p in pts], [p[1] for p in pts], marker=".",
            label=f"{mode} ({POSITION[mode]})")
  xs = [l * n_layers / (len(STUDY_COS_CHANGE) + 1)
        for l in range(len(STUDY_COS_CHANGE))]
  a2.plot(xs, STUDY_COS_CHANGE, color="gray", ls=":",
          label="study (Llama-3B, depth-scaled)")
  a2.set_xlabel("layer L (change L -> L+1)")
  a2.set_ylabel("1 - mean cos")
  a2.legend(fontsize=7)
  a2.grid(alpha=0.3)
  fig.suptitle(f"exp7 trajectory on {model}", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def run(lm, *, model, mode_list, n, k, layers, seed, out_dir, batch_size=16,
        progress=True):
  import numpy as np

  from icl_jax.analysis.results import RunDir
  from icl_jax.probes import diagnostics, features

  config = dict(model=model, modes=mode_list, n=n, k=k, layers=layers,
                seed=seed)
  rd = RunDir(out_dir, EXPERIMENT, config, key_extra=("probe",), lm=lm)
  done_modes = {r["mode"] for r in rd.rows() if r["model"] == model}
  timings = {}
  for mode in mode_list:
    if mode in done_modes:
      continue
    t0 = time.time()
    labels, ids, sets = build(n, k, mode, seed, lm.tokenizer)
    pos = POSITION[mode]
    if progress:
      print(f"[{mode}] {len(ids)} prompts at {pos}, {len(layers)} layers",
            flush=True)
    feats = features.collect(lm, ids, sets,
                             residual_indices=[l + 1 for l in layers],
                             batch_size=batch_size, progress=progress)[pos]
    change = diagnostics.cosine_change(feats)
    spread = diagnostics.class_spread(feats, labels)
    if progress:
      # One compiled L-BFGS program per subset (5 folds + 1 all-rows fit,
      # every layer at once): no per-step progress to show.
      print(f"[{mode}] fitting logistic probes: 2 subsets x 6 fits x "
            f"{len(layers)} layers, max_iter 1000 (minutes on a CPU)",
            flush=True)
    curves = probe_curves(feats, labels)
    rows = []
    for (subset, probe), val in curves.items():
      ci = None
      if probe == "heldout_accuracy":
        acc, lo, hi, n_total = val
      else:
        acc, n_total = val, int(sum(
            1 for x in labels if subset == "all" or x in PROCEDURAL))
      for i, layer in enumerate(layers):
        if probe == "heldout_accuracy":
          ci = [float(lo[i]), float(hi[i])]
        rows.append({
            "experiment": EXPERIMENT, "model": model, "mode": mode,
            "source_task": subset, "target_task": subset, "layer": layer,
            "condition": pos, "probe": probe, "accuracy": float(acc[i]),
            "ci": ci, "n": int(n_total),
            "cos_change_to_next": (float(change[i]) if i < len(change)
                                   else None),
            "distinct_per_class": float(spread["distinct_per_class"][i]),
        })
    rd.append(rows)
    timings[mode] = time.time() - t0
  rows = [r for r in rd.rows() if r["model"] == model]
  summary = {}
  for mode in mode_list:
    s = {}
    for key in sorted({(r["source_task"], r["probe"]) for r in rows
                       if r["mode"] == mode}):
      pts = sorted((r["layer"], r["accuracy"]) for r in rows
                   if r["mode"] == mode
                   and (r["source_task"], r["probe"]) == key)
      s[f"{key[0]}/{key[1]}"] = {
          "by_layer": [round(a, 4) for _, a in pts],
          "crystallization": {str(t): diagnostics.crystallization_layer(
              [a for _, a in pts], [l for l, _ in pts], t)
                              for t in THRESHOLDS}}
    s["cos_change_to_next"] = [
        round(r["cos_change_to_next"], 4) for r in sorted(
            (r for r in rows if r["mode"] == mode and r["source_task"] ==
             "all" and r["probe"] == "train_accuracy"
             and r["cos_change_to_next"] is not None),
            key=lambda r: r["layer"])]
    summary[mode] = s
  summary["study_reference"] = {
      "train_accuracy": "1.0 at all 28 layers (crystallization layer 0)",
      "cos_change_to_next_llama3b": list(STUDY_COS_CHANGE)}
  plot(rows, rd.path / "trajectory.png", model, lm.n_layers)
  rd.write_summary({"timings_s": timings, "results": summary})
  return rows, summary


def main(argv):
  del argv
  from icl_jax.studies.study import quiet_logs

  quiet_logs()
  lm = common.load_model(EXPERIMENT)
  layers = parse_layers(F.layers, lm.n_layers)
  mode_list = parse_modes(F.mode)
  _, summary = run(lm, model=F.model, mode_list=mode_list, n=F.n, k=F.k,
                   layers=layers, seed=F.seed, out_dir=F.out_dir,
                   batch_size=F.batch_size)
  for mode in mode_list:
    print(f"\n[{mode}]")
    for key, v in summary[mode].items():
      print(f"  {key}: {v}")


if __name__ == "__main__":
  app.run(main)
