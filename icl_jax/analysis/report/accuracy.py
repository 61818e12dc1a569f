"""Sections of the accuracy experiments: exp1 baseline accuracy and the
exp14 demo-count ablation (the other ablations, exp10-12, are generic
sections with the reference sentences of `snippets`)."""

from __future__ import annotations

from icl_jax.analysis import reference as R
from icl_jax.analysis.report.data import Data
from icl_jax.analysis.report.markdown import (by, counts, f2, md_table, mean,
                                              numeric, short_model,
                                              wilson_text)


def render_baseline(data: Data, rows) -> str:
  models = data.models(["baseline"])
  tasks = [t for t in R.BASELINE if any(r.get("source_task") == t
                                        for r in rows)]
  tasks += sorted({r.get("source_task") for r in rows} - set(tasks) -
                  {None})
  # One column pair per (model, mode): faithful = the study's fixed demos,
  # aligned = demos sampled per prompt (the rows' demo_mode); each with its
  # mode's scorer (Wilson 95%) and the other scorer beside it.
  cols = [(m, mode) for m in models for mode in ("faithful", "aligned")
          if any(r.get("model") == m and r.get("mode") == mode for r in rows)]
  head = ["task"]
  for m, mode in cols:
    demos = sorted({str(r.get("demo_mode")) for r in rows
                    if r.get("model") == m and r.get("mode") == mode} -
                   {"None"})
    label = f"{short_model(m)} {mode}" + (f" ({'/'.join(demos)} demos)"
                                           if demos else "")
    other = "strict" if mode == "faithful" else "faithful scorer"
    head += [label, f"{short_model(m)} {mode}, {other}"]
  head += [R.MODEL_LABELS[m] for m in R.ORIGINAL_MODELS]
  table = []
  for t in tasks:
    line = [t]
    for m, mode in cols:
      rs = [r for r in rows if r.get("model") == m and r.get("mode") == mode
            and r.get("source_task") == t]
      r = rs[0] if rs else None
      if r is None:
        line += ["-", "-"]
        continue
      n = r.get("n", 0)
      af = r.get("accuracy_faithful", r.get("preserve"))
      ast = r.get("accuracy_strict")
      main, other = (af, ast) if mode == "faithful" else (ast, af)
      line += [wilson_text(counts(main, n), n) if main is not None else "-",
               f2(other)]
    line += [f2(R.BASELINE.get(t, {}).get(m)) for m in R.ORIGINAL_MODELS]
    table.append(line)
  text = md_table(head, table)
  text += ("\nOriginal: N=50, 5 fixed demos, first RNG call; "
           + R.BASELINE_NOTES + "\n")
  return text


def render_exp14(data: Data, rows) -> str:
  """exp14: part A accuracy by demo count k (mean over tasks), part B
  single-position transfer by k (mean over pairs), beside the original."""
  models = data.models(["demo_ablation"])
  ks = sorted({r["k"] for r in rows if isinstance(r.get("k"), int)})
  head = ["model", "mode", "part"] + [f"k={k}" for k in ks]
  out = []
  for m in models:
    for mode in ("faithful", "aligned"):
      for part, label, metric in (("A", "A: task accuracy", "accuracy"),
                                  ("B", "B: transfer", "transfer")):
        rs = [r for r in rows if r.get("model") == m and r.get("mode") == mode
              and r.get("part") == part and numeric(r.get(metric))]
        if not rs:
          continue
        by_k = by(rs, "k")
        out.append([short_model(m), mode, label] + [
            f2(mean(r[metric] for r in by_k[(k,)])) if (k,) in by_k else ""
            for k in ks])
  out.append(["Llama-3B (original)", "as run", "A: task accuracy"] + [
      f2(R.EXP14[k][0]) if k in R.EXP14 else "" for k in ks])
  out.append(["Llama-3B (original)", "as run", "B: transfer"] + [
      f2(R.EXP14[k][2]) if k in R.EXP14 else "" for k in ks])
  text = md_table(head, out)
  layers = sorted({r["layer"] for r in rows if r.get("part") == "B" and
                   isinstance(r.get("layer"), int)})
  text += ("\nPart A: mean over tasks of the baseline accuracy with the first "
           "k demos (faithful: the study's fixed demos and scorer; aligned: "
           "strict scorer). Part B: single-position transplant at "
           f"layer(s) {', '.join(map(str, layers))}, mean over pairs. The "
           "original's constant 0.333 is pattern_completion->repeat_word "
           "scored by the lenient repeat_word scorer (protocol 11).\n")
  return text
