"""Han et al.'s task decodability on their own task families
(`experiments/han_td.py`; spec ``han_task_vectors.md`` sections 3-4, 10).

Per family (POS, bitwise) and shot count k: N prompts per class (the 6 tasks
and Null, :mod:`icl_jax.tasks.han`), the residual after every block at the
last prompt token (the arrow right before the answer); leave-one-out kNN TD
(Euclidean; cosine as a check) with Null in the neighbour set, TD_z per class
and mean TD over the 6 real tasks; a shuffled-label null band; pairwise
2-class TD matrices (Fig. 23); a held-out logistic probe (5-fold, Optax
L-BFGS) beside the kNN; greedy ICL accuracy of the same prompts (6 real
tasks, exact match of the first line). Then TD_z at the 4-shot peak layer vs
accuracy over 6 tasks x shots (18 points): least-squares R^2 (Han's
statistic) with a bootstrap-over-tasks interval.
"""

from __future__ import annotations

import time

import numpy as np

EXPERIMENT = "han_td"
POSITION = "final_token"
# Han et al. (arXiv 2412.12276), spec sections 4.2, 4.4, 4.5, 9.
HAN_REFERENCE = {
    "R2": {"Llama-3.1-8B": {"pos": 0.781, "bitwise": 0.528},
           "Llama-3.1-70B": {"pos": 0.844, "bitwise": 0.324},
           "Gemma-2-2B": {"pos": 0.422, "bitwise": 0.776},
           "Gemma-2-9B": {"pos": 0.531, "bitwise": 0.452},
           "Gemma-2-27B": {"pos": 0.822, "bitwise": 0.590},
           "recurrent (Mamba-2 8B or LSTM)": {"pos": 0.596,
                                              "bitwise": 0.468}},
    "Llama-3.1-8B_4shot": {
        "peak_layer": {"pos": 15, "bitwise": 13}, "n_layers": 32,
        "mean_td_at_peak": {"pos": 0.68, "bitwise": 0.43},
        "mean_accuracy": {"pos": 0.255, "bitwise": 0.262}},
    "pairwise_bitwise_4shot_fig23": {
        "order": ["and", "or", "nor", "nand", "xor", "xnor", "null"],
        "note": "rows as extracted from the paper, not symmetric; see spec "
                "4.5 (the POS panel is unknown)"},
}
ASSUMPTIONS = [
    "[ASSUMPTION] template 'x -> y' per demo, newline-separated, prompt "
    "ending 'x* ->' (Hendel style, spec 3.3); the TD token is the arrow",
    "[ASSUMPTION] Euclidean distance on the raw fp32 residual; cosine "
    "reported as a check",
    "[ASSUMPTION] vote ties -> lowest class index (sklearn); distance ties "
    "-> lower example index",
    "[ASSUMPTION] Null is a class of the kNN set (7 classes); mean TD and "
    "the peak layer use the 6 real tasks",
    "[ASSUMPTION] layer l = residual after block l (0-based), Han Fig. 19",
    "[ASSUMPTION] TD and accuracy use the same N eval prompts per task; "
    "each task draws its own queries and demos (icl_jax.tasks.han); the POS "
    "eval split has 132 sentences, so queries recur across tasks",
    "[ASSUMPTION] pairwise TD: 2-class kNN (k as set) on the two classes' "
    "points; entry [a, b] = TD of a",
    "R^2 interval: percentile bootstrap over the 6 tasks (each resampled "
    "task brings its points at every shot count), not over the 18 points",
]
N_BOOT = 2000


def build(family, n, k, seed, tokenizer):
  """Prompt specs, answers, class labels and final-token index sets."""
  from icl_jax.probes import features
  from icl_jax.tasks import han

  specs, answers, labels = [], [], []
  for task in han.family_tasks(family):
    for spec, y in han.prompt_specs(family, task, n, k, seed):
      specs.append(spec)
      answers.append(y)
      labels.append(task)
  ids, sets = features.layout_index_sets(tokenizer, specs, [POSITION])
  return specs, answers, labels, ids, sets


def _features(lm, rd, cond, ids, sets, labels, layers, batch_size,
              progress):
  """Final-token residuals ``[L, M, D]`` of one (family, shots), saved."""
  from icl_jax.probes import features

  name = f"features_{cond.replace('/', '_')}.npz"
  if (rd.path / name).exists():
    return np.load(rd.path / name)["features"]
  feats = features.collect(lm, ids, sets,
                           residual_indices=[l + 1 for l in layers],
                           batch_size=batch_size, progress=progress)[POSITION]
  rd.save_npz(name, features=feats, labels=np.asarray(labels),
              layers=np.asarray(layers))
  return feats


def td_rows(base, feats, label_ids, classes, layers, knn, *, null_perms,
            seed, logistic, logistic_max_iter):
  """kNN TD (both metrics), null band, pairwise and logistic rows."""
  from icl_jax.probes import knn_td
  from icl_jax.probes import logistic as logistic_lib

  c = len(classes)
  real = [i for i, t in enumerate(classes) if t != "null"]
  rows = []
  for metric_name, metric in (("td", "euclidean"), ("td_cosine", "cosine")):
    td = knn_td.class_td(feats, label_ids, c, knn, metric)  # [L, C]
    for li, layer in enumerate(layers):
      for ci, name in enumerate(classes):
        rows.append({**base, "metric": metric_name, "source_task": name,
                     "target_task": name, "layer": layer,
                     "td": float(td[li, ci]),
                     "n": int((label_ids == ci).sum())})
      rows.append({**base, "metric": metric_name, "source_task": "mean",
                   "target_task": "mean", "layer": layer,
                   "td": float(td[li, real].mean()),
                   "td_with_null": float(td[li].mean()),
                   "n": len(label_ids)})
  null = knn_td.shuffled_label_td(feats, label_ids, c, knn,
                                  n_perms=null_perms, seed=seed)  # [P, L, C]
  band = knn_td.null_band(null, real)  # [2, L]
  pair = knn_td.pairwise_td(feats, label_ids, c, knn)  # [L, C, C]
  for li, layer in enumerate(layers):
    rows.append({**base, "metric": "td_null", "source_task": "mean",
                 "target_task": "mean", "layer": layer,
                 "band_5_95": [float(band[0, li]), float(band[1, li])],
                 "null_mean": float(null[:, li][:, real].mean()),
                 "n_perms": null_perms, "n": len(label_ids)})
    rows.append({**base, "metric": "td_pairwise", "source_task": "all",
                 "target_task": "all", "layer": layer, "classes": classes,
                 "matrix": [[None if np.isnan(v) else round(float(v), 4)
                             for v in r] for r in pair[li]],
                 "n": len(label_ids)})
  if logistic:
    ev = logistic_lib.evaluate_logistic(feats, label_ids, C=1.0,
                                        max_iter=logistic_max_iter, tol=1e-3)
    for li, layer in enumerate(layers):
      rows.append({**base, "metric": "logistic", "source_task": "mean",
                   "target_task": "mean", "layer": layer,
                   "accuracy": float(ev.accuracy[li]),
                   "ci": [float(ev.ci_low[li]), float(ev.ci_high[li])],
                   "n": int(ev.n_total)})
  return rows


def exact_match_rows(base, family, specs, answers, labels, outputs, classes):
  """One greedy exact-match accuracy row per real task (Wilson CI)."""
  from icl_jax.analysis import stats
  from icl_jax.tasks import han

  rows = []
  for name in classes:
    idx = [i for i, t in enumerate(labels) if t == name]
    ok = [han.score(family, outputs[i], answers[i]) for i in idx]
    rows.append({
        **base, "metric": "accuracy", "source_task": name,
        "target_task": name, "layer": None, "accuracy": sum(ok) / len(idx),
        "ci": list(stats.wilson_interval(int(sum(ok)), len(idx))),
        "n": len(idx),
        "examples": [{"query": specs[i].query, "output": outputs[i],
                      "expected_target": answers[i], "correct": bool(o)}
                     for i, o in zip(idx, ok)]})
  return rows


def run_unit(lm, rd, *, model, family, k, n, layers, seed, knn, null_perms,
             logistic, logistic_max_iter, batch_size, max_new_tokens,
             progress=True) -> dict:
  """Features, TD, null, pairwise, logistic and accuracy of one (family,
  shots); returns timings."""
  from icl_jax.tasks import han

  t0 = time.time()
  cond = f"{family}/{k}shot"
  classes = list(han.family_tasks(family))
  specs, answers, labels, ids, sets = build(family, n, k, seed, lm.tokenizer)
  if progress:
    print(f"[{cond}] features of {len(ids)} prompts", flush=True)
  feats = _features(lm, rd, cond, ids, sets, labels, layers, batch_size,
                    progress)
  t_feat = time.time() - t0
  label_ids = np.array([classes.index(t) for t in labels], np.int32)
  base = {"experiment": EXPERIMENT, "model": model, "mode": "aligned",
          "condition": cond, "family": family, "shots": k,
          "position": POSITION, "knn": knn}
  rows = td_rows(base, feats, label_ids, classes, layers, knn,
                 null_perms=null_perms, seed=seed, logistic=logistic,
                 logistic_max_iter=logistic_max_iter)
  t_td = time.time() - t0 - t_feat
  real = [i for i, t in enumerate(labels) if t != "null"]
  if progress:
    print(f"[{cond}] generating {len(real)} answers", flush=True)
  outs = lm.generate([specs[i].text for i in real],
                     max_new_tokens=max_new_tokens)
  outputs = dict(zip(real, outs))
  rows += exact_match_rows(base, family, specs, answers, labels, outputs,
                        [c for c in classes if c != "null"])
  rd.append(rows)
  return {"features_s": round(t_feat, 1), "td_s": round(t_td, 1),
          "generate_s": round(time.time() - t0 - t_feat - t_td, 1)}


def r2_fit(x, y) -> dict:
  """Least-squares line and its R^2 (Han's statistic); R^2 None for a
  constant input."""
  x, y = np.asarray(x, float), np.asarray(y, float)
  if np.ptp(x) == 0 or np.ptp(y) == 0:
    return {"n_points": int(x.size), "R2": None, "r": None}
  slope, intercept = np.polyfit(x, y, 1)
  r = float(np.corrcoef(x, y)[0, 1])
  return {"n_points": int(x.size), "R2": r * r, "r": r,
          "slope": float(slope), "intercept": float(intercept)}


def bootstrap_r2_over_tasks(points, n_boot: int = N_BOOT,
                            seed: int = 0) -> list | None:
  """95% percentile interval of R^2, resampling tasks (with all their
  points) with replacement; resamples with a constant axis are skipped."""
  tasks = sorted({p["task"] for p in points})
  by = {t: [p for p in points if p["task"] == t] for t in tasks}
  rng = np.random.default_rng(seed)
  vals = []
  for _ in range(n_boot):
    pts = [p for t in rng.choice(tasks, len(tasks)) for p in by[t]]
    f = r2_fit([p["td"] for p in pts], [p["accuracy"] for p in pts])
    if f["R2"] is not None:
      vals.append(f["R2"])
  if len(vals) < n_boot // 2:
    return None
  return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]


def _curves(rows, metric, field="td"):
  """{(shots, task): {layer: value}} of one metric."""
  out = {}
  for r in rows:
    if r["metric"] == metric:
      out.setdefault((r["shots"], r["source_task"]), {})[r["layer"]] = r[field]
  return out


def _correlation(points, layer, ref_k, seed) -> dict:
  """R^2 of TD_z vs accuracy with the bootstrap-over-tasks interval."""
  fit = r2_fit([p["td"] for p in points], [p["accuracy"] for p in points])
  return {"layer": layer, "peak_of_shots": ref_k, **fit,
          "R2_bootstrap_over_tasks_95": bootstrap_r2_over_tasks(points,
                                                                seed=seed)}


def task_mean_curve(per_task) -> list[float]:
  """Mean TD over tasks at each layer, in float64, from per-task curves
  [T][L]. Peaks are read from this curve (first layer on exact ties, which
  are common: a task's TD is a count over N prompts), never from a run's
  float32 "mean" rows, whose rounding can break such a tie the other way;
  the report reads its peaks the same way."""
  return [float(v) for v in np.mean(np.asarray(per_task, np.float64), 0)]


def analyse(rows, family, shots, layers, peak_shots, n_layers,
            seed=0) -> dict:
  """Curves, null band, peaks, accuracies, the 18-point fit, pairwise TD."""
  from icl_jax.probes import task_decodability as td_lib
  from icl_jax.tasks import han

  rows = [r for r in rows if r.get("family") == family]
  tasks = [t for t in han.family_tasks(family) if t != "null"]
  td = _curves(rows, "td")
  cos = _curves(rows, "td_cosine")
  band = _curves(rows, "td_null", "band_5_95")
  logi = _curves(rows, "logistic", "accuracy")
  acc = {(r["shots"], r["source_task"]): r["accuracy"] for r in rows
         if r["metric"] == "accuracy"}
  row = lambda d, k, t: [d[(k, t)][l] for l in layers]
  out = {"family": family, "tasks": tasks, "layers": list(layers),
         "shots": list(shots), "n_classes": len(tasks) + 1}
  out["td_by_layer"] = {f"{t}/{k}": [round(v, 4) for v in row(td, k, t)]
                        for k in shots for t in tasks + ["null", "mean"]}
  mean = {k: task_mean_curve([row(td, k, t) for t in tasks]) for k in shots}
  out["mean_td_by_layer"] = {str(k): mean[k] for k in shots}
  out["mean_td_cosine_by_layer"] = {str(k): row(cos, k, "mean")
                                    for k in shots}
  out["null_band_5_95"] = {str(k): row(band, k, "mean") for k in shots}
  if logi:
    out["logistic_by_layer"] = {str(k): row(logi, k, "mean") for k in shots}
  peak_i = {k: td_lib.peak_layer(mean[k]) for k in shots}
  peaks = {k: int(layers[peak_i[k]]) for k in shots}
  out["peak_layer"] = {str(k): peaks[k] for k in shots}
  out["peak_depth_fraction"] = {str(k): peaks[k] / n_layers for k in shots}
  out["mean_td_at_peak"] = {str(k): mean[k][peak_i[k]] for k in shots}
  out["mean_accuracy"] = {str(k): float(np.mean([acc[(k, t)] for t in tasks]))
                          for k in shots}
  out["accuracy"] = {f"{t}/{k}shot": acc[(k, t)] for k in shots
                     for t in tasks}
  ref_k = peak_shots if peak_shots in shots else shots[len(shots) // 2]
  ref = peaks[ref_k]
  out["points"] = [{"task": t, "shots": k, "td": td[(k, t)][ref],
                    "accuracy": acc[(k, t)]} for k in shots for t in tasks]
  per_shot = [{"task": t, "shots": k, "td": td[(k, t)][peaks[k]],
               "accuracy": acc[(k, t)]} for k in shots for t in tasks]
  out["correlation"] = {
      "td_at_peak_layer": _correlation(out["points"], ref, ref_k, seed),
      "td_at_per_shot_peak_layer": _correlation(per_shot, None, None, seed)}
  pair = [r for r in rows if r["metric"] == "td_pairwise"
          and r["shots"] == ref_k and r["layer"] == ref]
  if pair:
    out["pairwise_at_peak"] = {"shots": ref_k, "layer": ref,
                               "classes": pair[0]["classes"],
                               "matrix": pair[0]["matrix"]}
  return out


def plot_pairwise(a, family: str, path, model: str) -> None:
  """Han's Fig. 23: 2-class TD of every class pair [C, C] at the peak layer
  of the reference shot count (the diagonal is undefined: blank)."""
  from icl_jax.analysis import figures

  p = a.get("pairwise_at_peak")
  if not p:
    return
  m = np.asarray(p["matrix"], float)  # [C, C]
  np.fill_diagonal(m, np.nan)
  figures.heatmap(m, p["classes"], p["classes"], path,
                  title=f"{model} {family}: pairwise TD, {p['shots']}-shot, "
                  f"layer {p['layer']} (2-class kNN; chance 0.5)",
                  xlabel="class", ylabel="class")


def plot_td_by_layer(a, path, model: str) -> None:
  """Per shot count: TD_z per task, Null, mean TD, cosine and logistic
  means, chance (1/classes) and the shuffled-label null band."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  shots, layers = a["shots"], a["layers"]
  fig, axes = plt.subplots(1, len(shots), figsize=(5 * len(shots), 4),
                           squeeze=False)
  for ax, k in zip(axes[0], shots):
    for t in a["tasks"] + ["null"]:
      ax.plot(layers, a["td_by_layer"][f"{t}/{k}"], lw=0.9,
              ls="--" if t == "null" else "-", label=t)
    ax.plot(layers, a["mean_td_by_layer"][str(k)], color="k", lw=2,
            label="mean (6 tasks)")
    ax.plot(layers, a["mean_td_cosine_by_layer"][str(k)], color="gray",
            ls=":", label="mean, cosine")
    if "logistic_by_layer" in a:
      ax.plot(layers, a["logistic_by_layer"][str(k)], color="purple",
              ls="-.", label="logistic probe (held-out)")
    lo, hi = np.array(a["null_band_5_95"][str(k)]).T
    ax.fill_between(layers, lo, hi, color="red", alpha=0.2,
                    label="shuffled-label null 5-95%")
    ax.axhline(1 / a["n_classes"], color="red", lw=0.6, ls="--")
    ax.set_title(f"{a['family']}, {k}-shot (peak layer "
                 f"{a['peak_layer'][str(k)]})", fontsize=9)
    ax.set_xlabel("layer (block output)")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel("TD (leave-one-out 10-NN)")
  axes[0][-1].legend(fontsize=6)
  fig.suptitle(f"Han TD on {model}: {a['family']} (chance dashed red)",
               fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _unit_done(rd, model, cond, logistic) -> bool:
  """Does (family, shots) have every metric's rows?"""
  have = {r["metric"] for r in rd.rows()
          if r["model"] == model and r.get("condition") == cond}
  need = {"td", "td_cosine", "td_null", "td_pairwise", "accuracy"}
  if logistic:
    need.add("logistic")
  return need <= have


def _pending(rd, model, cond, logistic) -> bool:
  """True when (family, shots) lacks rows; a partial unit's rows go."""
  if _unit_done(rd, model, cond, logistic):
    return False
  rows = [r for r in rd.rows() if r.get("condition") != cond]
  if len(rows) != len(rd.rows()):
    rd.replace_rows(rows)
  return True


def run(lm, *, model, families, shots, n, layers, seed, knn, peak_shots,
        out_dir, null_perms=20, logistic=True, logistic_max_iter=100,
        batch_size=16, max_new_tokens=8, progress=True) -> dict:
  """Runs the missing (family, shots) units, the analyses and plots;
  returns {family: analysis}."""
  from icl_jax.analysis.probe_figures import td_scatter
  from icl_jax.analysis.results import RunDir

  config = dict(model=model, families=list(families), shots=list(shots),
                n=n, layers=list(layers), seed=seed, knn=knn,
                null_perms=null_perms, logistic=logistic,
                logistic_max_iter=logistic_max_iter,
                max_new_tokens=max_new_tokens, position=POSITION)
  # A later run may add a family to the directory (growable), as the
  # task-vector and finetuning studies allow.
  rd = RunDir(out_dir, EXPERIMENT, config, key_extra=("metric",), lm=lm,
              growable=("families",))
  timings = {}
  for family in families:
    for k in shots:
      cond = f"{family}/{k}shot"
      if _pending(rd, model, cond, logistic):
        timings[cond] = run_unit(
            lm, rd, model=model, family=family, k=k, n=n, layers=layers,
            seed=seed, knn=knn, null_perms=null_perms, logistic=logistic,
            logistic_max_iter=logistic_max_iter, batch_size=batch_size,
            max_new_tokens=max_new_tokens, progress=progress)
  rows = [r for r in rd.rows() if r["model"] == model]
  results = {}
  # Every finished family of the directory, not only this run's: the
  # summary is what the task-vector and finetuning runs read their layers
  # from.
  for family in [f for f in rd.config["families"]
                 if all(_unit_done(rd, model, f"{f}/{k}shot", logistic)
                        for k in shots)]:
    a = analyse(rows, family, list(shots), list(layers), peak_shots,
                lm.n_layers, seed)
    plot_td_by_layer(a, rd.path / f"td_by_layer_{family}.png", model)
    td_scatter(a, a["tasks"], rd.path / f"td_vs_accuracy_{family}.png")
    plot_pairwise(a, family, rd.path / f"td_pairwise_{family}.png", model)
    results[family] = a
  rd.write_summary({"timings_s": timings, "results": results,
                    "han_reference": HAN_REFERENCE,
                    "assumptions": ASSUMPTIONS})
  return results


def format_report(results) -> str:
  """Mean TD per layer, peaks, accuracy and R^2 next to Han's."""
  lines = []
  for family, a in results.items():
    lines.append(f"\n{family}: mean TD (6 tasks) per layer")
    for k in a["shots"]:
      lines.append(f"  {k:2d}-shot: " + " ".join(
          f"{v:.2f}" for v in a["mean_td_by_layer"][str(k)]))
    at_peak = {k: round(v, 3) for k, v in a["mean_td_at_peak"].items()}
    mean_acc = {k: round(v, 3) for k, v in a["mean_accuracy"].items()}
    lines.append(f"  peak layer {a['peak_layer']}, mean TD at peak "
                 f"{at_peak}, mean accuracy {mean_acc}")
    c = a["correlation"]["td_at_peak_layer"]
    han = {m: v[family] for m, v in HAN_REFERENCE["R2"].items()}
    lines.append(f"  R2 at layer {c['layer']} ({c['n_points']} points): "
                 f"{c['R2']} [tasks bootstrap "
                 f"{c['R2_bootstrap_over_tasks_95']}]; Han: {han}")
  return "\n".join(lines)
