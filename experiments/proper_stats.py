r"""exp23: exp8 re-run at N=50 with Wilson and bootstrap intervals (8.18).

    python experiments/proper_stats.py --model=gemma3-270m --layers=study

The six exp8 pairs x four line-based conditions x every layer (default; the
original ran layers 8/12/15/17 of Llama-3B, i.e. `--layers=study`), N=50
target prompts. As in the original, transfer (source scorer accepts) and
preserve (target scorer accepts) are counted *independently*; each gets a
Wilson 95% interval, transfer also the study's bootstrap interval (10,000
resamples of the per-prompt outcomes, RandomState(42), percentile indices
250/9750). Per (mode, layer, condition) the mean over pairs gets a bootstrap
interval over the pair rates, as in the original's log.

faithful: the study's absolute line-based indices, faithful scorers;
aligned: (demo, role, token) mapping, strict scorers.

Writes <out_dir>/proper_stats/{results.jsonl, transfer_with_ci.csv,
summary.json, transfer_by_layer.png}.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common

common.define_common_flags(default_pairs=common.EXP8_PAIRS, default_n=50)
common.define_conditions_flag(
    common.EXP8_CONDITIONS, "position conditions (faithful: the study's "
    "line-based sets; aligned: their token-exact counterparts)")
common.define_on_mismatch_flag()
F = flags.FLAGS
EXPERIMENT = "proper_stats"


def add_intervals(row: dict) -> dict:
  """Wilson (transfer, preserve; independent counts) + bootstrap (transfer)."""
  from icl_jax.analysis import stats

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


def pair_means(rows):
  """Mean transfer over pairs per (mode, layer, condition) + bootstrap CI."""
  from collections import defaultdict

  from icl_jax.analysis import stats

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


def write_csv(rows, path):
  import csv

  cols = ["mode", "source_task", "target_task", "layer", "condition",
          "n_positions", "n", "transfer_independent", "transfer_wilson",
          "transfer_bootstrap", "preserve_independent", "preserve_wilson",
          "transfer", "preserve", "neither"]
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(cols)
    for r in sorted(rows, key=lambda r: (r["mode"], r["source_task"],
                                         r["target_task"], r["layer"],
                                         r["condition"])):
      w.writerow([("[%.3f, %.3f]" % tuple(r[c]) if isinstance(r.get(c), list)
                   else r.get(c)) for c in cols])


def main(argv):
  del argv
  from icl_jax.analysis.plots import transfer_by_layer
  from icl_jax.studies import plans, setups

  modes, pairs, n = common.parse_pair_flags()
  common.check_conditions(F.conditions, modes)
  st = common.open_pair_study(EXPERIMENT, modes, pairs, n,
                              dict(conditions=list(F.conditions)))
  jobs = []
  for mode in modes:
    for setup in setups.setup_pairs(pairs, n, seed=F.seed):
      jobs.append(plans.transfer_job(mode, setup, st.layers, F.conditions,
                                     on_mismatch=F.on_mismatch))
  rows = st.run(jobs, row_hook=add_intervals)
  write_csv(rows, st.path / "transfer_with_ci.csv")
  transfer_by_layer(rows, st.path / "transfer_by_layer.png",
                    title=f"exp23 (N={n}) on {F.model}")
  means = pair_means(rows)
  st.finish({"pair_means": means})
  best = {}
  for m in means:
    k = (m["mode"], m["condition"])
    if k not in best or m["mean_transfer"] > best[k]["mean_transfer"]:
      best[k] = m
  for (mode, cond), m in sorted(best.items()):
    print(f"{mode:9} {cond:12} best layer {m['layer']:>3}: mean transfer "
          f"{m['mean_transfer']:.3f} [{m['bootstrap'][0]:.3f}, "
          f"{m['bootstrap'][1]:.3f}] over {m['pairs']} pairs")
  print(f"results under {st.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
