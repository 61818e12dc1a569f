"""exp11's noise plan: every prompt's own noise draw at its own position, all
N prompts in one engine call, equals N one-prompt calls."""

from __future__ import annotations

import numpy as np
import jax
import pytest

from tests.conftest import tiny_llama_lm
from icl_jax.interventions.engine import Engine
from icl_jax.interventions.spec import make_cells
from icl_jax.studies import ablation, ablation_plans
from icl_jax.studies.accuracy import prompt_seed, stable_seed


@pytest.fixture(scope="module")
def lm():
  """A tiny random llama (peaky logits) with SmolLM2's real tokenizer."""
  return tiny_llama_lm(scale=4.0)


def test_per_prompt_noise_in_one_call_equals_one_prompt_calls(lm):
  tok, D = lm.tokenizer, lm.config.d_model
  # pattern_completion: the prompts' first_query_token indices differ
  # (73 and 74), so every prompt needs its own position.
  tp = ablation.task_prompts(tok, "pattern_completion", n=4)
  positions = ("last_demo_token", "first_query_token")
  layers, scales = [0, 1], [1.0, 4.0]
  plan = ablation_plans.noise_plan(
      tok, layers=layers, positions=positions,
      noise={"faithful": ("unit", scales)}, primary_scale=None,
      sigma_act=None, seed=7, per_prompt=True, d_model=D)
  [group] = plan("faithful", tp)
  cells = group.cells
  assert cells.per_target and cells.target_mask.shape == (8, 4, tp.slots)
  engine = Engine(lm, max_new_tokens=5, stop="line")
  res = engine.run(engine.prepare(token_ids=tp.token_ids), cells)
  first_query = ablation.single_positions(tok, tp, "first_query_token",
                                          "faithful")
  assert len(set(first_query)) == 2
  # Today's rule, one prompt at a time: prompt i of cell c draws from
  # prompt_seed(stable_seed(seed, task, position, layer, scale), i).
  specs = [(p, l, s) for p in positions for l in layers for s in scales]
  changed, ref_delta = 0, np.zeros((len(specs), len(tp.token_ids)))
  for i, ids in enumerate(tp.token_ids):
    pos = {p: ablation.single_positions(tok, tp, p, "faithful")[i]
           for p in positions}
    one = engine.prepare(token_ids=[ids])
    masks = np.zeros((len(specs), one.slots), bool)
    masks[np.arange(len(specs)), [pos[p] for p, _, _ in specs]] = True
    ref = engine.run(one, make_cells(
        "noise", [l for _, l, _ in specs], masks, D,
        sigma=[s for _, _, s in specs],
        seed=[prompt_seed(stable_seed(7, tp.task, p, l, s), i)
              for p, l, s in specs]))
    for c in range(len(specs)):
      assert res.texts[c][i] == ref.texts[c][0], (c, i)
      assert res.tokens[c, i].tolist() == ref.tokens[c, 0].tolist()
    ref_delta[:, i] = ref.delta
    changed += sum(res.texts[c][i] != res.texts[0][i] for c in range(8))
  assert changed > 0  # the noise changes some generations
  # delta: the max over the prompts of each one's edit. The batched call's
  # clean residuals come from other matmul shapes than one prompt's alone,
  # so the floats agree to float32 rounding (a few ulps), not bit for bit.
  np.testing.assert_allclose(res.delta, ref_delta.max(axis=1), rtol=1e-6)
