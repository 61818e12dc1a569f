"""exp32: sentiment label variants (protocol 8.24)
(`experiments/sentiment_variants.py`): three tasks that share the sentiment
demo words and test pool and differ only in the label; `all_demo` transfer
between them (both prompts on the source's test inputs, so position-aligned)
and two controls (the target's inputs).
"""

from __future__ import annotations

from collections import defaultdict

VARIANTS = ("sentiment", "sentiment_goodbad", "sentiment_symbol")


def is_variant_pair(s, t) -> bool:
  """Both tasks are sentiment label variants."""
  return s in VARIANTS and t in VARIANTS


def build_jobs(modes, pairs, n, layers, seed, on_mismatch) -> list:
  """An all_demo transfer job per (mode, pair); variant pairs use the
  source's test inputs for both prompts, the others the target's."""
  from icl_jax.studies import plans, setups

  jobs = []
  for mode in modes:
    objs = {}  # one Task object per task across the pairs (RNG replay)
    for s, t in pairs:
      q = "source" if is_variant_pair(s, t) else "target"
      setup = setups.setup_pairs([(s, t)], n, queries=q, seed=seed,
                                 task_objects=objs)[0]
      jobs.append(plans.transfer_job(
          mode, setup, layers, ["all_demo"], on_mismatch=on_mismatch,
          extra={"queries": q}))
  return jobs


def summarize(rows) -> dict:
  """Baselines by mode/task; per (mode, layer) the mean variant-pair
  transfer and every pair's (transfer, preserve, neither)."""
  base = {(r["mode"], r["target_task"]): r["preserve"] for r in rows
          if r["condition"] == "baseline"}
  g = defaultdict(list)
  for r in rows:
    if r["condition"] != "baseline":
      g[(r["mode"], r["layer"])].append(r)
  per_layer = []
  for (mode, layer), rs in sorted(g.items()):
    var = [r["transfer"] for r in rs
           if is_variant_pair(r["source_task"], r["target_task"])]
    per_layer.append({
        "mode": mode, "layer": layer,
        "variant_mean_transfer": sum(var) / len(var) if var else None,
        "pairs": {f"{r['source_task']}->{r['target_task']}":
                  (r["transfer"], r["preserve"], r["neither"]) for r in rs}})
  return {"baselines": {f"{m}/{t}": v for (m, t), v in base.items()},
          "per_layer": per_layer}


def format_summary(summary) -> str:
  """Baselines and the mean variant transfer per (mode, layer)."""
  lines = [f"baseline {k}: {v:.2f}"
           for k, v in sorted(summary["baselines"].items())]
  for p in summary["per_layer"]:
    if p["variant_mean_transfer"] is not None:
      lines.append(f"{p['mode']:9} L{p['layer']:<3} mean variant transfer "
                   f"{p['variant_mean_transfer']:.3f}")
  return "\n".join(lines)
