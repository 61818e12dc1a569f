r"""exp31: how many output positions carry the transfer (protocol 8.23).

    python experiments/output_positions.py --model=gemma3-270m --layers=study

Pairs as exp30 (uppercase->repeat_word, uppercase->length,
repeat_word->length); source prompts use the target's test inputs; N=20.

"Output positions" are the demo output lines: faithful mode, the study's
line-based output-line indices (section 5.2: "Output", ":" and answer slots
with the drift); aligned mode, the real output-line tokens ("Output", ":",
answer tokens) mapped by (demo, role, index). "Input positions" are the
input lines likewise.

Part A (first RNG call): for each size s in --sizes (1,2,3,4,5,7,10) and
--subsets random subsets (10; one np.random.RandomState(42 + seed) stream
per mode through all pairs, `choice(outputs, s, replace=False)`, as in the
original), patch the subset *together with all input positions*
(condition "random_outputs", fields size/subset); also "all_positions"
(inputs + all outputs) and "all_outputs" (outputs only, no inputs -- the
original's "ALL = 0.90" point, which unlike the subset points excludes the
inputs).
Part B (second RNG call): inputs + structured output subsets:
"first_per_demo", "last_per_demo", "every_other", "first_demo",
"last_demo".

Every layer by default; `--layers=study` = layer_at_fraction(0.30) (the
original's layer 8). Plot: transfer vs number of output positions. See
`icl_jax/studies/output_positions.py`.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common
from icl_jax.studies import output_positions as op

PAIRS = (("uppercase", "repeat_word"), ("uppercase", "length"),
         ("repeat_word", "length"))
common.define_common_flags(default_pairs=PAIRS, default_n=20)
flags.DEFINE_string("sizes", "1,2,3,4,5,7,10", "random subset sizes")
flags.DEFINE_integer("subsets", 10, "random subsets per size",
                     lower_bound=1)
flags.DEFINE_list("parts", ["A", "B"], "parts to run (A, B)")
common.define_on_mismatch_flag()
F = flags.FLAGS


def main(argv):
  del argv
  from icl_jax.analysis.plots import transfer_by_positions
  from icl_jax.studies import layers, study

  modes, pairs, n = common.parse_pair_flags()
  sizes = study.parse_ints(F.sizes, "--sizes", 1, None)
  n_subsets = study.check_positive(F.subsets, "--subsets")
  parts = op.parse_parts(F.parts)
  st = common.open_pair_study(
      op.EXPERIMENT, modes, pairs, n,
      dict(sizes=sizes, subsets=n_subsets, parts=sorted(parts)),
      study_layers=layers.study_fraction_layer, key_extra=("size", "subset"))
  jobs = op.build_jobs(st.lm.tokenizer, modes, pairs, n, st.layers, sizes,
                       n_subsets, parts, F.seed, F.on_mismatch)
  rows = st.run(jobs)
  transfer_by_positions(rows, st.path / "transfer_by_positions.png", F.model)
  summary = op.summarize(rows)
  st.finish({"points": summary})
  text = op.format_summary(summary, len(st.layers))
  if text:
    print(text)
  print(f"results under {st.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
