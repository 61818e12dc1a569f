r"""exp32: sentiment label variants (protocol 8.24).

    python experiments/sentiment_variants.py --model=gemma3-270m --layers=study

Three tasks share the sentiment demo words and test pool and differ only in
the label: sentiment (positive/negative), sentiment_goodbad (good/bad),
sentiment_symbol (+/-). Part A: clean accuracy of each (condition
"baseline"). Part B: `all_demo` transfer for the 6 ordered variant pairs --
source and target prompts both use the *source's* test inputs, so the
prompts are position-aligned -- and the controls sentiment->antonym and
uppercase->sentiment (both prompts use the target's inputs). N=20, every
layer (default) or `--layers=study` (layer_at_fraction(0.30) = the
original's layer 8).

Scoring as in the original in faithful mode (goodbad: label substring;
symbol: output starts with the symbol; sentiment: substring with a
"positive" fallback); strict (aligned mode) requires the exact label.
Note the ~50% floor of binary labels: a constant output in the source label
space already "transfers" on about half of the inputs (protocol 11.2.5).
"""

from __future__ import annotations

from absl import app, flags

from experiments import common

VARIANT_PAIRS = (("sentiment", "sentiment_goodbad"),
                 ("sentiment_goodbad", "sentiment"),
                 ("sentiment", "sentiment_symbol"),
                 ("sentiment_symbol", "sentiment"),
                 ("sentiment_goodbad", "sentiment_symbol"),
                 ("sentiment_symbol", "sentiment_goodbad"))
CONTROLS = (("sentiment", "antonym"), ("uppercase", "sentiment"))
common.define_common_flags(default_pairs=VARIANT_PAIRS + CONTROLS,
                           default_n=20)
flags.DEFINE_boolean("baselines", True, "Part A: clean accuracy of the "
                     "three variants")
common.define_on_mismatch_flag()
F = flags.FLAGS
EXPERIMENT = "sentiment_variants"


def main(argv):
  del argv
  from icl_jax.analysis.plots import transfer_by_layer
  from icl_jax.studies import sentiment_variants as sv
  from icl_jax.studies.layers import study_fraction_layer

  modes, pairs, n = common.parse_pair_flags()
  st = common.open_pair_study(EXPERIMENT, modes, pairs, n,
                              dict(baselines=F.baselines),
                              study_layers=study_fraction_layer)
  if F.baselines:  # Part A: clean accuracy, one batched generation
    st.run_baselines(sv.VARIANTS, n)
  rows = st.run(sv.build_jobs(modes, pairs, n, st.layers, F.seed,
                              F.on_mismatch))
  transfer_by_layer([r for r in rows if r["condition"] != "baseline"],
                    st.path / "transfer_by_layer.png",
                    title=f"exp32 sentiment variants on {F.model}")
  summary = sv.summarize(rows)
  st.finish(summary)
  text = sv.format_summary(summary)
  if text:
    print(text)
  print(f"results under {st.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
