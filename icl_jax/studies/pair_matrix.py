"""exp29: the transfer matrix over ordered task pairs (protocol 8.21)
(`experiments/pair_matrix.py`): per (mode, condition, layer) the mean
transfer over the pairs and the >=0.5 / 0.1-0.49 / <0.1 split.
"""

from __future__ import annotations

from collections import defaultdict


def split_counts(vals) -> dict:
  """How many rates are >= 0.5, in [0.1, 0.5) and < 0.1."""
  return {"n_ge_0.5": sum(v >= 0.5 for v in vals),
          "n_0.1_to_0.49": sum(0.1 <= v < 0.5 for v in vals),
          "n_lt_0.1": sum(v < 0.1 for v in vals)}


def summarize(rows, n_layers) -> dict:
  """Per (mode, condition, layer): mean transfer (also with the strict
  scorer), the split counts and the top pairs; the study's layer."""
  from icl_jax.studies.layers import STUDY_FRACTION, layer_at_fraction

  groups = defaultdict(list)
  for r in rows:
    groups[(r["mode"], r["condition"], r["layer"])].append(r)
  per_layer = []
  for (mode, cond, layer), rs in sorted(groups.items()):
    vals = [r["transfer"] for r in rs]
    strict = [r.get("strict_scorer", {}).get("transfer", r["transfer"])
              for r in rs]
    top = sorted(rs, key=lambda r: -r["transfer"])[:8]
    per_layer.append({
        "mode": mode, "condition": cond, "layer": layer,
        "depth_fraction": layer / n_layers, "pairs": len(rs),
        "mean_transfer": sum(vals) / len(vals),
        "mean_transfer_strict_scorer": sum(strict) / len(strict),
        **split_counts(vals),
        "top_pairs": [(r["source_task"], r["target_task"], r["transfer"])
                      for r in top if r["transfer"] > 0]})
  return {"per_layer": per_layer,
          "study_layer": layer_at_fraction(STUDY_FRACTION, n_layers)}


def format_summary(summary, n_layers_run: int) -> str:
  """The study layer's means (every layer when <= 4 ran)."""
  lines = []
  for p in summary["per_layer"]:
    if p["layer"] in (summary["study_layer"],) or n_layers_run <= 4:
      lines.append(
          f"{p['mode']:9} {p['condition']:9} L{p['layer']:<3} mean "
          f"transfer {p['mean_transfer']:.3f} over {p['pairs']} pairs; "
          f">=.5: {p['n_ge_0.5']}, .1-.49: {p['n_0.1_to_0.49']}, <.1: "
          f"{p['n_lt_0.1']}")
  return "\n".join(lines)
