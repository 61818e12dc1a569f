"""The main job's summary: per mode, condition and decoder, the best layer
by mean transfer over the pairs, its depth fraction, and pooled transfer
and preserve with Wilson 95% intervals."""

from __future__ import annotations

from collections import defaultdict

from icl_jax.analysis.stats import wilson_interval


def summarize(rows, n_layers: int) -> list[dict]:
  """Per (mode, condition, timing): best layer by mean transfer over pairs."""
  groups = defaultdict(lambda: defaultdict(list))
  for r in rows:
    groups[(r["mode"], r["condition"], r["timing"])][r["layer"]].append(r)
  out = []
  for (mode, cond, timing), by_layer in sorted(groups.items()):
    def mean_t(layer):
      rs = by_layer[layer]
      return sum(r["transfer"] for r in rs) / len(rs)

    best = max(sorted(by_layer), key=mean_t)
    rs = by_layer[best]
    if mean_t(best) == 0:
      # No transfer at any layer: there is no best layer; pool every layer.
      best = None
      rs = [r for layer in by_layer for r in by_layer[layer]]
    n = sum(r["n"] for r in rs)
    k_t = round(sum(r["transfer"] * r["n"] for r in rs))
    k_p = round(sum(r["preserve"] * r["n"] for r in rs))
    head = [r for r in rs if (r["source_task"], r["target_task"]) ==
            ("uppercase", "repeat_word")]
    head_t = (sum(r["transfer"] for r in head) / len(head)) if head else None
    out.append({
        "mode": mode, "condition": cond, "timing": timing,
        "best_layer": best,
        "depth_fraction": None if best is None else best / n_layers,
        "pairs": len(rs), "n": n, "transfer": k_t / n,
        "transfer_ci": wilson_interval(k_t, n), "preserve": k_p / n,
        "preserve_ci": wilson_interval(k_p, n),
        "max_cell_transfer": max(r["transfer"] for l in by_layer
                                 for r in by_layer[l]),
        "headline_pair_transfer": head_t,
    })
  return out


def format_summary(summary, model: str, n_layers: int) -> str:
  """The summary as the text table the main job prints."""
  lines = [f"Transfer summary for {model} ({n_layers} layers; 'layer L' = "
           "output of block L, depth = L / n_layers).",
           "Best layer = highest mean transfer over the pairs; rates pooled "
           "over the pairs at that layer, Wilson 95% intervals.",
           "", f"{'mode':9} {'condition':16} {'decoder':11} {'best L':>6} "
           f"{'depth':>5} {'transfer [95% CI]':>22} {'preserve [95% CI]':>22}"
           f" {'max cell':>8} {'up->rep':>7}"]
  for s in summary:
    dec = {"prefill": "D3/prefill", "first_token": "D2/1st tok"}.get(
        s["timing"], s["timing"])
    ci = s["transfer_ci"]
    pci = s["preserve_ci"]
    head = ("" if s["headline_pair_transfer"] is None
            else f"{s['headline_pair_transfer']:.2f}")
    best = "none" if s["best_layer"] is None else str(s["best_layer"])
    depth = ("all" if s["depth_fraction"] is None
             else f"{s['depth_fraction']:.2f}")
    lines.append(
        f"{s['mode']:9} {s['condition']:16} {dec:11} {best:>6} "
        f"{depth:>5} {s['transfer']:>6.3f} "
        f"[{ci[0]:.3f}, {ci[1]:.3f}] {s['preserve']:>6.3f} "
        f"[{pci[0]:.3f}, {pci[1]:.3f}] {s['max_cell_transfer']:>8.2f} "
        f"{head:>7}")
  lines += ["", "multi-position = all_demo / output_only; single-position = "
            "last_demo_token (faithful: the study's index, the '\\n\\n' "
            "separator on Gemma; aligned: the last demo's final answer "
            "token). up->rep = uppercase->repeat_word at the best layer. "
            "best L 'none': zero transfer at every layer; its rates are "
            "pooled over all layers."]
  return "\n".join(lines)


def write_summary_files(out_dir, text: str, info: dict) -> None:
  """<out_dir>/main_summary.txt (the printed summary) and
  main_summary.json (`info`)."""
  import json
  from pathlib import Path

  from icl_jax.interventions.distributed import is_primary

  if not is_primary():  # multi-process runs: process 0 writes
    return
  out = Path(out_dir)
  (out / "main_summary.txt").write_text(text + "\n")
  (out / "main_summary.json").write_text(json.dumps(info, indent=1))
