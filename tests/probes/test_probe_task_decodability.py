"""Tests for icl_jax.probes.task_decodability."""

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from icl_jax.probes.task_decodability import knn_loo_predict
from icl_jax.probes.task_decodability import knn_task_decodability
from icl_jax.probes.task_decodability import peak_layer
from icl_jax.probes.task_decodability import per_class_task_decodability


def _brute_force(x, y, k, lowest_wins=True):
  """Reference LOO kNN with explicit loops, float64 distances.

  Rule: neighbours sorted by (distance, index); vote ties go to the lowest
  class (``lowest_wins``) or, for the negative control, the highest.
  Returns (predictions as labels [M], per-class TD [C], mean TD).
  """
  x = np.asarray(x, np.float64)
  m = len(y)
  classes = sorted(set(y.tolist()))
  pred = []
  for i in range(m):
    dists = []
    for j in range(m):
      if j != i:
        dists.append((float(np.sum((x[i] - x[j]) ** 2)), j))
    dists.sort()
    counts = {c: 0 for c in classes}
    for _, j in dists[:k]:
      counts[y[j]] += 1
    best = max(counts.values())
    tied = [c for c in classes if counts[c] == best]
    pred.append(tied[0] if lowest_wins else tied[-1])
  pred = np.array(pred)
  per_class = np.array([np.mean(pred[y == c] == c) for c in classes])
  return pred, per_class, per_class.mean()


def _tie_data(seed, layers=3, m=45, d=3):
  # Integer features in {0, 1, 2}: many duplicate points and equal distances
  # (exact in float32), and with even k many split votes.
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 3, size=m)
  x = rng.integers(0, 3, size=(layers, m, d)).astype(np.float32)
  return x, y


@pytest.mark.parametrize("k", [4, 10])
def test_matches_brute_force_exactly_with_ties(k):
  x, y = _tie_data(0)
  preds = np.asarray(knn_loo_predict(x, y, k))  # class indices; labels 0..2
  td = np.asarray(knn_task_decodability(x, y, k))
  per_class = np.asarray(per_class_task_decodability(x, y, k))
  some_rule_mattered = False
  for layer in range(x.shape[0]):
    ref_pred, ref_pc, ref_td = _brute_force(x[layer], y, k)
    np.testing.assert_array_equal(preds[layer], ref_pred)
    np.testing.assert_allclose(per_class[layer], ref_pc, rtol=1e-6)
    assert td[layer] == pytest.approx(ref_td, rel=1e-6)
    other, _, _ = _brute_force(x[layer], y, k, lowest_wins=False)
    some_rule_mattered |= bool(np.any(other != ref_pred))
  # The data really exercises the vote tie rule.
  assert some_rule_mattered


def test_distance_ties_take_lower_index():
  # Point 0 has two equidistant candidates for its single (k=1) neighbour:
  # index 1 (class 1) and index 2 (class 2); the lower index wins.
  x = np.array([[0.0], [1.0], [-1.0], [10.0]], np.float32)
  y = np.array([0, 1, 2, 2])
  assert int(knn_loo_predict(x, y, 1)[0]) == 1
  # Swap the two candidates' positions: the answer follows the index.
  x2 = x[[0, 2, 1, 3]]
  y2 = y[[0, 2, 1, 3]]
  assert int(knn_loo_predict(x2, y2, 1)[0]) == 2


def test_duplicates_tie_with_large_offset():
  # Identical within-class vectors (DOT-ICL's last_demo_token) on top of a
  # large common offset: every point is predicted correctly.
  rng = np.random.default_rng(1)
  y = np.repeat(np.arange(4), 12)
  x = (rng.normal(size=(4, 32)) * 0.1 + 300.0).astype(np.float32)[y]
  assert float(knn_task_decodability(x, y, 10)) == 1.0


def test_agrees_with_sklearn_leave_one_out_without_ties():
  rng = np.random.default_rng(2)
  m, k = 60, 10
  y = np.repeat(np.array([3, 5, 9]), 20)  # non-contiguous label values
  means = rng.normal(size=(3, 3, 6)) * np.array([0.2, 0.6, 2.0])[:, None, None]
  x = rng.normal(size=(3, m, 6)) + means[:, np.searchsorted([3, 5, 9], y)]
  td = np.asarray(knn_task_decodability(x, y, k))
  preds = np.asarray(knn_loo_predict(x, y, k))
  classes = np.array([3, 5, 9])
  for layer in range(3):
    sk_pred = np.empty(m, dtype=y.dtype)
    for i in range(m):
      keep = np.arange(m) != i
      clf = KNeighborsClassifier(n_neighbors=k).fit(x[layer][keep], y[keep])
      sk_pred[i] = clf.predict(x[layer][i:i + 1])[0]
    np.testing.assert_array_equal(classes[preds[layer]], sk_pred)
    sk_td = np.mean([np.mean(sk_pred[y == c] == c) for c in classes])
    assert td[layer] == pytest.approx(sk_td, rel=1e-6)
  assert td[0] < 0.7 < 0.95 < td[2]  # spans weak to strong decodability


def test_two_dim_input_gives_scalar_and_peak_layer():
  x, y = _tie_data(3, layers=4)
  td = knn_task_decodability(x, y)
  assert td.shape == (4,)
  assert knn_task_decodability(x[2], y).shape == ()
  assert float(knn_task_decodability(x[2], y)) == pytest.approx(float(td[2]))
  assert per_class_task_decodability(x[2], y).shape == (3,)
  assert peak_layer(np.array([0.2, 0.9, 0.9, 0.1])) == 1
  assert peak_layer(np.array([np.nan, 0.3, 0.5])) == 2


def test_explicit_num_classes_and_errors():
  x, y = _tie_data(4)
  a = np.asarray(knn_task_decodability(x, y, 5))
  b = np.asarray(knn_task_decodability(x, y, 5, num_classes=3))
  np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError):
    knn_task_decodability(x, y, k=x.shape[1])  # k must be <= M - 1
  with pytest.raises(ValueError):
    knn_task_decodability(x, y[:-1])
