"""Questions 1 and 2 of the report: does multi-position transfer exist
(and at which depth), and is single-position transfer zero under a
like-for-like decoder. Both follow the one verdict rule (`verdicts.judge`)
on statistics that respect prompt reuse (`cluster_stats`): question 1's
best cell is chosen among K cells on half of the prompts and estimated on
the other half; question 2's pooled rate resamples the distinct prompts."""

from __future__ import annotations

from icl_jax.analysis import cluster_stats as CS
from icl_jax.analysis import reference as R
from icl_jax.analysis.report.data import Data
from icl_jax.analysis.report.estimates import (best_layer_estimate,
                                              held_out_best, npairs)
from icl_jax.analysis.report.markdown import (best_layer, by, counts, depth,
                                              layer_means, md_table, mean,
                                              pair, patched, short_model,
                                              strict_transfer, wilson_text)
from icl_jax.analysis.report.names import MAIN_PARTS, MULTI
from icl_jax.analysis.report.verdicts import (NOT_REPRODUCED, REPRODUCED,
                                              Estimate, judge,
                                              wilson_estimate)
from icl_jax.analysis.stats import wilson_interval

# The original's best cell, the value question 1's best cell is judged
# against: uppercase->repeat_word all_demo L8 (exp23, N=50).
ORIGINAL_BEST = R.EXP23[("uppercase", "repeat_word", 8, "all_demo")]


def multi_rows(data: Data):
  """Rows for the multi-position question: main, else exp8, else exp23."""
  for name in ("main_prefill", "multi_position", "proper_stats"):
    rs = [r for r in data.get(name) if r.get("condition") in MULTI
          and r.get("timing", "prefill") == "prefill"]
    if rs:
      return name, rs
  return None, []


def best_cell(rs) -> tuple[dict, Estimate]:
  """(cell, its estimate): the best of the K cells `rs` (pair x layer x
  condition), chosen on a random half of the prompts and estimated on the
  other half (`cluster_stats.split_half_best` over the cells' [K, N]
  prompt outcomes), so the cell is never tested on the prompts that chose
  it. Cells without per-prompt outcomes (or of different N) fall back to
  the in-sample best cell: biased upward, so not testable by the rule."""
  k_cells = len(rs)
  try:
    _, m = CS.prompt_outcomes(rs)  # [K, N]
  except ValueError:
    m = None
  if m is None or m.shape[1] < 4:
    cell = max(rs, key=lambda r: (r["transfer"], -abs((r["layer"] or 0))))
    k = counts(cell["transfer"], cell["n"])
    return cell, wilson_estimate(k, cell["n"], pairs=1, text=(
        f"{pair(cell)} {cell['condition']} L{cell['layer']}: {k}/"
        f"{cell['n']} = {wilson_text(k, cell['n'])} (best of {k_cells} "
        "cells, chosen and estimated on the same prompts: biased upward)"),
        untestable="no per-prompt outcomes to hold the best cell's "
        "prompts out")
  sh = CS.split_half_best(m, list(range(k_cells)))
  cell = rs[sh["layer"]]
  k = int(round(sh["estimate"] * sh["n_test"]))
  return cell, Estimate(sh["estimate"], sh["lo"], sh["hi"], n=cell["n"],
                        pairs=1, text=(
      f"{pair(cell)} {cell['condition']} L{cell['layer']}: {k}/"
      f"{sh['n_test']} = {sh['estimate']:.2f} [{sh['lo']:.2f}, "
      f"{sh['hi']:.2f}] on held-out prompts (best of {k_cells} cells, "
      f"chosen on the other {sh['n_select']} prompts; "
      f"{cell['transfer']:.2f} on all N={cell['n']})"))


def _in_sample_best(rs, nl) -> tuple[str, int, Estimate, str]:
  """(condition, layer, estimate, depth text) of the in-sample best layer
  (highest pair mean on all prompts): only where no per-prompt outcomes
  exist to hold prompts out; biased upward, so not testable by the rule."""
  cond_best = {c: best_layer(crs) for (c,), crs in
               by(rs, "condition").items()}
  cond = max(sorted(cond_best), key=lambda c: cond_best[c][1][0])
  layer, (_, k, n) = cond_best[cond]
  at = [r for r in rs if r["condition"] == cond and r["layer"] == layer]
  e = wilson_estimate(k, n, pairs=npairs(at), text=(
      f"{wilson_text(k, n)} at {cond} L{layer}: in-sample (biased upward: "
      "chosen and estimated on the same prompts)"),
      untestable="no per-prompt outcomes to hold the best layer's prompts "
      "out")
  e.n = min(r["n"] for r in at)
  return cond, layer, e, f"depth {depth(layer, nl)}, in-sample"


def multi_summary(data: Data, model: str, mode: str, rows):
  """Question 1 on one model and mode: the best (condition, layer) of the
  pair mean chosen on half of the prompts and estimated on the other half
  (`estimates.held_out_best`, with the bootstrap interval of its depth),
  the held-out best cell and its verdict, the layers within half of the
  best (in-sample, descriptive) and the headline pair."""
  rs = patched([r for r in rows if r["model"] == model and
                r["mode"] == mode])
  if not rs:
    return None
  nl = data.n_layers(model)
  out = {"model": model, "mode": mode, "n_layers": nl}
  h = held_out_best(rs, nl, group="condition")
  if h is None:
    cond, layer, e, dtext = _in_sample_best(rs, nl)
  else:
    cond, layer, e, sp = h["group"], h["layer"], h["estimate"], h["spread"]
    dtext = (f"depth {depth(layer, nl)}; bootstrap interval of the best "
             f"layer's depth [{sp['depth_lo']:.2f}, {sp['depth_hi']:.2f}]")
  out.update(condition=cond, layer=layer, layer_est=e, depth_text=dtext,
             depth=(layer / nl if nl and layer is not None else None))
  out["cell"], out["cell_est"] = best_cell(rs)
  out["verdict"] = judge(ORIGINAL_BEST["transfer"], out["cell_est"])
  lmeans = layer_means([r for r in rs if r["condition"] == cond])
  top = max(v[0] for v in lmeans.values())
  out["band"] = sorted(l for l, v in lmeans.items()
                       if top > 0 and v[0] >= 0.5 * top)
  head = [r for r in rs if (r["source_task"], r["target_task"]) ==
          ("uppercase", "repeat_word") and r["condition"] == "all_demo"]
  if head:
    out["head"] = max(head, key=lambda r: r["transfer"])
  strict = [strict_transfer(r) for r in rs
            if r["condition"] == cond and r["layer"] == layer]
  strict = [s for s in strict if s is not None]
  out["strict_mean"] = mean(strict) if strict else None
  return out


def answer_multi(data: Data) -> tuple[str, dict]:
  name, rows = multi_rows(data)
  if not rows:
    return ("**Not run** (needs `experiments/main.py`, "
            "`multi_position.py` or `proper_stats.py`).\n", {})
  lines = [f"Source: `{name}` rows, conditions all_demo / output_only, "
           "decoder = patched prompt forward with the patched K/V kept "
           "(the study's D3). Best layer = the (condition, layer) with the "
           "highest mean transfer over the pairs, chosen on a random half "
           "of the prompts and estimated on the other half (Wilson 95%), "
           "with a bootstrap-over-prompts interval of its depth (where no "
           "per-prompt outcomes exist: the in-sample best, labelled "
           "'in-sample (biased upward)'); 'best cell' = the single (pair, "
           "layer, "
           "condition) with the highest transfer among the K cells, chosen "
           "on a random half of the prompts and estimated (Wilson 95%) on "
           "the other half. 'transfer exists?' = the verdict rule (see the "
           "summary) on that held-out estimate against the original's best "
           f"cell, uppercase->repeat_word all_demo L8 "
           f"{ORIGINAL_BEST['transfer']:.2f} (exp23, N={R.EXP23_N}): "
           "*reproduced* or *weaker* = a real effect (lower bound >= the "
           "effect floor); per-cell N below the rule's minimum = *not "
           "testable here*.\n"]
  table, found = [], {}
  for model in data.models([name]):
    for mode in ("faithful", "aligned"):
      s = multi_summary(data, model, mode, rows)
      empty = [r for r in rows if r["model"] == model and r["mode"] == mode
               and r not in patched([r])]
      if empty:
        lines.append(f"{short_model(model)} {mode}: {len(empty)} cells "
                     "patched no position (no token group of the same "
                     "length in source and target) and are left out.\n")
      if s is None:
        table.append([short_model(model), mode, "not run" if not empty
                      else "not measured (nothing patched)", "", "", "", "",
                      ""])
        continue
      found[(model, mode)] = s
      head = s.get("head")
      label, why = s["verdict"]
      table.append([
          short_model(model), mode,
          f"**{label}**" + (f" ({why})" if why else ""),
          f"{s['condition']} L{s['layer']} ({s['depth_text']})",
          s["layer_est"].show(), s["cell_est"].show(),
          (f"{head['transfer']:.2f} at L{head['layer']} (depth "
           f"{depth(head['layer'], s['n_layers'])})" if head else "-"),
          ", ".join(f"L{l}" for l in s["band"]) or "-"])
  lines.append(md_table(
      ["model", "mode", "transfer exists?", "best layer (chosen on half "
       "the prompts)", "pair-mean transfer at the best layer (other half)",
       "best cell (held-out estimate)",
       "uppercase->repeat_word (all_demo, its best layer)",
       "layers with >= half the best mean (in-sample)"], table))
  ref = ("Original (Llama-3B, N=10 / N=50): uppercase->repeat_word 0.90 / "
         "0.96 [0.865, 0.989] at layer 8 of 28 (depth 0.29), the lowest "
         "layer it tested; mean over the six pairs 0.167 at L8.")
  lines.append(ref + "\n")
  return "\n".join(lines), found


def zero_estimate(rs, nl, note: str = "") -> Estimate | None:
  """THE estimate of a claim 'transfer is 0 at every layer' on the cells
  `rs` (pairs x layers of one condition), read by question 2 and by the
  summary's rows alike: the split-half best layer's held-out pair mean
  (`estimates.best_layer_estimate`) -- or, where the best single cell,
  also held out (`best_cell`), shows a real effect (the rule's null
  verdict on it is not reproduced), that cell's estimate: one real cell
  disproves 'every layer'. The best of the K cells (in-sample) is named
  beside it."""
  if not rs:
    return None
  e = best_layer_estimate(rs, nl)[0]
  ce = best_cell(rs)[1]
  if judge(0.0, ce, "null")[0] == NOT_REPRODUCED:
    e = Estimate(ce.value, ce.lo, ce.hi, n=ce.n, pairs=npairs(rs),
                 text="a real effect in the best cell: " + ce.text)
  mx = max(rs, key=lambda r: r["transfer"])
  e.text += (f"; best of {len(rs)} cells: {pair(mx)} L{mx['layer']} "
             f"{counts(mx['transfer'], mx['n'])}/{mx['n']}{note}")
  return e


def single_pooled(rs, nl=None, note: str = "") -> tuple[str, str, dict]:
  """(label, pooled text, numbers) of the single-position cells `rs`: the
  verdict is the rule's on `zero_estimate` (the summary's estimate of the
  same claim, so the two never disagree); beside it the rate pooled over
  the cells with a 95% interval that resamples the distinct prompts
  (`cluster_stats.pooled_rate`: cells reuse the same prompts, so they are
  never counted as independent trials; at 0 transferred the bound is
  Wilson's at the number of distinct prompts) and the per-cell bound at
  0/N."""
  k = sum(counts(r["transfer"], r["n"]) for r in rs)
  n = sum(r["n"] for r in rs)
  n_cell = min(r["n"] for r in rs)
  p = CS.pooled_rate(rs)
  if p is None:  # no per-prompt outcomes: Wilson at one cell's N
    lo, hi = wilson_interval(round(k / n * n_cell), n_cell)
    units = f"per-cell Wilson at N={n_cell}, no per-prompt outcomes"
  else:
    lo, hi = p["lo"], p["hi"]
    units = (f"resampling the {p['prompts']} distinct prompts" +
             (f", Wilson at 0/{p['prompts']}" if k == 0 else ""))
  e = zero_estimate(rs, nl, note)
  label, why = judge(0.0, e, "null")
  name = {REPRODUCED: "near zero" if k else "zero",
          NOT_REPRODUCED: "not zero"}.get(label)
  head = (f"**{label}** ({why})" if name is None else
          f"**{name}** ({label}" + (f": {why})" if why else ")"))
  text = (f"{k}/{n} prompt-cells = {k / n:.3f}, 95% [{lo:.3f}, "
          f"{hi:.3f}] ({units}); per-cell bound at 0/{n_cell}: "
          f"{wilson_interval(0, n_cell)[1]:.2f}")
  return head, text, {"k": k, "n": n, "estimate": e, "verdict": label,
                      "max": max(rs, key=lambda r: r["transfer"])}


def answer_single(data: Data) -> tuple[str, dict]:
  pre = [r for r in data.get("main_prefill")
         if r.get("condition") == "last_demo_token"]
  d2 = [r for r in data.get("main_single_d2")]
  if not pre and not d2:
    return ("**Not run** (needs `experiments/main.py`, which evaluates the "
            "single position with both decoders).\n", {})
  out = {}
  table = []
  for model in data.models(MAIN_PARTS):
    for mode in ("faithful", "aligned"):
      # The summary's row: D2 as run (faithful) where it exists, else the
      # prefill decoder.
      summary_dec = "d2" if mode == "faithful" and any(
          r["model"] == model and r["mode"] == mode for r in d2) else "pre"
      for dec, key, rs in (("like-for-like (prefill, K/V kept)", "pre", pre),
                           ("study's D2 (first token only)", "d2", d2)):
        rs = [r for r in rs if r["model"] == model and r["mode"] == mode]
        if not rs:
          continue
        dec += " = the summary's" if key == summary_dec else ""
        all_rs, rs = rs, patched(rs)
        skipped = len(all_rs) - len(rs)
        if not rs:
          table.append([short_model(model), mode, dec,
                        "**not measured**", "-", "no cell patched a "
                        "position (answer-token groups differ in length; "
                        "rerun with --on_mismatch=truncate)",
                        f"0 of {skipped}"])
          continue
        label, text, got = single_pooled(rs, data.n_layers(model),
                                         " (D2)" if key == "d2" else "")
        out[(model, mode, dec.split(" = ")[0])] = got
        table.append([short_model(model), mode, dec, label,
                      got["estimate"].show(), text,
                      f"{len(rs)}" + (f" (+{skipped} that patched nothing, "
                                      "left out)" if skipped else "")])
  text = ("Position: the last demo's answer slot -- faithful: the study's "
          "`last_demo_token` index (the '\\n\\n' separator on BOS + merged-"
          "newline tokenizers), aligned: the last demo's final answer token. "
          "'Like-for-like' = the same decoder as the multi-position cells. "
          "The verdict is the rule's on the claim '0 at every layer', on "
          "ONE estimate shared with the summary's row (the row marked 'the "
          "summary's'): the best layer's pair mean, chosen on half of the "
          "prompts and estimated on the other half -- or the best single "
          "cell's held-out estimate where that cell shows a real effect. "
          "Beside it, the rate pooled over every pair and layer; the cells "
          "reuse the same prompts, so its interval resamples the distinct "
          "prompts (not cells x prompts).\n\n")
  text += md_table(["model", "mode", "decoder", "single-position transfer",
                    "estimate (as in the summary)",
                    "transferred prompts (pooled over cells)", "cells"],
                   table)
  text += ("\nOriginal: 0.0 at every layer (exp5: 4 pairs x 28 layers, "
           "N=10, D2 decoder; exp3: layer 14, 64 pairs).\n")
  return text, out
