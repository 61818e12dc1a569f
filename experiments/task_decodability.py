r"""Task decodability (Han et al.) per layer, task and shot count, and its
correlation with ICL accuracy.

    python experiments/task_decodability.py --model=gemma3-270m --n=40 \
        --shots=1,4,10

Per shot count k and core task: N prompts with k demos sampled per prompt
(seeded; the same N queries at every k, so only the demonstrations change).
TD = leave-one-out kNN (k=10, Euclidean, majority vote) accuracy of the task
identity from the residual stream at the token before the answer (the final
":" of the query's "Output:"), after every block. ``TD_z`` = fraction of
task-z prompts classified as z; mean TD = mean over tasks. ICL accuracy: the
same prompts, greedy, strict scorer (exact answer after strip + first line;
the study's faithful scorer is recorded too).

Family TD (--family, default the 4 word tasks that share their inputs):
the same kNN TD computed among the family's prompts only -- Han et al.'s
setting of confusable tasks -- with its own peak layer and correlation
(4 tasks x 3 shot counts = 12 points), from the saved features.

Correlation (Han et al. section 4.2): one point per (task, shot count), x =
``TD_z`` at the peak layer of mean TD at ``--peak_shots`` shots (Han et al.
pick the layer at their default 4 shots and use it throughout), y = strict
accuracy; Pearson r, p, R^2 of the least-squares line and a bootstrap CI of r.
Also reported: the same with the per-shot peak layer, with TD averaged over
layers, and r at every layer.

Deviations from Han et al. (documented in summary.json):
* tasks: the study's 8 core tasks, not Han's 6 POS / 6 bitwise tasks. Only
  the 4 word tasks (uppercase, first_letter, repeat_word, length) share an
  input distribution (and here even the same queries and demo inputs); the
  others are told apart by their inputs alone, so TD for them is easy even
  at layer 0. No Null class.
* N = --n prompts per task (Han: 100); 8 tasks x 3 shot counts = 24 points
  (Han: 6 x 3 = 18 per family).
* prompt template: the study's "Input: x\nOutput: y\n\n" (Han's is not
  given).

Outputs: <out_dir>/task_decodability/results.jsonl (TD rows per shot x layer
x task incl. "mean"; accuracy rows per shot x task; optional held-out
logistic probe rows), summary.json (curves, peak layers, correlations, Han's
reference numbers, the family analysis), td_by_layer.png,
td_vs_accuracy.png, td_by_layer_family.png, td_vs_accuracy_family.png,
features_<k>shot.npz.
"""

from __future__ import annotations

import time
from pathlib import Path

from absl import app, flags

from experiments import common
from icl_jax.studies.layers import parse_layers

common.define_task_flags(40, "prompts per task and shot count")
flags.DEFINE_list("shots", ["1", "4", "10"], "demos per prompt")
flags.DEFINE_integer("peak_shots", 4,
                     "shot count whose mean-TD peak layer is used for the "
                     "correlation (Han et al.: 4)", lower_bound=1)
flags.DEFINE_list("family",
                  ["uppercase", "first_letter", "repeat_word", "length"],
                  "a confusable sub-family (shared inputs) whose TD is also "
                  "computed among its own tasks only (Han et al.'s setting); "
                  "empty to skip")
flags.DEFINE_integer("knn", 10, "neighbours of the kNN vote (Han: 10)",
                     lower_bound=1)
flags.DEFINE_bool("logistic", True,
                  "also a held-out logistic probe per layer (5-fold, C=1)")
flags.DEFINE_integer("logistic_max_iter", 100,
                     "L-BFGS iteration cap of the logistic probe",
                     lower_bound=1)
flags.DEFINE_integer("batch_size", 16, "prompts per forward", lower_bound=1)
F = flags.FLAGS

EXPERIMENT = "task_decodability"
POSITION = "final_token"
# Han et al. (arXiv 2412.12276), reference spec sections 4.2, 4.4, 9, 10.
HAN_REFERENCE = {
    "Llama-3.1-8B": {"n_layers": 32, "peak_layer_pos": 15,
                     "peak_layer_bitwise": 13, "depth_pos": 15 / 32,
                     "depth_bitwise": 13 / 32, "R2_pos": 0.781,
                     "R2_bitwise": 0.528, "mean_td_at_peak_4shot_pos": 0.68,
                     "mean_td_at_peak_4shot_bitwise": 0.43,
                     "avg_acc_4shot_pos": 0.255,
                     "avg_acc_4shot_bitwise": 0.262},
    "Llama-3.1-70B": {"R2_pos": 0.844, "R2_bitwise": 0.324},
    "Gemma-2-2B": {"R2_pos": 0.422, "R2_bitwise": 0.776},
    "Gemma-2-9B": {"R2_pos": 0.531, "R2_bitwise": 0.452},
    "Gemma-2-27B": {"R2_pos": 0.822, "R2_bitwise": 0.590},
    "note": "R^2 of a least-squares line over 6 tasks x {1,4,10} shots = 18 "
            "points per family; TD at the 4-shot peak layer; 100 prompts per "
            "task; Null class in the kNN set.",
}
DEVIATIONS = [
    "tasks: the DOT-ICL study's 8 core tasks, not Han et al.'s 6 POS / 6 "
    "bitwise tasks; only the 4 word tasks (uppercase, first_letter, "
    "repeat_word, length) share an input distribution (with one seed they "
    "also share queries and demo inputs, so only the rule differs); "
    "linear_2x, sentiment, antonym, pattern_completion differ in their "
    "inputs, so their TD is high even at the embeddings",
    "no Null class in the kNN set",
    "N prompts per task = --n (Han: 100); 24 points (8 tasks x 3 shot "
    "counts) instead of 18",
    "template 'Input: x\\nOutput: y\\n\\n' (Han's template is not given); "
    "features at the final ':' (the token before the answer)",
    "accuracy: greedy, strict scorer (exact answer on the first line), "
    "max_new_tokens tokens",
    "layer l = residual stream after block l (0-based), as in Han's Fig. 19",
]


def build(task_names, n, k, seed, tokenizer):
  from icl_jax import tasks as T
  from icl_jax.probes import features

  eps, labels = [], []
  for name in task_names:
    e = T.make_episodes(T.get_task(name), n, k=k, demo_mode="sampled",
                        seed=seed)
    eps += e
    labels += [name] * len(e)
  specs = [e.prompt() for e in eps]
  ids, sets = features.layout_index_sets(tokenizer, specs, [POSITION])
  return eps, specs, labels, ids, sets


def score(eps, outputs):
  from icl_jax import tasks as T

  strict = [T.is_correct(e.task, o, e.query, "strict")
            for e, o in zip(eps, outputs)]
  faithful = [T.is_correct(e.task, o, e.query, "faithful")
              for e, o in zip(eps, outputs)]
  return strict, faithful


def run_shot(lm, *, model, k, task_names, n, layers, seed, knn, logistic,
             batch_size, max_new_tokens, rd, logistic_max_iter=100,
             progress=True):
  """Features, TD, accuracy (and logistic) rows for one shot count."""
  import numpy as np

  from icl_jax.analysis import stats
  from icl_jax.probes import features
  from icl_jax.probes import logistic as logistic_lib
  from icl_jax.probes import task_decodability as td_lib

  t0 = time.time()
  eps, specs, labels, ids, sets = build(task_names, n, k, seed, lm.tokenizer)
  cond = f"{k}shot"
  feat_path = rd.path / f"features_{cond}.npz"
  if feat_path.exists():
    feats = np.load(feat_path)["features"]
  else:
    if progress:
      print(f"[{cond}] features of {len(ids)} prompts", flush=True)
    feats = features.collect(lm, ids, sets,
                             residual_indices=[l + 1 for l in layers],
                             batch_size=batch_size,
                             progress=progress)[POSITION]
    rd.save_npz(feat_path.name, features=feats, labels=np.asarray(labels),
                layers=np.asarray(layers))
  t_feat = time.time() - t0
  classes = list(task_names)
  label_ids = np.array([classes.index(x) for x in labels], np.int32)
  td = np.asarray(td_lib.per_class_task_decodability(
      feats, label_ids, knn, num_classes=len(classes)))  # [L, C]
  rows = []
  base = {"experiment": EXPERIMENT, "model": model, "mode": "aligned",
          "condition": cond, "shots": k, "position": POSITION}
  for i, layer in enumerate(layers):
    for c, name in enumerate(classes):
      rows.append({**base, "source_task": name, "target_task": name,
                   "layer": layer, "metric": "td", "td": float(td[i, c]),
                   "n": int((label_ids == c).sum()), "knn": knn})
    rows.append({**base, "source_task": "mean", "target_task": "mean",
                 "layer": layer, "metric": "td", "td": float(td[i].mean()),
                 "n": len(labels), "knn": knn,
                 "depth_fraction": layer / lm.n_layers})
  if logistic:
    ev = logistic_lib.evaluate_logistic(feats, label_ids, C=1.0,
                                        max_iter=logistic_max_iter, tol=1e-3)
    for i, layer in enumerate(layers):
      rows.append({**base, "source_task": "mean", "target_task": "mean",
                   "layer": layer, "metric": "logistic",
                   "accuracy": float(ev.accuracy[i]),
                   "ci": [float(ev.ci_low[i]), float(ev.ci_high[i])],
                   "n": int(ev.n_total)})
  t1 = time.time()
  if progress:
    print(f"[{cond}] generating {len(specs)} answers", flush=True)
  outputs = lm.generate([s.text for s in specs],
                        max_new_tokens=max_new_tokens)
  strict, faithful = score(eps, outputs)
  t_gen = time.time() - t1
  for name in classes:
    idx = [i for i, e in enumerate(eps) if e.task == name]
    ks = int(sum(strict[i] for i in idx))
    kf = int(sum(faithful[i] for i in idx))
    rows.append({
        **base, "source_task": name, "target_task": name, "layer": None,
        "metric": "accuracy", "accuracy": ks / len(idx),
        "accuracy_faithful": kf / len(idx),
        "ci": list(stats.wilson_interval(ks, len(idx))), "n": len(idx),
        "examples": [{"query": eps[i].query, "output": outputs[i],
                      "expected_target": eps[i].expected,
                      "correct_strict": bool(strict[i]),
                      "correct_faithful": bool(faithful[i])} for i in idx],
    })
  rd.append(rows)
  return {"features_s": t_feat, "generate_s": t_gen,
          "total_s": time.time() - t0}


def _fit(x, y):
  import numpy as np

  from icl_jax.analysis import stats

  x, y = np.asarray(x, float), np.asarray(y, float)
  try:
    r, p = stats.pearson(x, y)
    ci = stats.bootstrap_pearson_ci(x, y)
  except ValueError:  # a constant input
    return {"n_points": int(x.size), "r": None, "p": None, "R2": None}
  slope, intercept = np.polyfit(x, y, 1)
  return {"n_points": int(x.size), "r": r, "p": p, "R2": r * r,
          "r_bootstrap_ci": list(ci), "slope": float(slope),
          "intercept": float(intercept)}


def family_rows(rd, *, model, family, shots, knn, layers):
  """TD among the family's tasks only, from the saved features (no model)."""
  import numpy as np

  from icl_jax.probes import task_decodability as td_lib

  have = {r["shots"] for r in rd.rows()
          if r["model"] == model and r["metric"] == "td_family"}
  rows = []
  for k in shots:
    if k in have:
      continue
    z = np.load(rd.path / f"features_{k}shot.npz")
    labels = list(z["labels"])
    sel = np.array([x in family for x in labels])
    ids = np.array([list(family).index(x) for x in np.asarray(labels)[sel]],
                   np.int32)
    td = np.asarray(td_lib.per_class_task_decodability(
        z["features"][:, sel], ids, knn, num_classes=len(family)))
    base = {"experiment": EXPERIMENT, "model": model, "mode": "aligned",
            "condition": f"{k}shot", "shots": k, "position": POSITION,
            "metric": "td_family", "knn": knn, "family": list(family)}
    for i, layer in enumerate(layers):
      for c, name in enumerate(family):
        rows.append({**base, "source_task": name, "target_task": name,
                     "layer": layer, "td": float(td[i, c]),
                     "n": int((ids == c).sum())})
      rows.append({**base, "source_task": "mean", "target_task": "mean",
                   "layer": layer, "td": float(td[i].mean()),
                   "n": int(sel.sum())})
  rd.append(rows)


def analyse(rows, task_names, shots, layers, peak_shots, n_layers,
            metric="td"):
  """Curves, peak layers and TD-vs-accuracy correlations.

  ``metric`` selects the TD rows: "td" (kNN among all tasks) or "td_family"
  (kNN among the family's tasks only; ``task_names`` = the family).
  """
  import numpy as np

  from icl_jax.probes import task_decodability as td_lib

  td = {}  # (k, task) -> [L]
  acc, acc_f = {}, {}
  logi = {}
  for r in rows:
    if r["metric"] == metric:
      td.setdefault((r["shots"], r["source_task"]), {})[r["layer"]] = r["td"]
    elif r["metric"] == "accuracy":
      acc[(r["shots"], r["source_task"])] = r["accuracy"]
      acc_f[(r["shots"], r["source_task"])] = r["accuracy_faithful"]
    elif r["metric"] == "logistic":
      logi.setdefault(r["shots"], {})[r["layer"]] = r["accuracy"]
  curve = {key: np.array([v[l] for l in layers]) for key, v in td.items()}
  out = {"layers": list(layers), "shots": list(shots)}
  out["mean_td_by_layer"] = {
      str(k): [round(float(v), 4) for v in curve[(k, "mean")]] for k in shots}
  peaks = {k: int(layers[td_lib.peak_layer(curve[(k, "mean")])])
           for k in shots}
  out["peak_layer"] = {str(k): peaks[k] for k in shots}
  out["peak_depth_fraction"] = {str(k): peaks[k] / n_layers for k in shots}
  out["mean_td_at_peak"] = {
      str(k): float(curve[(k, "mean")][layers.index(peaks[k])])
      for k in shots}
  out["mean_accuracy"] = {
      str(k): float(np.mean([acc[(k, t)] for t in task_names]))
      for k in shots}
  out["accuracy"] = {f"{t}/{k}shot": acc[(k, t)] for k in shots
                     for t in task_names}
  out["accuracy_faithful"] = {f"{t}/{k}shot": acc_f[(k, t)] for k in shots
                              for t in task_names}
  if logi:
    out["logistic_by_layer"] = {
        str(k): [round(logi[k][l], 4) for l in layers] for k in shots}
  ref_k = peak_shots if peak_shots in shots else shots[len(shots) // 2]
  ref_layer = peaks[ref_k]
  li = layers.index(ref_layer)
  pts = [(t, k, float(curve[(k, t)][li]), acc[(k, t)])
         for k in shots for t in task_names]
  out["points"] = [{"task": t, "shots": k, "td": x, "accuracy": y}
                   for t, k, x, y in pts]
  corr = {}
  corr["td_at_peak_layer"] = {"layer": ref_layer, "peak_of_shots": ref_k,
                              **_fit([p[2] for p in pts],
                                     [p[3] for p in pts])}
  corr["td_at_peak_layer_faithful_scorer"] = {
      "layer": ref_layer,
      **_fit([p[2] for p in pts], [acc_f[(p[1], p[0])] for p in pts])}
  xs = [float(curve[(k, t)][layers.index(peaks[k])]) for k in shots
        for t in task_names]
  ys = [acc[(k, t)] for k in shots for t in task_names]
  corr["td_at_per_shot_peak_layer"] = _fit(xs, ys)
  xs = [float(curve[(k, t)].mean()) for k in shots for t in task_names]
  corr["td_mean_over_layers"] = _fit(xs, ys)
  by_layer = []
  for i, layer in enumerate(layers):
    f = _fit([float(curve[(k, t)][i]) for k in shots for t in task_names],
             ys)
    by_layer.append({"layer": layer, "r": f["r"], "R2": f["R2"]})
  corr["by_layer"] = by_layer
  out["correlation"] = corr
  return out


def plot(analysis, rows, task_names, path_curves, path_scatter, model,
         n_layers):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  layers = analysis["layers"]
  shots = analysis["shots"]
  ref_k = analysis["correlation"]["td_at_peak_layer"]["peak_of_shots"]
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  for k in shots:
    axes[0].plot(layers, analysis["mean_td_by_layer"][str(k)], marker=".",
                 label=f"{k}-shot kNN TD")
    if "logistic_by_layer" in analysis:
      axes[0].plot(layers, analysis["logistic_by_layer"][str(k)], ls=":",
                   label=f"{k}-shot logistic (held-out)")
  axes[0].axhline(1 / len(task_names), color="k", lw=0.6, ls="--")
  axes[0].set_title("mean TD per layer (chance dashed)", fontsize=9)
  for t in task_names:
    pts = sorted((r["layer"], r["td"]) for r in rows
                 if r["metric"] == "td" and r["shots"] == ref_k
                 and r["source_task"] == t)
    axes[1].plot([p[0] for p in pts], [p[1] for p in pts], marker=".",
                 label=t)
  axes[1].set_title(f"TD_z per task, {ref_k}-shot", fontsize=9)
  by = analysis["correlation"]["by_layer"]
  axes[2].plot([b["layer"] for b in by],
               [np.nan if b["r"] is None else b["r"] for b in by], marker=".")
  axes[2].axhline(0, color="k", lw=0.6)
  axes[2].set_title("Pearson r(TD_z, accuracy) at each layer "
                    f"({len(analysis['points'])} points)", fontsize=9)
  for ax in axes:
    ax.set_xlabel("layer (block output)")
    ax.grid(alpha=0.3)
  for ax in axes[:2]:
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=6)
  fig.suptitle(f"Task decodability on {model} ({n_layers} layers)",
               fontsize=10)
  fig.tight_layout()
  fig.savefig(path_curves, dpi=110)
  plt.close(fig)

  c = analysis["correlation"]["td_at_peak_layer"]
  fig, ax = plt.subplots(figsize=(6, 4.6))
  markers = {k: m for k, m in zip(shots, "os^vDP")}
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for p in analysis["points"]:
    ax.scatter(p["td"], p["accuracy"], marker=markers[p["shots"]],
               color=colors[task_names.index(p["task"]) % len(colors)])
  for i, t in enumerate(task_names):
    ax.scatter([], [], color=colors[i % len(colors)], label=t)
  for k in shots:
    ax.scatter([], [], marker=markers[k], color="gray", label=f"{k}-shot")
  if c.get("slope") is not None:
    xs = np.linspace(0, 1, 20)
    ax.plot(xs, c["slope"] * xs + c["intercept"], color="k", lw=0.8)
    ax.set_title(f"TD at layer {c['layer']} vs strict accuracy: "
                 f"r={c['r']:.3f}, R^2={c['R2']:.3f}, n={c['n_points']}",
                 fontsize=9)
  ax.set_xlabel("TD_z (leave-one-out 10-NN)")
  ax.set_ylabel("ICL accuracy (strict)")
  ax.set_xlim(-0.02, 1.02)
  ax.set_ylim(-0.02, 1.02)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6, loc="upper left")
  fig.tight_layout()
  fig.savefig(path_scatter, dpi=110)
  plt.close(fig)


def run(lm, *, model, task_names, shots, n, layers, seed, knn, peak_shots,
        out_dir, logistic=True, batch_size=16, max_new_tokens=8,
        logistic_max_iter=100, family=None, progress=True):
  from icl_jax.analysis.results import RunDir

  config = dict(model=model, tasks=list(task_names), shots=list(shots), n=n,
                layers=layers, seed=seed, knn=knn, logistic=logistic,
                max_new_tokens=max_new_tokens, position=POSITION,
                logistic_max_iter=logistic_max_iter)
  rd = RunDir(out_dir, EXPERIMENT, config, key_extra=("metric",), lm=lm)
  timings = {}
  for k in shots:
    have = {(r["condition"], r["metric"]) for r in rd.rows()
            if r["model"] == model}
    need = {(f"{k}shot", "td"), (f"{k}shot", "accuracy")}
    if logistic:
      need.add((f"{k}shot", "logistic"))
    if need <= have:
      continue
    # A partial shot (interrupted) is redone whole; drop its old rows.
    rows = [r for r in rd.rows() if r.get("condition") != f"{k}shot"]
    if len(rows) != len(rd.rows()):
      rd.replace_rows(rows)
    timings[f"{k}shot"] = run_shot(
        lm, model=model, k=k, task_names=task_names, n=n, layers=layers,
        seed=seed, knn=knn, logistic=logistic, batch_size=batch_size,
        max_new_tokens=max_new_tokens, rd=rd,
        logistic_max_iter=logistic_max_iter, progress=progress)
  family = [t for t in (family or []) if t in task_names]
  if len(family) >= 2:
    family_rows(rd, model=model, family=family, shots=shots, knn=knn,
                layers=layers)
  rows = [r for r in rd.rows() if r["model"] == model]
  analysis = analyse(rows, list(task_names), list(shots), list(layers),
                     peak_shots, lm.n_layers)
  plot(analysis, rows, list(task_names), rd.path / "td_by_layer.png",
       rd.path / "td_vs_accuracy.png", model, lm.n_layers)
  extra = {}
  if len(family) >= 2:
    fam = analyse([r for r in rows if r["metric"] != "logistic"], family,
                  list(shots), list(layers), peak_shots, lm.n_layers,
                  metric="td_family")
    fam["tasks"] = family
    fam_rows = [dict(r, metric="td") if r["metric"] == "td_family" else r
                for r in rows if r["metric"] != "td"]
    plot(fam, fam_rows, family, rd.path / "td_by_layer_family.png",
         rd.path / "td_vs_accuracy_family.png", f"{model} (family)",
         lm.n_layers)
    extra["family"] = fam
  rd.write_summary({"timings_s": timings, "results": analysis,
                    **extra, "han_reference": HAN_REFERENCE,
                    "deviations_from_han": DEVIATIONS})
  return rows, analysis


def main(argv):
  del argv
  from icl_jax.studies.study import quiet_logs

  quiet_logs()
  task_names = common.task_names()
  shots = [int(s) for s in F.shots]
  if any(s < 1 for s in shots):
    raise ValueError("--shots must be >= 1")
  lm = common.load_model(EXPERIMENT)
  layers = parse_layers(F.layers, lm.n_layers)
  _, a = run(lm, model=F.model, task_names=task_names, shots=shots, n=F.n,
             layers=layers, seed=F.seed, knn=F.knn, peak_shots=F.peak_shots,
             out_dir=F.out_dir, logistic=F.logistic, batch_size=F.batch_size,
             max_new_tokens=F.max_new_tokens,
             logistic_max_iter=F.logistic_max_iter,
             family=[t for t in F.family if t.strip()])
  print("\nmean TD per layer:")
  for k in shots:
    print(f"  {k:2d}-shot: " + " ".join(
        f"{v:.2f}" for v in a["mean_td_by_layer"][str(k)]))
  print(f"peak layer: {a['peak_layer']}  depth: "
        f"{ {k: round(v, 3) for k, v in a['peak_depth_fraction'].items()} }")
  print(f"mean accuracy: {a['mean_accuracy']}")
  for name, c in a["correlation"].items():
    if name != "by_layer":
      print(f"{name}: r={c['r']} R2={c['R2']} n={c['n_points']}")
  import json

  fam = json.loads((Path(F.out_dir) / EXPERIMENT / "summary.json")
                   .read_text()).get("family")
  if fam:
    print(f"family {fam['tasks']}: peak layer {fam['peak_layer']}, "
          "mean TD per layer:")
    for k in shots:
      print(f"  {k:2d}-shot: " + " ".join(
          f"{v:.2f}" for v in fam["mean_td_by_layer"][str(k)]))
    for name, c in fam["correlation"].items():
      if name != "by_layer":
        print(f"family {name}: r={c['r']} R2={c['R2']} n={c['n_points']}")


if __name__ == "__main__":
  app.run(main)
