"""Task decodability (Han et al.) per layer, task and shot count, and its
correlation with ICL accuracy (`experiments/task_decodability.py`).

Per shot count k and task: N prompts with k sampled demos; TD = leave-one-out
kNN accuracy of the task identity from the residual at the token before the
answer, after every block (`probes.task_decodability`); ICL accuracy of the
same prompts (greedy, strict and faithful scorers); optionally a held-out
logistic probe; the same TD among a confusable family's tasks only. `run`
writes results.jsonl (TD rows per shot x layer x task incl. "mean", accuracy
rows per shot x task, logistic rows), summary.json (curves, peak layers,
correlations, Han's reference numbers), the plots and the features.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

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


def parse_shots(spec) -> list[int]:
  """--shots: demo counts >= 1."""
  shots = [int(s) for s in spec]
  if any(s < 1 for s in shots):
    raise ValueError("--shots must be >= 1")
  return shots


def build(task_names, n, k, seed, tokenizer):
  """Episodes, specs, labels and the final-token index sets of one shot
  count."""
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
  """Strict and faithful correctness of each output."""
  from icl_jax import tasks as T

  strict = [T.is_correct(e.task, o, e.query, "strict")
            for e, o in zip(eps, outputs)]
  faithful = [T.is_correct(e.task, o, e.query, "faithful")
              for e, o in zip(eps, outputs)]
  return strict, faithful


def _shot_features(lm, rd, cond, ids, sets, labels, layers, batch_size,
                   progress):
  """The final-token features of one shot count (saved, reused)."""
  from icl_jax.probes import features

  feat_path = rd.path / f"features_{cond}.npz"
  if feat_path.exists():
    return np.load(feat_path)["features"]
  if progress:
    print(f"[{cond}] features of {len(ids)} prompts", flush=True)
  feats = features.collect(lm, ids, sets,
                           residual_indices=[l + 1 for l in layers],
                           batch_size=batch_size,
                           progress=progress)[POSITION]
  rd.save_npz(feat_path.name, features=feats, labels=np.asarray(labels),
              layers=np.asarray(layers))
  return feats


def td_rows(base, feats, label_ids, classes, layers, knn, n_layers, *,
            logistic=False, logistic_max_iter=100):
  """TD rows (per layer: each class and "mean") and, with `logistic`, the
  held-out logistic probe's rows."""
  from icl_jax.probes import logistic as logistic_lib
  from icl_jax.probes import task_decodability as td_lib

  td = np.asarray(td_lib.per_class_task_decodability(
      feats, label_ids, knn, num_classes=len(classes)))  # [L, C]
  rows = []
  for i, layer in enumerate(layers):
    for c, name in enumerate(classes):
      rows.append({**base, "source_task": name, "target_task": name,
                   "layer": layer, "metric": "td", "td": float(td[i, c]),
                   "n": int((label_ids == c).sum()), "knn": knn})
    rows.append({**base, "source_task": "mean", "target_task": "mean",
                 "layer": layer, "metric": "td", "td": float(td[i].mean()),
                 "n": len(label_ids), "knn": knn,
                 "depth_fraction": layer / n_layers})
  if logistic:
    ev = logistic_lib.evaluate_logistic(feats, label_ids, C=1.0,
                                        max_iter=logistic_max_iter, tol=1e-3)
    for i, layer in enumerate(layers):
      rows.append({**base, "source_task": "mean", "target_task": "mean",
                   "layer": layer, "metric": "logistic",
                   "accuracy": float(ev.accuracy[i]),
                   "ci": [float(ev.ci_low[i]), float(ev.ci_high[i])],
                   "n": int(ev.n_total)})
  return rows


def task_accuracy_rows(base, eps, outputs, classes):
  """One accuracy row per task (strict and faithful, Wilson CI)."""
  from icl_jax.analysis import stats

  strict, faithful = score(eps, outputs)
  rows = []
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
  return rows


def run_shot(lm, *, model, k, task_names, n, layers, seed, knn, logistic,
             batch_size, max_new_tokens, rd, logistic_max_iter=100,
             progress=True):
  """Features, TD, accuracy (and logistic) rows for one shot count."""
  t0 = time.time()
  eps, specs, labels, ids, sets = build(task_names, n, k, seed, lm.tokenizer)
  cond = f"{k}shot"
  feats = _shot_features(lm, rd, cond, ids, sets, labels, layers, batch_size,
                         progress)
  t_feat = time.time() - t0
  classes = list(task_names)
  label_ids = np.array([classes.index(x) for x in labels], np.int32)
  base = {"experiment": EXPERIMENT, "model": model, "mode": "aligned",
          "condition": cond, "shots": k, "position": POSITION}
  rows = td_rows(base, feats, label_ids, classes, layers, knn, lm.n_layers,
                 logistic=logistic, logistic_max_iter=logistic_max_iter)
  t1 = time.time()
  if progress:
    print(f"[{cond}] generating {len(specs)} answers", flush=True)
  outputs = lm.generate([s.text for s in specs],
                        max_new_tokens=max_new_tokens)
  rows += task_accuracy_rows(base, eps, outputs, classes)
  t_gen = time.time() - t1
  rd.append(rows)
  return {"features_s": t_feat, "generate_s": t_gen,
          "total_s": time.time() - t0}


def fit_line(x, y) -> dict:
  """Pearson r, p, R^2, a bootstrap CI of r and the least-squares line (r,
  p and R^2 None for a constant input)."""
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


def _collect(rows, metric):
  """TD curves by (shots, task), accuracies and logistic curves."""
  td = {}  # (k, task) -> {layer: td}
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
  return td, acc, acc_f, logi


def _correlations(curve, acc, acc_f, task_names, shots, layers, peaks,
                  ref_k) -> dict:
  """TD-vs-accuracy fits: at the reference peak layer (both scorers), at
  each shot's peak layer, averaged over layers, and at every layer."""
  ref_layer = peaks[ref_k]
  li = layers.index(ref_layer)
  pts = [(t, k, float(curve[(k, t)][li]), acc[(k, t)])
         for k in shots for t in task_names]
  corr = {}
  corr["td_at_peak_layer"] = {"layer": ref_layer, "peak_of_shots": ref_k,
                              **fit_line([p[2] for p in pts],
                                         [p[3] for p in pts])}
  corr["td_at_peak_layer_faithful_scorer"] = {
      "layer": ref_layer,
      **fit_line([p[2] for p in pts], [acc_f[(p[1], p[0])] for p in pts])}
  xs = [float(curve[(k, t)][layers.index(peaks[k])]) for k in shots
        for t in task_names]
  ys = [acc[(k, t)] for k in shots for t in task_names]
  corr["td_at_per_shot_peak_layer"] = fit_line(xs, ys)
  xs = [float(curve[(k, t)].mean()) for k in shots for t in task_names]
  corr["td_mean_over_layers"] = fit_line(xs, ys)
  by_layer = []
  for i, layer in enumerate(layers):
    f = fit_line([float(curve[(k, t)][i]) for k in shots
                  for t in task_names], ys)
    by_layer.append({"layer": layer, "r": f["r"], "R2": f["R2"]})
  corr["by_layer"] = by_layer
  points = [{"task": t, "shots": k, "td": x, "accuracy": y}
            for t, k, x, y in pts]
  return corr, points


def analyse(rows, task_names, shots, layers, peak_shots, n_layers,
            metric="td"):
  """Curves, peak layers and TD-vs-accuracy correlations.

  ``metric`` selects the TD rows: "td" (kNN among all tasks) or "td_family"
  (kNN among the family's tasks only; ``task_names`` = the family).
  """
  from icl_jax.probes import task_decodability as td_lib

  td, acc, acc_f, logi = _collect(rows, metric)
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
  corr, out["points"] = _correlations(curve, acc, acc_f, task_names, shots,
                                      layers, peaks, ref_k)
  out["correlation"] = corr
  return out


def _pending_shot(rd, model, k, logistic) -> bool:
  """True when shot k lacks rows; a partial shot's rows are dropped."""
  have = {(r["condition"], r["metric"]) for r in rd.rows()
          if r["model"] == model}
  need = {(f"{k}shot", "td"), (f"{k}shot", "accuracy")}
  if logistic:
    need.add((f"{k}shot", "logistic"))
  if need <= have:
    return False
  # A partial shot (interrupted) is redone whole; drop its old rows.
  rows = [r for r in rd.rows() if r.get("condition") != f"{k}shot"]
  if len(rows) != len(rd.rows()):
    rd.replace_rows(rows)
  return True


def _family_analysis(rd, rows, family, shots, layers, peak_shots, model,
                     n_layers) -> dict:
  """The family's TD analysis and its two plots."""
  from icl_jax.analysis.probe_figures import td_curves, td_scatter

  fam = analyse([r for r in rows if r["metric"] != "logistic"], family,
                list(shots), list(layers), peak_shots, n_layers,
                metric="td_family")
  fam["tasks"] = family
  fam_rows = [dict(r, metric="td") if r["metric"] == "td_family" else r
              for r in rows if r["metric"] != "td"]
  td_curves(fam, fam_rows, family, rd.path / "td_by_layer_family.png",
            f"{model} (family)", n_layers)
  td_scatter(fam, family, rd.path / "td_vs_accuracy_family.png")
  return fam


def run(lm, *, model, task_names, shots, n, layers, seed, knn, peak_shots,
        out_dir, logistic=True, batch_size=16, max_new_tokens=8,
        logistic_max_iter=100, family=None, progress=True):
  """Runs the missing shot counts, the family TD, the analysis and plots.
  Returns (rows of `model`, analysis)."""
  from icl_jax.analysis.probe_figures import td_curves, td_scatter
  from icl_jax.analysis.results import RunDir

  config = dict(model=model, tasks=list(task_names), shots=list(shots), n=n,
                layers=layers, seed=seed, knn=knn, logistic=logistic,
                max_new_tokens=max_new_tokens, position=POSITION,
                logistic_max_iter=logistic_max_iter)
  rd = RunDir(out_dir, EXPERIMENT, config, key_extra=("metric",), lm=lm)
  timings = {}
  for k in shots:
    if not _pending_shot(rd, model, k, logistic):
      continue
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
  td_curves(analysis, rows, list(task_names), rd.path / "td_by_layer.png",
            model, lm.n_layers)
  td_scatter(analysis, list(task_names), rd.path / "td_vs_accuracy.png")
  extra = {}
  if len(family) >= 2:
    extra["family"] = _family_analysis(rd, rows, family, shots, layers,
                                       peak_shots, model, lm.n_layers)
  rd.write_summary({"timings_s": timings, "results": analysis,
                    **extra, "han_reference": HAN_REFERENCE,
                    "deviations_from_han": DEVIATIONS})
  return rows, analysis


def format_report(analysis, shots, out_dir) -> str:
  """Mean TD per layer, peak layers, accuracy and the correlations; the
  family's from summary.json when there is one."""
  a = analysis
  lines = ["\nmean TD per layer:"]
  for k in shots:
    lines.append(f"  {k:2d}-shot: " + " ".join(
        f"{v:.2f}" for v in a["mean_td_by_layer"][str(k)]))
  lines.append(f"peak layer: {a['peak_layer']}  depth: "
               f"{ {k: round(v, 3) for k, v in a['peak_depth_fraction'].items()} }")
  lines.append(f"mean accuracy: {a['mean_accuracy']}")
  for name, c in a["correlation"].items():
    if name != "by_layer":
      lines.append(f"{name}: r={c['r']} R2={c['R2']} n={c['n_points']}")
  fam = json.loads((Path(out_dir) / EXPERIMENT / "summary.json")
                   .read_text()).get("family")
  if fam:
    lines.append(f"family {fam['tasks']}: peak layer {fam['peak_layer']}, "
                 "mean TD per layer:")
    for k in shots:
      lines.append(f"  {k:2d}-shot: " + " ".join(
          f"{v:.2f}" for v in fam["mean_td_by_layer"][str(k)]))
    for name, c in fam["correlation"].items():
      if name != "by_layer":
        lines.append(f"family {name}: r={c['r']} R2={c['R2']} "
                     f"n={c['n_points']}")
  return "\n".join(lines)
