"""Nearest-centroid probes for many slices and splits in one program.

The classifier is scikit-learn's ``NearestCentroid`` (Euclidean, no
shrinkage, no scaling): a class's centroid is the mean of its training rows;
an example is assigned to the class with the nearest centroid; equal
distances go to the lowest class index (``argmin``'s first hit, as in
scikit-learn, whose classes are the sorted unique labels).

Shapes: features ``[G, M, D]``, training masks ``[S, M]``; the whole
``[S, G]`` grid of probes is one ``jit`` with einsums (no Python loops).

Numerics: features are cast to float32 and translated by their mean over all
examples before the distance computation. The translation changes no distance
but removes the large common offset of residual streams, so the Gram-form
distance ``||c||^2 - 2 x.c`` (the per-row ``||x||^2`` term is dropped; it does
not change the argmin) loses little precision to cancellation.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax.probes import evaluation
from icl_jax.probes import splits as splits_lib

_HI = jax.lax.Precision.HIGHEST


@functools.partial(jax.jit, static_argnames=("num_classes",))
def nearest_centroid_predict(features, labels, train_mask, *, num_classes: int):
  """Fits on each split's training rows and predicts every row.

  Args:
    features: ``[G, M, D]``.
    labels: ``[M]`` int class indices in ``[0, num_classes)``.
    train_mask: ``[S, M]`` bool, training rows of each split.
    num_classes: ``C``.

  Returns:
    ``[S, G, M]`` int32 predicted class indices.
  """
  x = features.astype(jnp.float32)
  x = x - jnp.mean(x, axis=1, keepdims=True)  # [G, M, D], see module doc.
  y1h = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)  # [M, C]
  t = train_mask.astype(jnp.float32)  # [S, M]
  counts = jnp.einsum("sm,mc->sc", t, y1h)  # [S, C]
  sums = jnp.einsum("sm,mc,gmd->sgcd", t, y1h, x, precision=_HI)
  centroids = sums / jnp.maximum(counts, 1.0)[:, None, :, None]  # [S, G, C, D]
  c_sq = jnp.sum(jnp.square(centroids), axis=-1)  # [S, G, C]
  dots = jnp.einsum("gmd,sgcd->sgmc", x, centroids, precision=_HI)
  d2 = c_sq[:, :, None, :] - 2.0 * dots  # [S, G, M, C] (+||x||^2 dropped)
  # A class absent from a split's training rows can never be predicted.
  d2 = jnp.where(counts[:, None, None, :] > 0, d2, jnp.inf)
  return jnp.argmin(d2, axis=-1).astype(jnp.int32)


def evaluate_nearest_centroid(
    features,
    labels,
    splits: Sequence[splits_lib.Split] | None = None,
    *,
    z: float = 1.96,
) -> evaluation.ProbeEvaluation:
  """Held-out nearest-centroid accuracy for every slice.

  Args:
    features: ``[G, M, D]`` (or ``[M, D]``, treated as ``G = 1``).
    labels: ``[M]`` labels (any values; mapped to sorted class indices).
    splits: ``[(train_idx, test_idx), ...]``; default is DOT-ICL exp2's
      ``stratified_shuffle_split(n_splits=3, test_size=0.2, seed=42)``.
    z: normal quantile of the Wilson interval.

  Returns:
    A :class:`~icl_jax.probes.evaluation.ProbeEvaluation` with ``G`` slices.
  """
  x = jnp.asarray(features)
  if x.ndim == 2:
    x = x[None]
  classes, ids = evaluation.encode_labels(labels)
  if splits is None:
    splits = splits_lib.stratified_shuffle_split(
        ids, n_splits=3, test_size=0.2, seed=42)
  train_mask, test_mask = splits_lib.split_masks(splits, x.shape[1])
  preds = nearest_centroid_predict(
      x, jnp.asarray(ids), jnp.asarray(train_mask), num_classes=len(classes))
  return evaluation.evaluate_predictions(
      np.asarray(preds), ids, test_mask, classes, z=z)
