"""Questions 1 and 2 of the report: does multi-position transfer exist
(and at which depth), and is single-position transfer zero under a
like-for-like decoder."""

from __future__ import annotations

from icl_jax.analysis.report.data import Data
from icl_jax.analysis.report.markdown import (best_layer, by, counts, depth,
                                              f2, layer_means, md_table, mean,
                                              pair, patched, short_model,
                                              strict_transfer, wilson_text)
from icl_jax.analysis.report.names import MAIN_PARTS, MULTI
from icl_jax.analysis.report.verdicts import (EFFECT_LB, ZERO_RATE,
                                              verdict_effect)
from icl_jax.analysis.stats import wilson_interval


def multi_rows(data: Data):
  """Rows for the multi-position question: main, else exp8, else exp23."""
  for name in ("main_prefill", "multi_position", "proper_stats"):
    rs = [r for r in data.get(name) if r.get("condition") in MULTI
          and r.get("timing", "prefill") == "prefill"]
    if rs:
      return name, rs
  return None, []


def multi_summary(data: Data, model: str, mode: str, rows):
  rs = patched([r for r in rows if r["model"] == model and
                r["mode"] == mode])
  if not rs:
    return None
  nl = data.n_layers(model)
  out = {"model": model, "mode": mode, "n_layers": nl}
  cond_best = {}
  for (cond,), crs in by(rs, "condition").items():
    layer, (m, k, n) = best_layer(crs)
    cond_best[cond] = (layer, m, k, n)
  cond = max(sorted(cond_best), key=lambda c: cond_best[c][1])
  layer, m, k, n = cond_best[cond]
  out.update(condition=cond, layer=layer, mean=m, k=k, n=n,
             depth=(layer / nl if nl and layer is not None else None))
  cell = max(rs, key=lambda r: (r["transfer"], -abs((r["layer"] or 0))))
  out["cell"] = cell
  out["cell_k"] = counts(cell["transfer"], cell["n"])
  out["verdict"] = verdict_effect(out["cell_k"], cell["n"])
  lmeans = layer_means([r for r in rs if r["condition"] == cond])
  top = lmeans[layer][0]
  out["band"] = sorted(l for l, v in lmeans.items()
                       if top > 0 and v[0] >= 0.5 * top)
  head = [r for r in rs if (r["source_task"], r["target_task"]) ==
          ("uppercase", "repeat_word") and r["condition"] == "all_demo"]
  if head:
    h = max(head, key=lambda r: r["transfer"])
    out["head"] = h
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
           "(the study's D3). Best layer = highest mean transfer over the "
           "pairs; rates pooled over the pairs at that layer with Wilson "
           "95% intervals; 'best cell' = the single (pair, layer, "
           "condition) with the highest transfer.\n"]
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
      c = s["cell"]
      head = s.get("head")
      table.append([
          short_model(model), mode, f"**{s['verdict']}**",
          f"{s['condition']} L{s['layer']} (depth {f2(s['depth'])})",
          wilson_text(s["k"], s["n"]),
          f"{pair(c)} {c['condition']} L{c['layer']}: "
          f"{wilson_text(s['cell_k'], c['n'])}",
          (f"{head['transfer']:.2f} at L{head['layer']} (depth "
           f"{depth(head['layer'], s['n_layers'])})" if head else "-"),
          ", ".join(f"L{l}" for l in s["band"]) or "-"])
  lines.append(md_table(
      ["model", "mode", "transfer exists?", "best layer", "pooled transfer "
       "at best layer", "best cell", "uppercase->repeat_word (all_demo, "
       "its best layer)", "layers with >= half the best mean"], table))
  ref = ("Original (Llama-3B, N=10 / N=50): uppercase->repeat_word 0.90 / "
         "0.96 [0.865, 0.989] at layer 8 of 28 (depth 0.29), the lowest "
         "layer it tested; mean over the six pairs 0.167 at L8.")
  lines.append(ref + "\n")
  return "\n".join(lines), found


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
      for dec, rs in (("like-for-like (prefill, K/V kept)", pre),
                      ("study's D2 (first token only)", d2)):
        rs = [r for r in rs if r["model"] == model and r["mode"] == mode]
        if not rs:
          continue
        all_rs, rs = rs, patched(rs)
        skipped = len(all_rs) - len(rs)
        if not rs:
          table.append([short_model(model), mode, dec,
                        "**not measured**", "no cell patched a position "
                        "(answer-token groups differ in length; rerun with "
                        "--on_mismatch=truncate)", "-", f"0 of {skipped}"])
          continue
        k = sum(counts(r["transfer"], r["n"]) for r in rs)
        n = sum(r["n"] for r in rs)
        mx = max(rs, key=lambda r: r["transfer"])
        pooled = k / n if n else 0.0
        if k == 0:
          v = "**zero**"
        elif pooled < ZERO_RATE and mx["transfer"] <= EFFECT_LB:
          v = "**near zero**"
        else:
          v = "**not zero**"
        out[(model, mode, dec)] = {"k": k, "n": n, "max": mx}
        lo, hi = wilson_interval(k, n) if n else (0, 0)
        table.append([short_model(model), mode, dec, v,
                      f"{k}/{n} = {pooled:.3f} (95% upper {hi:.3f})",
                      f"{mx['transfer']:.2f} ({pair(mx)} L{mx['layer']})",
                      f"{len(rs)}" + (f" (+{skipped} that patched nothing, "
                                      "left out)" if skipped else "")])
  text = ("Position: the last demo's answer slot -- faithful: the study's "
          "`last_demo_token` index (the '\\n\\n' separator on BOS + merged-"
          "newline tokenizers), aligned: the last demo's final answer token. "
          "'Like-for-like' = the same decoder as the multi-position cells. "
          "Pooled over every pair and layer.\n\n")
  text += md_table(["model", "mode", "decoder", "single-position transfer",
                    "transferred prompts (pooled)", "max cell", "cells"],
                   table)
  text += ("\nOriginal: 0.0 at every layer (exp5: 4 pairs x 28 layers, "
           "N=10, D2 decoder; exp3: layer 14, 64 pairs).\n")
  return text, out
