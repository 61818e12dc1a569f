"""Data generator, model (residuals, patching) and evaluation helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icl_jax import synthetic as syn
from icl_jax.synthetic import model as model_lib

TASK = syn.TaskConfig()
TINY = syn.GPT2RegressorConfig(n_layers=2, n_heads=2, d_model=32)


# ----------------------------------------------------------------- data


def test_basis_masks_are_disjoint_contiguous_blocks():
  masks = syn.basis_masks(TASK)
  assert masks.shape == (4, 16)
  np.testing.assert_array_equal(masks.sum(0), np.ones(16))
  for k in range(4):
    np.testing.assert_array_equal(np.nonzero(masks[k])[0], np.arange(4) + 4 * k)


def test_task_config_rejects_overlap():
  with pytest.raises(ValueError):
    syn.TaskConfig(n_dims=8, n_bases=4, basis_rank=4)


def test_sample_batch_shapes_sparsity_noise_and_format():
  b = jax.jit(syn.sample_batch, static_argnums=(1, 2))(
      jax.random.key(0), TASK, 512
  )
  assert b.tokens.shape == (512, 40, 16)
  assert b.xs.shape == (512, 20, 16) and b.ys.shape == (512, 20)
  masks = syn.basis_masks(TASK)
  w = np.asarray(b.w)
  basis = np.asarray(b.basis)
  # Exactly the basis coordinates are active.
  np.testing.assert_array_equal(w != 0, masks[basis] > 0)
  assert set(np.unique(basis)) == {0, 1, 2, 3}
  # y = w.x + eps, eps variance 0.01.
  resid = np.asarray(b.ys) - np.einsum("bkd,bd->bk", np.asarray(b.xs), w)
  assert abs(resid.var() - 0.01) < 0.002
  # Garg format: x_i at even tokens, [y_i, 0, ...] at odd tokens.
  tok = np.asarray(b.tokens)
  np.testing.assert_array_equal(tok[:, 0::2], np.asarray(b.xs))
  np.testing.assert_array_equal(tok[:, 1::2, 0], np.asarray(b.ys))
  assert np.all(tok[:, 1::2, 1:] == 0)
  np.testing.assert_array_equal(syn.x_positions(20)[:3], [0, 2, 4])
  np.testing.assert_array_equal(syn.y_positions(20)[:3], [1, 3, 5])


def test_sampling_is_seeded():
  a = syn.sample_batch(jax.random.key(1), TASK, 8)
  b = syn.sample_batch(jax.random.key(1), TASK, 8)
  c = syn.sample_batch(jax.random.key(2), TASK, 8)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  assert not np.allclose(a.tokens, c.tokens)


def test_sample_balanced():
  b = syn.sample_balanced(jax.random.key(0), TASK, 5)
  np.testing.assert_array_equal(b.basis, np.repeat(np.arange(4), 5))


# ---------------------------------------------------------------- model


def test_paper_param_count_is_9p5m():
  # App. D.2: "9.5M parameters"; d=256 gives it, d=128 (§3.3) does not.
  n = syn.param_count(syn.PRESETS["paper"])
  assert 9.4e6 < n < 9.6e6, n
  assert syn.param_count(syn.GPT2RegressorConfig(d_model=128)) < 2.5e6


@pytest.fixture(scope="module")
def tiny():
  params = syn.init_params(jax.random.key(0), TINY)
  batch = syn.sample_batch(jax.random.key(1), TASK, 3)
  return params, batch


def test_residuals_shape_and_only_when_asked(tiny):
  params, batch = tiny
  m = syn.SyntheticModel(TINY, params)
  out = m(batch.tokens)
  assert out.residuals is None
  assert out.predictions.shape == (3, 20) and out.outputs.shape == (3, 40)
  out_r = m(batch.tokens, return_residuals=True)
  assert out_r.residuals.shape == (3, 3, 40, 32)  # [L+1, B, T, d]
  np.testing.assert_allclose(out_r.outputs, out.outputs, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(out.predictions, out.outputs[:, 0::2])


def test_residual_conventions(tiny):
  params, batch = tiny
  res = syn.apply_model(params, batch.tokens, TINY, return_residuals=True)
  r = res.residuals
  # Index 0 = read-in + learned positions.
  emb = batch.tokens @ params["read_in"]["kernel"] + params["read_in"]["bias"]
  np.testing.assert_allclose(r[0], emb + params["wpe"][:40], atol=1e-5)
  # Index L+1 = output of block L; the last one feeds ln_f + read-out.
  blk = model_lib.Block(TINY).apply({"params": params["h_1"]}, r[1])
  np.testing.assert_allclose(r[2], blk, atol=1e-5)
  ln = jax.nn.standardize(r[-1], axis=-1, epsilon=1e-5)
  ln = ln * params["ln_f"]["scale"] + params["ln_f"]["bias"]
  out = (ln @ params["read_out"]["kernel"] + params["read_out"]["bias"])[..., 0]
  np.testing.assert_allclose(out, res.outputs, atol=1e-5)
  # The same residuals are sown in 'intermediates' (one capture site).
  _, state = syn.GPT2Regressor(TINY).apply(
      {"params": params}, batch.tokens, mutable=["intermediates"]
  )
  sown = state["intermediates"]["residuals"]
  assert len(sown) == 1 and sown[0].shape[0] == TINY.n_layers + 1
  np.testing.assert_allclose(sown[0], r, atol=1e-6)


def test_causal(tiny):
  params, batch = tiny
  out = syn.apply_model(params, batch.tokens, TINY).outputs
  tok2 = batch.tokens.at[:, 25:].set(0.0)
  out2 = syn.apply_model(params, tok2, TINY).outputs
  np.testing.assert_allclose(out[:, :25], out2[:, :25], atol=1e-5)
  assert not np.allclose(out[:, 25:], out2[:, 25:])


def test_residual_patch(tiny):
  params, batch = tiny
  clean = syn.apply_model(params, batch.tokens, TINY, return_residuals=True)
  pos = jnp.zeros(40, bool).at[10].set(True)
  # Layers are block indices: layer 0 = output of block 0 = residual 1.
  # Patching a residual with its own clean value changes nothing.
  same = syn.ResidualPatch(layer=jnp.int32(0), positions=pos,
                           values=clean.residuals[1])
  out = syn.apply_model(params, batch.tokens, TINY, patch=same)
  np.testing.assert_allclose(out.outputs, clean.outputs, atol=1e-6)
  # A real patch changes outputs at and after the position only.
  other = syn.ResidualPatch(layer=jnp.int32(0), positions=pos,
                            values=jnp.ones((40, 32)) * 3.0)
  out = syn.apply_model(params, batch.tokens, TINY, patch=other,
                        return_residuals=True)
  np.testing.assert_allclose(out.outputs[:, :10], clean.outputs[:, :10],
                             atol=1e-6)
  assert not np.allclose(out.outputs[:, 10], clean.outputs[:, 10])
  np.testing.assert_allclose(out.residuals[1, :, 10], 3.0)
  # Layer -1 = the embedding output.
  emb = syn.apply_model(params, batch.tokens, TINY, return_residuals=True,
                        patch=other.replace(layer=jnp.int32(-1)))
  np.testing.assert_allclose(emb.residuals[0, :, 10], 3.0)
  np.testing.assert_allclose(emb.residuals[0, :, 9],
                             clean.residuals[0, :, 9])
  # NO_PATCH = no patch; vmap over layers works (patch spec as data).
  outs = jax.vmap(
      lambda layer: syn.apply_model(
          params, batch.tokens, TINY,
          patch=other.replace(layer=layer)).outputs
  )(jnp.arange(model_lib.NO_PATCH, 2))
  np.testing.assert_allclose(outs[0], clean.outputs, atol=1e-6)
  assert not np.allclose(outs[3], clean.outputs)
  # add mode with zero values is a no-op.
  zero_add = syn.ResidualPatch(layer=jnp.int32(1), positions=pos,
                               values=jnp.zeros((40, 32)), add=True)
  out = syn.apply_model(params, batch.tokens, TINY, patch=zero_add)
  np.testing.assert_allclose(out.outputs, clean.outputs, atol=1e-6)


# ------------------------------------------------------------ evaluation


def test_per_basis_mse():
  rng = np.random.default_rng(0)
  preds, ys = rng.normal(size=(12, 5)), rng.normal(size=(12, 5))
  basis = np.array([0, 1, 2] * 4)
  mse, by_index = syn.per_basis_mse(preds, ys, basis, 3)
  for b in range(3):
    np.testing.assert_allclose(
        by_index[b], ((preds - ys) ** 2)[basis == b].mean(0), rtol=1e-5
    )
    np.testing.assert_allclose(
        mse[b], ((preds - ys) ** 2)[basis == b].mean(), rtol=1e-5
    )


def test_td_separable_vs_random():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(4), 30)
  sep = rng.normal(size=(120, 8)) * 0.1 + np.eye(8)[labels] * 5
  rand = rng.normal(size=(120, 8))
  td = np.asarray(syn.knn_task_decodability(np.stack([sep, rand]), labels, k=10))
  assert td.shape == (2,)
  assert td[0] == 1.0
  assert td[1] < 0.5


def test_baselines_ordering():
  batch = syn.sample_balanced(jax.random.key(0), TASK, 50)
  curves = syn.baseline_mse_by_index(batch, TASK)
  # With no examples every baseline predicts 0: MSE ~ Var(y) ~ 4.
  for c in curves.values():
    assert 2.5 < c[0] < 6.0
  o, mix, dense = curves["oracle"], curves["bayes_mixture"], curves["ridge_dense"]
  assert o[8] < 0.1  # known basis: solved after r=4 examples
  assert np.all(o <= mix + 1e-3)  # knowing the basis never hurts
  assert mix[10] < 0.1 and dense[10] > 0.5  # the sparsity prior matters
  assert curves["lasso"][-1] < 0.1
