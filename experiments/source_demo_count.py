r"""exp30: fewer source demos (protocol 8.22).

    python experiments/source_demo_count.py --model=gemma3-270m --layers=study

Pairs uppercase->repeat_word, uppercase->length, repeat_word->length. The
source prompt has k in {1,2,3,5} demos (`--source_k`), the target always 5;
source prompts use the *target's* test inputs as queries; N=20; `all_demo`.

faithful: the line-based indices of the k-demo source prompt, written at the
same absolute indices of the 5-demo target -- so only about the first k demo
regions of the target are patched (the original's confound: source demo
count and patched extent change together);
aligned: source demo j -> target demo j for j < k (the same extent, but
token-exact).

`--pad_source_demos` adds a control the original lacks: the first k demos of
the source are followed by the *target's* remaining 5-k demos, so the
patched extent is constant and only the number of source-task demos varies
(condition "all_demo/padded"; aligned mode only patches the k source demos).

Rows carry `source_k`; plot transfer_by_layer.png (one line per k).
"""

from __future__ import annotations

from absl import app, flags

from experiments import common

PAIRS = (("uppercase", "repeat_word"), ("uppercase", "length"),
         ("repeat_word", "length"))
common.define_common_flags(default_pairs=PAIRS, default_n=20)
flags.DEFINE_string("source_k", "1,2,3,5", "source demo counts (1..5)")
flags.DEFINE_boolean("pad_source_demos", False,
                     "also run the constant-extent control (see docstring)")
common.define_on_mismatch_flag()
F = flags.FLAGS
EXPERIMENT = "source_demo_count"


def main(argv):
  del argv
  from icl_jax.analysis.plots import transfer_by_layer
  from icl_jax.studies import layers, study
  from icl_jax.studies import source_demo_count as sdc

  modes, pairs, n = common.parse_pair_flags()
  ks = study.parse_ints(F.source_k, "--source_k", 1, 5)
  st = common.open_pair_study(
      EXPERIMENT, modes, pairs, n,
      dict(source_k=ks, pad_source_demos=F.pad_source_demos),
      study_layers=layers.study_fraction_layer, key_extra=("source_k",))
  rows = st.run(sdc.build_jobs(modes, pairs, n, st.layers, ks,
                               F.pad_source_demos, F.seed, F.on_mismatch))
  plot_rows = [dict(r, condition=f"{r['condition']} k={r['source_k']}")
               for r in rows]
  transfer_by_layer(plot_rows, st.path / "transfer_by_layer.png",
                    title=f"exp30 source demo count on {F.model}")
  table = sdc.summarize(rows)
  st.finish({"mean_by_k": table})
  if table:
    print(sdc.format_table(table))
  print(f"results under {st.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
