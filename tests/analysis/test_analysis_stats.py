"""Tests for icl_jax.analysis.stats (protocol section 6)."""

import math

import numpy as np
import pytest

from icl_jax.analysis import stats


def test_wilson_48_of_50_matches_protocol():
  lo, hi = stats.wilson_interval(48, 50)
  assert round(lo, 4) == 0.8654
  assert round(hi, 4) == 0.9890


def test_wilson_edges_are_clipped_and_ordered():
  lo, hi = stats.wilson_interval(0, 10)
  assert lo == 0.0 and 0.27 < hi < 0.28  # 0.2775
  lo, hi = stats.wilson_interval(10, 10)
  assert hi == 1.0 and 0.72 < lo < 0.73
  lo, hi = stats.wilson_interval(5, 10)
  assert math.isclose(lo + hi, 1.0)  # symmetric at p = 0.5


@pytest.mark.parametrize("k,n", [(-1, 10), (11, 10), (0, 0)])
def test_wilson_rejects_bad_counts(k, n):
  with pytest.raises(ValueError):
    stats.wilson_interval(k, n)


def _bootstrap_reference(values, n_boot=10_000):
  """The original loop: choice(..., replace=True) per resample."""
  rng = np.random.RandomState(42)
  means = [np.mean(rng.choice(values, size=len(values), replace=True))
           for _ in range(n_boot)]
  means = np.sort(means)
  return means[250], means[9750]


def test_bootstrap_equals_per_resample_choice_loop():
  values = np.array([1] * 37 + [0] * 13, dtype=float)
  np.random.RandomState(0).shuffle(values)
  assert stats.bootstrap_ci(values) == pytest.approx(
      _bootstrap_reference(values), abs=0)


def test_bootstrap_is_reseeded_per_call_and_brackets_the_mean():
  values = [1.0] * 48 + [0.0] * 2
  first = stats.bootstrap_ci(values)
  assert stats.bootstrap_ci(values) == first  # re-seeded: identical
  lo, hi = first
  assert lo == pytest.approx(0.90) and hi == pytest.approx(1.0)


def test_pearson_matches_textbook_values():
  x = np.arange(10.0)
  y = np.array([1.0, 3, 2, 5, 4, 7, 6, 9, 8, 10])
  r, p = stats.pearson(x, y)
  assert r == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
  # t = r sqrt(8 / (1 - r^2)); p from the t distribution with 8 df.
  assert r == pytest.approx(0.951515, abs=1e-6)
  assert p == pytest.approx(2.29e-5, rel=0.01)


def test_pearson_p_against_scipy():
  scipy_stats = pytest.importorskip("scipy.stats")
  rng = np.random.default_rng(1)
  for n in (5, 12, 56):
    x = rng.normal(size=n)
    y = 0.4 * x + rng.normal(size=n)
    r, p = stats.pearson(x, y)
    ref = scipy_stats.pearsonr(x, y)
    assert r == pytest.approx(ref.statistic, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)


def test_t_two_sided_p_known_values():
  assert stats.t_two_sided_p(0.0, 7) == pytest.approx(1.0)
  # two-sided 5% critical value of t with 10 df is 2.228139
  assert stats.t_two_sided_p(2.228139, 10) == pytest.approx(0.05, abs=1e-6)


def test_pearson_rejects_constant_and_short_inputs():
  with pytest.raises(ValueError):
    stats.pearson([1, 1, 1, 1], [1, 2, 3, 4])
  with pytest.raises(ValueError):
    stats.pearson([1, 2], [1, 2])


def test_bootstrap_pearson_ci_brackets_r():
  rng = np.random.default_rng(2)
  x = rng.normal(size=56)
  y = 0.5 * x + rng.normal(size=56)
  r, _ = stats.pearson(x, y)
  lo, hi = stats.bootstrap_pearson_ci(x, y)
  assert lo < r < hi
  assert stats.bootstrap_pearson_ci(x, y) == (lo, hi)
