"""exp23: exp8 at N=50 with Wilson and bootstrap intervals (protocol 8.18)
(`experiments/proper_stats.py`): per row, transfer and preserve counted
independently with Wilson intervals and transfer's bootstrap interval; per
(mode, layer, condition) the mean over pairs with a bootstrap interval.
"""

from __future__ import annotations

import csv
from collections import defaultdict

from icl_jax.analysis import stats

CSV_COLUMNS = ["mode", "source_task", "target_task", "layer", "condition",
               "n_positions", "n", "transfer_independent", "transfer_wilson",
               "transfer_bootstrap", "preserve_independent",
               "preserve_wilson", "transfer", "preserve", "neither"]


def add_intervals(row: dict) -> dict:
  """Wilson (transfer, preserve; independent counts) + bootstrap (transfer)."""
  n = row["n"]
  src = [1.0 if e.get("source_correct") else 0.0 for e in row["examples"]]
  tgt = [1.0 if e.get("target_correct") else 0.0 for e in row["examples"]]
  k_t, k_p = int(sum(src)), int(sum(tgt))
  row["transfer_count"] = k_t
  row["preserve_count"] = k_p
  row["transfer_wilson"] = list(stats.wilson_interval(k_t, n))
  row["preserve_wilson"] = list(stats.wilson_interval(k_p, n))
  row["transfer_bootstrap"] = list(stats.bootstrap_ci(src))
  return row


def pair_means(rows) -> list[dict]:
  """Mean transfer over pairs per (mode, layer, condition) + bootstrap CI."""
  groups = defaultdict(list)
  for r in rows:
    groups[(r["mode"], r["layer"], r["condition"])].append(
        r["transfer_independent"])
  out = []
  for (mode, layer, cond), vals in sorted(groups.items()):
    out.append({"mode": mode, "layer": layer, "condition": cond,
                "pairs": len(vals), "mean_transfer": sum(vals) / len(vals),
                "bootstrap": list(stats.bootstrap_ci(vals))})
  return out


def write_csv(rows, path) -> None:
  """transfer_with_ci.csv: one line per row, intervals as "[lo, hi]"."""
  cols = CSV_COLUMNS
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(cols)
    for r in sorted(rows, key=lambda r: (r["mode"], r["source_task"],
                                         r["target_task"], r["layer"],
                                         r["condition"])):
      w.writerow([("[%.3f, %.3f]" % tuple(r[c]) if isinstance(r.get(c), list)
                   else r.get(c)) for c in cols])


def format_best(means) -> str:
  """The best layer's pair mean per (mode, condition), with its interval."""
  best = {}
  for m in means:
    k = (m["mode"], m["condition"])
    if k not in best or m["mean_transfer"] > best[k]["mean_transfer"]:
      best[k] = m
  return "\n".join(
      f"{mode:9} {cond:12} best layer {m['layer']:>3}: mean transfer "
      f"{m['mean_transfer']:.3f} [{m['bootstrap'][0]:.3f}, "
      f"{m['bootstrap'][1]:.3f}] over {m['pairs']} pairs"
      for (mode, cond), m in sorted(best.items()))
