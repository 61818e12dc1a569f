"""Attention knockout and multi-layer skips (interventions.blockwise) are exact."""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from icl_jax.interventions.blockwise import BlockwiseEdit, blockwise_generate
from icl_jax.interventions.engine import Engine
from icl_jax.interventions.spec import make_cells
from icl_jax.models.decoder import Block, Decoder, rope_tables
from tests.interventions.test_engine_exact import tiny_lm

MAX_NEW = 5
SPLIT = 9


def prompts(rs, split=SPLIT):
  prefix = rs.randint(2, 53, split).tolist()
  return [prefix + rs.randint(2, 53, q).tolist() for q in (3, 1, 4)]


def _full_logits(lm, ids, layer_fn):
  """Last-position logits of one sequence, block by block without a cache;
  `layer_fn(l, block, x, pos)` returns block l's output."""
  cfg, params = lm.config, lm.params
  model = Decoder(cfg, lm.dtype)
  tokens = jnp.asarray(ids, jnp.int32)[None]
  pos = jnp.arange(tokens.shape[1])[None]
  x = model.apply({"params": params}, tokens,
                  method=lambda m, t: m.embed_tokens(t))
  block = Block(cfg, lm.dtype)
  stacked = params["layers"]["block"]
  for l in range(cfg.n_layers):
    p = jax.tree_util.tree_map(lambda a: a[l], stacked)

    def run(x_in, key_pos, p=p, l=l):
      return block.apply({"params": p}, x_in, jnp.asarray(cfg.is_sliding[l]),
                         None, rope_tables(cfg, pos), pos, key_pos, None)[0]

    x = layer_fn(l, run, x, pos)
  out = model.apply({"params": params}, x[:, -1:],
                    method=lambda m, h: m.unembed(m.final_norm(h)))
  return np.asarray(out[0, 0])


def test_no_edit_equals_generate():
  lm = tiny_lm("gemma3_text")  # sliding window + qk-norm: the harder case
  ps = prompts(np.random.RandomState(0))
  res = blockwise_generate(lm, ps, SPLIT, [BlockwiseEdit()],
                           max_new_tokens=MAX_NEW, stop="eos")
  ids, mask, _ = lm.pad_left(ps)  # one left-padded batch: one compile
  toks, k = lm.generate_ids(ids, mask, MAX_NEW, "eos")
  ref = np.asarray(lm(ids, mask, logits="last").logits[:, 0])
  for n in range(len(ps)):
    assert res.tokens[0, n, :res.n_gen[0, n]].tolist() == \
        toks[n, :k[n]].tolist()
  np.testing.assert_allclose(res.first_logits[0], ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("timing", ["prefill", "every_step"])
def test_single_block_skip_equals_engine_skip(timing):
  lm = tiny_lm("gemma3_text")
  ps = prompts(np.random.RandomState(1))
  L = lm.n_layers
  edits = [BlockwiseEdit(skip=np.arange(L) == l) for l in range(L)]
  res = blockwise_generate(lm, ps, SPLIT, edits, max_new_tokens=MAX_NEW,
                           stop="eos", skip_decode=timing == "every_step")
  engine = Engine(lm, max_new_tokens=MAX_NEW, stop="eos", timing=timing)
  targets = engine.prepare(token_ids=ps)
  cells = make_cells("skip", np.arange(L), np.ones((L, targets.slots), bool),
                     lm.config.d_model)
  ref = engine.run(targets, cells, return_logits=True)
  for l in range(L):
    for n in range(len(ps)):
      got = res.tokens[l, n, :res.n_gen[l, n]].tolist()
      want = ref.tokens[l, n, :ref.n_gen[l, n]].tolist()
      assert got == want, (timing, l, n)
    np.testing.assert_allclose(res.first_logits[l], ref.first_logits[l],
                               rtol=1e-5, atol=1e-4)


def test_knock_all_prefix_keys_everywhere_equals_query_alone():
  lm = tiny_lm("gemma3_text")
  ps = prompts(np.random.RandomState(2))
  L = lm.n_layers
  res = blockwise_generate(
      lm, ps, SPLIT,
      [BlockwiseEdit(0, L, np.ones(SPLIT, bool))], max_new_tokens=MAX_NEW,
      stop="eos")
  model = Decoder(lm.config, lm.dtype)
  for n, ids in enumerate(ps[:2]):
    q = jnp.asarray(ids[SPLIT:], jnp.int32)[None]
    pos = SPLIT + jnp.arange(q.shape[1])[None]
    logits, _ = model.apply({"params": lm.params}, q, pos, pos)
    np.testing.assert_allclose(res.first_logits[0, n],
                               np.asarray(logits[0, -1]), rtol=1e-5,
                               atol=1e-4)


@pytest.mark.parametrize("family", ["gemma3_text", "llama"])
def test_one_block_knockout_equals_two_pass_reference(family):
  lm = tiny_lm(family)
  ps = prompts(np.random.RandomState(3))
  L = lm.n_layers
  knocked = np.zeros(SPLIT, bool)
  knocked[[1, 2, 3, 5, 8]] = True  # a scattered "demo region"; BOS kept
  edits = [BlockwiseEdit(l, l + 1, knocked) for l in range(L)]
  res = blockwise_generate(lm, ps, SPLIT, edits, max_new_tokens=MAX_NEW,
                           stop="eos")
  plain = blockwise_generate(lm, ps, SPLIT, [BlockwiseEdit()],
                             max_new_tokens=MAX_NEW, stop="eos")
  n_changed = 0
  for n, ids in enumerate(ps[:2]):
    T = len(ids)
    is_query = jnp.arange(T)[None, :, None] >= SPLIT
    ko_pos = jnp.where(jnp.asarray(np.pad(knocked, (0, T - SPLIT)))[None],
                       -1, jnp.arange(T)[None])
    for l_ko in range(L):
      def layer_fn(l, run, x, pos, l_ko=l_ko):
        if l != l_ko:
          return run(x, pos)
        # Pass A: every token attends normally; pass B: knocked keys hidden
        # from everyone. Query-chunk tokens take pass B's output.
        return jnp.where(is_query, run(x, ko_pos), run(x, pos))

      ref = _full_logits(lm, ids, layer_fn)
      np.testing.assert_allclose(res.first_logits[l_ko, n], ref, rtol=1e-5,
                                 atol=1e-4)
      n_changed += not np.allclose(ref, plain.first_logits[0, n], atol=1e-3)
  assert n_changed > 0  # the knockout really changes something


def test_bad_edits_raise():
  lm = tiny_lm("llama")
  ps = prompts(np.random.RandomState(4))
  with pytest.raises(ValueError, match="outside the model"):
    blockwise_generate(lm, ps, SPLIT, [BlockwiseEdit(0, 99)])
  with pytest.raises(ValueError, match="prefix chunk"):
    blockwise_generate(lm, [ps[0], [7] + ps[1][1:]], SPLIT, [BlockwiseEdit()])
  with pytest.raises(ValueError, match="knock_keys"):
    blockwise_generate(lm, ps, SPLIT, [BlockwiseEdit(0, 1, np.ones(3, bool))])
