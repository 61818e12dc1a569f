"""Tests for icl_jax.probes.task_vectors."""

import jax.numpy as jnp
import numpy as np
import pytest

from icl_jax.probes import task_vectors

L, B, T, D = 3, 4, 6, 5


def _resid(seed=0, dtype=np.float32):
  return np.random.default_rng(seed).normal(size=(L, B, T, D)).astype(dtype)


def _mask(seed=1):
  m = np.random.default_rng(seed).random((B, T)) < 0.4
  m[0, 2] = True  # at least one position
  return m


def test_task_vector_is_mean_over_masked_positions():
  resid, mask = _resid(), _mask()
  got = np.asarray(task_vectors.task_vector(resid, mask))
  assert got.shape == (L, D)
  for layer in range(L):
    rows = [resid[layer, b, t]
            for b in range(B) for t in range(T) if mask[b, t]]
    np.testing.assert_allclose(got[layer], np.mean(rows, axis=0), rtol=1e-5,
                               atol=1e-6)


def test_task_vector_bf16_accumulates_in_float32():
  resid = _resid(dtype=np.float32)
  mask = np.ones((B, T), bool)
  got = task_vectors.task_vector(jnp.asarray(resid, jnp.bfloat16), mask)
  assert got.dtype == jnp.float32
  ref = np.asarray(jnp.asarray(resid, jnp.bfloat16), np.float64)
  ref = ref.mean(axis=(1, 2))
  np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-6)


def test_task_vector_empty_mask_is_nan():
  got = task_vectors.task_vector(_resid(), np.zeros((B, T), bool))
  assert np.all(np.isnan(np.asarray(got)))


def test_task_vectors_per_class():
  resid, mask = _resid(2), np.ones((B, T), bool)
  mask[:, 0] = False
  labels = np.array([1, 0, 1, 2])
  got = np.asarray(task_vectors.task_vectors_per_class(resid, mask, labels, 4))
  assert got.shape == (4, L, D)
  for c in range(3):
    sel = labels == c
    ref = task_vectors.task_vector(resid[:, sel], mask[sel])
    np.testing.assert_allclose(got[c], np.asarray(ref), rtol=1e-5, atol=1e-6)
  assert np.all(np.isnan(got[3]))  # class without prompts


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_inject_replace_and_add(dtype):
  h = jnp.asarray(_resid(3)[0], dtype)  # [B, T, D]
  v = np.arange(D, dtype=np.float32) + 0.5
  mask = _mask(4)
  rep = task_vectors.inject(h, v, mask, mode="replace")
  add = task_vectors.inject(h, v, mask, mode="add", alpha=2.0)
  assert rep.dtype == dtype and add.dtype == dtype
  f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
  h_np, rep, add = f32(h), f32(rep), f32(add)
  v_cast = f32(jnp.asarray(v, dtype))
  for b in range(B):
    for t in range(T):
      if mask[b, t]:
        np.testing.assert_array_equal(rep[b, t], v_cast)
        # Added in float32, rounded once to the residual dtype.
        expected = f32(jnp.asarray(h_np[b, t] + 2.0 * v, dtype))
        np.testing.assert_array_equal(add[b, t], expected)
      else:  # untouched, bit for bit
        np.testing.assert_array_equal(rep[b, t], h_np[b, t])
        np.testing.assert_array_equal(add[b, t], h_np[b, t])


def test_inject_per_prompt_vectors_and_bad_mode():
  h = jnp.zeros((B, T, D))
  v = jnp.arange(B, dtype=jnp.float32)[:, None, None] * jnp.ones((B, 1, D))
  mask = np.zeros((B, T), bool)
  mask[:, -1] = True  # the query position
  out = np.asarray(task_vectors.inject(h, v, mask))
  np.testing.assert_array_equal(out[:, -1, 0], np.arange(B))
  np.testing.assert_array_equal(out[:, :-1], 0.0)
  with pytest.raises(ValueError):
    task_vectors.inject(h, v, mask, mode="mix")
