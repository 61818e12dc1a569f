r"""exp15: cross-format control (same operation, different output format).

    python experiments/cross_format.py --model=gemma3-270m --n=20

exp13's protocol (one source prompt, demo answer-token positions, D3) on
  Part A (same operation, different format; target prompts use the SOURCE
    task's test inputs): uppercase->uppercase_period, length->length_word,
    repeat_word->repeat_comma, reverse_exp15->reverse_spaced;
  Part B (controls, the TARGET's test inputs for both prompts):
    uppercase->first_letter, repeat_word->pattern_completion.
transferred <=> the source scorer accepts the patched output (protocol 8.15).
The exp15 tasks sample their 5 demos from their pool with their own
Random(42) at construction, as the original did.

faithful: the study's answer-token indices (absolute), faithful scorers.
aligned: answer tokens mapped by (demo, token index) -- the two prompts have
different demos, so groups whose token counts differ are skipped
(--on_mismatch) -- strict scorers. `--layers=study` = 8 of 28 scaled;
default: every layer. summary.json: Part A mean transfer per (mode, layer).
"""

from __future__ import annotations

from absl import app, flags

from experiments import common
from icl_jax.studies.study import parse_pairs

PART_A = (("uppercase", "uppercase_period"), ("length", "length_word"),
          ("repeat_word", "repeat_comma"), ("reverse_exp15", "reverse_spaced"))
PART_B = (("uppercase", "first_letter"), ("repeat_word", "pattern_completion"))
common.define_common_flags(default_pairs=PART_A, default_n=20)
flags.DEFINE_string("control_pairs",
                    ",".join(f"{s}:{t}" for s, t in PART_B),
                    "Part B pairs (target's inputs); 'none' to skip")
common.define_on_mismatch_flag(common.ANSWER_MISMATCH_HELP)
F = flags.FLAGS
EXPERIMENT = "cross_format"


def main(argv):
  del argv
  from icl_jax.studies import transfer
  from icl_jax.analysis.heatmaps import heatmap, pair_label

  pairs, modes = common.parse_pairs_and_modes()
  controls = ([] if F.control_pairs.strip().lower() == "none"
              else parse_pairs(F.control_pairs))
  lm, layers = common.load_model_and_layers(EXPERIMENT)
  config = dict(model=F.model, pairs=[list(p) for p in pairs],
                control_pairs=[list(p) for p in controls], layers=layers,
                modes=modes, n=F.n, on_mismatch=F.on_mismatch, seed=F.seed,
                max_new_tokens=F.max_new_tokens)
  study = common.open_run(lm, EXPERIMENT, config, key_extra=("part",))
  study.start(len(modes) * (len(pairs) + len(controls)), unit="pair")
  transfer.run_instances(study, pairs=pairs, layers=layers, modes=modes,
                         n=F.n, shared_queries="source",
                         on_mismatch=F.on_mismatch, seed=F.seed,
                         extra={"part": "A"})
  if controls:
    transfer.run_instances(study, pairs=controls, layers=layers, modes=modes,
                           n=F.n, shared_queries="target",
                           on_mismatch=F.on_mismatch, seed=F.seed,
                           extra={"part": "B"})
  rows = study.rows()
  study.finish({"same_op_diff_fmt_mean": transfer.mean_by_mode_layer(
      [r for r in rows if r.get("part") == "A"])})
  heatmap(rows, study.path / "transfer.png", x="layer",
          y=lambda r: f"{r['part']}: {pair_label(r)}", value="transfer",
          panel=("mode",), xlabel="layer (block output)",
          title=f"exp15 cross-format transfer, {F.model}")
  print(f"{len(rows)} rows under {study.path}")


if __name__ == "__main__":
  app.run(main)
