r"""The main job: multi- vs single-position transfer, every layer, both modes.

    python -m experiments.main                 # gemma3-270m, N=20, 6 pairs
    python -m experiments.main --model=smollm2-135m --out_dir=runs/smollm2

For the study's six exp8 pairs, over every layer, in faithful and aligned
mode, with N target prompts per pair:

  multi-position:  all_demo and output_only conditions (patched prompt
                   forward, K/V persist: the study's D3 decoder);
  single-position: the last demo answer position ("last_demo_token"; in
                   faithful mode the study's own definition, which is the
                   "\n\n" separator on Gemma) with the same decoder
                   (like-for-like), and in faithful mode also with the
                   study's D2 decoder (only the first generated token sees
                   the patch).

Prints a summary (per mode and condition: the best layer by mean transfer
over the pairs, its depth fraction, pooled transfer and preserve with Wilson
95% intervals) and writes results + plots under --out_dir.
"""

from __future__ import annotations

import time
from pathlib import Path

from absl import app, flags

from experiments import common
from icl_jax.studies import main_job, study, transfer
from icl_jax.studies.layers import parse_layers
from icl_jax.studies.modes import parse_modes

common.define_common_flags()
common.define_on_mismatch_flag("aligned mode: demo token counts that differ")
flags.DEFINE_boolean("d2", True, "also run faithful single-position with the "
                     "study's D2 decoder")
F = flags.FLAGS
F.set_default("n", 20)

MULTI = ("all_demo", "output_only")
SINGLE = ("last_demo_token",)


def main(argv):
  del argv
  from icl_jax.analysis.plots import transfer_by_layer

  study.quiet_logs()
  t0 = time.time()
  pairs = study.parse_pairs(F.pairs)
  mode_list = parse_modes(F.mode)
  study.check_positive(F.n, "--n")
  study.check_positive(F.max_new_tokens, "--max_new_tokens")
  d2 = F.d2 and "faithful" in mode_list
  lm = common.load_model("main_prefill", *(["main_single_d2"] if d2 else []))
  kw = dict(model=F.model, pairs=pairs, n=F.n, out_dir=F.out_dir,
            layers=parse_layers(F.layers, lm.n_layers),
            max_new_tokens=F.max_new_tokens, on_mismatch=F.on_mismatch,
            seed=F.seed)
  rows = transfer.run_pair_study(lm, modes=mode_list,
                                 conditions=MULTI + SINGLE,
                                 experiment="main_prefill", timing="prefill",
                                 **kw)
  if d2:
    rows += transfer.run_pair_study(lm, modes=["faithful"],
                                    conditions=SINGLE,
                                    experiment="main_single_d2",
                                    timing="first_token", **kw)
  summary = main_job.summarize(rows, lm.n_layers)
  text = main_job.format_summary(summary, F.model, lm.n_layers)
  print(text)
  out = Path(F.out_dir)
  main_job.write_summary_files(out, text, {
      "model": F.model, "dtype": str(lm.dtype), "n_layers": lm.n_layers,
      "n": F.n, "pairs": [list(p) for p in pairs], "summary": summary,
      "seconds": time.time() - t0})
  transfer_by_layer(rows, out / "main_transfer_by_layer.png",
                    title=f"transfer by layer, {F.model} (N={F.n})")
  print(f"\nresults and plots under {out.resolve()} "
        f"({time.time() - t0:.0f}s)")


if __name__ == "__main__":
  app.run(main)
