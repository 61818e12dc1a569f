"""Heads of several blocks replaced together (`HeadGroupPatch`, run by
`blockwise`): against the engine's one-block head cell, a no-op with the
prompts' own values, and a separate float64 reference
(`naive.naive_head_group_logits`), on tiny models of every family (MHA,
GQA, MQA; Gemma post-norms)."""

from __future__ import annotations

import numpy as np
import pytest

import icl_jax
from icl_jax import HeadGroupPatch, Patch
from icl_jax.interventions.naive import naive_head_group_logits
from tests.interventions.test_sites import FAMILIES, prompts, tiny

MAX_NEW = 3


@pytest.fixture(params=FAMILIES, ids=[f[0] for f in FAMILIES])
def lm(request):
  return tiny(*request.param)


def _setup(lm, seed=0):
  rs = np.random.RandomState(seed)
  tgts = prompts(rs)  # 9 shared demo tokens + queries of 3, 2, 3
  src = rs.randint(2, 53, 12).tolist()
  acts = icl_jax.capture(lm, [src], layers="all", sites=["head_out"])
  return tgts, acts


def _group(acts, groups, pos, name=""):
  """HeadGroupPatch with the source's summed head outputs per block."""
  return HeadGroupPatch(groups, pos, {
      l: acts.values(l, pos, "head_out", heads=list(h))[0]
      for l, h in groups.items()}, name=name)


def test_one_block_group_equals_engine_head_cell(lm):
  tgts, acts = _setup(lm)
  pos = [2, 3, 5, 9]  # demo slots and the first query slot
  patches, want = [], []
  for l, hs in ((0, (1,)), (2, (0, 3)), (3, (0, 1, 2, 3))):
    v = acts.values(l, pos, "head_out", heads=list(hs))[0]
    patches.append(HeadGroupPatch({l: hs}, pos, {l: v}))
    want.append(Patch.replace(l, pos, v, site="head_out", heads=hs))
  # A [L, N] mask names the same group as the dict.
  m = np.zeros((lm.config.n_layers, lm.config.n_heads), bool)
  m[2, [0, 3]] = True
  patches.append(HeadGroupPatch(m, pos, {2: want[1].values}))
  want.append(want[1])
  got = icl_jax.run_patches(lm, tgts, patches, max_new_tokens=MAX_NEW,
                            return_logits=True)
  ref = icl_jax.run_patches(lm, tgts, want, max_new_tokens=MAX_NEW,
                            return_logits=True)
  np.testing.assert_array_equal(got.tokens, ref.tokens)
  np.testing.assert_allclose(got.logits, ref.logits, rtol=1e-4, atol=1e-4)
  assert np.isnan(got.delta).all()  # not measured for head groups


def test_own_values_every_head_every_block_is_a_noop(lm):
  tgts, _ = _setup(lm)
  own = icl_jax.capture(lm, tgts[:1], layers="all", sites=["head_out"])
  L, N = lm.config.n_layers, lm.config.n_heads
  pos = [1, 4, 7]  # the shared demo block: the same values in every prompt
  p = _group(own, {l: range(N) for l in range(L)}, pos)
  out = icl_jax.run_patches(lm, tgts, [p], max_new_tokens=MAX_NEW,
                            return_logits=True, baseline=True)
  np.testing.assert_array_equal(out.tokens, out.clean.tokens)
  np.testing.assert_allclose(out.logits, out.clean.logits, rtol=1e-4,
                             atol=1e-4)


def test_groups_equal_naive_reference(lm):
  tgts, acts = _setup(lm, seed=1)
  L, N = lm.config.n_layers, lm.config.n_heads
  pos = [1, 4, 6, 9]  # spans the shared prefix and the queries
  cases = [{0: (1, 2), 2: (3,)}, {1: (0,), 2: (1, 2), 3: (0, 3)},
           {l: tuple(range(N)) for l in range(L)}]
  patches = [_group(acts, g, pos) for g in cases]
  out = icl_jax.run_patches(lm, tgts, patches, max_new_tokens=MAX_NEW,
                            return_logits=True, baseline=True)
  mask = np.zeros(16, bool)
  mask[pos] = True
  for k, g in enumerate(cases):
    vals = {}
    for l in g:
      v = np.zeros((16, lm.config.d_model))
      v[pos] = patches[k].values[l]
      vals[l] = v
    for i, ids in enumerate(tgts):
      ref = naive_head_group_logits(lm, ids, g, mask, vals)
      np.testing.assert_allclose(out.logits[k, i], ref, rtol=1e-3,
                                 atol=1e-3)
    # Every case changes the logits (the edit is not silently dropped).
    assert np.abs(out.logits[k] - out.clean.logits[0]).max() > 1e-2


def test_every_head_every_block_is_not_the_residual_patch(lm):
  # With every head of every block replaced, the MLPs still read the
  # target's own tokens: not the source's residual (checked at the last
  # prompt position of the shortest query, where the residual patch of the
  # last block gives the source's logits outright).
  tgts, acts = _setup(lm)
  tgts = [tgts[1]]
  L, N = lm.config.n_layers, lm.config.n_heads
  pos = list(range(len(tgts[0])))  # every position of the prompt
  grp = _group(acts, {l: range(N) for l in range(L)}, pos)
  res = Patch.replace(L - 1, pos, acts.values(L - 1, pos)[0])
  out = icl_jax.run_patches(lm, tgts, [grp, res], max_new_tokens=1,
                            return_logits=True)
  assert np.abs(out.logits[0] - out.logits[1]).max() > 1e-2


def test_head_group_checks():
  lm = tiny("llama", 4)  # input checks: one family is enough
  tgts, acts = _setup(lm)
  v = acts.values(0, [1], "head_out", heads=[0])[0]
  with pytest.raises(ValueError, match="prefill"):
    icl_jax.run_patches(lm, tgts, [HeadGroupPatch({0: 0}, [1], {0: v})],
                        timing="first_token")
  with pytest.raises(ValueError, match="one entry per block"):
    HeadGroupPatch({0: 0, 1: 2}, [1], {0: v})
  with pytest.raises(ValueError, match="no head"):
    HeadGroupPatch({0: []}, [1], {})
  with pytest.raises(ValueError, match="outside the model"):
    icl_jax.run_patches(lm, tgts, [HeadGroupPatch({0: 7}, [1], {0: v})])
  with pytest.raises(ValueError, match="same token indices"):
    icl_jax.run_patches(lm, tgts, [HeadGroupPatch({0: 0}, [-1], {0: v})])
