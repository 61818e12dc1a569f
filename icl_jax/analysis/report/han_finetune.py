"""Han et al. in the report, part 3: early- vs late-layer finetuning (Han's
Table 1) from `han_finetune` rows: the table per arm with its training
size and loss, the arms' differences paired by task beside Han's, and the
summary rows of the claim "finetuning the first layers beats the last".
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from icl_jax.analysis.report.data import Data
from icl_jax.analysis.report.markdown import md_table, numeric, short_model

FT_EXPERIMENTS = ("han_finetune",)
# A finetuning run whose loss changed by less than this fraction "barely
# moved": it tests the training code, not early vs late layers.
LOSS_MOVED = 0.10
SEED = 0  # of the bootstrap over tasks


def _training(r: dict, family: str, arm: str) -> dict | None:
  """Steps and losses of a finetuned arm: the row's own fields when it has
  them, else its run's summary.json `training` record, else (a run not
  finished yet) the arm's own `lora_<family>_<arm>/info.json`."""
  import json
  from pathlib import Path

  if numeric(r.get("loss_first")):
    return {k: r.get(k) for k in ("steps", "loss_first", "loss_last_10",
                                  "n_examples")}
  if "_dir" not in r:
    return None
  run = Path(r["_dir"])
  for path, key in ((run / "summary.json", "training"),
                    (run / f"lora_{family}_{arm}" / "info.json", None)):
    try:
      s = json.loads(path.read_text())
    except (OSError, ValueError):
      continue
    found = s if key is None else (s.get(key) or {}).get(f"{family}/{arm}")
    if found:
      return found
  return None


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
    text += f" (not a test of Han's claim: {e['untestable']})"
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


# Han's Table 1 claims in the summary: the contrast and its words.
FT_CLAIMS = {("ft_first", "ft_last"): "finetuning the first third of the "
             "layers beats finetuning the last third",
             ("ft_first", "pretrained"): "finetuning the first third of the "
             "layers improves on the pretrained model"}


def ft_summary_rows(data: Data) -> list[list]:
  """Summary-table rows (`verdicts.SUMMARY_HEADERS`) of Han's Table 1
  claims (FT_CLAIMS), each a paired contrast of `ft_effects` in accuracy
  and in TD; not testable while a finetuned arm's loss barely moved."""
  from icl_jax.analysis.report.verdicts import Estimate, verdict

  rows = []
  for e in ft_effects(data):
    claim = FT_CLAIMS.get((e["a"], e["b"]))
    if claim is None:
      continue
    tr = e["training"].get("ft_first") or {}
    for measure, scale in FT_MEASURES:
      what = "TD" if measure == "td" else measure
      han = e.get(f"han_{measure}")
      if measure not in e or han is None:
        continue
      d, lo, hi = (x / scale for x in e[measure])  # rates / TD
      est = Estimate(d, lo, hi, n=e["n"], untestable=e["untestable"],
                     text=f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]")
      rows.append([short_model(e["model"]), f"Han: {claim} ({e['family']}, "
                   f"{e['a']} - {e['b']} {what}, paired by task; interval "
                   "over tasks)", "-", est.show(), f"{han / scale:+.2f} "
                   "(Llama-3.1-8B, 10,000 training prompts)",
                   f"N={e['n']} per task, {e['n_tasks']} tasks; "
                   f"{tr.get('steps', '-')} steps on "
                   f"{tr.get('n_examples', '-')} prompts",
                   verdict(han / scale, None, est, "effect")])
  return rows


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
