"""Evaluation for the synthetic study: per-basis MSE, TD per layer, baselines.

TD (task decodability, Han et al. §4 / App. B) is computed by the shared
``icl_jax.probes.task_decodability`` (leave-one-out kNN, k=10, Euclidean on
the raw residuals, majority vote, lowest class wins ties; re-exported here)
on residuals ``[L+1, M, d_model]`` of a balanced set of ``n_per_basis``
sequences per basis (paper: 100), labels = basis index. Mean TD and TD per
basis (``per_class_task_decodability``) are both logged.

Token position for TD (the paper is ambiguous, see the reference §2.2/§13):
``"y"`` = the y_K token (last token, all K pairs seen; Fig. 2's "y-token at
the 20th demonstration"), ``"x"`` = the x_K token (the token that predicts
y_K, "immediately before y*" as in the LLM TD). Both are logged.

Baselines for MSE versus number of in-context examples (App. D.1), all on the
same test sequences:

- ``oracle``: Bayes posterior mean knowing the true basis (ridge on the 4
  basis coordinates with lambda = noise_var): the best achievable; ~0 after r
  examples.
- ``bayes_mixture``: Bayes-optimal for the actual mixture prior (the basis is
  unknown but known to be one of the ``n_bases``): posterior over bases times
  per-basis posterior means.
- ``ridge_dense``: ridge (lambda = noise_var) in all D dims, ignoring sparsity;
  ~0 only after D examples.
- ``lasso``: D-dim LASSO (sklearn objective ``1/(2n)|y - Xw|^2 + alpha|w|_1``,
  alpha=0.01, solved by FISTA), the paper's "unknown basis" curve.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax.probes.task_decodability import knn_task_decodability
from icl_jax.probes.task_decodability import per_class_task_decodability
from icl_jax.synthetic import data as data_lib

__all__ = [
    "knn_task_decodability",
    "per_class_task_decodability",
    "td_features",
    "per_basis_mse",
    "baseline_predictions",
    "baseline_mse_by_index",
]

# ----------------------------------------------------------------- features


def td_features(residuals: jax.Array, position: str = "y") -> jax.Array:
  """``[L+1, M, T, d] -> [L+1, M, d]`` at the last x (``"x"``) or y token."""
  if position == "y":
    return residuals[:, :, -1]
  if position == "x":
    return residuals[:, :, -2]
  raise ValueError(f"position must be 'x' or 'y', got {position!r}")


def per_basis_mse(
    predictions: jax.Array, ys: jax.Array, basis: jax.Array, n_bases: int
) -> tuple[jax.Array, jax.Array]:
  """Returns (``[n_bases]`` MSE over all positions, ``[n_bases, K]`` by index).

  Index i of the second array = prediction of y_{i+1} from i earlier pairs.
  """
  sq = (predictions - ys) ** 2  # [N, K]
  onehot = jax.nn.one_hot(basis, n_bases)  # [N, n_bases]
  counts = jnp.maximum(onehot.sum(0), 1.0)
  by_index = onehot.T @ sq / counts[:, None]
  return by_index.mean(axis=1), by_index


# ---------------------------------------------------------------- baselines


def _prefix_masks(k: int) -> jax.Array:
  """``[K, K]``: row i marks the pairs 0..i-1 available to predict y_i."""
  return (jnp.arange(k)[None, :] < jnp.arange(k)[:, None]).astype(jnp.float32)


def _ridge_predict(xs, ys, col_mask, lam):
  """Posterior-mean predictions for every prefix. xs [N,K,D], ys [N,K]."""
  n, k, d = xs.shape
  pm = _prefix_masks(k)  # [K(i), K(j)]
  xm = xs * col_mask[:, None, :]  # restrict columns [N, K, D]

  def one(i_mask, i):
    xi = xm * i_mask[None, :, None]  # rows after the prefix zeroed
    a = jnp.einsum("nkd,nke->nde", xi, xi) + lam * jnp.eye(d)
    b = jnp.einsum("nkd,nk->nd", xi, ys)
    w = jnp.linalg.solve(a, b[..., None])[..., 0]
    return jnp.einsum("nd,nd->n", xm[:, i], w)

  return jax.vmap(one, out_axes=1)(pm, jnp.arange(k))  # [N, K]


def _log_marginal(xs, ys, col_mask, noise_var):
  """log N(y_{<i} | 0, X_b X_b^T + s2 I) for every prefix i: [N, K]."""
  n, k, d = xs.shape
  pm = _prefix_masks(k)
  xm = xs * col_mask[:, None, :]

  def one(i_mask):
    cov = jnp.einsum("nkd,njd->nkj", xm, xm) + noise_var * jnp.eye(k)
    # Rows/cols outside the prefix become an independent unit-variance dummy
    # with observed value 0: constant across bases, so it cancels.
    m2 = i_mask[:, None] * i_mask[None, :]
    cov = cov * m2 + jnp.diag(1.0 - i_mask)
    y = ys * i_mask[None, :]
    chol = jnp.linalg.cholesky(cov)
    z = jax.scipy.linalg.solve_triangular(chol, y[..., None], lower=True)[..., 0]
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)
    return -0.5 * (jnp.sum(z * z, -1) + logdet)

  return jax.vmap(one, out_axes=1)(pm)


def _lasso_predict(xs, ys, alpha, n_iter=500):
  n, k, d = xs.shape
  pm = _prefix_masks(k)

  def one(i_mask, i):
    n_i = jnp.maximum(i_mask.sum(), 1.0)
    xi = xs * i_mask[None, :, None]
    gram = jnp.einsum("nkd,nke->nde", xi, xi) / n_i
    xty = jnp.einsum("nkd,nk->nd", xi, ys) / n_i
    # Lipschitz constant: largest eigenvalue of the Gram matrix.
    lip = jnp.maximum(jnp.linalg.eigvalsh(gram)[:, -1], 1e-6)[:, None]

    def body(_, carry):
      w, z, t = carry
      g = jnp.einsum("nde,ne->nd", gram, z) - xty
      u = z - g / lip
      w_new = jnp.sign(u) * jnp.maximum(jnp.abs(u) - alpha / lip, 0.0)
      t_new = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
      z_new = w_new + ((t - 1) / t_new) * (w_new - w)
      return w_new, z_new, t_new

    w0 = jnp.zeros((n, d))
    w, _, _ = jax.lax.fori_loop(0, n_iter, body, (w0, w0, jnp.float32(1.0)))
    return jnp.einsum("nd,nd->n", xs[:, i], w)

  return jax.lax.map(lambda a: one(*a), (pm, jnp.arange(k))).T  # [N, K]


_ridge_jit = jax.jit(_ridge_predict)
_log_marginal_jit = jax.jit(_log_marginal)
_lasso_jit = jax.jit(_lasso_predict, static_argnames=("n_iter",))


def baseline_predictions(
    batch: data_lib.SparseRegressionBatch,
    task: data_lib.TaskConfig,
    lasso_alpha: float = 0.01,
) -> dict[str, jax.Array]:
  """Predictions ``[N, K]`` of each baseline (see module doc) on ``batch``.

  Each piece is a separate small jitted call, run one after another: one XLA
  program holding several independent batched solves/Choleskys (e.g. the four
  per-basis posteriors side by side) hung forever in the CPU runtime
  (jax 0.10.2, all threads in futex wait), so nothing here puts them in one
  program.
  """
  masks = jnp.asarray(data_lib.basis_masks(task))
  lam = task.noise_var
  oracle = _ridge_jit(batch.xs, batch.ys, masks[batch.basis], lam)
  dense = _ridge_jit(batch.xs, batch.ys, jnp.ones_like(batch.w), lam)
  jax.block_until_ready((oracle, dense))
  # Mixture posterior: p(b | data) ∝ p(y | X, b) (uniform prior over bases).
  per_basis_pred, per_basis_logml = [], []
  for b in range(task.n_bases):
    cm = jnp.broadcast_to(masks[b], batch.w.shape)
    per_basis_pred.append(
        jax.block_until_ready(_ridge_jit(batch.xs, batch.ys, cm, lam))
    )
    per_basis_logml.append(
        jax.block_until_ready(_log_marginal_jit(batch.xs, batch.ys, cm, lam))
    )
  post = jax.nn.softmax(jnp.stack(per_basis_logml, 0), axis=0)  # [nb, N, K]
  mixture = jnp.sum(post * jnp.stack(per_basis_pred, 0), axis=0)
  lasso = _lasso_jit(batch.xs, batch.ys, lasso_alpha)
  return {
      "oracle": oracle,
      "bayes_mixture": mixture,
      "ridge_dense": dense,
      "lasso": lasso,
  }


def baseline_mse_by_index(
    batch: data_lib.SparseRegressionBatch, task: data_lib.TaskConfig
) -> dict[str, np.ndarray]:
  """``{name: [K]}`` MSE versus number of in-context examples."""
  preds = baseline_predictions(batch, task)
  return {
      name: np.asarray(jnp.mean((p - batch.ys) ** 2, axis=0))
      for name, p in preds.items()
  }
