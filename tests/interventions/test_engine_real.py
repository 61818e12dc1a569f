"""A short real-model sweep: engine == naive one-cell loop on gemma3-270m."""

from __future__ import annotations

import numpy as np
import pytest

import icl_jax
from icl_jax.studies import plans, setups
from icl_jax.interventions.engine import Engine
from icl_jax.interventions.naive import naive_patched_generate

pytestmark = pytest.mark.slow


def test_faithful_transfer_cells_equal_naive_loop():
  lm = icl_jax.load("gemma3-270m")
  engine = Engine(lm, max_new_tokens=6, stop="line", timing="prefill")
  setup = setups.setup_pairs([("uppercase", "repeat_word")], 3)[0]
  prompts = [e.prompt().text for e in setup.target_episodes]
  targets = engine.prepare(prompts=prompts)
  job = plans.transfer_job("faithful", setup, [4, 12],
                           ["output_only", "last_demo"], style="transfer",
                           own_index=True)
  ps = job.build(engine, targets, job.cells)
  meta = [(x.layer, x.condition) for x in ps]
  cells = plans.plans_to_cells(ps, targets.slots, lm.config.d_model)
  res = engine.run(targets, cells)
  assert res.changed.all()
  for c in range(len(cells)):
    for n, p in enumerate(prompts):
      ids = lm.tokenizer(p)["input_ids"]
      toks, delta = naive_patched_generate(
          lm, ids, int(cells.layer[c]), cells.mask[c], cells.values[c],
          max_new_tokens=6, stop="line")
      got = res.tokens[c, n, :res.n_gen[c, n]].tolist()
      assert got == toks, (meta[c], n, lm.tokenizer.decode(got),
                           lm.tokenizer.decode(toks))
