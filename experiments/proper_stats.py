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


def main(argv):
  del argv
  from icl_jax.analysis.plots import transfer_by_layer
  from icl_jax.studies import plans, proper_stats, setups

  modes, pairs, n = common.parse_pair_flags()
  common.check_conditions(F.conditions, modes)
  st = common.open_pair_study(EXPERIMENT, modes, pairs, n,
                              dict(conditions=list(F.conditions)))
  jobs = []
  for mode in modes:
    for setup in setups.setup_pairs(pairs, n, seed=F.seed):
      jobs.append(plans.transfer_job(mode, setup, st.layers, F.conditions,
                                     on_mismatch=F.on_mismatch))
  rows = st.run(jobs, row_hook=proper_stats.add_intervals)
  proper_stats.write_csv(rows, st.path / "transfer_with_ci.csv")
  transfer_by_layer(rows, st.path / "transfer_by_layer.png",
                    title=f"exp23 (N={n}) on {F.model}")
  means = proper_stats.pair_means(rows)
  st.finish({"pair_means": means})
  text = proper_stats.format_best(means)
  if text:
    print(text)
  print(f"results under {st.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
