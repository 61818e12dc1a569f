"""Han et al. (task vectors, encoder-decoder view) in the report: task
decodability (TD) by layer with chance and the shuffled-label null, the peak
layer, the TD-vs-accuracy fit with an interval over tasks, the held-out
logistic probe (labelled as a probe, not TD), and the headline rows of the
summary. Task vectors, finetuning and the synthetic study: `han_effects`.

Runs read: `han_td` and the older `task_decodability` (TD),
`han_task_vectors` / `task_vectors`, `han_finetune`, by their rows'
`experiment` field. Every number is computed from the rows; Han's numbers
come from `icl_jax.studies.han_td.HAN_REFERENCE` (spec sections 4.2, 4.4, 9).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from icl_jax.analysis.report.data import SYNTHETIC_EXPERIMENTS, Data
from icl_jax.analysis.report.han_effects import (HAN_TV, TV_EXPERIMENTS,
                                                 generic_sections,
                                                 render_synthetic, render_tv,
                                                 td_figure, tv_effects)
from icl_jax.analysis.report.han_finetune import (FT_EXPERIMENTS,
                                                  ft_summary_rows,
                                                  render_finetune)
from icl_jax.analysis.report.markdown import (f2, images, md_table, numeric,
                                              short_model)

TD_EXPERIMENTS = ("han_td", "task_decodability")
HAN_EXPERIMENTS = (TD_EXPERIMENTS + TV_EXPERIMENTS + FT_EXPERIMENTS +
                   SYNTHETIC_EXPERIMENTS)
# Family label of TD rows without one (the Cheng & Zhang study's 8 tasks).
STUDY_FAMILY = "study tasks"
# An R^2 interval whose lower end lies below this "includes ~0": TD does not
# predict accuracy there (fixed before looking at any run).
R2_FLOOR = 0.05
PEAK_SHOTS = 4  # Han choose the layer at the 4-shot peak (spec 4.2)
SEED = 0  # every bootstrap below: reruns give the same report


def _is_int(x) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def td_groups(data: Data) -> list[tuple[str, str, str, list]]:
  """(experiment, model, family, rows) of every TD run, sorted."""
  out = defaultdict(list)
  for exp in TD_EXPERIMENTS:
    for r in data.get(exp):
      fam = r.get("family")
      out[(exp, str(r.get("model")),
           fam if isinstance(fam, str) else STUDY_FAMILY)].append(r)
  return [(e, m, f, rs) for (e, m, f), rs in sorted(out.items())]


def _collect(rows):
  """td {shots: {task: {layer: TD}}}, null band {shots: {layer: (lo, hi)}},
  logistic {shots: {layer: acc}}, accuracy {(shots, task): acc}."""
  td, band, logi, acc = {}, {}, {}, {}
  for r in rows:
    k, m, layer = r.get("shots"), r.get("metric"), r.get("layer")
    if not _is_int(k):
      continue
    if m == "td" and _is_int(layer) and numeric(r.get("td")):
      td.setdefault(k, {}).setdefault(str(r.get("source_task")), {})[
          layer] = float(r["td"])
    elif m == "td_null" and _is_int(layer) and r.get("band_5_95"):
      band.setdefault(k, {})[layer] = tuple(r["band_5_95"])
    elif (m == "logistic" and _is_int(layer) and
          r.get("source_task") in ("mean", None) and
          numeric(r.get("accuracy"))):
      logi.setdefault(k, {})[layer] = float(r["accuracy"])
    elif m == "accuracy" and numeric(r.get("accuracy")):
      acc[(k, str(r.get("source_task")))] = float(r["accuracy"])
  return td, band, logi, acc


def td_analysis(rows, n_layers: int | None) -> dict | None:
  """Curves, chance, null band, peaks with a bootstrap-over-tasks depth
  interval, the TD-vs-accuracy fit and the rise with shots; None without
  per-layer TD rows (e.g. an old summary-only row)."""
  from icl_jax.analysis.cluster_stats import (best_layer_spread,
                                              cluster_bootstrap)
  from icl_jax.probes.task_decodability import peak_layer
  from icl_jax.studies.han_td import (bootstrap_r2_over_tasks, r2_fit,
                                      task_mean_curve)

  td, band, logi, acc = _collect(rows)
  if not td:
    return None
  shots = sorted(td)
  layers = sorted({l for k in td for t in td[k] for l in td[k][t]})
  classes = sorted({t for k in td for t in td[k] if t != "mean"})
  tasks = [t for t in classes if t != "null"]  # Null: a class, not a task
  full = lambda k, t: all(l in td[k].get(t, {}) for l in layers)
  # Mean over the real tasks in float64 from the per-task rows, as the
  # study's summary and `best_layer_spread` compute it (the run's float32
  # "mean" row can break a tie between layers the other way); the "mean"
  # row only without them.
  def mean_curve(k):
    if all(full(k, t) for t in tasks):
      return task_mean_curve([[td[k][t][l] for l in layers] for t in tasks])
    if full(k, "mean"):
      return [td[k]["mean"][l] for l in layers]
    return [float(np.mean([td[k][t][l] for t in tasks
                           if l in td[k].get(t, {})])) for l in layers]

  mean = {k: mean_curve(k) for k in shots}
  peak = {k: layers[peak_layer(mean[k])] for k in shots}
  ref_k = PEAK_SHOTS if PEAK_SHOTS in shots else shots[len(shots) // 2]
  ref = peak[ref_k]
  nl = n_layers or (max(layers) + 1)
  a = {"shots": shots, "layers": layers, "tasks": tasks, "ref_k": ref_k,
       "n_classes": len(classes), "chance": 1.0 / max(1, len(classes)),
       "mean": mean, "peak": peak, "n_layers": nl, "band": band,
       "logistic": logi, "n": _n_per_class(rows)}
  done = [t for t in tasks if full(ref_k, t)]
  if len(done) >= 2:
    m = np.array([[td[ref_k][t][l] for t in done] for l in layers])  # [L,T]
    a["depth"] = best_layer_spread(m, layers, nl, seed=SEED)
  pts = [{"task": t, "shots": k, "td": td[k][t][ref],
          "accuracy": acc[(k, t)]} for k in shots for t in tasks
         if (k, t) in acc and ref in td[k].get(t, {})]
  if pts:
    a["fit"] = {**r2_fit([p["td"] for p in pts],
                         [p["accuracy"] for p in pts]),
                "interval": bootstrap_r2_over_tasks(pts, seed=SEED),
                "n_tasks": len({p["task"] for p in pts}), "layer": ref}
    a["mean_accuracy"] = {k: float(np.mean([p["accuracy"] for p in pts
                                            if p["shots"] == k]))
                          for k in shots if any(p["shots"] == k for p in pts)}
  lo_k, hi_k = shots[0], shots[-1]
  rise = [td[hi_k][t][ref] - td[lo_k][t][ref] for t in tasks
          if ref in td[lo_k].get(t, {}) and ref in td[hi_k].get(t, {})]
  if len(shots) > 1 and rise:
    a["rise"] = (lo_k, hi_k, *cluster_bootstrap(np.array([rise]),
                                                seed=SEED), len(rise))
  return a


def _n_per_class(rows) -> int | None:
  ns = {r.get("n") for r in rows if r.get("metric") == "td" and
        r.get("source_task") not in ("mean", None) and _is_int(r.get("n"))}
  return min(ns) if ns else None


def _han_r2(family: str) -> tuple[str, float | None]:
  """Han's R^2 for a family: Llama-3.1-8B's value and the range over their
  models ('-' for the study's own tasks, which Han did not run)."""
  from icl_jax.studies.han_td import HAN_REFERENCE

  vals = {m: v[family] for m, v in HAN_REFERENCE["R2"].items()
          if family in v}
  if not vals:
    return "- (Han did not run these tasks)", None
  main = vals.get("Llama-3.1-8B")
  return (f"{main:.2f} (Llama-3.1-8B; {min(vals.values()):.2f}-"
          f"{max(vals.values()):.2f} over their models)", main)


def _han_peak_depth(family: str) -> float | None:
  from icl_jax.studies.han_td import HAN_REFERENCE

  ref = HAN_REFERENCE["Llama-3.1-8B_4shot"]
  p = ref["peak_layer"].get(family)
  return p / ref["n_layers"] if p is not None else None


def _han_td_text() -> str:
  """Han's 4-shot peaks and mean TD (Llama-3.1-8B) from the reference."""
  from icl_jax.studies.han_td import HAN_REFERENCE

  ref = HAN_REFERENCE["Llama-3.1-8B_4shot"]
  return "Han (Llama-3.1-8B, 4-shot): " + "; ".join(
      f"{fam} peak L{p}/{ref['n_layers']}, mean TD "
      f"{ref['mean_td_at_peak'][fam]:.2f}"
      for fam, p in sorted(ref["peak_layer"].items())) + "."


def fit_reading(fit: dict) -> str:
  """Plain words for an R^2 and its interval over tasks."""
  if fit.get("R2") is None:
    return "no fit (TD or accuracy constant over the points)"
  iv = fit.get("interval")
  if iv is None:
    return "too few task resamples with a fit: no interval"
  if iv[0] < R2_FLOOR:
    # No evidence either way is not evidence of no relation: the interval
    # reaches ~0, and (as on smollm2-135m bitwise, [0.00, 0.67]) it may
    # also hold Han's values.
    return (f"the interval reaches ~0 (lower end < {R2_FLOOR}): this run "
            "cannot show that TD predicts accuracy")
  return "TD predicts accuracy (R^2 above ~0 under every task resample)"


def _depth_text(a) -> str:
  d = a.get("depth")
  k = a["ref_k"]
  txt = f"L{a['peak'][k]} (depth {a['peak'][k] / a['n_layers']:.2f})"
  if d:
    txt += f" [{d['depth_lo']:.2f}, {d['depth_hi']:.2f}]"
  return txt


def _peak_table(groups) -> str:
  out = []
  for exp, model, fam, a in groups:
    for k in a["shots"]:
      p = a["peak"][k]
      bl = a["band"].get(k, {}).get(p)
      lg = a["logistic"].get(k, {}).get(p)
      out.append([short_model(model), fam, f"`{exp}`", k,
                  f"{a['n_classes']} ({a['chance']:.2f})",
                  f"L{p} (depth {p / a['n_layers']:.2f})",
                  f2(a["mean"][k][a["layers"].index(p)]),
                  f"[{bl[0]:.2f}, {bl[1]:.2f}]" if bl else "-",
                  f2(lg), f2(a.get("mean_accuracy", {}).get(k)),
                  a["n"] or "-"])
  return md_table(["model", "family", "experiment", "shots",
                   "classes (chance)", "peak layer", "mean TD at peak",
                   "shuffled-label null 5-95% at peak",
                   "logistic-probe accuracy at peak (a probe, not TD)",
                   "ICL accuracy", "N per class"], out)


def _curve_table(groups) -> str:
  """Mean TD at every layer (no layer hidden), with the null's 95th
  percentile under each curve."""
  out = []
  width = max(len(a["layers"]) for *_, a in groups)
  for exp, model, fam, a in groups:
    for k in a["shots"]:
      out.append([short_model(model), fam, f"{k}-shot TD"] +
                 [f2(v) for v in a["mean"][k]] +
                 [""] * (width - len(a["layers"])))
      if a["band"].get(k):
        out.append([short_model(model), fam, f"{k}-shot null 95%"] +
                   [f2(a["band"][k].get(l, (None, None))[1])
                    for l in a["layers"]] + [""] * (width - len(a["layers"])))
  return md_table(["model", "family", "curve"] +
                  [f"L{i}" for i in range(width)], out)


def _fit_table(groups) -> str:
  out = []
  for exp, model, fam, a in groups:
    f = a.get("fit")
    if not f:
      continue
    iv = f.get("interval")
    out.append([short_model(model), fam, f"`{exp}`",
                f"L{f['layer']} ({a['ref_k']}-shot peak)",
                f"{f['n_points']} ({f['n_tasks']} tasks x "
                f"{len(a['shots'])} shot counts)", f2(f.get("R2")),
                f"[{iv[0]:.2f}, {iv[1]:.2f}]" if iv else "-",
                _han_r2(fam)[0], fit_reading(f)])
  return md_table(["model", "family", "experiment", "TD at", "points",
                   "R^2", "95% interval (bootstrap over tasks)",
                   "Han's R^2", "reading"], out)


def analysed_td(data: Data) -> list[tuple[str, str, str, dict]]:
  out = []
  for exp, model, fam, rows in td_groups(data):
    a = td_analysis(rows, data.n_layers(model))
    if a:
      out.append((exp, model, fam, a))
  return out


def render_td(data: Data) -> str:
  """The TD part of the Han section (empty string without TD runs)."""
  groups = analysed_td(data)
  if not groups:
    return ""
  parts = [
      "TD (Han's definition): leave-one-out 10-NN accuracy of the task "
      "label from the residual at the token before the answer, per class "
      "and averaged over the real tasks; chance is 1/number of classes "
      "(Null counts as a class on Han's families); the band is the 5-95% "
      "range of mean TD with shuffled labels. The peak layer's depth "
      "interval resamples tasks. " + _han_td_text() + "\n",
      _peak_table(groups), "Mean TD by layer (every layer):\n",
      _curve_table(groups), td_figure(data, groups),
      "TD vs ICL accuracy: one point per (task, shot count) at the "
      f"{PEAK_SHOTS}-shot peak layer, least-squares R^2 as Han report it. "
      "The points of one task across shot counts are not independent, so "
      "the interval resamples tasks (each with all its points), not "
      "points.\n", _fit_table(groups)]
  return "\n".join(parts)


def _summary_td_rows(model, fam, a) -> list[list]:
  """TD rises with shots; TD peaks mid-depth; TD predicts accuracy: rows
  in `summary.SUMMARY_HEADERS` order (Han's runs have one mode, aligned)."""
  from icl_jax.analysis.report.verdicts import Estimate, verdict

  out, m, n = [], short_model(model), a["n"]
  ncell = f"N={n} per class, {len(a['tasks'])} tasks"
  if "rise" in a:
    k0, k1, d, lo, hi, nt = a["rise"]
    e = Estimate(d, lo, hi, n=n)
    out.append([m, f"Han: TD rises with shots ({fam}, {k0} -> {k1} shots, "
                f"TD at L{a['peak'][a['ref_k']]}; interval over tasks)", "-",
                e.show(), "rises for every task (Fig. 3; no number)",
                ncell, verdict(0.0, None, e, "direction")])
  han = _han_peak_depth(fam)
  if a.get("depth") and han is not None:
    d = a["depth"]
    e = Estimate(d["depth"], d["depth_lo"], d["depth_hi"],
                 text=f"{d['depth']:.2f} (L{d['layer']}) [{d['depth_lo']:.2f}"
                 f", {d['depth_hi']:.2f}]")
    out.append([m, f"Han: TD peaks mid-depth ({fam}, {a['ref_k']}-shot; "
                "depth interval over tasks)", "-", e.show(),
                f"{han:.2f} (Llama-3.1-8B)", ncell, verdict(han, None, e,
                                                            "depth")])
  f = a.get("fit")
  text, r2 = _han_r2(fam)
  if f and f.get("R2") is not None and f.get("interval") and r2 is not None:
    e = Estimate(f["R2"], *f["interval"], n=n)
    out.append([m, f"Han: TD predicts accuracy, R^2 ({fam}, "
                f"{f['n_points']} points; interval over tasks)", "-",
                e.show(), text, ncell, verdict(r2, None, e, "value")])
  return out


def han_summary_rows(data: Data) -> list[list]:
  """Han et al.'s headline claims for the summary table, one row per model
  and family, cells in `summary.SUMMARY_HEADERS` order with the verdict of
  `verdicts.verdict` (Han's runs are aligned-mode only: the faithful cell
  is '-')."""
  from icl_jax.analysis.report.verdicts import Estimate, verdict

  rows = []
  for exp, model, fam, a in analysed_td(data):
    if exp == "han_td":
      rows += _summary_td_rows(model, fam, a)
  orig = (HAN_TV["positive"] - HAN_TV["negative"]) / 100
  for e in tv_effects(data):
    # Han's protocol (spec 5.2): the query's pre-answer token, replaced.
    if (e["experiment"], e["positions"], e["edit"]) != (
        "han_task_vectors", "query", "replace"):
      continue
    d, lo, hi = e["diff"] / 100, e["lo"] / 100, e["hi"] / 100  # rates
    est = Estimate(d, lo, hi, n=e["n"],
                   text=f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]")
    rows.append([short_model(e["model"]), f"Han: task vectors move accuracy "
                 f"({e['family']}, own task's vector minus Null's at the "
                 f"query token, L{e['layer']}; interval over tasks)", "-",
                 est.show(), f"{orig:+.2f} (+{HAN_TV['positive']:.0f} / "
                 f"{HAN_TV['negative']:.0f} pts, separable tasks)",
                 f"N={e['n']} per task, {e['n_tasks']} tasks x "
                 f"{e['n_seeds']} seeds", verdict(orig, None, est, "effect")])
  rows += ft_summary_rows(data)
  return rows


NO_ROWS = "No rows found (not run).\n"


def han_section(data: Data) -> list[str]:
  """The report's Han et al. section: heading and body, every part shown
  (or NO_ROWS), then generic tables of rows no part could use."""
  used = ({e for e, *_ in analysed_td(data)} |
          {e["experiment"] for e in tv_effects(data)})
  unused = [n for n in TD_EXPERIMENTS + TV_EXPERIMENTS
            if data.get(n) and n not in used]
  pngs = [p for e in HAN_EXPERIMENTS for p in data.pngs(e)]
  return ["## Han et al.: task decodability, task vectors, finetuning\n",
          "Han et al. (arXiv 2412.12276) on their own task families (POS, "
          "bitwise: every task of a family sees the same inputs, so only "
          "the demonstrated rule tells them apart) and, in the older runs, "
          "on the study's tasks (which differ by their inputs, so TD there "
          "is high at every layer).\n",
          "### Task decodability\n", render_td(data) or NO_ROWS,
          "### Task vectors\n", render_tv(data) or NO_ROWS,
          "### Early- vs late-layer finetuning (Han's Table 1)\n",
          render_finetune(data) or NO_ROWS, "### Synthetic study\n",
          render_synthetic(data)] + generic_sections(data, unused) + (
              ["Plots of the runs:\n", images(data, pngs)] if pngs else [])
