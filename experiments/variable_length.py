r"""exp33: variable-length tasks (protocol 8.25).

    python experiments/variable_length.py --model=gemma3-270m --layers=study

Part A (condition "baseline"): clean accuracy of repeat_n, spell_out,
repeat_word, uppercase, length.
Part B: `all_demo` transfer for repeat_n<->repeat_word, uppercase<->repeat_n,
spell_out<->length; source prompts use the target's test inputs; N=15;
every layer (default) or `--layers=study` (the original's layers
4/6/8/10/12/15 of 28, scaled to this model's depth).
Part C (condition "all_demo/by_n"): source repeat_word (its own test inputs),
target repeat_n over all 20 items; "transfer" <=> the patched output is
"w w" (the item's word twice). Rows carry a per-N breakdown (`by_n`).

The original's headline (N=2 100%, N>=3 0%) is a scoring artifact: for N=2
items the target's own correct answer is also "w w" (protocol 11.2.4). The
strict scorer (aligned mode) reports those outputs as "both", and `by_n`
gives the target-correct rate next to the transfer rate.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common

BASELINE_TASKS = ("repeat_n", "spell_out", "repeat_word", "uppercase",
                  "length")
PART_B_PAIRS = (("repeat_n", "repeat_word"), ("repeat_word", "repeat_n"),
                ("uppercase", "repeat_n"), ("repeat_n", "uppercase"),
                ("spell_out", "length"), ("length", "spell_out"))
common.define_common_flags(default_pairs=PART_B_PAIRS, default_n=15)
flags.DEFINE_list("parts", ["A", "B", "C"], "parts to run (A, B, C)")
common.define_on_mismatch_flag()
F = flags.FLAGS
F.set_default("max_new_tokens", 16)  # repeat_n answers have up to 5 words
EXPERIMENT = "variable_length"


def main(argv):
  del argv
  from icl_jax.analysis.plots import transfer_by_layer
  from icl_jax.studies import variable_length as vl

  modes, pairs, n = common.parse_pair_flags()
  parts = vl.parse_parts(F.parts)
  st = common.open_pair_study(EXPERIMENT, modes, pairs, n,
                              dict(parts=sorted(parts)),
                              study_layers=vl.study_layers)
  if "A" in parts:  # baselines: one batched generation
    st.run_baselines(BASELINE_TASKS, n)
  rows = st.run(vl.build_jobs(modes, parts, pairs, n, st.layers, F.seed,
                              F.on_mismatch), row_hook=vl.add_by_n)
  transfer_by_layer([r for r in rows if r["condition"] != "baseline"],
                    st.path / "transfer_by_layer.png",
                    title=f"exp33 variable-length tasks on {F.model}")
  summary = vl.summarize(rows)
  st.finish(summary)
  text = vl.format_summary(summary)
  if text:
    print(text)
  print(f"results under {st.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
