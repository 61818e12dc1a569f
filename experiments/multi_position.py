r"""exp8: multi-position transfer over every layer and the four conditions.

    python experiments/multi_position.py --model=gemma3-270m --n=20 \
        --pairs=uppercase:repeat_word --mode=faithful

Faithful mode reproduces the study's exp8 (line-based absolute indices, mean
of N source prompts, D3 decoding, faithful scorers); aligned mode maps demo
tokens by (demo, role, token index) and scores strictly. Results:
<out_dir>/multi_position/results.jsonl, summary.json, transfer_by_layer.png.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import common  # noqa: E402

common.define_common_flags()
flags.DEFINE_list("conditions", list(common.EXP8_CONDITIONS),
                  "position conditions")
flags.DEFINE_enum("on_mismatch", "truncate", ["skip", "truncate", "refuse"],
                  "aligned mode: demo token counts that differ")
F = flags.FLAGS
EXPERIMENT = "multi_position"


def run(lm, *, model, pairs, layers, mode_list, n, conditions, out_dir,
        max_new_tokens, on_mismatch, seed, experiment=EXPERIMENT,
        timing="prefill", progress=True):
  from icl_jax.analysis.plots import transfer_by_layer
  from icl_jax.analysis.results import RunDir, row_key
  from icl_jax.interventions.engine import Engine
  from icl_jax.interventions import transfer

  config = dict(model=model, pairs=[list(p) for p in pairs], layers=layers,
                modes=mode_list, n=n, conditions=list(conditions),
                max_new_tokens=max_new_tokens, on_mismatch=on_mismatch,
                seed=seed, timing=timing)
  rd = RunDir(out_dir, experiment, config, lm=lm)
  done = rd.done()
  engine = Engine(lm, max_new_tokens=max_new_tokens, stop="line",
                  timing=timing)
  t0 = time.time()
  for mode in mode_list:
    setups = transfer.setup_pairs(pairs, n, seed=seed)
    for setup in setups:
      want = [(model, mode, setup.source_task, setup.target_task, l, c)
              for c in conditions for l in layers]
      if all(w in done for w in want):
        continue
      todo_layers = sorted({w[4] for w in want if w not in done})
      print(f"[{mode}] {setup.source_task} -> {setup.target_task}: "
            f"{len(todo_layers)} layers x {len(conditions)} conditions x "
            f"{n} prompts", flush=True)
      rows = transfer.run_pair(engine, setup, todo_layers, conditions, mode,
                               experiment=experiment, model=model,
                               on_mismatch=on_mismatch, progress=progress)
      rd.append([r for r in rows if row_key(r) not in done])
  rows = [r for r in rd.rows() if r["model"] == model]
  transfer_by_layer(rows, rd.path / "transfer_by_layer.png",
                    title=f"{experiment} on {model}")
  rd.write_summary({"seconds": time.time() - t0})
  return rows


def main(argv):
  del argv
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.WARNING)
  pairs = common.parse_pairs(F.pairs)
  from icl_jax.interventions import study

  study.check_positive(F.n, "--n")
  study.check_positive(F.max_new_tokens, "--max_new_tokens")
  common.check_conditions(F.conditions, common.modes(F.mode))
  lm = common.load_model(EXPERIMENT)
  layers = common.parse_layers(F.layers, lm.n_layers)
  run(lm, model=F.model, pairs=pairs, layers=layers,
      mode_list=common.modes(F.mode), n=F.n, conditions=F.conditions,
      out_dir=F.out_dir, max_new_tokens=F.max_new_tokens,
      on_mismatch=F.on_mismatch, seed=F.seed)


if __name__ == "__main__":
  app.run(main)
