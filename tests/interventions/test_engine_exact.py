"""The vectorized engine equals a naive one-cell loop, output for output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import jax
import pytest

from icl_jax.interventions.engine import Engine, common_prefix_len
from icl_jax.interventions.naive import naive_patched_generate
from icl_jax.interventions.spec import CellBatch, make_cells
from icl_jax.models.config import config_from_hf
from icl_jax.models.decoder import init_params
from icl_jax.models.lm import LanguageModel

MAX_NEW = 6


def tiny_config(family="gemma3_text", n_kv=2):
  """A 4-layer, 4-head tiny config of `family` with `n_kv` K/V heads (Gemma
  3: sliding window 6, alternating sliding/full layers)."""
  extra = {}
  if family == "gemma3_text":
    extra = dict(sliding_window=6, query_pre_attn_scalar=8,
                 layer_types=["sliding_attention", "full_attention",
                              "sliding_attention", "full_attention"])
  return config_from_hf(dict(
      model_type=family, vocab_size=53, hidden_size=32, intermediate_size=64,
      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=n_kv,
      head_dim=8, max_position_embeddings=128, eos_token_id=1,
      pad_token_id=0, **extra))


def tiny_lm(family="gemma3_text", seed=0):
  cfg = tiny_config(family)
  params = init_params(cfg, jax.random.PRNGKey(seed))
  # Larger weights: peaky logits, so greedy choices are not near-ties.
  params = jax.tree_util.tree_map(lambda x: x * 5.0, params)
  return LanguageModel(cfg, params, tokenizer=None, name=f"tiny-{family}")


def target_prompts(rs, n=3):
  """A shared 'demo block' and queries of different lengths."""
  demo = rs.randint(2, 53, 11).tolist()
  return [demo + rs.randint(2, 53, q).tolist() for q in (3, 1, 4)[:n]]


def random_cells(lm, T, rs):
  D = lm.config.d_model
  batches = []
  masks = np.zeros((4, T), bool)
  masks[0, 2:9] = True  # demo block only
  masks[1, 5:13] = True  # spills into the queries
  masks[2, 11:] = True  # query only
  masks[3, [1, 4, 7]] = True  # scattered single positions
  vals = rs.normal(0, 1.0, (4, T, D)).astype(np.float32)
  batches.append(make_cells("replace", [0, 1, 2, 3], masks, D, values=vals))
  batches.append(make_cells("add", [1, 2, -1, 3], masks, D,
                            values=rs.normal(0, 0.5, (4, D))))
  batches.append(make_cells("noise", [2, 0, 1, 3], masks, D, sigma=0.7,
                            relative=[True, False, True, False],
                            seed=[1, 2, 3, 4]))
  batches.append(make_cells("zero", [3, -1, 0, 2], masks, D))
  batches.append(make_cells("skip", [1, 0, 3, 2], masks, D))
  batches.append(make_cells("mean_ablate", [2, 3, 1, 0], masks, D,
                            values=rs.normal(0, 1, (4, D))))
  return CellBatch.concat(batches)


def naive_for(lm, ids, cells, i, timing, engine_T):
  import jax.numpy as jnp

  D = lm.config.d_model
  noise = np.asarray(jax.random.normal(jax.random.PRNGKey(int(cells.seed[i])),
                                       (engine_T, D), jnp.float32))
  dec_noise = np.stack([np.asarray(jax.random.normal(jax.random.PRNGKey(
      int(cells.seed[i]) + 7919 * (t + 1)), (1, D), jnp.float32))[0]
                        for t in range(MAX_NEW)])
  # The engine's mask is in slot coordinates: prefix slots, then the query
  # right-padded to Q. Slots equal absolute positions for this prompt's own
  # tokens only; slots past its end are the engine's query padding, so the
  # naive mask keeps the first len(ids) slots.
  mask = cells.mask[i].copy()
  mask[len(ids):] = False
  return naive_patched_generate(
      lm, ids, int(cells.layer[i]), mask, cells.values[i],
      a=float(cells.a[i]), c=float(cells.c[i]), sigma=float(cells.sigma[i]),
      relative=bool(cells.relative[i]), noise=noise, max_new_tokens=MAX_NEW,
      stop="eos", timing=timing, decode_values=cells.decode_values[i],
      decode_noise=dec_noise)


@pytest.mark.parametrize("family,timing", [
    ("gemma3_text", "prefill"), ("llama", "prefill"),
    ("gemma3_text", "first_token"), ("llama", "every_step")])
def test_sweep_equals_naive_loop(family, timing):
  lm = tiny_lm(family)
  rs = np.random.RandomState(0)
  prompts = target_prompts(rs)
  engine = Engine(lm, max_new_tokens=MAX_NEW, stop="eos", timing=timing)
  targets = engine.prepare(token_ids=prompts)
  assert targets.prefix_len == 11 and targets.slots == 15
  cells = random_cells(lm, targets.slots, rs)
  if timing == "every_step":
    cells.decode_values[:] = rs.normal(0, 0.5, cells.decode_values.shape)
  res = engine.run(targets, cells)
  assert res.changed.all()
  mismatches = []
  for i in range(len(cells)):
    for n, ids in enumerate(prompts):
      toks, _ = naive_for(lm, ids, cells, i, timing, targets.slots)
      got = res.tokens[i, n, :res.n_gen[i, n]].tolist()
      if got != toks:
        mismatches.append((i, n, got, toks))
  assert not mismatches, mismatches[:5]


@pytest.mark.parametrize("timing", ["prefill", "every_step"])
def test_decode_compaction_equals_naive_loop(timing):
  # A third of the vocabulary ends a row, so rows stop at different steps
  # and the finished ones are compacted away (phases of 24, 12, 6, 3 rows).
  from icl_jax.models.generation import StopTables

  lm = tiny_lm("llama", seed=1)
  lm._stop_tables = StopTables.eos_only(53, range(2, 53, 3))
  rs = np.random.RandomState(1)
  prompts = target_prompts(rs)
  cells = None
  results = {}
  for rows in (0, 3):
    engine = Engine(lm, max_new_tokens=MAX_NEW, stop="eos", timing=timing,
                    compact_min_rows=rows)
    targets = engine.prepare(token_ids=prompts)
    if cells is None:
      cells = random_cells(lm, targets.slots, rs).take(list(range(8)) * 4)
      cells.layer[:] = 2  # one sweep_layer call: 32 cells x 3 prompts
      if timing == "every_step":
        cells.decode_values[:] = rs.normal(0, 0.5, cells.decode_values.shape)
    results[rows] = engine.run(targets, cells)
  plain, compact = results[0], results[3]
  assert len(set(compact.n_gen.ravel().tolist())) >= 3  # ragged stops
  np.testing.assert_array_equal(compact.n_gen, plain.n_gen)
  np.testing.assert_array_equal(compact.tokens, plain.tokens)
  for i in (0, 3, 5):  # and both equal the naive one-cell loop
    for n, ids in enumerate(prompts):
      toks, _ = naive_for(lm, ids, cells, i, timing, targets.slots)
      assert compact.tokens[i, n, :compact.n_gen[i, n]].tolist() == toks


def test_prefix_start_keeps_clean_prefix_tokens_exactly(monkeypatch):
  # Chunks whose first edited slot is late run only [p0, P) of the demo
  # block; chunks that edit only the query run none of it. Same tokens as
  # the naive loop either way (layer -1 holds only query-only cells).
  from icl_jax.interventions import engine as engine_mod

  monkeypatch.setattr(engine_mod, "PREFIX_STEP", 1)
  lm = tiny_lm("gemma3_text", seed=2)
  rs = np.random.RandomState(2)
  prompts = target_prompts(rs)
  engine = Engine(lm, max_new_tokens=MAX_NEW, stop="eos")
  targets = engine.prepare(token_ids=prompts)
  T, D, P = targets.slots, lm.config.d_model, targets.prefix_len
  masks = np.zeros((3, T), bool)
  masks[0, 6:9] = True
  masks[1, 8:13] = True
  masks[2, 11:] = True  # query only
  assert engine_mod.prefix_start(masks, P) == 6
  assert engine_mod.prefix_start(masks[2:], P) == P
  cells = CellBatch.concat([
      make_cells("replace", [0, 2, 1], masks, D,
                 values=rs.normal(0, 1.0, (3, T, D)).astype(np.float32)),
      make_cells("noise", [3, 1, 2], masks, D, sigma=0.7, relative=True,
                 seed=[5, 6, 7]),
      make_cells("add", [-1, -1, -1], masks[2:].repeat(3, 0), D,
                 values=rs.normal(0, 0.5, (3, D)))])
  res = engine.run(targets, cells)
  assert res.changed.all()
  for i in range(len(cells)):
    for n, ids in enumerate(prompts):
      toks, _ = naive_for(lm, ids, cells, i, "prefill", T)
      assert res.tokens[i, n, :res.n_gen[i, n]].tolist() == toks, (i, n)


def test_clean_patch_is_noop_and_baseline_matches_generate():
  lm = tiny_lm()
  rs = np.random.RandomState(1)
  prompts = target_prompts(rs)
  engine = Engine(lm, max_new_tokens=MAX_NEW, stop="eos")
  targets = engine.prepare(token_ids=prompts)
  base = engine.baseline(targets)
  for n, ids in enumerate(prompts):
    toks, k = lm.generate_ids(np.asarray([ids], np.int32),
                              np.ones((1, len(ids)), np.int32), MAX_NEW,
                              "eos")
    assert base.tokens[0, n, :base.n_gen[0, n]].tolist() == toks[0, :k[0]]\
        .tolist()
  # Replace every prompt position, at every layer, with clean activations:
  # a no-op, and the engine reports that nothing changed.
  T, L = targets.slots, lm.n_layers
  masks = np.zeros((L, T), bool)
  masks[:, :targets.prefix_len + 1] = True  # prefix + first query token
  vals = np.stack([targets.residual(l + 1)[1] for l in range(L)])  # prompt 1
  cells = make_cells("replace", np.arange(L), masks, lm.config.d_model,
                     values=vals)
  res = engine.run(targets, cells)
  # Prompt 1 has a 1-token query, so its whole prompt is covered: delta 0.
  assert (res.tokens[:, 1] == base.tokens[0, 1]).all()
  assert (res.delta[:] >= 0).all()
  solo = Engine(lm, max_new_tokens=MAX_NEW, stop="eos").prepare(
      token_ids=[prompts[1]])
  vals_solo = np.stack([solo.residual(l + 1)[0] for l in range(L)])
  masks_solo = np.ones((L, solo.slots), bool)
  r2 = engine.run(solo, make_cells("replace", np.arange(L), masks_solo,
                                   lm.config.d_model, values=vals_solo))
  assert (r2.delta == 0).all() and not r2.changed.any()


def test_full_replacement_reproduces_source_continuation():
  """Replacing every position with another prompt's activations.

  At the embedding output (layer -1) every layer's K/V then comes from the
  source, so the whole continuation is the source's. At block L >= 0 the
  first token (and its logits) is the source's; later tokens still attend to
  the target's own K/V at layers <= L (prefill semantics), so only the first
  token is guaranteed.
  """
  lm = tiny_lm("llama")
  rs = np.random.RandomState(2)
  src = rs.randint(2, 53, 14).tolist()
  tgt = rs.randint(2, 53, 14).tolist()
  engine = Engine(lm, max_new_tokens=MAX_NEW, stop="eos")
  t_src = engine.prepare(token_ids=[src])
  t_tgt = engine.prepare(token_ids=[tgt])
  src_base = engine.run(t_src, make_cells("zero", [0], np.zeros((1, 14), bool),
                                          lm.config.d_model),
                        return_logits=True)
  tgt_base = engine.baseline(t_tgt)
  resid, _ = engine.capture(token_ids=[src])  # [L+1,1,T,D]
  L = lm.n_layers
  layers = np.arange(-1, L)
  cells = make_cells("replace", layers, np.ones((L + 1, 14), bool),
                     lm.config.d_model, values=resid[:, 0])
  res = engine.run(t_tgt, cells, return_logits=True)
  src_tokens = src_base.tokens[0, 0].tolist()
  assert src_tokens != tgt_base.tokens[0, 0].tolist()  # a real change
  assert res.tokens[0, 0].tolist() == src_tokens  # layer -1: everything
  for i in range(L + 1):
    assert res.tokens[i, 0, 0] == src_tokens[0], layers[i]
    np.testing.assert_allclose(res.first_logits[i, 0],
                               src_base.first_logits[0, 0], rtol=1e-5,
                               atol=1e-4)
  assert res.changed.all()


def test_chunked_equals_unchunked_and_layers_out_of_range():
  lm = tiny_lm()
  rs = np.random.RandomState(3)
  prompts = target_prompts(rs)
  big = Engine(lm, max_new_tokens=MAX_NEW, stop="eos")
  small = Engine(lm, max_new_tokens=MAX_NEW, stop="eos", chunk_cells=2)
  targets = big.prepare(token_ids=prompts)
  cells = random_cells(lm, targets.slots, rs)
  a = big.run(targets, cells, return_logits=True)
  b = small.run(targets, cells, return_logits=True)
  assert small.chunk_size(targets) == 2 and big.chunk_size(targets) >= 24
  np.testing.assert_array_equal(a.tokens, b.tokens)
  np.testing.assert_array_equal(a.n_gen, b.n_gen)
  np.testing.assert_allclose(a.first_logits, b.first_logits, rtol=1e-5,
                             atol=1e-5)
  bad = make_cells("zero", [4], np.ones((1, targets.slots), bool), 32)
  with pytest.raises(ValueError, match="outside the model"):
    big.run(targets, bad)
  far = np.zeros((1, targets.slots + 3), bool)
  far[0, -1] = True
  with pytest.raises(ValueError, match="out of range"):
    big.run(targets, make_cells("zero", [0], far, 32))
  with pytest.raises(ValueError, match="NaN"):
    make_cells("replace", [0], np.ones((1, 4), bool), 32,
               values=np.full((1, 4, 32), np.nan))


def test_common_prefix_len_leaves_a_query_token():
  assert common_prefix_len([[1, 2, 3], [1, 2, 3]]) == 2
  assert common_prefix_len([[1, 2, 3, 4], [1, 2, 5]]) == 2
  assert common_prefix_len([[7], [7, 8]]) == 0


_SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, jax
    sys.path.insert(0, {root!r})
    from tests.interventions.test_engine_exact import (tiny_lm, target_prompts,
                                                       random_cells, MAX_NEW)
    from icl_jax.interventions.engine import Engine
    lm = tiny_lm()
    rs = np.random.RandomState(4)
    prompts = target_prompts(rs)
    eng = Engine(lm, max_new_tokens=MAX_NEW, stop="eos")
    t = eng.prepare(token_ids=prompts)
    cells = random_cells(lm, t.slots, rs)
    r = eng.run(t, cells)
    print(json.dumps({{"devices": len(jax.devices()),
                      "tokens": r.tokens.tolist(), "n_gen": r.n_gen.tolist()}}))
""")


def test_eight_host_devices_agree_with_one():
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  outs = {}
  for n in (1, 8):
    env = dict(os.environ,
               XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
               JAX_PLATFORMS="cpu")
    p = subprocess.run([sys.executable, "-c",
                        _SHARDED_SCRIPT.format(root=root)],
                       capture_output=True, text=True, env=env, cwd=root)
    assert p.returncode == 0, p.stderr[-3000:]
    outs[n] = json.loads(p.stdout.strip().splitlines()[-1])
  assert outs[1]["devices"] == 1 and outs[8]["devices"] == 8
  assert outs[1]["tokens"] == outs[8]["tokens"]
  assert outs[1]["n_gen"] == outs[8]["n_gen"]
