"""Han et al.'s TD around the leave-one-out kNN: metrics, null band, pairs.

The kNN itself (leave-one-out, k neighbours, majority vote, ties to the
lowest class index, distance ties to the lower example index) is
:mod:`icl_jax.probes.task_decodability`; this module adds what Han et al.'s
analysis needs around it:

* ``metric="cosine"``: the same kNN on unit-normalised features (for unit
  vectors ``|a-b|^2 = 2 - 2 cos(a, b)``, so the neighbour order is the cosine
  order) -- the spec's check of the unstated distance (section 4.1);
* a shuffled-label null: TD recomputed with the labels permuted. The
  neighbour sets do not depend on the labels, and under ``jax.vmap`` over
  the permutations the distance matrix and top-k are computed once;
* pairwise 2-class TD (Han's Fig. 23): for classes (a, b), the kNN run on
  the points of a and b only; ``out[a, b]`` is TD_a in that 2-class problem
  (chance 0.5), so the matrix need not be symmetric, as in the paper.

Shapes: features ``[L, M, D]`` (layers, examples, dims), labels ``[M]``
class indices in ``[0, C)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax.probes import task_decodability as td_lib

METRICS = ("euclidean", "cosine")


def metric_features(features, metric: str = "euclidean") -> jax.Array:
  """Features for ``metric``: as given (Euclidean) or unit-normalised.

  Cosine numerics: fp32, norms floored at 1e-12 so a zero row stays zero.
  """
  if metric not in METRICS:
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
  x = jnp.asarray(features, jnp.float32)
  if metric == "cosine":
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)  # [..., M, 1]
    x = x / jnp.maximum(norm, 1e-12)
  return x


def class_td(features, labels, num_classes: int, k: int = 10,
             metric: str = "euclidean") -> np.ndarray:
  """``TD_z`` per layer and class, ``[L, C]`` (``[C]`` for ``[M, D]``)."""
  x = metric_features(features, metric)
  return np.asarray(td_lib.per_class_task_decodability(
      x, np.asarray(labels, np.int32), k, num_classes=num_classes))


def shuffled_label_td(features, labels, num_classes: int, k: int = 10, *,
                      n_perms: int = 20, seed: int = 0,
                      metric: str = "euclidean") -> np.ndarray:
  """``TD_z`` under ``n_perms`` label permutations: ``[P, L, C]``.

  The permutations are drawn with ``np.random.default_rng(seed)``; each
  keeps the class sizes, so chance is unchanged.
  """
  ids = np.asarray(labels, np.int32)
  rng = np.random.default_rng(seed)
  perms = np.stack([rng.permutation(ids) for _ in range(n_perms)])  # [P, M]
  x = metric_features(features, metric)
  if x.ndim == 2:
    x = x[None]

  def one(p):  # p: [M] permuted labels
    return td_lib.per_class_task_decodability(x, p, k,
                                              num_classes=num_classes)

  return np.asarray(jax.vmap(one)(jnp.asarray(perms)))  # [P, L, C]


def pairwise_td(features, labels, num_classes: int, k: int = 10,
                metric: str = "euclidean") -> np.ndarray:
  """2-class TD matrix ``[L, C, C]`` (``[C, C]`` for ``[M, D]``).

  ``out[..., a, b]`` = TD of class a in the kNN over classes a and b only;
  the diagonal is NaN. Each pair needs ``k < n_a + n_b``.
  """
  x = metric_features(features, metric)
  single = x.ndim == 2
  if single:
    x = x[None]
  ids = np.asarray(labels, np.int32)
  out = np.full((x.shape[0], num_classes, num_classes), np.nan, np.float32)
  for a in range(num_classes):
    for b in range(a + 1, num_classes):
      sel = np.flatnonzero((ids == a) | (ids == b))
      sub = (ids[sel] == b).astype(np.int32)  # a -> 0, b -> 1
      td = np.asarray(td_lib.per_class_task_decodability(
          x[:, sel], sub, k, num_classes=2))  # [L, 2]
      out[:, a, b], out[:, b, a] = td[:, 0], td[:, 1]
  return out[0] if single else out


def null_band(null_td, classes=None, q=(5.0, 95.0)) -> np.ndarray:
  """Percentile band of the null's mean TD: ``[2, L]`` (low, high).

  ``null_td``: ``[P, L, C]`` from :func:`shuffled_label_td`; ``classes``:
  the class indices averaged into "mean TD" (default all).
  """
  z = np.asarray(null_td)
  if classes is not None:
    z = z[..., list(classes)]
  return np.percentile(np.nanmean(z, axis=-1), q, axis=0)
