"""Han TD around the leave-one-out kNN (icl_jax.probes.knn_td): known
answers on synthetic clusters, leave-one-out, the tie rule, cosine, the
shuffled-label null band and the pairwise matrix."""

from __future__ import annotations

import numpy as np
import pytest

from icl_jax.probes import knn_td


def _clusters(c=7, n=20, d=8, spread=100.0, seed=0):
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(c), n)
  x = rng.normal(size=(c * n, d)).astype(np.float32)
  x[np.arange(c * n), y % d] += spread * (1 + y // d)
  return x, y


def test_separated_clusters_give_one():
  x, y = _clusters()
  td = knn_td.class_td(np.stack([x, x]), y, 7, k=10)
  assert td.shape == (2, 7)
  np.testing.assert_array_equal(td, 1.0)
  np.testing.assert_array_equal(knn_td.class_td(x, y, 7, 10, "cosine"), 1.0)


def test_identical_distributions_give_chance():
  rng = np.random.default_rng(1)
  y = np.repeat(np.arange(7), 100)
  x = rng.normal(size=(700, 16)).astype(np.float32)
  td = knn_td.class_td(x, y, 7, k=10).mean()
  assert abs(td - 1 / 7) < 0.05


def test_leave_one_out_excludes_the_point():
  # 1-D pairs {0, 1}, {10, 11}, ... with opposite labels inside each pair:
  # each point's nearest *other* point has the other label -> TD 0 (a
  # classifier that counted the point itself would score 1).
  x = np.array([[10.0 * i + j] for i in range(6) for j in (0, 1)],
               np.float32)
  y = np.array([j for _ in range(6) for j in (0, 1)])
  np.testing.assert_array_equal(knn_td.class_td(x, y, 2, k=1), 0.0)


def test_vote_tie_goes_to_lowest_class_index():
  # point 0 at 0 has neighbours at -1 (class 2) and +1 (class 1): 1-1 tie
  x = np.array([[0.0], [1.0], [-1.0], [100.0], [101.0], [-100.0]],
               np.float32)
  y = np.array([0, 1, 2, 0, 1, 2])
  from icl_jax.probes import task_decodability as td_lib
  pred = np.asarray(td_lib.knn_loo_predict(x, y, 2, num_classes=3))
  assert pred[0] == 1
  y2 = np.array([0, 2, 1, 0, 2, 1])  # same geometry, labels swapped
  assert np.asarray(td_lib.knn_loo_predict(x, y2, 2, num_classes=3))[0] == 1


def test_cosine_ignores_norm_euclidean_does_not():
  rng = np.random.default_rng(2)
  y = np.repeat(np.arange(2), 30)
  # two rays 0.04 rad apart, norms spread over 1..150: Euclidean neighbours
  # are the other ray's points of similar norm, cosine ones the own ray's
  dirs = np.array([[1.0, 0.02], [1.0, -0.02]], np.float32)
  scale = np.exp(rng.uniform(0, 5, size=60)).astype(np.float32)[:, None]
  x = dirs[y] * scale + rng.normal(scale=1e-5, size=(60, 2))
  assert knn_td.class_td(x, y, 2, 5, "cosine").min() == 1.0
  assert knn_td.class_td(x, y, 2, 5).mean() < 0.8
  with pytest.raises(ValueError, match="metric"):
    knn_td.metric_features(x, "manhattan")


def test_shuffled_null_band_near_chance_and_deterministic():
  x, y = _clusters(n=30)
  null = knn_td.shuffled_label_td(np.stack([x, x]), y, 7, 10, n_perms=8,
                                  seed=3)
  assert null.shape == (8, 2, 7)
  again = knn_td.shuffled_label_td(np.stack([x, x]), y, 7, 10, n_perms=8,
                                   seed=3)
  np.testing.assert_array_equal(null, again)
  band = knn_td.null_band(null, classes=range(6))
  assert band.shape == (2, 2) and np.all(band[0] <= band[1])
  assert 0.0 <= band[0, 0] and band[1, 0] < 0.4  # real TD here is 1.0


def test_null_with_identity_permutation_equals_td():
  x, y = _clusters(c=3, n=12)
  null = knn_td.shuffled_label_td(x, np.zeros_like(y), 1, 5, n_perms=2)
  np.testing.assert_array_equal(null, 1.0)


def test_pairwise_matrix():
  x, y = _clusters(c=3, n=20)
  x[y == 1] = x[y == 0] + 1e-3 * np.random.default_rng(4).normal(
      size=(20, x.shape[1]))  # classes 0 and 1 overlap
  m = knn_td.pairwise_td(x, y, 3, k=5)
  assert m.shape == (3, 3) and np.isnan(np.diag(m)).all()
  assert m[0, 2] == m[2, 0] == m[1, 2] == m[2, 1] == 1.0
  assert m[0, 1] < 0.8 and m[1, 0] < 0.8
  assert knn_td.pairwise_td(np.stack([x, x]), y, 3, 5).shape == (2, 3, 3)
