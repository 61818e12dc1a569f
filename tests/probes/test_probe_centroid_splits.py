"""Tests for splits, nearest-centroid probes, exp2 and the Wilson interval."""

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.neighbors import NearestCentroid

from icl_jax.probes import centroid
from icl_jax.probes import dot_icl
from icl_jax.probes import evaluation
from icl_jax.probes import splits as splits_lib

LABEL_SETS = {
    # exp2's shape: 8 tasks x 50 prompts, grouped by task.
    "exp2": np.repeat(np.arange(8), 50),
    # Unbalanced, shuffled, with remainders that need RNG tie-breaking.
    "unbalanced": np.random.default_rng(0).permutation(
        np.repeat(np.arange(5), [7, 11, 13, 7, 9])),
    # String labels (sorted-unique encoding).
    "strings": np.array(["b", "a", "c"] * 9 + ["a", "b"]),
}


@pytest.mark.parametrize("name", sorted(LABEL_SETS))
@pytest.mark.parametrize("seed", [0, 42])
def test_stratified_shuffle_split_matches_sklearn(name, seed):
  y = LABEL_SETS[name]
  ours = splits_lib.stratified_shuffle_split(
      y, n_splits=4, test_size=0.2, seed=seed)
  theirs = StratifiedShuffleSplit(
      n_splits=4, test_size=0.2, random_state=seed).split(np.zeros(len(y)), y)
  for (tr, te), (tr_s, te_s) in zip(ours, theirs, strict=True):
    np.testing.assert_array_equal(tr, tr_s)  # same indices, same order
    np.testing.assert_array_equal(te, te_s)


@pytest.mark.parametrize("name", sorted(LABEL_SETS))
def test_stratified_kfold_matches_sklearn(name):
  y = LABEL_SETS[name]
  ours = splits_lib.stratified_kfold(y, n_splits=3, seed=7)
  theirs = StratifiedKFold(n_splits=3, shuffle=True, random_state=7).split(
      np.zeros(len(y)), y)
  for (tr, te), (tr_s, te_s) in zip(ours, theirs, strict=True):
    np.testing.assert_array_equal(tr, tr_s)
    np.testing.assert_array_equal(te, te_s)


def test_split_masks_shapes_and_overlap_check():
  train, test = splits_lib.split_masks([(np.array([0, 2]), np.array([1]))], 4)
  np.testing.assert_array_equal(train, [[True, False, True, False]])
  np.testing.assert_array_equal(test, [[False, True, False, False]])
  with pytest.raises(ValueError):
    splits_lib.split_masks([(np.array([0, 1]), np.array([1]))], 3)


def _centroid_data(seed, g=3, m=400, d=12, c=8):
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(c), m // c)
  means = rng.normal(size=(g, c, d)) * np.array([0.1, 0.4, 1.0])[:g, None, None]
  # Large common offset, like a residual stream.
  x = rng.normal(size=(g, m, d)) + means[:, y] + 50.0
  return x.astype(np.float32), y


def test_nearest_centroid_matches_sklearn_on_same_splits():
  x, y = _centroid_data(1)
  sss = list(StratifiedShuffleSplit(n_splits=3, test_size=0.2,
                                    random_state=42).split(x[0], y))
  ev = centroid.evaluate_nearest_centroid(x, y, sss)
  for g in range(x.shape[0]):
    for s, (tr, te) in enumerate(sss):
      sk = NearestCentroid().fit(x[g][tr].astype(np.float64), y[tr])
      np.testing.assert_array_equal(ev.predictions[s, g, te],
                                    sk.predict(x[g][te].astype(np.float64)))
  # The slices span chance-ish to easy, so the comparison is informative.
  assert ev.mean_split_accuracy[0] < 0.5 < 0.8 < ev.mean_split_accuracy[2]


def test_exp2_probe_equals_the_scripts_statistic():
  x, y = _centroid_data(2)
  got = dot_icl.exp2_probe(x, y)
  for g in range(x.shape[0]):
    accs = []
    for tr, te in StratifiedShuffleSplit(
        n_splits=3, test_size=0.2, random_state=42).split(x[g], y):
      clf = NearestCentroid().fit(x[g][tr].astype(np.float64), y[tr])
      accs.append(clf.score(x[g][te].astype(np.float64), y[te]))
    assert got.split_accuracy[:, g].tolist() == accs
    assert got.mean_split_accuracy[g] == pytest.approx(np.mean(accs))
    assert got.std_split_accuracy[g] == pytest.approx(np.std(accs))
  assert got.n_total == 3 * 80
  # Pooled counts give the Wilson interval around the pooled accuracy.
  assert np.all(got.ci_low <= got.accuracy)
  assert np.all(got.accuracy <= got.ci_high)


def test_exp2_identical_within_class_vectors_score_one():
  # The study's last_demo_token: every prompt of a task has the same vector.
  rng = np.random.default_rng(3)
  y = np.repeat(np.arange(8), 50)
  x = rng.normal(size=(8, 64)).astype(np.float16)[y][None]
  got = dot_icl.exp2_probe(x, y)
  np.testing.assert_array_equal(got.mean_split_accuracy, [1.0])


def test_exp2_best_cell_takes_first_maximum():
  scores = np.array([[0.5, 1.0], [1.0, 1.0]])
  assert dot_icl.exp2_best_cell(scores) == (0, 1)


def test_wilson_fallback_and_dispatch():
  lo, hi = evaluation._wilson_fallback(48, 50)  # protocol's check value
  assert lo == pytest.approx(0.8654, abs=1e-4)
  assert hi == pytest.approx(0.9890, abs=1e-4)
  assert evaluation._wilson_fallback(0, 10)[0] == 0.0
  assert evaluation._wilson_fallback(10, 10)[1] == 1.0
  np.testing.assert_allclose(evaluation.wilson(48, 50), (lo, hi), atol=1e-9)
