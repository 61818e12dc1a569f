r"""exp8: multi-position transfer over every layer and the four conditions.

    python experiments/multi_position.py --model=gemma3-270m --n=20 \
        --pairs=uppercase:repeat_word --mode=faithful

Faithful mode reproduces the study's exp8 (line-based absolute indices, mean
of N source prompts, D3 decoding, faithful scorers); aligned mode maps demo
tokens by (demo, role, token index) and scores strictly. Results:
<out_dir>/multi_position/results.jsonl, summary.json, transfer_by_layer.png.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common
from icl_jax.studies import study, transfer
from icl_jax.studies.layers import parse_layers
from icl_jax.studies.modes import parse_modes

common.define_common_flags()
common.define_conditions_flag(common.EXP8_CONDITIONS)
common.define_on_mismatch_flag("aligned mode: demo token counts that differ")
F = flags.FLAGS
EXPERIMENT = "multi_position"


def main(argv):
  del argv
  study.quiet_logs()
  pairs = study.parse_pairs(F.pairs)
  study.check_positive(F.n, "--n")
  study.check_positive(F.max_new_tokens, "--max_new_tokens")
  modes = parse_modes(F.mode)
  common.check_conditions(F.conditions, modes)
  lm = common.load_model(EXPERIMENT)
  transfer.run_pair_study(
      lm, experiment=EXPERIMENT, model=F.model, out_dir=F.out_dir,
      pairs=pairs, layers=parse_layers(F.layers, lm.n_layers), modes=modes,
      n=F.n, conditions=F.conditions, max_new_tokens=F.max_new_tokens,
      on_mismatch=F.on_mismatch, seed=F.seed)


if __name__ == "__main__":
  app.run(main)
