"""Han et al. in the report, part 2: the TD-by-layer figure, task-vector
effects beside their null, the synthetic study (rows: `report.synthetic`;
without rows a pointer to the reduced run). Numbers come from the rows
(`han_task_vectors`, `task_vectors`); Han's from spec 5.3. Finetuning
(Han's Table 1): `report.han_finetune`.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from icl_jax.analysis.report.data import SYNTHETIC_EXPERIMENTS, Data
from icl_jax.analysis.report.markdown import (f2, images, md_table, numeric,
                                              short_model)

TV_EXPERIMENTS = ("han_task_vectors", "task_vectors")
# Han, Llama-3.1-8B (spec 5.3): separable tasks up to +14 pts with the own
# task's vector, -15 with Null's; overlapping tasks +2 / -6.
HAN_TV = {"positive": 14.0, "negative": -15.0}
# Null vectors in order of preference for the task-minus-null comparison.
NULL_KINDS = ("null", "null_shuffled", "null_mean")
SEED = 0
FIG_DIR = ("report_figures", "han")
SHOT_ORDER = (1, 2, 4, 5, 8, 10, 16, 20)  # colour i of tab10 per shot count


def _tv_records(data: Data):
  """(records, clean): records {(exp, model, family, layer, positions,
  edit): {kind: {(seed, task): accuracy}}}; clean {(exp, model, family,
  seed, task): accuracy}."""
  recs = defaultdict(lambda: defaultdict(dict))
  clean = {}
  for exp in TV_EXPERIMENTS:
    for r in data.get(exp):
      if not numeric(r.get("accuracy")):
        continue
      fam = r.get("family") or "study tasks"
      task, seed = str(r.get("target_task")), r.get("seed", 0)
      if r.get("source_task") == "none" or r.get("condition") == "none":
        clean[(exp, r.get("model"), fam, seed, task)] = r["accuracy"]
        continue
      if exp == "han_task_vectors":
        kind = str(r.get("vector"))
        edit = (str(r.get("edit")) + (f"@{r['alpha']:g}" if
                                      numeric(r.get("alpha")) else ""))
        pos = str(r.get("positions"))
      else:
        kind = str(r.get("condition"))
        edit = f"{r.get('edit')}@{r.get('alpha')}"
        pos = "final token"
      key = (exp, r.get("model"), fam, r.get("layer"), pos, edit)
      recs[key][kind][(seed, task)] = r["accuracy"]
  return recs, clean


def tv_effects(data: Data) -> list[dict]:
  """One entry per (run cell, null kind): mean accuracy change vs clean of
  the task vector and of the null vector (points), and task - null with a
  95% interval resampling tasks (seeds paired)."""
  from icl_jax.analysis.cluster_stats import cluster_bootstrap

  recs, clean = _tv_records(data)
  out = []
  for key in sorted(recs, key=lambda k: tuple(map(str, k))):
    exp, model, fam, layer, pos, edit = key
    kinds = recs[key]
    task = kinds.get("task", {})
    for nk in [k for k in NULL_KINDS if k in kinds]:
      cells = sorted(set(task) & set(kinds[nk]), key=str)
      if not cells:
        continue
      seeds = sorted({s for s, _ in cells}, key=str)
      tasks = sorted({t for _, t in cells})
      m = _paired(cells, seeds, tasks, lambda c: task[c] - kinds[nk][c])
      diff, lo, hi = cluster_bootstrap(100 * m, seed=SEED)
      cl = [clean.get((exp, model, fam, s, t)) for s, t in cells]
      base = (float(np.mean(cl)) if cl and None not in cl else None)
      vs_clean = None  # the task vector's own change: task - clean, points
      if base is not None:
        mc = _paired(cells, seeds, tasks,
                     lambda c: task[c] - clean[(exp, model, fam, *c)])
        vs_clean = cluster_bootstrap(100 * mc, seed=SEED)
      mean_t = float(np.mean([task[c] for c in cells]))
      mean_n = float(np.mean([kinds[nk][c] for c in cells]))
      out.append({"experiment": exp, "model": model, "family": fam,
                  "layer": layer, "positions": pos, "edit": edit,
                  "null": nk, "clean": base, "task": mean_t, "null_acc": mean_n,
                  "diff": diff, "lo": lo, "hi": hi, "vs_clean": vs_clean,
                  "n_tasks": len(tasks),
                  "n_seeds": len(seeds), "n": _min_n(data, exp, model)})
  return out


def _paired(cells, seeds, tasks, change) -> np.ndarray:
  """[seeds, tasks]: change((seed, task)) on the cells, NaN elsewhere."""
  have = set(cells)
  return np.array([[change((s, t)) if (s, t) in have else np.nan
                    for t in tasks] for s in seeds])


def _min_n(data: Data, exp: str, model) -> int | None:
  ns = [r["n"] for r in data.get(exp) if r.get("model") == model
        and isinstance(r.get("n"), int)]
  return min(ns) if ns else None


def _side(lo: float, hi: float, above: str, below: str, neither: str):
  return neither if lo <= 0 <= hi else (above if lo > 0 else below)


def tv_reading(e: dict) -> str:
  """Against the null (task - null) and, when the clean accuracy is known,
  against the clean prompts (Han's positive intervention raises accuracy):
  each by whether its 95% interval excludes zero."""
  null = _side(e["lo"], e["hi"], "above its null", "below its null",
               "no different from its null")
  if e.get("vs_clean") is None:
    return "task vector: " + null
  _, lo, hi = e["vs_clean"]
  clean = _side(lo, hi, "raises accuracy", "lowers accuracy",
                "no change vs clean")
  return f"task vector: {clean}; {null}"


def _pts(x, base) -> str:
  return "-" if base is None else f"{100 * (x - base):+.1f}"


def _task_cell(e: dict) -> str:
  """Accuracy with the task vector, its change vs clean with the interval."""
  if e.get("vs_clean") is None:
    return f"{f2(e['task'])} ({_pts(e['task'], e['clean'])})"
  d, lo, hi = e["vs_clean"]
  return f"{f2(e['task'])} ({d:+.1f} [{lo:+.1f}, {hi:+.1f}])"


def render_tv(data: Data) -> str:
  effects = tv_effects(data)
  if not effects:
    return ""
  rows = [[short_model(e["model"]), e["family"], f"`{e['experiment']}`",
           f"L{e['layer']}", e["positions"], e["edit"], f2(e["clean"]),
           _task_cell(e),
           f"{e['null']}: {f2(e['null_acc'])} "
           f"({_pts(e['null_acc'], e['clean'])})",
           f"{e['diff']:+.1f} [{e['lo']:+.1f}, {e['hi']:+.1f}]",
           f"{e['n_tasks']} x {e['n_seeds']}", tv_reading(e)]
          for e in effects]
  return (
      "Accuracy with the task's own mean vector written in, beside the same "
      "edit with a null vector (Han's negative intervention: the Null "
      "class's vector; the older run: a shuffled-label or mean vector). "
      "Changes vs the clean prompts in points; the intervals (95%, task "
      "vector vs clean and task - null) resample tasks, seeds paired; the "
      "reading says which of them exclude zero. Han (Llama-3.1-8B, separable tasks): up to "
      f"{HAN_TV['positive']:+.0f} pts (own task) and "
      f"{HAN_TV['negative']:+.0f} pts (Null).\n\n" + md_table(
          ["model", "family", "experiment", "layer", "positions", "edit",
           "clean accuracy", "with task vector (pts vs clean [95%])",
           "with null vector (pts vs clean)", "task - null, pts [95%]",
           "tasks x seeds", "reading"], rows))


def render_synthetic(data: Data) -> str:
  from icl_jax.analysis.report.synthetic import render_synthetic_rows

  if any(data.get(exp) for exp in SYNTHETIC_EXPERIMENTS):
    return render_synthetic_rows(data)
  return ("Not run (needs a GPU): the paper-size synthetic study (12 layers, "
          "8 heads, d=256, 80K steps) is `experiments/synthetic_emergence.py`"
          "; no rows of it are among the results read here. A reduced CPU "
          "run (4 layers, 4 heads, d=64, batch 64, 15K steps with a "
          "dimension curriculum: deviations from the paper) is described in "
          "BUILD_NOTES.md (Han et al., synthetic study) with its figure "
          "`experiments/figures/synthetic_reduced_curriculum.png`; its run "
          "directory was not kept, so its numbers are not read here: TD at "
          "the last layer left the shuffled-label null band (0.30-0.43 "
          "against a 95th percentile of ~0.29) as the first basis's test "
          "loss fell, far below the paper's ~1.0 (the model was not "
          "converged).\n")


def _shot_color(k: int):
  import matplotlib.pyplot as plt

  return plt.cm.tab10(SHOT_ORDER.index(k) if k in SHOT_ORDER else 9)


def td_figure(data: Data, groups) -> str:
  """One panel per (model, family): mean TD by layer per shot count, its
  shuffled-label null band, chance; returns the markdown image link."""
  from icl_jax.analysis.figures import (finish_grid, integer_ticks,
                                        panel_grid, save_figure)

  fig, axes = panel_grid(len(groups))
  for ax, (exp, model, fam, a) in zip(axes.flat, groups):
    for k in a["shots"]:
      c = _shot_color(k)
      ax.plot(a["layers"], a["mean"][k], marker=".", color=c,
              label=f"{k}-shot mean TD")
      b = a["band"].get(k, {})
      ls = [l for l in a["layers"] if l in b]
      if ls:
        ax.fill_between(ls, [b[l][0] for l in ls], [b[l][1] for l in ls],
                        color=c, alpha=0.15, lw=0)
    ax.axhline(a["chance"], color="0.4", ls=":", lw=1,
               label="chance (1/classes)")
    ax.set_title(f"{short_model(model)}: {fam} ({exp}, N={a['n']} per "
                 "class)", fontsize=8)
    ax.set_xlabel("layer")
    ax.set_ylim(-0.05, 1.05)
    integer_ticks(ax)
    ax.grid(alpha=0.3)
  # The shared legend reads the first panel: give it every shot count.
  first = {k for k in groups[0][3]["shots"]}
  for k in sorted({k for *_, a in groups for k in a["shots"]} - first):
    axes.flat[0].plot([], [], marker=".", color=_shot_color(k),
                      label=f"{k}-shot mean TD")
  finish_grid(fig, axes, len(groups), "mean TD (kNN, leave-one-out)",
              "Task decodability by layer; shaded: shuffled-label null "
              "5-95%")
  path = save_figure(fig, data.out_dir.joinpath(*FIG_DIR,
                                                "td_by_layer.png"))
  return images(data, [path])


def generic_sections(data: Data, names) -> list[str]:
  """Generic tables of Han experiments whose rows the renderers above
  cannot use (e.g. a summary-only row), headed as `build` heads others."""
  from icl_jax.analysis.report.generic import render_generic
  from icl_jax.analysis.report.names import study_id

  out = []
  for name in names:
    sid, t = study_id(name)
    out += [f"### {sid + ': ' if sid else ''}{t or name} (`{name}`)\n",
            render_generic(data, name, data.get(name))]
  return out
