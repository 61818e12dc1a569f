"""Confidence intervals and correlations as computed by the study (section 6).

* ``wilson_interval``: Wilson score interval, z = 1.96, clipped to [0, 1]
  (48/50 -> [0.8654, 0.9890]).
* ``bootstrap_ci``: 10,000 resamples with replacement of per-instance values,
  ``np.random.RandomState(42)`` re-seeded on every call, percentile CI = the
  sorted resample means at indices 250 and 9750.
* ``pearson``: Pearson r with a two-sided p from Student's t with n-2 df;
  ``bootstrap_pearson_ci``: 10,000 pair resamples, same seed and indices.

No SciPy dependency: the t tail uses the regularized incomplete beta
function (continued fraction, Lentz's method).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Z95 = 1.96
N_BOOT = 10_000
SEED = 42


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
  """Wilson score interval for k successes out of n."""
  if n <= 0:
    raise ValueError(f"n must be positive, got {n}")
  if not 0 <= k <= n:
    raise ValueError(f"k must be in [0, n], got k={k}, n={n}")
  p = k / n
  denom = 1 + z * z / n
  centre = (p + z * z / (2 * n)) / denom
  half = z * math.sqrt((p * (1 - p) + z * z / (4 * n)) / n) / denom
  return max(0.0, centre - half), min(1.0, centre + half)


def _percentile_ci(stats: np.ndarray, n_boot: int) -> tuple[float, float]:
  s = np.sort(stats)
  lo_i, hi_i = int(0.025 * n_boot), int(0.975 * n_boot)  # 250, 9750
  return float(s[lo_i]), float(s[hi_i])


def bootstrap_ci(
    values: Sequence[float], n_boot: int = N_BOOT, seed: int = SEED
) -> tuple[float, float]:
  """Percentile bootstrap CI of the mean (the study's exact procedure).

  Resample i draws ``len(values)`` indices with
  ``RandomState(seed).randint(0, n, n)`` in sequence -- the same stream as
  the original's per-resample ``rng.choice(values, n, replace=True)``.
  """
  x = np.asarray(values, dtype=np.float64)
  if x.ndim != 1 or x.size == 0:
    raise ValueError("values must be a non-empty 1-D sequence")
  rng = np.random.RandomState(seed)
  idx = rng.randint(0, x.size, size=(n_boot, x.size))  # [n_boot, n]
  return _percentile_ci(x[idx].mean(axis=1), n_boot)


def _betacf(a: float, b: float, x: float) -> float:
  """Continued fraction of the incomplete beta function (modified Lentz)."""
  tiny, eps = 1e-300, 1e-15
  qab, qap, qam = a + b, a + 1.0, a - 1.0
  c, d = 1.0, 1.0 - qab * x / qap
  d = 1.0 / (d if abs(d) > tiny else tiny)
  h = d
  for m in range(1, 1000):
    m2 = 2 * m
    aa = m * (b - m) * x / ((qam + m2) * (a + m2))
    d = 1.0 + aa * d
    d = 1.0 / (d if abs(d) > tiny else tiny)
    c = 1.0 + aa / c
    c = c if abs(c) > tiny else tiny
    h *= d * c
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
    d = 1.0 + aa * d
    d = 1.0 / (d if abs(d) > tiny else tiny)
    c = 1.0 + aa / c
    c = c if abs(c) > tiny else tiny
    delta = d * c
    h *= delta
    if abs(delta - 1.0) < eps:
      break
  return h


def betainc(a: float, b: float, x: float) -> float:
  """Regularized incomplete beta I_x(a, b)."""
  if x <= 0.0:
    return 0.0
  if x >= 1.0:
    return 1.0
  log_front = (
      math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
      + a * math.log(x) + b * math.log1p(-x)
  )
  if x < (a + 1.0) / (a + b + 2.0):
    return math.exp(log_front) * _betacf(a, b, x) / a
  return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
  """Two-sided p-value of Student's t: P(|T| >= |t|)."""
  if df <= 0:
    raise ValueError(f"df must be positive, got {df}")
  if math.isinf(t):
    return 0.0
  return betainc(df / 2.0, 0.5, df / (df + t * t))


def pearson(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
  """Pearson r and its two-sided p-value (t test, n-2 df)."""
  x = np.asarray(x, dtype=np.float64)
  y = np.asarray(y, dtype=np.float64)
  if x.shape != y.shape or x.ndim != 1:
    raise ValueError("x and y must be 1-D sequences of the same length")
  n = x.size
  if n < 3:
    raise ValueError(f"need at least 3 pairs, got {n}")
  xc, yc = x - x.mean(), y - y.mean()
  denom = math.sqrt(float(xc @ xc) * float(yc @ yc))
  if denom == 0.0:
    raise ValueError("a constant input has no correlation")
  r = max(-1.0, min(1.0, float(xc @ yc) / denom))
  if abs(r) == 1.0:
    return r, 0.0
  t = r * math.sqrt((n - 2) / (1.0 - r * r))
  return r, t_two_sided_p(t, n - 2)


def tie_averaged_ranks(a) -> np.ndarray:
  """Ranks 0..n-1, ties given their mean rank."""
  a = np.asarray(a, float)
  order = np.argsort(a, kind="stable")
  r = np.empty(len(a))
  r[order] = np.arange(len(a))
  for v in np.unique(a):
    m = a == v
    r[m] = r[m].mean()
  return r


def spearman(x, y) -> float | None:
  """Spearman's rho (Pearson of tie-averaged ranks); None when either
  side is constant."""
  rx, ry = tie_averaged_ranks(x), tie_averaged_ranks(y)
  rx, ry = rx - rx.mean(), ry - ry.mean()
  d = np.sqrt((rx @ rx) * (ry @ ry))
  return None if d == 0 else float(rx @ ry / d)


def bootstrap_pearson_ci(
    x: Sequence[float], y: Sequence[float], n_boot: int = N_BOOT,
    seed: int = SEED,
) -> tuple[float, float]:
  """Percentile bootstrap CI of r over resampled (x, y) pairs (exp19).

  Resamples in which x or y is constant have no r; they are dropped and the
  percentile indices are taken over the remaining resamples (with the
  study's 56 pairs this does not happen).
  """
  x = np.asarray(x, dtype=np.float64)
  y = np.asarray(y, dtype=np.float64)
  rng = np.random.RandomState(seed)
  idx = rng.randint(0, x.size, size=(n_boot, x.size))
  xs, ys = x[idx], y[idx]  # [n_boot, n]
  xc = xs - xs.mean(axis=1, keepdims=True)
  yc = ys - ys.mean(axis=1, keepdims=True)
  den = np.sqrt((xc * xc).sum(1) * (yc * yc).sum(1))
  with np.errstate(invalid="ignore", divide="ignore"):
    r = (xc * yc).sum(1) / den
  r = r[np.isfinite(r)]
  if r.size < n_boot:
    s = np.sort(r)
    return (float(s[int(0.025 * r.size)]), float(s[int(0.975 * r.size)]))
  return _percentile_ci(r, n_boot)
