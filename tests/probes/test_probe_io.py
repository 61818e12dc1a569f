"""Tests for icl_jax.probes.io (orbax save/load)."""

import jax.numpy as jnp
import numpy as np
import pytest

from icl_jax.probes import io
from icl_jax.probes import logistic

METADATA = {
    "model": "gemma3-270m",
    "layers": [0, 4, 8],
    "positions": ["last_demo_token", "first_query_token"],
    "C": 1.0,
    "l2": 1 / 160,
    "standardize": True,
    "note": None,
    "nested": {"seed": 42, "classes": ["antonym", "uppercase"]},
}


def _probe(seed=0, g=3, d=7, c=4):
  rng = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)  # noqa: E731
  return logistic.LogisticProbe(
      w=f(g, d, c), b=f(g, c), mean=f(g, d), scale=jnp.abs(f(g, d)) + 0.1,
      loss=f(g), grad_norm=f(g), num_iter=jnp.arange(g, dtype=jnp.int32))


def test_logistic_probe_roundtrip_exact(tmp_path):
  probe = _probe()
  io.save_probe(tmp_path / "probe", probe, METADATA)
  loaded, meta = io.load_probe(tmp_path / "probe")
  assert isinstance(loaded, logistic.LogisticProbe)
  for name in ("w", "b", "mean", "scale", "loss", "grad_norm", "num_iter"):
    a, b = np.asarray(getattr(probe, name)), np.asarray(getattr(loaded, name))
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)
  assert meta == METADATA
  # The loaded probe predicts like the original.
  x = np.random.default_rng(1).normal(size=(3, 5, 7)).astype(np.float32)
  np.testing.assert_array_equal(logistic.logistic_predict(loaded, x),
                                logistic.logistic_predict(probe, x))


def test_pytree_roundtrip_with_dtypes(tmp_path):
  params = {
      "w": jnp.asarray(np.random.default_rng(2).normal(size=(2, 3)),
                       jnp.bfloat16),
      "inner": {"counts": np.arange(4, dtype=np.int64),
                "centroids": np.random.default_rng(3).normal(size=(4, 2))},
  }
  io.save_probe(tmp_path / "p", params, {"tuple_becomes": (1, 2)})
  loaded, meta = io.load_probe(tmp_path / "p")
  assert meta == {"tuple_becomes": [1, 2]}  # JSON has no tuples
  assert loaded["w"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(loaded["w"], np.float32),
                                np.asarray(params["w"], np.float32))
  for key in ("counts", "centroids"):
    got, want = np.asarray(loaded["inner"][key]), params["inner"][key]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_overwrite_and_bad_metadata(tmp_path):
  path = tmp_path / "probe"
  io.save_probe(path, _probe(0), {"v": 1})
  with pytest.raises(Exception):  # exists, no overwrite
    io.save_probe(path, _probe(1), {"v": 2})
  io.save_probe(path, _probe(1), {"v": 2}, overwrite=True)
  loaded, meta = io.load_probe(path)
  assert meta == {"v": 2}
  np.testing.assert_array_equal(np.asarray(loaded.w), np.asarray(_probe(1).w))
  with pytest.raises(TypeError):
    io.save_probe(tmp_path / "bad", _probe(0), {"arr": np.zeros(2)})
