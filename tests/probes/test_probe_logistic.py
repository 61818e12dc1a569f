"""Tests for icl_jax.probes.logistic (and the exp7 wrapper)."""

import numpy as np
import pytest

from icl_jax.probes import dot_icl
from icl_jax.probes import logistic
from icl_jax.probes import splits as splits_lib

# One problem shape for the held-out tests so that they share one compilation:
# G=2 slices, M=400 examples, D=20 dims, C=4 classes, 5 folds.
M, D, C = 400, 20, 4


def _planted(seed, signal, m=M, d=D, c=C):
  """Balanced labels [M]; unit-noise features [M, D] carrying the signal.

  Class j's mean is ``signal * e_j`` in the first C dims (orthogonal means,
  linearly separable up to the noise); the other D - C dims are pure noise.
  """
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(c), m // c)
  rng.shuffle(y)
  means = np.zeros((c, d))
  means[:, :c] = signal * np.eye(c)
  x = rng.normal(size=(m, d)) + means[y]
  return x.astype(np.float32), y


def test_l2_c_mapping_roundtrip():
  assert logistic.l2_from_sklearn_c(1.0, 160) == pytest.approx(1 / 160)
  assert logistic.sklearn_c_from_l2(
      logistic.l2_from_sklearn_c(0.3, 80), 80) == pytest.approx(0.3)


def test_recovers_planted_signal_and_ignores_non_signal():
  x_sig, y = _planted(0, signal=4.0)
  rng = np.random.default_rng(1)
  x_null = rng.normal(size=(M, D)).astype(np.float32)  # unrelated to y
  feats = np.stack([x_sig, x_null])  # [G=2, M, D]
  splits = splits_lib.stratified_kfold(y, n_splits=5, seed=0)
  ev, probes = logistic.evaluate_logistic(
      feats, y, splits, C=1.0, return_probes=True)
  assert probes.w.shape == (5, 2, D, C)  # [S, G, D, C]
  assert ev.n_total == M
  assert ev.accuracy[0] > 0.95
  assert ev.ci_low[0] > 0.9
  # Chance is 1/4: the null slice's interval must contain it, and be far
  # below the signal slice.
  assert ev.ci_low[1] <= 0.25 <= ev.ci_high[1]
  assert ev.accuracy[1] < 0.4
  # Predictions exist exactly on held-out rows (k-fold: each row once).
  assert np.all((ev.predictions >= 0).sum(axis=0) == 1)
  # The signal slice's weights sit on the C signal dims, not on the noise.
  per_dim = np.linalg.norm(np.asarray(probes.w[0, 0]), axis=1)  # [D]
  assert per_dim[:C].min() > 3 * per_dim[C:].max()


def test_vmapped_fit_equals_per_slice_fit():
  rng = np.random.default_rng(3)
  feats = np.stack([_planted(s, signal=sig, m=120, d=8, c=3)[0]
                    for s, sig in [(4, 0.5), (4, 1.0), (4, 2.0)]])
  y = _planted(4, 0.5, m=120, d=8, c=3)[1]
  feats += rng.normal(size=feats.shape).astype(np.float32) * 0.1
  mask = np.ones(120, bool)
  mask[::5] = False
  batched = logistic.fit_logistic(feats, y, C=0.5, train_mask=mask)
  assert batched.w.shape == (3, 8, 3) and batched.b.shape == (3, 3)
  pred_b = np.asarray(logistic.logistic_predict(batched, feats))  # [G, M]
  for g in range(3):
    alone = logistic.fit_logistic(feats[g], y, C=0.5, train_mask=mask)
    assert alone.w.shape == (8, 3)
    np.testing.assert_allclose(alone.w, batched.w[g], atol=2e-4)
    np.testing.assert_allclose(alone.b, batched.b[g], atol=2e-4)
    np.testing.assert_array_equal(
        np.asarray(logistic.logistic_predict(alone, feats[g])), pred_b[g])
    assert float(alone.grad_norm) < 1e-4


def test_fold_standardization_gives_same_logits():
  x, y = _planted(7, signal=1.0, m=120, d=8, c=3)
  x = x * 3.0 + 5.0
  probe = logistic.fit_logistic(x[None], y)
  w, b = logistic.fold_standardization(probe)
  raw = np.einsum("md,dc->mc", x, np.asarray(w[0])) + np.asarray(b[0])
  np.testing.assert_allclose(
      raw, np.asarray(logistic.logistic_logits(probe, x[None]))[0],
      rtol=1e-4, atol=1e-4)


def test_matches_sklearn_on_same_splits():
  from sklearn.linear_model import LogisticRegression
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler

  # Weak, overlapping signal (accuracy well below 1, so agreement is
  # informative); two slices of different strength, same shapes as above.
  (x0, y), (x1, _) = _planted(8, signal=0.8), _planted(8, signal=1.3)
  feats = np.stack([x0, x1])
  splits = splits_lib.stratified_kfold(y, n_splits=5, seed=0)
  ev = logistic.evaluate_logistic(feats, y, splits, C=1.0)
  for g in range(2):
    sk_pred = np.full(M, -1)
    for tr, te in splits:
      clf = make_pipeline(StandardScaler(),
                          LogisticRegression(C=1.0, max_iter=5000, tol=1e-8))
      sk_pred[te] = clf.fit(feats[g][tr], y[tr]).predict(feats[g][te])
    sk_acc = np.mean(sk_pred == y)
    ours = ev.predictions[:, g].max(axis=0)  # each row held out once
    assert 0.35 < sk_acc < 0.95  # a non-trivial problem
    assert abs(ev.accuracy[g] - sk_acc) <= 0.01
    assert np.mean(ours == sk_pred) >= 0.99


def test_exp7_training_accuracy():
  # 8 tasks x 20 prompts, D=256 > M=160, unscaled features. Layer 0: pure
  # noise (memorisable, so training accuracy 1 as in exp7); layer 1: constant
  # within class (the study's last_demo_token situation); layer 2: noise in 8
  # dims only (not memorisable: training accuracy well below 1).
  rng = np.random.default_rng(10)
  y = np.repeat(np.arange(8), 20)
  noise = rng.normal(size=(160, 256)).astype(np.float32)
  centers = rng.normal(size=(8, 256)).astype(np.float32) * 30
  low = np.zeros((160, 256), np.float32)
  low[:, :8] = rng.normal(size=(160, 8))
  acc = dot_icl.exp7_training_accuracy(np.stack([noise, centers[y], low]), y)
  assert acc.shape == (3,)
  np.testing.assert_array_equal(acc[:2], [1.0, 1.0])
  assert 0.125 < acc[2] < 0.6
