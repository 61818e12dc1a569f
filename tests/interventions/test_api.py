"""The public patching API: user token coordinates, naive-reference equality,
clear errors."""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
import pytest

import icl_jax
from icl_jax import Patch
from icl_jax.interventions.engine import Engine, common_prefix_len
from icl_jax.interventions.naive import (naive_first_logits,
                                         naive_patched_generate)
from tests.interventions.test_engine_exact import tiny_lm

MAX_NEW = 5
EDIT_AC = {"replace": (0.0, 0.0), "add": (1.0, 0.0), "noise": (1.0, 0.0),
           "zero": (0.0, 0.0), "mean_ablate": (0.0, 0.0), "skip": (0.0, 1.0)}


def prompts_with_demo(rs, qlens=(3, 1, 4)):
  """A shared 11-token demo block, then queries of different lengths."""
  demo = rs.randint(2, 53, 11).tolist()
  return [demo + rs.randint(2, 53, q).tolist() for q in qlens]


def naive_row(lm, ids, patch, i, n_prompts, slots, timing, decode):
  """Naive tokens and first logits of prompt `ids` under `patch`, built from
  the user's coordinates (unpadded token indices of this prompt)."""
  D, T = lm.config.d_model, len(ids)
  pos, vals = patch.resolve(i, T, n_prompts, D)
  mask = np.zeros(T, bool)
  mask[pos] = True
  values = np.zeros((T, D), np.float32)
  if vals is not None and patch.edit != "noise":
    values[pos] = vals
  # The engine draws noise per slot over the target set's slots.
  noise = np.asarray(jax.random.normal(jax.random.PRNGKey(patch.seed),
                                       (slots, D), jnp.float32))
  dec_noise = np.stack([np.asarray(jax.random.normal(jax.random.PRNGKey(
      patch.seed + 7919 * (t + 1)), (1, D), jnp.float32))[0]
                        for t in range(MAX_NEW)])
  a, c = EDIT_AC[patch.edit]
  kw = dict(a=a, c=c, sigma=patch.sigma, relative=patch.relative,
            noise=noise)
  toks, _ = naive_patched_generate(
      lm, ids, patch.layer, mask, values, max_new_tokens=MAX_NEW, stop="eos",
      timing=timing, decode_values=decode, decode_noise=dec_noise, **kw)
  logits = naive_first_logits(lm, ids, patch.layer, mask, values, **kw)
  return toks, logits


def some_patches(lm, prompts, rs, every_step):
  D = lm.config.d_model
  acts = icl_jax.capture(lm, prompts, layers=[0, 2])
  other = acts.values(2, [-1])[::-1]  # each prompt gets another's last token
  dec = (lambda: rs.normal(0, 0.5, D)) if every_step else (lambda: None)
  return [
      # per prompt: different slots and values
      Patch.replace(2, [-1], other, decode=dec()),
      # shared by all prompts, spanning the demo block and the queries
      Patch.replace(0, [4, 9, 11], rs.normal(0, 1, (3, D)), decode=dec()),
      Patch.add(1, "all", rs.normal(0, 0.5, D)),
      Patch.add(-1, [-2, -1], rs.normal(0, 0.5, (2, D)), decode=dec()),
      Patch.noise(2, [2, 3, 5], 0.7, relative=True, seed=3),
      Patch.noise(0, slice(-3, None), 0.5, seed=4),
      Patch.zero(3, [[1, 2], [7], [0, 13, 14]]),  # one list per prompt
      Patch.mean_ablate(1, [6, -1], acts.mean(0)),
      Patch.skip(2, [5, 6, -1]),
  ]


@pytest.mark.parametrize("family,timing,which", [
    ("gemma3_text", "prefill", None), ("llama", "every_step", None),
    ("llama", "first_token", [0, 4, 6])])
def test_run_patches_equals_naive_reference(family, timing, which):
  lm = tiny_lm(family)
  rs = np.random.RandomState(0)
  prompts = prompts_with_demo(rs)
  patches = some_patches(lm, prompts, rs, timing == "every_step")
  if which:  # the naive loop is slow: a few patches for this timing
    patches = [patches[k] for k in which]
  out = icl_jax.run_patches(lm, prompts, patches, max_new_tokens=MAX_NEW,
                            stop="eos", timing=timing, return_logits=True,
                            answer_tokens=[[5, 9], [6, 2], [7, 7]])
  P = common_prefix_len(prompts)
  slots = max(map(len, prompts))  # P + longest query
  assert P == 11 and out.tokens.shape == (len(patches), 3, MAX_NEW)
  D = lm.config.d_model
  for k, p in enumerate(patches):
    dec = (out_decode(p, D) if timing == "every_step" else None)
    for i, ids in enumerate(prompts):
      toks, logits = naive_row(lm, ids, p, i, 3, slots, timing, dec)
      got = out.tokens[k, i, :out.n_gen[k, i]].tolist()
      assert got == toks, (p.label(), i, got, toks)
      np.testing.assert_allclose(out.logits[k, i], logits, rtol=1e-4,
                                 atol=1e-4, err_msg=p.label())
      lp = jax.nn.log_softmax(jnp.asarray(logits))
      ans = out.answer_tokens[i]
      np.testing.assert_allclose(out.answer_logprobs[k, i], lp[ans],
                                 rtol=1e-4, atol=1e-4)
  # Patch 0 gives prompt 1 (the middle of three, values reversed) its own
  # last-token value: a no-op up to the last bits of the capture. Its delta
  # is 0 where the capture and the engine compute that value bit for bit
  # alike (seen on a GPU) and rounding noise where they do not (this CPU);
  # every other cell edits the residual for real.
  expect_edit = np.ones(out.delta.shape, bool)
  if not which or 0 in which:
    expect_edit[(which or list(range(len(patches)))).index(0), 1] = False
  assert (out.delta[expect_edit] > 1e-3).all(), out.delta
  assert (out.delta[~expect_edit] < 1e-4).all(), out.delta


def out_decode(patch, d_model):
  from icl_jax.interventions.api import decode_vector

  return decode_vector(patch, "every_step", d_model)


def test_capture_is_in_user_token_coordinates():
  lm = tiny_lm("gemma3_text")
  rs = np.random.RandomState(1)
  prompts = [rs.randint(2, 53, n).tolist() for n in (9, 4, 13)]
  acts = icl_jax.capture(lm, prompts, layers="all", components=True,
                         batch_size=2)  # left padding inside each batch
  assert acts.resid.shape == (lm.n_layers + 1, 3, 13, lm.config.d_model)
  assert acts.layers == tuple(range(-1, lm.n_layers))
  for i, ids in enumerate(prompts):
    solo = lm(np.asarray([ids]), return_residuals=True,
              return_components=True, logits=None)
    for layer in (-1, 0, 3):
      np.testing.assert_allclose(acts.prompt(i, layer),
                                 np.asarray(solo.residuals[layer + 1, 0]),
                                 rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(acts.prompt(i, 2, "mlp_out"),
                               np.asarray(solo.mlp_out[2, 0]), rtol=1e-5,
                               atol=1e-5)
    assert (acts.resid[:, i, len(ids):] == 0).all()
    last = acts.values(1, -1)[i]
    np.testing.assert_array_equal(last[0], acts.prompt(i, 1)[-1])
  with pytest.raises(ValueError, match="no layer -1"):
    acts.values(-1, [0], site="attn_out")


def test_positions_land_on_the_users_tokens():
  # Replacing the embedding output (layer -1) at token t by another token's
  # embedding is the same as running the prompt with that token swapped in:
  # the patched generations must equal clean generations of edited prompts,
  # for positions in the shared demo block, in the query, per prompt and
  # counted from each prompt's end.
  lm = tiny_lm("llama", seed=3)
  rs = np.random.RandomState(3)
  prompts = prompts_with_demo(rs, (2, 5, 3))
  # (positions, new token per prompt); "demo" puts one token at one
  # position of the shared demo block: one cell on the shared target set.
  swaps = {"demo": ([3] * 3, [7] * 3), "query": ([12, 14, 13], [7, 8, 9]),
           "last": ([-1] * 3, [7, 8, 9]), "mixed": ([0, 15, 11], [9, 8, 7])}
  patches, edited = [], []
  for name, (where, new_tok) in swaps.items():
    mod = [list(p) for p in prompts]
    for i, t in enumerate(where):
      mod[i][t] = new_tok[i]
    edited.append(mod)
    emb = icl_jax.capture(lm, mod, layers=[-1])
    if name == "demo":
      positions, values = [3], emb.values(-1, [3])[0]
    else:
      positions = [[t] for t in where]
      values = emb.values(-1, positions)
    patches.append(Patch.replace(-1, positions, values, name=name))
  out = icl_jax.run_patches(lm, prompts, patches, max_new_tokens=MAX_NEW,
                            stop="eos", return_logits=True, baseline=True)
  for k, mod in enumerate(edited):
    ids, mask, _ = lm.pad_left(mod)
    toks, n = lm.generate_ids(ids, mask, MAX_NEW, "eos")
    first = np.asarray(lm(ids, mask, logits="last").logits[:, 0])
    for i in range(3):
      assert out.tokens[k, i, :out.n_gen[k, i]].tolist() == \
          toks[i, :n[i]].tolist(), (patches[k].name, i)
      np.testing.assert_allclose(out.logits[k, i], first[i], rtol=1e-4,
                                 atol=1e-4)
  assert out.clean is not None and out.clean.tokens.shape == (1, 3, MAX_NEW)
  rows = out.table()
  assert len(rows) == 12 and rows[0]["label"] == "demo"


def test_patch_grid_shapes_and_table():
  lm = tiny_lm("gemma3_text", seed=4)
  rs = np.random.RandomState(4)
  prompts = prompts_with_demo(rs)
  sources = prompts_with_demo(np.random.RandomState(5))
  g = icl_jax.patch_grid(lm, prompts, {"last": [-1], "demo": [2, 3]},
                         layers=[0, 2, 3], sources=sources,
                         answer_tokens=[4, 5, 6], max_new_tokens=2,
                         stop="eos")
  assert g.values.shape == (3, 2, 3) and g.mean().shape == (3, 2)
  assert g.metric == "logprob" and g.sets == ["last", "demo"]
  np.testing.assert_array_equal(g.values, g.logprob)
  rows = g.table()
  assert len(rows) == 18 and {"layer", "set", "prompt", "value",
                              "clean_logprob"} <= set(rows[0])
  # The "last" cell at layer 3 equals a direct run with the sources' last
  # token, and its table row carries it.
  acts = icl_jax.capture(lm, sources, layers=[3])
  one = icl_jax.run_patches(lm, prompts, [Patch.replace(
      3, [-1], acts.values(3, [-1]))], max_new_tokens=2, stop="eos",
                            answer_tokens=[4, 5, 6])
  np.testing.assert_allclose(g.logprob[2, 0], one.answer_logprobs[0, :, 0],
                             rtol=1e-5, atol=1e-5)
  noise = icl_jax.patch_grid(
      lm, prompts, [[-1], slice(0, 4)], layers=[1],
      patch=lambda l, p: Patch.noise(l, p, 2.0, relative=True),
      metric=lambda row: float(row["first_token"]), max_new_tokens=1,
      stop="eos")
  assert noise.values.shape == (1, 2, 3)
  np.testing.assert_array_equal(noise.values, noise.first_token)


def test_engine_prepare_leaves_the_model_alone():
  lm = tiny_lm("llama")
  params = lm.params
  eng = Engine(lm, max_new_tokens=2, stop="eos")
  eng.prepare(token_ids=[[3, 4, 5]])
  assert lm.params is params
  # The replicas are made once per model and shared by its engines.
  other = Engine(lm, max_new_tokens=3, stop="eos", timing="every_step")
  assert other.params is eng.params


def test_clear_errors():
  lm = tiny_lm("llama")
  D = lm.config.d_model
  prompts = [[2, 3, 4, 5, 6], [2, 3, 9]]
  run = lambda p, **kw: icl_jax.run_patches(lm, prompts, [p], stop="eos",
                                            max_new_tokens=2, **kw)
  with pytest.raises(ValueError, match="layer 4 outside the model"):
    run(Patch.zero(4, [0]))
  with pytest.raises(ValueError, match="block index"):
    Patch.zero(-2, [0])
  with pytest.raises(ValueError, match="position 4 out of range for a "
                     "prompt of 3 tokens"):
    run(Patch.zero(1, [4]))
  with pytest.raises(ValueError, match="position -4 out of range"):
    run(Patch.zero(1, [-4]))
  with pytest.raises(ValueError, match="3 rows for 2 positions"):
    run(Patch.replace(1, [0, 1], np.zeros((3, D))))
  with pytest.raises(ValueError, match="width 7, the model has d_model=32"):
    run(Patch.add(1, [0], np.zeros(7)))
  with pytest.raises(ValueError, match="values for 3 prompts, running 2"):
    run(Patch.replace(1, [0], [np.zeros((1, D))] * 3))
  with pytest.raises(ValueError, match="1 position lists for 2 prompts"):
    run(Patch.zero(1, [[0]]))
  with pytest.raises(ValueError, match="skip needs a block"):
    Patch.skip(-1, [0])
  with pytest.raises(ValueError, match="decode values apply only with "
                     "timing='every_step', not 'prefill'"):
    run(Patch.add(1, [0], np.zeros(D), decode=np.ones(D)))
  with pytest.raises(ValueError, match="needs decode="):
    run(Patch.replace(1, [0, 1], np.zeros((2, D))), timing="every_step")
  with pytest.raises(ValueError, match="unknown timing"):
    run(Patch.zero(1, [0]), timing="later")
  with pytest.raises(ValueError, match="noise needs sigma > 0"):
    Patch.noise(1, [0], 0.0)
  with pytest.raises(ValueError, match="takes no values"):
    Patch("zero", 1, [0], values=np.zeros(D))
  with pytest.raises(ValueError, match="repeated position"):
    run(Patch.zero(1, [1, -2]))
  with pytest.raises(ValueError, match="NaN"):
    Patch.add(1, [0], np.full(D, np.nan))
  with pytest.raises(ValueError, match="token id outside the vocabulary"):
    icl_jax.run_patches(lm, [[2, 99]], [Patch.zero(0, [0])])
  with pytest.raises(ValueError, match="unknown stop rule"):
    icl_jax.run_patches(lm, prompts, [Patch.zero(1, [0])], stop="lines")
  with pytest.raises(ValueError, match="needs answer_tokens"):
    icl_jax.patch_grid(lm, prompts, {"a": [0]}, layers=[0],
                       patch=lambda l, p: Patch.zero(l, p), metric="prob",
                       stop="eos")
  with pytest.raises(ValueError, match="exactly one of sources= and patch="):
    icl_jax.patch_grid(lm, prompts, {"a": [0]})
