"""Per-target cells (each target prompt its own mask and noise seed) in one
engine call equal separate calls, one mask and seed at a time."""

from __future__ import annotations

import numpy as np
import pytest

from icl_jax.interventions.engine import Engine
from icl_jax.interventions.spec import CellBatch, make_cells
from tests.interventions.test_engine_exact import (MAX_NEW, target_prompts,
                                                   tiny_lm)


def per_target_noise(T, D, N, rs, layers):
  """Noise cells, each target its own single position and seed: positions
  in the shared prefix (slot < 11), in the queries, and mixed."""
  C = len(layers)
  pos = np.stack([rs.randint(1, 11, N), rs.randint(11, 12, N),
                  np.array([3, 11, 7][:N]), rs.randint(1, 12, N)])[:C]
  masks = np.zeros((C, N, T), bool)
  for c in range(C):
    masks[c, np.arange(N), pos[c]] = True
  seeds = rs.randint(0, 2**31 - 1, (C, N))
  return make_cells("noise", layers, masks, D, sigma=[3.0, 2.0, 4.0, 1.5][:C],
                    relative=[False, True, False, True][:C], seed=seeds)


def test_make_cells_per_target_fields():
  cells = make_cells("noise", [0, 1], np.zeros((2, 3, 5), bool), 4,
                     sigma=1.0, seed=[[1, 2, 3], [4, 5, 6]])
  assert cells.per_target and cells.mask.shape == (2, 5)
  assert cells.target_seed.tolist() == [[1, 2, 3], [4, 5, 6]]
  assert cells.take([1]).target_seed.tolist() == [[4, 5, 6]]
  shared = make_cells("zero", [0], np.zeros((1, 5), bool), 4)
  assert shared.target_mask is None and shared.take([0]).target_seed is None
  with pytest.raises(ValueError, match="per-target"):
    CellBatch.concat([cells, shared])
  with pytest.raises(ValueError, match="seed"):
    make_cells("noise", [0], np.zeros((1, 5), bool), 4, seed=[[1, 2]])


@pytest.mark.parametrize("timing", ["every_step"])
def test_per_target_cells_equal_separate_calls(timing):
  lm = tiny_lm("gemma3_text", seed=3)
  rs = np.random.RandomState(3)
  prompts = target_prompts(rs)
  N = len(prompts)
  engine = Engine(lm, max_new_tokens=MAX_NEW, stop="eos", timing=timing)
  targets = engine.prepare(token_ids=prompts)
  T, D = targets.slots, lm.config.d_model
  cells = per_target_noise(T, D, N, rs, [0, 2, 1])
  res = engine.run(targets, cells, return_logits=True)
  assert res.changed.all()
  alone = Engine(lm, max_new_tokens=MAX_NEW, stop="eos", timing=timing)
  for c in range(len(cells)):
    deltas = []
    for n in range(N):
      # Row (c, n) is row n of the shared cell with row n's mask and seed
      # on the same target set: bit for bit (same batch, same layout).
      one = make_cells("noise", [int(cells.layer[c])],
                       cells.target_mask[c, n][None], D,
                       sigma=float(cells.sigma[c]),
                       relative=bool(cells.relative[c]),
                       seed=int(cells.target_seed[c, n]))
      ref = engine.run(targets, one, return_logits=True)
      assert (res.tokens[c, n].tolist(), int(res.n_gen[c, n])) == (
          ref.tokens[0, n].tolist(), int(ref.n_gen[0, n])), (c, n)
      np.testing.assert_array_equal(res.first_logits[c, n],
                                    ref.first_logits[0, n])
      deltas.append(ref.delta[0])
      # Prompt n alone (its own layout: prefix = all but its last token):
      # the same tokens. (Its floats differ in the last bits: other matmul
      # shapes; see BUILD_NOTES.)
      own = alone.run(alone.prepare(token_ids=[prompts[n]]), one)
      assert own.tokens[0, 0, :own.n_gen[0, 0]].tolist() == \
          res.tokens[c, n, :res.n_gen[c, n]].tolist(), (c, n)
    if not cells.target_mask[c][:, targets.prefix_len:].any():
      # Prefix-only cell: each shared run's delta is row n's own edit, and
      # the per-target delta is their max.
      assert res.delta[c] == max(deltas), c
