"""Sections of the transfer experiments: the main job (every layer), exp8,
exp23, exp27, exp29-33, each beside the original's numbers. Every row
compared with the original's number states N (prompts per cell) and the
number of pairs for ours and for the original (`verdicts.sizes`)."""

from __future__ import annotations

from icl_jax.analysis import reference as R
from icl_jax.analysis.report.artifacts import artifact_notes, plots_and_notes
from icl_jax.analysis.report.data import Data
from icl_jax.analysis.report.estimates import pooled
from icl_jax.analysis.report.markdown import (best_layer, counts, depth, f2,
                                              images, md_table, mean,
                                              model_mode_rows, short_model,
                                              transfer_grid)
from icl_jax.analysis.report.names import MAIN_PARTS, MULTI
from icl_jax.analysis.report.verdicts import (EFFECT_FLOOR, MIN_PROMPTS,
                                              judge, sizes, sizes_text)
from icl_jax.analysis.stats import wilson_interval


def ours_by_model(data: Data, rows, experiments, keep=None) -> str:
  """'ours: <model> <mode> N=.., k pair(s); ...' over `rows`."""
  return "ours: " + "; ".join(
      f"{short_model(m)} {mode} {sizes(x)}"
      for m, mode, x in model_mode_rows(data, rows, experiments, keep))


def render_main(data: Data) -> str:
  pre = data.get("main_prefill")
  d2 = data.get("main_single_d2")
  models = data.models(MAIN_PARTS)
  text = ""
  if pre:
    text += "Mean transfer over the pairs, by layer (prefill decoder):\n\n"
    text += transfer_grid(pre, models, ("all_demo", "output_only",
                                         "last_demo_token"), data)
  if d2:
    text += "\nSingle position with the study's D2 decoder:\n\n"
    text += transfer_grid(d2, models, ("last_demo_token",), data)
  for s in data.main_summaries:
    rows = []
    for x in s.get("summary", []):
      ci = x.get("transfer_ci") or (None, None)
      rows.append([short_model(s.get("model")), x["mode"], x["condition"],
                   x["timing"],
                   "none" if x["best_layer"] is None else x["best_layer"],
                   f2(x["depth_fraction"]),
                   f"{f2(x['transfer'], 3)} [{f2(ci[0], 3)}, {f2(ci[1], 3)}]",
                   f2(x.get("headline_pair_transfer"))])
    if rows:
      text += "\n`main_summary.json`:\n\n" + md_table(
          ["model", "mode", "condition", "decoder", "best L", "depth",
           "pooled transfer [95% CI]", "up->rep"], rows)
  text += "\n" + images(data, data.root_pngs + data.pngs("main_prefill"))
  text += "\n" + artifact_notes(data, pre + d2, ("positions_drift",
                                                 "separator_token",
                                                 "d2_decoder", "depth_grid"))
  return text


def _ref_exp8_table() -> str:
  rows = []
  for m, layers in R.EXP8_LAYERS.items():
    for c in R.EXP8_CONDITIONS:
      rows.append([R.MODEL_LABELS[m], c] + [
          f2(R.exp8_mean_transfer(m, l, c), 3) for l in layers] +
          [" / ".join(f"L{l}" for l in layers)])
  return md_table(["original model", "condition", "1st layer", "2nd", "3rd",
                   "4th", "layers"], rows)


def render_exp8(data: Data, rows) -> str:
  models = data.models(["multi_position"])
  text = ("Mean transfer over the pairs by layer (" + ours_by_model(
      data, rows, ["multi_position"]) + "):\n\n" +
          transfer_grid(rows, models, R.EXP8_CONDITIONS, data))
  text += ("\nHeadline pair uppercase->repeat_word (ours):\n\n" +
           transfer_grid(rows, models, R.EXP8_CONDITIONS, data,
                          pair_filter=lambda r: (r["source_task"],
                                                 r["target_task"]) ==
                          ("uppercase", "repeat_word")))
  text += ("\nOriginal, mean transfer over the six pairs ("
           f"original {sizes_text(R.EXP8_N, len(R.EXP8_PAIRS))}):\n\n" +
           _ref_exp8_table())
  text += ("\nOriginal best cell for uppercase->repeat_word: " + ", ".join(
      f"{R.MODEL_LABELS[m]} {v['transfer']:.2f} (L{v['layer']} "
      f"{v['condition']})" for m, v in R.EXP8_HEADLINE.items()) + ".\n\n")
  text += plots_and_notes(data, "multi_position", rows, (
      "positions_drift", "absolute_index", "source_first", "depth_grid"))
  return text


def render_exp23(data: Data, rows) -> str:
  table = []
  for m, mode, x in model_mode_rows(data, rows, ["proper_stats"]):
    for p in R.EXP8_PAIRS:
      for c in ("all_demo", "output_only"):
        rs = [r for r in x if (r["source_task"], r["target_task"]) == p and
              r["condition"] == c]
        if not rs:
          continue
        b = max(rs, key=lambda r: r.get("transfer_independent",
                                        r["transfer"]))
        ref = [v for (s, t, l, cc), v in R.EXP23.items()
               if (s, t) == p and cc == c]
        refb = max(ref, key=lambda v: v["transfer"]) if ref else None
        w = b.get("transfer_wilson") or wilson_interval(
            counts(b["transfer_independent"], b["n"]), b["n"])
        bs = b.get("transfer_bootstrap") or ["-", "-"]
        table.append([
            short_model(m), mode, f"{p[0]}->{p[1]}", c,
            f"L{b['layer']}", f2(b["transfer_independent"]),
            f"[{f2(w[0], 3)}, {f2(w[1], 3)}]",
            f"[{f2(bs[0])}, {f2(bs[1])}]" if bs[0] != "-" else "-",
            f2(b.get("preserve_independent")), sizes([b]),
            (f"{refb['transfer']:.2f} [{refb['wilson'][0]:.3f}, "
             f"{refb['wilson'][1]:.3f}]" if refb else "-"),
            sizes_text(R.EXP23_N, 1) if refb else "-"])
  text = ("Best layer per pair and condition (ours, N as run; transfer and "
          "preserve counted independently as the original did):\n\n")
  text += md_table(["model", "mode", "pair", "condition", "best layer",
                    "transfer", "Wilson 95%", "bootstrap 95%", "preserve",
                    "ours N, pairs", "original best (Llama-3B L8-17)",
                    "original N, pairs"], table)
  if data.summaries.get("proper_stats"):
    text += "\n" + ours_by_model(data, rows, ["proper_stats"], lambda r: (
        r["condition"] in MULTI)) + " (the pair means below).\n"
  for s in data.summaries.get("proper_stats", []):
    pm = [x for x in s.get("pair_means", []) if x["condition"] in MULTI]
    best = {}
    for x in pm:
      k = (x["mode"], x["condition"])
      if k not in best or x["mean_transfer"] > best[k]["mean_transfer"]:
        best[k] = x
    if best:
      text += ("\nMean over the pairs at the best layer, bootstrap over "
               f"pair rates ({short_model(s.get('config', {}).get('model'))})"
               ": " + "; ".join(
                   f"{m} {c} L{x['layer']}: {x['mean_transfer']:.3f} "
                   f"[{x['bootstrap'][0]:.3f}, {x['bootstrap'][1]:.3f}]"
                   for (m, c), x in sorted(best.items())) + ".\n")
  text += ("\nOriginal means over pairs (original "
           f"{sizes_text(R.EXP23_N, len(R.EXP8_PAIRS))}): " + "; ".join(
      f"L{l} {c} {v[0]:.3f} [{v[1][0]:.3f}, {v[1][1]:.3f}]"
      for (l, c), v in R.EXP23_PAIR_MEANS.items()) + ".\n\n")
  text += plots_and_notes(data, "proper_stats", rows, (
      "positions_drift", "source_first"))
  return text


def render_exp27(data: Data, rows) -> str:
  models = data.models(["controls"])
  table = []
  for m, mode, x in model_mode_rows(data, rows, ["controls"]):
    true = [r for r in x if r["condition"] == "true_source"]
    bl, _ = best_layer(true) if true else best_layer(x)
    t = pooled([r for r in true if r["layer"] == bl])
    for c in R.EXP27_CONDITIONS:
      cr = [r for r in x if r["condition"] == c and r["layer"] == bl]
      if cr:
        table.append([short_model(m), mode, f"L{bl}", c,
                      f2(mean(r["transfer"] for r in cr), 3),
                      f2(mean(r["preserve"] for r in cr), 3),
                      f2(mean(r["neither"] for r in cr), 3), sizes(cr),
                      f2(R.EXP27_MEAN_TRANSFER[c], 3),
                      sizes_text(R.EXP27_N, len(R.EXP27)),
                      _control_verdict(c, pooled(cr), t)])
  text = ("Mean over the pairs at the layer where the true source transfers "
          f"most (ours) vs the original (Llama-3B, L{R.EXP27_LAYER}, "
          f"original {sizes_text(R.EXP27_N, len(R.EXP27))}). Verdict: the "
          "summary's rule on the pooled rate (prompt-resampling interval): "
          "the true source against the original's "
          f"{R.EXP27_MEAN_TRANSFER['true_source']:.3f}, each control "
          "against the claim '0%':\n\n")
  text += md_table(["model", "mode", "layer", "control", "transfer",
                    "preserve", "neither", "ours N, pairs",
                    "original transfer", "original N, pairs",
                    "verdict (the rule)"], table)
  text += ("\nOriginal headline pair uppercase->repeat_word: true 0.95, "
           "random 0, shuffled 0.55, noise 0 (README/MASTER: 'all controls "
           "0%').\n\n")
  text += "Mean transfer by layer (ours):\n\n" + transfer_grid(
      rows, models, R.EXP27_CONDITIONS, data, max_layers=12)
  text += "\n" + plots_and_notes(data, "controls", rows, ("absolute_index",))
  return text


def _control_verdict(cond: str, e, true) -> str:
  """The rule's verdict on one exp27 row (true source: effect claim at the
  original's mean; control: null claim '0%'; fewer prompts than the rule's
  minimum: not testable (N=..); else a control is not testable while the
  true source `true` shows no clear transfer)."""
  few = e.n is not None and e.n < MIN_PROMPTS
  if cond == "true_source":
    label, why = judge(R.EXP27_MEAN_TRANSFER[cond], e, "effect")
  else:
    if not few and true is not None and true.lo < EFFECT_FLOOR:
      e.untestable = "the true source itself shows no clear transfer"
    label, why = judge(0.0, e, "null")
  return f"**{label}**" + (f" ({why})" if why else "")


def render_exp29(data: Data, rows) -> str:
  models = data.models(["pair_matrix"])
  text = ""
  for m in models:
    nl = data.n_layers(m)
    for mode in ("faithful", "aligned"):
      x = [r for r in rows if r["model"] == m and r["mode"] == mode and
           r["condition"] == "all_demo"]
      if not x:
        continue
      sl = round(0.3 * nl) if nl else None
      bl, (bm, _, _) = best_layer(x)
      for lname, layer in (("study layer (depth 0.30)", sl),
                           ("best layer", bl)):
        lx = [r for r in x if r["layer"] == layer]
        if not lx or (lname == "best layer" and layer == sl):
          continue
        tasks = [t for t in R.CORE_TASKS if any(
            r["source_task"] == t for r in lx)]
        grid = {(r["source_task"], r["target_task"]): r["transfer"]
                for r in lx}
        vals = [r["transfer"] for r in lx]
        text += (f"**{short_model(m)}, {mode}, {lname} L{layer} (depth "
                 f"{depth(layer, nl)})**: mean {mean(vals):.3f} ("
                 f"{sizes(lx)}); >=0.5: {sum(v >= 0.5 for v in vals)}, "
                 f"0.1-0.49: {sum(0.1 <= v < 0.5 for v in vals)}, <0.1: "
                 f"{sum(v < 0.1 for v in vals)}\n\n")
        text += md_table(["source \\ target"] + tasks, [
            [s] + ["-" if s == t else f2(grid.get((s, t)), 1)
                   for t in tasks] for s in tasks])
        text += "\n"
  tasks = list(R.CORE_TASKS)
  text += ("Original (Llama-3B, L8, N=10): mean 0.123 ("
           f"original {sizes_text(R.EXP29_N, len(R.EXP29['transfer']))}); "
           ">=0.5: 7, "
           "0.1-0.49: 6, <0.1: 43 (paper: 16.7% and 7/10/40).\n\n")
  text += md_table(["source \\ target"] + tasks, [
      [s] + ["-" if s == t else f2(R.EXP29["transfer"][(s, t)], 1)
             for t in tasks] for s in tasks])
  text += "\n" + plots_and_notes(data, "pair_matrix", rows, (
      "absolute_index", "scorer_pattern", "scorer_uppercase_numbers",
      "scorer_sentiment", "length_degenerate"))
  return text


def render_exp30(data: Data, rows) -> str:
  table = []
  for m, mode, xm in model_mode_rows(data, rows, ["source_demo_count"]):
    for cond in sorted({r["condition"] for r in rows}):
      x = [r for r in xm if r["condition"] == cond]
      if not x:
        continue
      k5 = [r for r in x if r.get("source_k") == 5]
      bl, _ = best_layer(k5 or x)
      line = [short_model(m), mode, cond, f"L{bl}",
              sizes([r for r in x if r["layer"] == bl])]
      for k in R.EXP30_K:
        kr = [r for r in x if r.get("source_k") == k and r["layer"] == bl]
        line.append(f"{mean(r['transfer'] for r in kr):.2f} "
                    f"({kr[0]['n_positions']})" if kr else "-")
      table.append(line)
  table.append(["Llama-3B (original)", "faithful", "all_demo", "L8",
                sizes_text(R.EXP30_N, len(R.EXP30))] + [
      f"{R.EXP30_MEAN[k]:.3f}" for k in R.EXP30_K])
  text = ("Mean transfer over the pairs at the best layer for k=5 "
          "(patched positions in brackets, first pair):\n\n")
  text += md_table(["model", "mode", "condition", "layer", "N, pairs"] +
                   [f"k={k}" for k in R.EXP30_K], table)
  text += "\n" + plots_and_notes(data, "source_demo_count", rows, (
      "exp30_confound",))
  return text


def render_exp31(data: Data, rows) -> str:
  table = []
  subsets = list(R.EXP31_SIZES)
  for m, mode, x in model_mode_rows(data, rows, ["output_positions"]):
    allp = [r for r in x if r["condition"] == "all_positions"]
    bl, _ = best_layer(allp or x)
    xl = [r for r in x if r["layer"] == bl]
    at = lambda c, size=None: [r["transfer"] for r in xl if r["condition"]
                               == c and (size is None or r.get("size") ==
                                         size)]
    line = [short_model(m), mode, f"L{bl}", sizes(xl)] + [
        f2(mean(v), 3) if v else "-" for v in
        [at("random_outputs", s) for s in subsets] +
        [at("all_positions"), at("all_outputs")]]
    line.append(", ".join(f"{c} {mean(at(c)):.2f}" for c in (
        "first_per_demo", "last_per_demo", "every_other", "first_demo",
        "last_demo") if at(c)) or "-")
    table.append(line)
  table.append(["Llama-3B (original)", "faithful", "L8",
                sizes_text(R.EXP31_N, len(R.EXP31))] + [
      f2(R.EXP31_MEAN[s], 3) for s in subsets] +
      [f2(R.EXP31_MEAN["all_positions"], 3),
       f2(R.EXP31_MEAN["all_outputs"], 3), R.EXP31_PART_B])
  text = ("Mean transfer over pairs and random subsets vs number of output "
          "positions patched (+ all input positions), at the best layer for "
          "'all positions':\n\n")
  text += md_table(["model", "mode", "layer", "N, pairs"] +
                   [f"{s}" for s in subsets] +
                   ["inputs + all outputs", "all outputs, no inputs",
                    "Part B (structured, + inputs)"], table)
  text += "\n" + plots_and_notes(data, "output_positions", rows, (
      "exp31_all_point", "positions_drift"))
  return text


def render_exp32(data: Data, rows) -> str:
  table = []
  for m, mode, x in model_mode_rows(data, rows, ["sentiment_variants"]):
    base = {r["target_task"]: r["preserve"] for r in x
            if r["condition"] == "baseline"}
    tr = [r for r in x if r["condition"] == "all_demo"]
    bl, _ = best_layer(tr) if tr else (None, None)
    for (s, t), ref in R.EXP32.items():
      c = [r for r in tr if (r["source_task"], r["target_task"]) == (s, t)
           and r["layer"] == bl]
      if c:
        r = c[0]
        table.append([short_model(m), mode, f"L{bl}", f"{s}->{t}",
                      f"{r['transfer']:.2f} / {r['preserve']:.2f} / "
                      f"{r['neither']:.2f}", sizes([r]),
                      f"{ref[0]:.2f} / {ref[1]:.2f} / {ref[2]:.2f}",
                      sizes_text(R.EXP32_N, 1)])
    if base:
      table.append([short_model(m), mode, "-", "baselines", ", ".join(
          f"{k} {v:.2f}" for k, v in sorted(base.items())), sizes(
              [r for r in x if r["condition"] == "baseline"]), "1.00 each",
          sizes_text(R.EXP32_N, len(R.EXP32_BASELINES))])
  text = md_table(["model", "mode", "layer (best mean)", "pair",
                   "ours T / P / N", "ours N, pairs",
                   "original T / P / N (L8)", "original N, pairs"], table)
  text += (f"\nOriginal mean over the 6 variant pairs (N={R.EXP32_N}): "
           f"{R.EXP32_VARIANT_MEAN}.\n\n")
  text += plots_and_notes(data, "sentiment_variants", rows, (
      "binary_floor", "scorer_sentiment"))
  return text


def render_exp33(data: Data, rows) -> str:
  models = data.models(["variable_length"])
  text = ""
  base = [r for r in rows if r["condition"] == "baseline"]
  if base:
    text += "Part A baselines:\n\n" + md_table(
        ["model", "mode", "task", "accuracy", "ours N", "original",
         "original N"],
        [[short_model(r["model"]), r["mode"], r["target_task"],
          f2(r["preserve"]), f"N={r.get('n', '-')}",
          f2(R.EXP33_BASELINES.get(r["target_task"])), f"N={R.EXP33_N}"]
         for r in sorted(base, key=lambda r: (r["model"], r["mode"],
                                              r["target_task"]))])
  b = [r for r in rows if r["condition"] == "all_demo"]
  if b:
    text += "\nPart B, transfer by layer:\n\n" + transfer_grid(
        b, models, ("all_demo",), data, max_layers=12)
    table = []
    for m in models:
      for mode in ("faithful", "aligned"):
        for p in R.EXP33_PART_B:
          x = [r for r in b if r["model"] == m and r["mode"] == mode and
               (r["source_task"], r["target_task"]) == p]
          if x:
            mx = max(x, key=lambda r: r["transfer"])
            table.append([short_model(m), mode, f"{p[0]}->{p[1]}",
                          f"{mx['transfer']:.2f} (L{mx['layer']})",
                          sizes([mx]),
                          f2(max(v[0] for v in R.EXP33_PART_B[p].values())),
                          sizes_text(R.EXP33_N, 1)])
    text += "\nBest cell per pair:\n\n" + md_table(
        ["model", "mode", "pair", "max transfer (layer)", "ours N, pairs",
         "original max (L4-15)", "original N, pairs"], table)
  c = [r for r in rows if r["condition"] == "all_demo/by_n"]
  if c:
    table = []
    for r in sorted(c, key=lambda r: (r["model"], r["mode"], r["layer"])):
      bn = r.get("by_n") or {}
      if not any(d["transfer"] for d in bn.values()) and r["layer"] not in (
          round(0.3 * (r.get("n_layers") or 28)),):
        continue
      table.append([short_model(r["model"]), r["mode"], f"L{r['layer']}"] + [
          f"{bn.get(str(k), {}).get('transfer', '-')}/"
          f"{bn.get(str(k), {}).get('n', '-')} (tgt "
          f"{bn.get(str(k), {}).get('target_correct', '-')})"
          for k in (2, 3, 4, 5)])
    table.append(["Llama-3B (original)", "faithful", "L8"] + [
        f"{R.EXP33_PART_C[k][0]}/{R.EXP33_PART_C[k][1]}" for k in
        (2, 3, 4, 5)])
    text += ("\nPart C: repeat_word source -> repeat_n target, 'transfer' = "
             "output 'w w', by repeat count N (tgt = target-correct; shown: "
             "layers with any transfer and the depth-0.30 layer):\n\n")
    text += md_table(["model", "mode", "layer", "N=2", "N=3", "N=4", "N=5"],
                     table)
  text += "\n" + plots_and_notes(data, "variable_length", rows, (
      "scorer_repeat_n", "length_degenerate"))
  return text
