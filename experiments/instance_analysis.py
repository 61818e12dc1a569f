r"""exp13: instance-level multi-position transfer at the demo answer tokens.

    python experiments/instance_analysis.py --model=gemma3-270m --n=20

Per pair, the residuals after block L of ONE source prompt (source demos +
the target's first test input) at the demo answer tokens replace the
target's (protocol 8.13); every target prompt gets a clean and a patched
continuation (D3: patched K/V persist). Each example records both outputs;
rows also count `baseline_transfer` (the source scorer already accepts the
clean output -- pattern_completion -> repeat_word's 1.00 in the study) and
`transfer_changed` (transferred and different from the clean output).

faithful: the study's answer-token indices (section 5.3, absolute, no
alignment), faithful scorers. aligned: the layout's answer tokens mapped by
(demo, token index), strict scorers. `--layers=study` is the original's
layer_at_fraction(0.30) (8 of 28); default: every layer.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common

EXP13_PAIRS = (("uppercase", "first_letter"), ("uppercase", "sentiment"),
               ("repeat_word", "first_letter"),
               ("pattern_completion", "repeat_word"))
common.define_common_flags(default_pairs=EXP13_PAIRS, default_n=20)
common.define_on_mismatch_flag(common.ANSWER_MISMATCH_HELP)
flags.DEFINE_integer("n_source", 1, "source prompts averaged (the study: 1)",
                     lower_bound=1)
F = flags.FLAGS
EXPERIMENT = "instance_analysis"


def main(argv):
  del argv
  from icl_jax.studies import transfer
  from icl_jax.analysis.heatmaps import heatmap, pair_label

  pairs, modes = common.parse_pairs_and_modes()
  if not 1 <= F.n_source <= F.n:
    raise ValueError(f"--n_source must be in 1..--n ({F.n})")
  lm, layers = common.load_model_and_layers(EXPERIMENT)
  config = dict(model=F.model, pairs=[list(p) for p in pairs], layers=layers,
                modes=modes, n=F.n, n_source=F.n_source,
                on_mismatch=F.on_mismatch, seed=F.seed,
                max_new_tokens=F.max_new_tokens)
  study = common.open_run(lm, EXPERIMENT, config)
  study.start(len(modes) * len(pairs), unit="pair")
  transfer.run_instances(study, pairs=pairs, layers=layers, modes=modes,
                         n=F.n, shared_queries="target", n_source=F.n_source,
                         on_mismatch=F.on_mismatch, seed=F.seed)
  rows = study.rows()
  study.finish()
  for metric in ("transfer", "transfer_changed", "preserve"):
    heatmap(rows, study.path / f"{metric}.png", x="layer", y=pair_label,
            value=metric, panel=("mode",), xlabel="layer (block output)",
            title=f"exp13 {metric}, answer-token positions, {F.model}")
  print(f"{len(rows)} rows under {study.path}")


if __name__ == "__main__":
  app.run(main)
