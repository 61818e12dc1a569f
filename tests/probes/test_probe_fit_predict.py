"""logistic.fit_predict (several masks, one program) and tol_norm="max"."""

import jax
import numpy as np
import pytest

from icl_jax.probes import logistic


def _data(seed=0, g=2, m=48, d=6, c=3):
  rs = np.random.RandomState(seed)
  y = np.repeat(np.arange(c), m // c)
  mu = rs.normal(size=(g, c, d)) * 1.5
  x = (rs.normal(size=(g, m, d)) + mu[:, y]).astype(np.float32) * 3 + 1
  return x, y


def test_fit_predict_equals_fit_logistic_per_mask():
  x, y = _data()
  rs = np.random.RandomState(1)
  masks = rs.rand(3, x.shape[1]) < 0.7
  masks[2] = True
  probes, preds = logistic.fit_predict(x, y, masks, C=1.0, max_iter=200,
                                       tol=1e-6)
  assert preds.shape == (3, 2, x.shape[1])
  for s in range(3):
    ref = logistic.fit_logistic(x, y, C=1.0, train_mask=masks[s],
                                max_iter=200, tol=1e-6)
    np.testing.assert_allclose(np.asarray(probes.w[s]), np.asarray(ref.w),
                               rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(
        preds[s], np.asarray(logistic.logistic_predict(ref, x)))


def test_fit_predict_rejects_bad_masks():
  x, y = _data()
  with pytest.raises(ValueError, match="train_masks"):
    logistic.fit_predict(x, y, np.ones((x.shape[1],), bool))


def test_tol_norm_max_is_sklearns_rule():
  x, y = _data(2)
  tol = 1e-3
  p_max = logistic.fit_logistic(x, y, C=1.0, tol=tol, tol_norm="max",
                                max_iter=500)
  p_l2 = logistic.fit_logistic(x, y, C=1.0, tol=tol, max_iter=500)
  for g in range(x.shape[0]):
    one = jax.tree.map(lambda a: a[g], p_max)  # noqa: B023

    def objective(params, g=g):
      z = (x[g] - one.mean) / one.scale
      logits = z @ params["w"] + params["b"]
      ce = -jax.nn.log_softmax(logits)[np.arange(len(y)), y]
      return ce.mean() + 0.5 / len(y) * (params["w"] ** 2).sum()

    grad = jax.grad(objective)({"w": one.w, "b": one.b})
    gmax = max(float(np.abs(np.asarray(v)).max()) for v in grad.values())
    assert gmax < tol
  assert np.all(np.asarray(p_max.num_iter) <= np.asarray(p_l2.num_iter))
  with pytest.raises(ValueError, match="tol_norm"):
    logistic.fit_logistic(x, y, tol_norm="linf")
