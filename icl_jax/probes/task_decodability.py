"""Task decodability (TD) of Han et al.: leave-one-out kNN on hidden states.

For each point (h_i, z_i) of the pooled set, its k nearest *other* points
(Euclidean distance on the raw features) vote, one vote each; the prediction
is the majority label. ``TD_z`` is the fraction of class-z points predicted as
z; TD is the mean of ``TD_z`` over classes (Han et al.'s "mean TD"; equal to
plain LOO accuracy when classes are balanced, as in the paper).

Tie rules (the paper states none; these make the result deterministic and
match scikit-learn's ``KNeighborsClassifier`` wherever it is deterministic):

* vote ties: the tied class with the lowest index wins (classes are the sorted
  unique labels), as in scikit-learn's uniform-weight ``predict``;
* distance ties at the k-th neighbour: the point with the lower example index
  is taken (``lax.top_k`` keeps the lower index first among equal values).
  scikit-learn's choice there is unspecified.

Ties are decided on the computed float32 squared distances. Distances are
computed as ``|x_i|^2 + |x_j|^2 - 2 x_i.x_j`` after translating all points by
the first point (distances are translation invariant; this removes the large
common offset of residual streams, and keeps integer-valued features integer
so that ties in such data are exact); clamped at +0.0 so that duplicates tie
exactly instead of differing in the sign of a rounding residue; the diagonal
is +inf (leave-one-out).

Shapes: features ``[L, M, D]`` (layers, examples, dims) or ``[M, D]``.
Cost per layer: one ``[M, M]`` Gram matmul and a top-k; all layers in one
vmapped, jit-compiled program.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_HI = jax.lax.Precision.HIGHEST


def _loo_votes(x, y1h, k: int):
  """Leave-one-out kNN votes for one layer: x ``[M, D]``, y1h ``[M, C]``."""
  x = x - x[0]  # translation, see module doc
  sq = jnp.sum(jnp.square(x), axis=-1)  # [M]
  gram = jnp.matmul(x, x.T, precision=_HI)  # [M, M]
  d2 = sq[:, None] + sq[None, :] - 2.0 * gram  # [M, M] squared distances
  d2 = jnp.where(d2 > 0.0, d2, 0.0)  # canonical +0.0 for (near) duplicates
  d2 = jnp.where(jnp.eye(x.shape[0], dtype=bool), jnp.inf, d2)
  _, nbrs = jax.lax.top_k(-d2, k)  # [M, k]; lower index first on ties
  return jnp.sum(y1h[nbrs], axis=1)  # [M, C] vote counts


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _loo_predict(features, label_ids, *, k: int, num_classes: int):
  """``[L, M, D]`` -> LOO kNN predicted class indices ``[L, M]``."""
  x = features.astype(jnp.float32)
  y1h = jax.nn.one_hot(label_ids, num_classes, dtype=jnp.float32)
  votes = jax.vmap(_loo_votes, in_axes=(0, None, None))(x, y1h, k)  # [L, M, C]
  return jnp.argmax(votes, axis=-1)  # first max = lowest class index


def _prepare(features, labels, k: int, num_classes: int | None):
  """Shapes features to ``[L, M, D]`` and labels to class indices."""
  x = jnp.asarray(features)
  single = x.ndim == 2
  if single:
    x = x[None]
  if x.ndim != 3:
    raise ValueError(f"features must be [L, M, D] or [M, D], got {x.shape}")
  m = x.shape[1]
  if not 1 <= k <= m - 1:
    raise ValueError(f"need 1 <= k <= M - 1 = {m - 1}, got k={k}")
  if num_classes is None:  # concrete labels: sort-encode like sklearn
    classes, ids = np.unique(np.asarray(labels), return_inverse=True)
    ids, num_classes = jnp.asarray(ids.reshape(-1), jnp.int32), len(classes)
  else:  # labels are already class indices (allows traced labels)
    ids = jnp.asarray(labels, jnp.int32)
  if ids.shape != (m,):
    raise ValueError(f"labels must be [M={m}], got {ids.shape}")
  return x, ids, num_classes, single


def knn_loo_predict(features, labels, k: int = 10, *,
                    num_classes: int | None = None) -> jax.Array:
  """Leave-one-out kNN predictions (class indices ``0..C-1``).

  Args:
    features: ``[L, M, D]`` or ``[M, D]``.
    labels: ``[M]`` labels; if ``num_classes`` is None they are encoded as
      their rank among the sorted unique labels, otherwise they must already
      be indices in ``[0, num_classes)``.
    k: neighbours per vote.
    num_classes: see ``labels``.

  Returns:
    ``[L, M]`` (or ``[M]``) int32 predicted class indices.
  """
  x, ids, c, single = _prepare(features, labels, k, num_classes)
  pred = _loo_predict(x, ids, k=k, num_classes=c)
  return pred[0] if single else pred


def per_class_task_decodability(features, labels, k: int = 10, *,
                                num_classes: int | None = None) -> jax.Array:
  """``TD_z`` per layer and class: ``[L, C]`` (``[C]`` for ``[M, D]``).

  A class with no examples (possible only with explicit ``num_classes``)
  gets NaN.
  """
  x, ids, c, single = _prepare(features, labels, k, num_classes)
  pred = _loo_predict(x, ids, k=k, num_classes=c)  # [L, M]
  y1h = jax.nn.one_hot(ids, c, dtype=jnp.float32)  # [M, C]
  correct = (pred == ids[None]).astype(jnp.float32)  # [L, M]
  td = jnp.einsum("lm,mc->lc", correct, y1h) / jnp.sum(y1h, axis=0)  # [L, C]
  return td[0] if single else td


def knn_task_decodability(features, labels, k: int = 10, *,
                          num_classes: int | None = None) -> jax.Array:
  """Han et al.'s task decodability per layer.

  Args:
    features: ``[L, M, D]`` hidden states (or ``[M, D]`` for one layer).
    labels: ``[M]`` task labels (see :func:`knn_loo_predict`).
    k: neighbours (10 in the paper).
    num_classes: optional; see :func:`knn_loo_predict`.

  Returns:
    ``[L]`` float32 TD (mean over classes of ``TD_z``), or a scalar for
    ``[M, D]`` input.
  """
  return jnp.nanmean(
      per_class_task_decodability(features, labels, k, num_classes=num_classes),
      axis=-1)


def peak_layer(td) -> int:
  """Index of the highest TD (first one on ties; NaNs ignored).

  The index is into the ``L`` axis given to :func:`knn_task_decodability`;
  with the residual stack ``[n_layers+1, ...]`` (embeddings first), index i
  is the output of block i-1.
  """
  return int(np.nanargmax(np.asarray(td)))
