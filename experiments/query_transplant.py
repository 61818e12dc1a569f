r"""exp9: single-position transplant at the first query token.

    python experiments/query_transplant.py --model=gemma3-270m --n=10

The source vector (mean over N source prompts of the residual after block L
at each prompt's first query token -- it varies with the query, unlike the
demo positions) replaces the target's residual at its first query token
(protocol 8.9). Pairs: uppercase->sentiment, linear_2x->uppercase,
sentiment->first_letter, pattern_completion->length, antonym->repeat_word,
first_letter->linear_2x.

faithful: `get_position_index("first_query_token")`, D2 decoder (first
generated token only), faithful scorers. aligned: the layout's first
query-value token, prefill (patched K/V persist), strict scorers. The
original's 12-layer grid is `--layers=study`; default: every layer.
Results: <out_dir>/query_transplant/ (+ transfer_by_layer.png,
preserve_by_layer.png).
"""

from __future__ import annotations

from absl import app, flags

from experiments import common

EXP9_PAIRS = (("uppercase", "sentiment"), ("linear_2x", "uppercase"),
              ("sentiment", "first_letter"), ("pattern_completion", "length"),
              ("antonym", "repeat_word"), ("first_letter", "linear_2x"))
common.define_common_flags(default_pairs=EXP9_PAIRS, default_n=10)
common.define_timing_flag()
F = flags.FLAGS
EXPERIMENT = "query_transplant"


def main(argv):
  del argv
  from icl_jax.analysis.plots import transfer_by_layer
  from icl_jax.studies import single_position as sp

  pairs, modes = common.parse_pairs_and_modes()
  lm, layers = common.load_model_and_layers(EXPERIMENT)
  config = dict(model=F.model, pairs=[list(p) for p in pairs], layers=layers,
                modes=modes, n=F.n, timing=F.timing, seed=F.seed,
                max_new_tokens=F.max_new_tokens)
  study = common.open_run(lm, EXPERIMENT, config)
  study.start(len(modes) * len(pairs), unit="pair")
  sp.run_transplant(study, pairs=pairs, conditions=["first_query_token"],
                    layers=layers, modes=modes, n=F.n, seed=F.seed,
                    timing=F.timing)
  rows = study.rows()
  study.finish({"localization": sp.localization(rows),
                "localization_preserve": sp.localization(rows, "preserve")})
  for metric in ("transfer", "preserve"):
    transfer_by_layer(rows, study.path / f"{metric}_by_layer.png",
                      metric=metric,
                      title=f"exp9 first-query transplant, {F.model}")
  print(f"{len(rows)} rows under {study.path}")


if __name__ == "__main__":
  app.run(main)
