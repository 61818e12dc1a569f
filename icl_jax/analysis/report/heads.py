"""The head x layer map section (issue 19, `head_map` and `head_map_aie`
rows): per model, mode and pair, the whole residual at the demo output
positions against single heads, each layer's top-k heads and global head
groups, and the map's head ranking against Todd et al.'s AIE ranking. All
numbers come from the rows, through the study's own summaries
(`studies.head_map.pair_summary`, `aie_by_head`, `compare`)."""

from __future__ import annotations

from icl_jax.analysis.report.data import Data
from icl_jax.analysis.stats import wilson_interval
from icl_jax.analysis.report.markdown import (by, counts, f2, md_table,
                                              wilson_text)

HEADERS = ("model", "mode", "pair", "N", "best residual layer: transfer "
           "[95% Wilson]", "residual: layers with transfer > 0",
           "head cells transferring", "best head (L, h): change",
           "best per-layer group: transfer, change",
           "all global groups: max transfer", "largest group change "
           "(share of the residual's)", "AIE vs map: top-10 overlap, "
           "Spearman")


def _layer_span(layers) -> str:
  return f"L{min(layers)}-L{max(layers)}" if layers else "none"


def _pair_line(model: str, mode: str, pair: str, rows, aie) -> list:
  """One table line for one (model, mode, pair)'s map rows."""
  from icl_jax.studies import head_map as hm

  heads = hm.head_rows(rows)
  n_heads = 1 + max(r["heads"][0] for r in heads)
  s = hm.pair_summary(rows, n_heads)
  resid = {r["layer"]: r for r in rows if r.get("condition") == hm.RESID}
  best = resid[s["best_resid_layer"]]
  n = best.get("n") or 0
  top = max((r for r in heads if r.get("logit_diff_change") is not None),
            key=lambda r: r["logit_diff_change"], default=heads[0])
  groups = [r for r in rows if str(r.get("condition", "")).startswith("top")
            and r.get("layer") is not None]
  glob = [r for r in rows if r.get("ranking")]
  g_best = max(groups, key=hm.score) if groups else None
  changes = [r["logit_diff_change"] for r in glob
             if r.get("logit_diff_change") is not None]
  res_change = best.get("logit_diff_change")
  share = (f" ({max(changes) / res_change:.0%})" if changes and res_change
           else "")
  comp = hm.compare(rows, aie) if aie else None
  return [
      model, mode, pair, n,
      f"L{best['layer']}: " + wilson_text(counts(best["transfer"], n), n),
      _layer_span([l for l, r in resid.items() if r["transfer"] > 0]),
      f"{sum(r['transfer'] > 0 for r in heads)}/{len(heads)} (max "
      f"{f2(max(r['transfer'] for r in heads))})",
      f"L{top['layer']} h{top['heads'][0]}: "
      f"{f2(top.get('logit_diff_change'))}",
      (f"{f2(g_best['transfer'])}, {f2(g_best.get('logit_diff_change'))}"
       if g_best else "-"),
      f2(max((r["transfer"] for r in glob), default=None)),
      (f"{f2(max(changes))}{share}" if changes else "-"),
      (f"{f2(comp['top10_overlap'], 1)}, "
       f"{f2(comp['spearman_aie_vs_map_logit_diff_change'])}"
       if comp else "-")]


def render_head_map(data: Data, rows) -> str:
  """The summary table of every (model, mode, pair) with map rows, the
  residual's change of log p(source) - log p(target) for scale, and how to
  read a 0/N cell."""
  from icl_jax.studies import head_map as hm

  aie_rows = data.get(hm.AIE_EXPERIMENT)
  lines, ns = [], set()
  for (model, mode, src, tgt), rs in sorted(
      by(rows, "model", "mode", "source_task", "target_task").items(),
      key=lambda kv: tuple(str(x) for x in kv[0])):
    if not hm.head_rows(rs):
      continue
    mine = [r for r in aie_rows if r.get("model") == model]
    aie = hm.aie_by_head(mine) if mine else None
    if aie and not all((r["layer"], r["heads"][0]) in aie
                       for r in hm.head_rows(rs)):
      aie = None  # AIE over other layers than the map: no comparison
    lines.append(_pair_line(model, mode, f"{src}->{tgt}", rs, aie))
    ns.add(lines[-1][3])
  if not lines:
    return "_(no head rows)_\n"
  return (
      "Each head's output (site `head_out`) replaced at the demo output "
      "positions (exp8's `output_only` set) by the source prompts' value, "
      "one head, one layer's top-k heads, or the global top-k heads of all "
      "layers together (ranked by the map's change and by AIE); beside it "
      "the whole residual at the same positions. 'change' = change of log "
      "p(source answer) - log p(target answer) at the first generated "
      "token (nats). A cell with 0 of N transfers is bounded by its Wilson "
      "interval (" + ", ".join(f"0/{n}: up to {wilson_interval(0, n)[1]:.2f}"
                               for n in sorted(ns) if n) +
      "), not zero; the change carries the "
      "graded evidence. AIE as Todd et al. (2024) over the tasks of the "
      "`head_map_aie` rows.\n\n" + md_table(HEADERS, lines))


def render_head_map_aie(data: Data, rows) -> str:
  """Per model: the AIE tasks, N and the ten heads of highest mean AIE."""
  from icl_jax.studies import head_map as hm

  lines = []
  for (model,), rs in sorted(by(rows, "model").items(),
                             key=lambda kv: str(kv[0])):
    aie = hm.aie_by_head(rs)
    top = sorted(aie.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    lines.append([model, ", ".join(sorted({str(r["target_task"])
                                           for r in rs})),
                  max((r.get("n") or 0) for r in rs),
                  "; ".join(f"L{l} h{h} {v:.3f}" for (l, h), v in top)])
  return md_table(("model", "tasks", "N", "top-10 heads by mean AIE "
                   "(increase of p(correct first token))"), lines)
