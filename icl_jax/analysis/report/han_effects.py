"""Han et al. in the report, part 2: the TD-by-layer figure, task-vector
effects beside their null, the early- vs late-layer finetuning table (Han's
Table 1), the synthetic study (rows: `report.synthetic`; without rows a
pointer to the reduced run). Numbers come from the rows
(`han_task_vectors`, `task_vectors`, `han_finetune`); Han's from the
studies' reference tables and spec 5.3.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from icl_jax.analysis.report.data import SYNTHETIC_EXPERIMENTS, Data
from icl_jax.analysis.report.markdown import (f2, images, md_table, numeric,
                                              short_model)

TV_EXPERIMENTS = ("han_task_vectors", "task_vectors")
FT_EXPERIMENTS = ("han_finetune",)
# Han, Llama-3.1-8B (spec 5.3): separable tasks up to +14 pts with the own
# task's vector, -15 with Null's; overlapping tasks +2 / -6.
HAN_TV = {"positive": 14.0, "negative": -15.0}
# Null vectors in order of preference for the task-minus-null comparison.
NULL_KINDS = ("null", "null_shuffled", "null_mean")
# A finetuning run whose loss changed by less than this fraction "barely
# moved": it tests the training code, not early vs late layers.
LOSS_MOVED = 0.10
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
      m = np.array([[task[(s, t)] - kinds[nk][(s, t)] if (s, t) in task
                     and (s, t) in kinds[nk] else np.nan for t in tasks]
                    for s in seeds])  # [seeds, tasks]
      diff, lo, hi = cluster_bootstrap(100 * m, seed=SEED)
      cl = [clean.get((exp, model, fam, s, t)) for s, t in cells]
      base = (float(np.mean(cl)) if cl and None not in cl else None)
      mean_t = float(np.mean([task[c] for c in cells]))
      mean_n = float(np.mean([kinds[nk][c] for c in cells]))
      out.append({"experiment": exp, "model": model, "family": fam,
                  "layer": layer, "positions": pos, "edit": edit,
                  "null": nk, "clean": base, "task": mean_t, "null_acc": mean_n,
                  "diff": diff, "lo": lo, "hi": hi, "n_tasks": len(tasks),
                  "n_seeds": len(seeds), "n": _min_n(data, exp, model)})
  return out


def _min_n(data: Data, exp: str, model) -> int | None:
  ns = [r["n"] for r in data.get(exp) if r.get("model") == model
        and isinstance(r.get("n"), int)]
  return min(ns) if ns else None


def tv_reading(e: dict) -> str:
  if e["lo"] <= 0 <= e["hi"]:
    return "no effect beyond the null"
  return ("task vector above its null" if e["lo"] > 0 else
          "task vector below its null")


def _pts(x, base) -> str:
  return "-" if base is None else f"{100 * (x - base):+.1f}"


def render_tv(data: Data) -> str:
  effects = tv_effects(data)
  if not effects:
    return ""
  rows = [[short_model(e["model"]), e["family"], f"`{e['experiment']}`",
           f"L{e['layer']}", e["positions"], e["edit"], f2(e["clean"]),
           f"{f2(e['task'])} ({_pts(e['task'], e['clean'])})",
           f"{e['null']}: {f2(e['null_acc'])} "
           f"({_pts(e['null_acc'], e['clean'])})",
           f"{e['diff']:+.1f} [{e['lo']:+.1f}, {e['hi']:+.1f}]",
           f"{e['n_tasks']} x {e['n_seeds']}", tv_reading(e)]
          for e in effects]
  return (
      "Accuracy with the task's own mean vector written in, beside the same "
      "edit with a null vector (Han's negative intervention: the Null "
      "class's vector; the older run: a shuffled-label or mean vector). "
      "Changes vs the clean prompts in points; the task - null interval "
      "resamples tasks. Han (Llama-3.1-8B, separable tasks): up to "
      f"{HAN_TV['positive']:+.0f} pts (own task) and "
      f"{HAN_TV['negative']:+.0f} pts (Null).\n\n" + md_table(
          ["model", "family", "experiment", "layer", "positions", "edit",
           "clean accuracy", "with task vector (pts vs clean)",
           "with null vector (pts vs clean)", "task - null, pts [95%]",
           "tasks x seeds", "reading"], rows))


def _training(r: dict, family: str, arm: str) -> dict | None:
  """Steps and losses of a finetuned arm: the row's own fields when it has
  them, else its run's summary.json `training` record."""
  import json
  from pathlib import Path

  if numeric(r.get("loss_first")):
    return {k: r.get(k) for k in ("steps", "loss_first", "loss_last_10",
                                  "n_examples")}
  try:
    s = json.loads((Path(r["_dir"]) / "summary.json").read_text())
  except (KeyError, OSError, ValueError):
    return None
  return (s.get("training") or {}).get(f"{family}/{arm}")


def _ms(xs) -> str:
  return f"{np.mean(xs):.2f} ± {np.std(xs):.2f}" if xs else "-"


def render_finetune(data: Data) -> str:
  """Han's Table 1 for our models: TD and accuracy per arm (mean ± std over
  tasks), with each finetuned arm's step count and loss."""
  from icl_jax.studies.han_finetune import HAN_TABLE1

  groups = defaultdict(list)
  for exp in FT_EXPERIMENTS:
    for r in data.get(exp):
      groups[(str(r.get("model")), str(r.get("family")),
              str(r.get("condition")))].append(r)
  if not groups:
    return ""
  rows, notes = [], []
  for (model, fam, arm), rs in sorted(groups.items()):
    han = HAN_TABLE1.get(fam, {}).get(arm)
    tr = _training(rs[0], fam, arm)
    steps = tr.get("steps") if tr else None
    n_ex = tr.get("n_examples") if tr else None
    rows.append([short_model(model), fam, arm,
                 _ms([r["td"] for r in rs if numeric(r.get("td"))]),
                 _ms([100 * r["accuracy"] for r in rs
                      if numeric(r.get("accuracy"))]),
                 f"L{rs[0].get('layer')}", rs[0].get("n", "-"),
                 steps if steps is not None else "-",
                 n_ex if n_ex is not None else "-",
                 f"{han[0][0]:.2f} ± {han[0][1]:.2f}" if han else "-",
                 f"{han[1][0]:.1f} ± {han[1][1]:.1f}" if han else "-"])
    if tr and numeric(tr.get("loss_first")) and numeric(
        tr.get("loss_last_10")):
      notes.append(_loss_note(model, fam, arm, tr))
  return ("TD at the layer shown and 4-shot accuracy (%) per arm, mean ± "
          "std over the family's tasks; Han's columns are Llama-3.1-8B "
          "(Table 1).\n\n" + md_table(
              ["model", "family", "arm", "TD", "accuracy %", "TD layer",
               "N per task", "training steps", "training prompts (Han: "
               "10,000)", "Han TD", "Han accuracy %"],
              rows) + ("\n" + "\n".join(notes) + "\n" if notes else "")
          + "\n" + render_ft_contrasts(data))


# Han's Table 1 read as contrasts between arms (a minus b), paired by task.
FT_CONTRASTS = (("ft_first", "ft_last"), ("ft_first", "pretrained"),
                ("ft_last", "pretrained"), ("prompting", "pretrained"))
FT_MEASURES = (("accuracy", 100.0), ("td", 1.0))  # (field, scale): pts, TD


def _loss_change(tr: dict | None) -> float | None:
  """Relative change of the training loss (last-10 mean vs first step)."""
  if not tr or not numeric(tr.get("loss_first")) or not numeric(
      tr.get("loss_last_10")) or not tr["loss_first"]:
    return None
  return (float(tr["loss_last_10"]) - float(tr["loss_first"])) / float(
      tr["loss_first"])


def _han_contrast(fam: str, a: str, b: str, measure: str) -> float | None:
  """Han's Table 1 difference a - b (TD, or accuracy in points)."""
  from icl_jax.studies.han_finetune import HAN_TABLE1

  t = HAN_TABLE1.get(fam, {})
  if a not in t or b not in t:
    return None
  i = 0 if measure == "td" else 1
  return t[a][i][0] - t[b][i][0]


def ft_effects(data: Data) -> list[dict]:
  """One entry per (model, family, contrast a - b of FT_CONTRASTS): per
  measure (accuracy in points, TD) the mean over tasks of the per-task
  difference, with a 95% interval resampling tasks (the arms are scored on
  the same tasks, so the difference is paired), Han's difference, and
  `untestable`: why the contrast cannot speak to Han's claim (a finetuned
  arm whose training loss barely moved, or has no training record)."""
  from icl_jax.analysis.cluster_stats import cluster_bootstrap

  arms = defaultdict(lambda: defaultdict(dict))  # (model, fam) -> arm -> task
  for exp in FT_EXPERIMENTS:
    for r in data.get(exp):
      arms[(str(r.get("model")), str(r.get("family")))][
          str(r.get("condition"))][str(r.get("target_task"))] = r
  out = []
  for (model, fam), by_arm in sorted(arms.items()):
    for a, b in FT_CONTRASTS:
      if a not in by_arm or b not in by_arm:
        continue
      tasks = sorted(set(by_arm[a]) & set(by_arm[b]))
      if not tasks:
        continue
      e = {"model": model, "family": fam, "a": a, "b": b,
           "n_tasks": len(tasks), "untestable": None, "training": {},
           "n": min(int(by_arm[x][t].get("n") or 0)
                    for x in (a, b) for t in tasks) or None}
      for arm in (a, b):
        if not arm.startswith("ft_"):
          continue
        tr = _training(by_arm[arm][tasks[0]], fam, arm)
        e["training"][arm] = tr
        change = _loss_change(tr)
        if change is None:
          e["untestable"] = e["untestable"] or f"{arm}: no training record"
        elif abs(change) < LOSS_MOVED:
          e["untestable"] = e["untestable"] or (
              f"{arm}'s training loss barely moved ({100 * change:+.0f}% in "
              f"{tr.get('steps')} steps)")
      for measure, scale in FT_MEASURES:
        pairs = [(by_arm[a][t].get(measure), by_arm[b][t].get(measure))
                 for t in tasks]
        if not all(numeric(x) and numeric(y) for x, y in pairs):
          continue
        m = scale * np.array([[x - y for x, y in pairs]])  # [1, tasks]
        e[measure] = cluster_bootstrap(m, seed=SEED)  # (mean, lo, hi)
        e[f"han_{measure}"] = _han_contrast(fam, a, b, measure)
      out.append(e)
  return out


def ft_reading(e: dict) -> str:
  """Words for a contrast's accuracy interval."""
  if "accuracy" not in e:
    return "-"
  _, lo, hi = e["accuracy"]
  text = (f"{e['a']} above {e['b']}" if lo > 0 else
          f"{e['a']} below {e['b']}" if hi < 0 else "no difference shown")
  if e["untestable"]:
    text += f" ({e['untestable']}: tests the training code, not Han's claim)"
  return text


def _interval(x, fmt) -> str:
  return "-" if x is None else f"{x[0]:{fmt}} [{x[1]:{fmt}}, {x[2]:{fmt}}]"


def render_ft_contrasts(data: Data) -> str:
  """The arms' differences, paired by task, beside Han's."""
  effects = ft_effects(data)
  if not effects:
    return ""
  han = lambda x, fmt: "-" if x is None else f"{x:{fmt}}"
  rows = [[short_model(e["model"]), e["family"], f"{e['a']} - {e['b']}",
           _interval(e.get("accuracy"), "+.1f"),
           han(e.get("han_accuracy"), "+.1f"), _interval(e.get("td"), "+.2f"),
           han(e.get("han_td"), "+.2f"), e["n_tasks"], ft_reading(e)]
          for e in effects]
  return ("Differences between arms, paired by task (mean over tasks; the "
          "95% interval resamples tasks); Han's from their Table 1 "
          "(Llama-3.1-8B).\n\n" + md_table(
              ["model", "family", "contrast", "accuracy, pts [95%]",
               "Han, pts", "TD [95%]", "Han TD", "tasks", "reading"], rows))


def _loss_note(model, fam, arm, tr) -> str:
  a, b = float(tr["loss_first"]), float(tr["loss_last_10"])
  change = _loss_change(tr) or 0.0
  text = (f"- {short_model(model)} {fam} {arm}: {tr.get('steps')} steps, "
          f"loss {a:.3f} -> {b:.3f} (mean of the last 10 steps; "
          f"{100 * change:+.0f}%)")
  if abs(change) < LOSS_MOVED:
    text += (f": the loss barely moved (< {100 * LOSS_MOVED:.0f}%), so this "
             "run only tests the training code; its accuracies say nothing "
             "about early- vs late-layer finetuning")
  return text + "."


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
