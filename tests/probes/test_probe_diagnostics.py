"""icl_jax.probes.diagnostics: class geometry, cosine change, crystallization."""

import numpy as np

from icl_jax.probes import diagnostics


def test_identical_within_class_vectors_are_one_point_per_class():
  rs = np.random.RandomState(0)
  cents = rs.normal(size=(4, 8)) * 10
  labels = np.repeat(np.arange(4), 5)
  x = cents[labels]  # every member of a class is the same vector
  noisy = x + rs.normal(size=x.shape)
  s = diagnostics.class_spread(np.stack([x, noisy]), labels)
  assert s["distinct_per_class"][0] == 1.0
  assert s["within"][0] < 1e-12 and s["ratio"][0] < 1e-12
  assert s["distinct_per_class"][1] == 5.0
  assert 0.0 < s["ratio"][1] < 1.0
  # Rounding-level differences still count as one vector.
  s2 = diagnostics.class_spread(x * (1 + 1e-7 * rs.normal(size=x.shape)),
                                labels)
  assert s2["distinct_per_class"][0] == 1.0


def test_cosine_change_and_crystallization():
  a = np.ones((1, 3, 2))
  b = np.tile(np.array([1.0, 0.0]), (1, 3, 1))
  x = np.concatenate([a, a, b])  # [3, 3, 2]
  ch = diagnostics.cosine_change(x)
  np.testing.assert_allclose(ch, [0.0, 1 - 1 / np.sqrt(2)], atol=1e-12)
  assert diagnostics.crystallization_layer([.5, .85, .95], [0, 1, 2],
                                           0.8) == 1
  assert diagnostics.crystallization_layer([.5, .6], [3, 4], 0.9) is None
