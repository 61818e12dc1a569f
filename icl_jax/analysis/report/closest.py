"""Side by side with the original's closest model
(`reference.CLOSEST_ORIGINAL`: gemma3-270m <-> Gemma-2-2B, smollm2-135m <->
Llama-3.2-1B, Qwen2.5 <-> Qwen2.5-1.5B): its exp8 grids (N=10, its
4-layer grid), exp1 baseline, exp11 noise disruption and exp13 instance
transfer beside ours at the same RELATIVE depth (layer / n_layers; our
layer = the one nearest that depth among the layers we ran), with N and
the pair count of both sides in every row.

Verdicts come only from `verdicts.verdict` (the one rule). The original's
exp8 cells are N=10, below the rule's MIN_PROMPTS, so every exp8 row is
'not testable here' by the rule whatever our interval."""

from __future__ import annotations

from icl_jax.analysis import reference as R
from icl_jax.analysis.report.data import Data
from icl_jax.analysis.report.estimates import pooled
from icl_jax.analysis.report.grids import (CONDITIONS, cells_of, grid_rows,
                                           pairs_of, tp)
from icl_jax.analysis.report.markdown import (f2, md_table, mean, numeric,
                                              patched, short_model)
from icl_jax.analysis.report.verdicts import (EFFECT_FLOOR, MIN_PROMPTS,
                                              sizes, sizes_text, verdict)


def closest_original(model: str) -> str | None:
  """The original's model closest to ours (its key in ORIGINAL_MODELS)."""
  name = short_model(model)
  for ours, theirs in R.CLOSEST_ORIGINAL.items():
    if name == ours or name.endswith(ours):
      return theirs
  return None


def at_depth(layer: int, n: int, ours, nl: int) -> int:
  """Our layer nearest the relative depth layer / n (lowest on ties)."""
  return min(sorted(ours), key=lambda l: abs(l / nl - layer / n))


def _d(layer, n) -> str:
  return f"L{layer} ({layer / n:.2f})"


def _short(e) -> str:
  return "not run" if e is None else f"{e.value:.3f} [{e.lo:.3f}, {e.hi:.3f}]"


def _exp8_means(model, orig, rows, nl) -> list[list]:
  """Condition x the original's layers: its 6-pair mean beside ours (pair
  mean pooled over prompts, prompt-resampling interval) at that depth."""
  tn = R.ORIGINAL_MODELS[orig][1]
  ours_layers = {r["layer"] for r in rows}
  out = []
  for cond in CONDITIONS:
    for lo in R.EXP8_LAYERS[orig]:
      theirs = R.EXP8_PAIR_MEANS[orig][(cond, lo)]
      ol = at_depth(lo, tn, ours_layers, nl)
      at = {m: patched([r for r in rows if r["mode"] == m and r["layer"] ==
                        ol and r["condition"] == cond])
            for m in ("faithful", "aligned")}
      est = {m: pooled(x) for m, x in at.items()}
      for e in est.values():
        if e is not None and R.EXP8_N < MIN_PROMPTS:
          e.untestable = (f"the original's N={R.EXP8_N} prompts < "
                          f"{MIN_PROMPTS}")
      kind = "effect" if theirs >= EFFECT_FLOOR else "null"
      ours_n = at["faithful"] or at["aligned"]
      out.append([cond, _d(lo, tn), f"{theirs:.3f}",
                  sizes_text(R.EXP8_N, len(R.EXP8_PAIRS)), _d(ol, nl),
                  _short(est["faithful"]), _short(est["aligned"]),
                  sizes(ours_n) if ours_n else "-",
                  verdict(theirs, est["faithful"], est["aligned"], kind)])
  return out


def _exp8_pairs(orig, rows, nl) -> list[list]:
  """Per pair and original layer: each condition's 'transfer / preserve'
  as theirs | ours faithful | ours aligned at the same depth."""
  tn = R.ORIGINAL_MODELS[orig][1]
  theirs = R.EXP8[orig]
  ours = {m: cells_of([r for r in rows if r["mode"] == m])
          for m in ("faithful", "aligned")}
  layers = {r["layer"] for r in rows}
  out = []
  for s, t in pairs_of(theirs):
    for lo in R.EXP8_LAYERS[orig]:
      ol = at_depth(lo, tn, layers, nl)
      x = [r for r in rows if (r["source_task"], r["target_task"]) ==
           (s, t) and r["layer"] == ol]
      out.append([f"{s}->{t}", _d(lo, tn), _d(ol, nl)] + [
          " \u00b7 ".join(tp(c.get((s, t, layer, cond))) for c, layer in (
              (theirs, lo), (ours["faithful"], ol), (ours["aligned"], ol)))
          for cond in CONDITIONS] + [
          f"{R.EXP8_N} / " + (sizes(x).split(",")[0][2:] if x else "-")])
  return out


def _exp1(model, orig, data) -> list[list]:
  """exp1 baseline accuracy: theirs (N=50) beside ours (both scorers)."""
  out = []
  for task, by_model in R.BASELINE.items():
    rs = [r for r in data.get("baseline") if r.get("model") == model and
          r.get("source_task") == task and r.get("mode") == "faithful"]
    if not rs or orig not in by_model:
      continue
    r = rs[0]
    out.append([task, f2(by_model[orig]), f"N={R.BASELINE_N}",
                f2(r.get("accuracy_faithful")), f2(r.get("accuracy_strict")),
                f"N={r.get('n')}"])
  return out


def _exp11(model, orig, data, nl) -> list[list]:
  """exp11 mean disruption over tasks at first_query_token (the other
  models' protocol: unit noise x 5.0, absolute): theirs by layer, ours at
  the same depth with the same noise."""
  rs = [r for r in data.get("noise_tracing") if r.get("model") == model and
        r.get("condition") == "first_query_token" and
        r.get("noise") == "unit" and r.get("scale") == 5.0 and
        numeric(r.get("disruption_absolute"))]
  if not rs:
    return []
  ref = R.EXP11[orig]
  tn = R.ORIGINAL_MODELS[orig][1]
  layers = {r["layer"] for r in rs}
  out = []
  for lo in ref["layers"]:
    ol = at_depth(lo, tn, layers, nl)
    x = [r for r in rs if r["layer"] == ol]
    out.append([_d(lo, tn), f2(ref["disruption"][("mean",
                                                  "first_query_token")][lo]),
                _d(ol, nl), f2(mean(r["disruption_absolute"] for r in x)),
                f"N={x[0].get('n')}, {len({r['target_task'] for r in x})} "
                "tasks"])
  return out


def _exp13(model, orig, data, nl) -> list[list]:
  """exp13 instance-level transfer: theirs at its layer, ours nearest."""
  rs = [r for r in data.get("instance_analysis") if r.get("model") == model
        and isinstance(r.get("layer"), int)]
  if not rs:
    return []
  tn = R.ORIGINAL_MODELS[orig][1]
  lo = R.EXP13_LAYERS[orig]
  ol = at_depth(lo, tn, {r["layer"] for r in rs}, nl)
  out = []
  for (s, t), by_model in R.EXP13.items():
    x = {m: [r for r in rs if r["layer"] == ol and r["mode"] == m and
             (r["source_task"], r["target_task"]) == (s, t)]
         for m in ("faithful", "aligned")}
    out.append([f"{s}->{t}", _d(lo, tn), f2(by_model[orig]),
                f"N={R.EXP13_N}", _d(ol, nl)] + [
        f2(mean(r["transfer"] for r in v)) if v else "not run"
        for v in x.values()] + [sizes(x["faithful"] or x["aligned"])
                                if x["faithful"] or x["aligned"] else "-"])
  return out


def render_closest(data: Data) -> tuple[str, str]:
  """(section text, appendix text): per model with a closest original,
  the mean tables / exp1 / exp11 / exp13 side by side (section) and the
  per-pair exp8 comparison (appendix)."""
  sec, app = [], []
  for model in data.models():
    orig = closest_original(model)
    if orig is None:
      continue
    nl = data.n_layers(model)
    name, rows = grid_rows(data, model)
    label = (f"{short_model(model)} ({nl} layers) vs "
             f"{R.ORIGINAL_MODELS[orig][0]} ({R.ORIGINAL_MODELS[orig][1]} "
             "layers)")
    sec.append(f"### {label}\n")
    if rows:
      sec.append(f"exp8, mean transfer over the pairs (ours: `{name}` "
                 "rows; depth = layer / n_layers in brackets):\n")
      sec.append(md_table(
          ["condition", "their layer (depth)", "theirs", "their N, pairs",
           "our layer (depth)", "ours faithful [95%]", "ours aligned [95%]",
           "our N, pairs", "verdict"], _exp8_means(model, orig, rows, nl)))
      app.append(f"**{label}**, `{name}` rows: each cell is transfer / "
                 "preserve as theirs \u00b7 ours faithful \u00b7 ours "
                 "aligned ('-' = not run)\n")
      app.append(md_table(["pair", "their layer (depth)", "our layer "
                           "(depth)", *CONDITIONS, "N theirs / ours"],
                          _exp8_pairs(orig, rows, nl)))
    for title, head, body in (
        ("exp1 baseline accuracy", ["task", "theirs", "their N",
                                    "ours (faithful scorer)",
                                    "ours (strict scorer)", "our N"],
         _exp1(model, orig, data)),
        ("exp11 noise disruption, mean over tasks at the first query token "
         "(unit noise x 5.0, absolute)", ["their layer (depth)", "theirs",
                                          "our layer (depth)", "ours",
                                          "our N, tasks"],
         _exp11(model, orig, data, nl)),
        ("exp13 instance-level transfer", ["pair", "their layer (depth)",
                                           "theirs", "their N",
                                           "our layer (depth)",
                                           "ours faithful", "ours aligned",
                                           "our N, pairs"],
         _exp13(model, orig, data, nl))):
      if body:
        sec.append(f"{title}:\n")
        sec.append(md_table(head, body))
  if not sec:
    return "No model with a closest original model among the runs.\n", ""
  intro = ("Each of our models beside the original's closest model, at the "
           "same relative depth (our layer = the one nearest the original's "
           "layer / its n_layers among the layers we ran). Verdicts only "
           "from the rule; the original's exp8 cells are N="
           f"{R.EXP8_N} < {MIN_PROMPTS}, so no exp8 row is testable by it. "
           "The per-pair comparison is in the appendix.\n")
  return intro + "\n" + "\n".join(sec), "\n".join(app)
