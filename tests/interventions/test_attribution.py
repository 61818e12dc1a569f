"""Attribution patching (AtP): gradients against finite differences, exact
where the metric is linear, and the GradDrop option."""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
import pytest

import icl_jax
from icl_jax.interventions import attribution as atp
from tests.interventions.test_sites import tiny

SRC_ANS, TGT_ANS = 7, 11


def _prompts(seed):
  rs = np.random.RandomState(seed)
  demo = rs.randint(2, 53, 8).tolist()
  return [demo + rs.randint(2, 53, q).tolist() for q in (3, 2)]


@pytest.fixture(scope="module")
def lm():
  return tiny("llama", 2, seed=3)


def _metric_of_patch(lm, prompts, patch):
  out = icl_jax.run_patches(lm, prompts, [patch], max_new_tokens=1,
                            answer_tokens=[[SRC_ANS, TGT_ANS]] * len(prompts))
  lp = out.answer_logprobs[0]  # [N,2]
  return lp[:, 0] - lp[:, 1]


def _grads(lm, ps, drop=-1):
  x, mask, lens = lm.pad_left(ps)
  ans = tuple(jnp.full((len(ps),), a) for a in (SRC_ANS, TGT_ANS))
  m, grads, _ = atp.site_gradients(lm.config, lm.params, jnp.asarray(x),
                                   jnp.asarray(mask), ans, drop=drop)
  return x, lens, m, grads


@pytest.mark.parametrize("site,layer,heads", [
    ("resid_post", 1, None), ("attn_out", 2, None), ("head_out", 0, [1]),
    ("mlp_out", 1, None)])
def test_gradient_agrees_with_central_differences(lm, site, layer, heads):
  ps = _prompts(0)
  x, lens, _, grads = _grads(lm, ps)
  key = {"resid_post": "resid", "attn_out": "attn", "head_out": "head",
         "mlp_out": "mlp"}[site]
  row = layer + 1 if site == "resid_post" else layer
  g = np.asarray(grads[key][row])  # [B,W,D], left padded
  v = np.random.RandomState(1).normal(0, 1, lm.config.d_model)
  v = (v / np.linalg.norm(v)).astype(np.float32)
  h = 1e-2
  for t in (3, -1):  # a demo token and each prompt's last token
    up, dn = (_metric_of_patch(lm, ps, icl_jax.Patch.add(
        layer, [t], s * h * v, site=site, heads=heads)) for s in (1, -1))
    fd = (up - dn) / (2 * h)
    W = x.shape[1]
    lin = np.array([g[b, W - n + (t % n)] @ v for b, n in enumerate(lens)])
    np.testing.assert_allclose(lin, fd, rtol=2e-2, atol=2e-3)


def test_estimates_zero_for_own_values_and_clean_metric(lm):
  ps, src = _prompts(0), _prompts(5)
  same = atp.attribution_patching(lm, ps, ps, SRC_ANS, TGT_ANS)
  for site in ("resid", "attn_out", "head_out", "mlp_out"):
    assert np.abs(getattr(same, site)).max() < 1e-5, site
  res = atp.attribution_patching(lm, ps, src, SRC_ANS, TGT_ANS)
  assert np.abs(res.resid).max() > 1e-3
  np.testing.assert_allclose(res.metric, _metric_of_patch(
      lm, ps, icl_jax.Patch.clean()), rtol=1e-4, atol=1e-4)


def _hidden_metric(logits, hidden, answers):
  """w . (the last block's output at the last position): exactly linear in
  the last block's output and in its MLP output."""
  (w,) = answers
  return jnp.einsum("BD,BD->B", hidden, w)


def test_linear_metric_estimate_equals_exact_effect(lm):
  cfg = lm.config
  ps, src = _prompts(0), _prompts(6)
  N, L, D = len(ps), cfg.n_layers, cfg.d_model
  w = np.random.RandomState(0).normal(0, 1, (N, D)).astype(np.float32)
  res = atp.attribution_patching(lm, ps, src, metric=_hidden_metric,
                                 answers=(w,))
  acts = icl_jax.capture(lm, ps, layers=[L - 1], sites=["mlp_out"])
  s_acts = icl_jax.capture(lm, src, layers=[L - 1], sites=["mlp_out"])
  for site, est in (("resid", res.resid[L]), ("mlp_out", res.mlp_out[L - 1])):
    for i, n in enumerate(res.lengths):
      delta = (s_acts.prompt(i, L - 1, site)[:n] - acts.prompt(i, L - 1,
                                                               site)[:n])
      exact = np.zeros(n, np.float32)
      exact[-1] = delta[-1] @ w[i]  # only the last position reaches M
      np.testing.assert_allclose(est[i, :n], exact, rtol=1e-4, atol=1e-4)
  assert np.abs(res.resid[L]).max() > 1e-2


def test_grad_drop_cuts_only_paths_through_the_dropped_block(lm):
  ps = _prompts(0)
  L = lm.config.n_layers
  _, _, m0, full = _grads(lm, ps)
  drop = 1
  _, _, m1, cut = _grads(lm, ps, drop)
  np.testing.assert_array_equal(np.asarray(m0), np.asarray(m1))
  # Gradients at block 1's output and later: unchanged; at its input (the
  # output of block 0) and before: changed.
  for r in range(drop + 1, L + 1):
    np.testing.assert_allclose(np.asarray(cut["resid"][r]),
                               np.asarray(full["resid"][r]), atol=1e-6)
  for r in range(drop + 1):
    assert np.abs(np.asarray(cut["resid"][r] - full["resid"][r])).max() > 1e-4
  src = _prompts(5)
  plain = atp.attribution_patching(lm, ps, src, SRC_ANS, TGT_ANS)
  gd = atp.attribution_patching(lm, ps, src, SRC_ANS, TGT_ANS,
                                grad_drop=True)
  assert gd.grad_drop and (gd.resid >= 0).all()
  # The last block's output: no dropped block lies after it, so every one of
  # the L estimates is the plain one: score = L / (L - 1) |AtP|.
  np.testing.assert_allclose(gd.resid[L], np.abs(plain.resid[L]) * L / (L - 1),
                             rtol=1e-5, atol=1e-6)


def test_qk_fix_equals_per_position_brute_force():
  # The closed-form QK correction at block m equals, position by position,
  # <dM/dp, p(x with s patched) - p(x)> - <dM/dp, jvp of p along that
  # patch>, with the model's own recorded attention scores (Gemma 3: GQA,
  # QK-norm, sliding window; left padding).
  lm = tiny("gemma3_text", 2, seed=7)
  cfg, params = lm.config, lm.params
  x, mask, lens = lm.pad_left(_prompts(2))
  q_pos, key_pos = atp.positions_from_mask(jnp.asarray(mask))
  m = 1
  x_in = atp.run_blocks(cfg, params, atp.embed(cfg, params, jnp.asarray(x)),
                        q_pos, key_pos, start=0, stop=m)[0]
  rs = np.random.RandomState(3)
  x_new = x_in + jnp.asarray(rs.normal(0, 2, x_in.shape), jnp.float32)
  g_head = jnp.asarray(rs.normal(0, 1, x_in.shape), jnp.float32)
  corr = np.asarray(atp.qk_correction(cfg, params, jnp.int32(m), x_in, x_new,
                                      q_pos, key_pos, g_head))

  @jax.jit
  def probs(xx):
    rec = atp.run_blocks(cfg, params, xx, q_pos, key_pos, start=m,
                         stop=m + 1, collect=("scores", "v"))[2]
    return jax.nn.softmax(rec["scores"][m], -1), rec["v"][m]

  p0, v = probs(x_in)
  B, W, _ = x_in.shape
  K, R = cfg.n_kv_heads, cfg.n_heads // cfg.n_kv_heads
  wo = params["layers"]["block"]["attn"]["o"][m]
  gz = jnp.einsum("BiD,NHD->BiNH", g_head, wo).reshape(B, W, K, R, -1)
  g = jnp.einsum("BiKRH,BjKH->BKRij", gz, v)
  want = np.zeros((B, W), np.float32)
  for s in range(W):
    xs = x_in.at[:, s].set(x_new[:, s])
    p1 = probs(xs)[0]
    _, dp = jax.jvp(lambda xx: probs(xx)[0], (x_in,), (xs - x_in,))
    want[:, s] = np.asarray(jnp.sum(g * (p1 - p0 - dp), axis=(1, 2, 3, 4)))
  assert np.abs(want).max() > 1e-3  # the softmax is far from linear here
  np.testing.assert_allclose(corr, want, rtol=2e-3, atol=2e-4)


def test_qk_fix_changes_only_residual_estimates_feeding_a_block(lm):
  ps, src = _prompts(0), _prompts(5)
  L = lm.config.n_layers
  plain = atp.attribution_patching(lm, ps, src, SRC_ANS, TGT_ANS)
  fixed = atp.attribution_patching(lm, ps, src, SRC_ANS, TGT_ANS,
                                   qk_fix=True)
  for site in ("attn_out", "head_out", "mlp_out"):
    np.testing.assert_array_equal(getattr(fixed, site), getattr(plain, site))
  np.testing.assert_allclose(fixed.resid[L], plain.resid[L], atol=1e-6)
  assert np.isfinite(fixed.resid).all()
  assert np.abs(fixed.resid[:L] - plain.resid[:L]).max() > 1e-5
