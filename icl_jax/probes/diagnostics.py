"""Why a probe scores what it scores: class geometry of probe features.

``class_spread`` measures, per slice, how spread out each class is compared
with how far apart the classes are, and how many genuinely different vectors
each class holds. It explains the DOT-ICL exp2 "100% at demo positions":
with fixed demos, every prompt of a task has the same demo block, and a
demo-region position precedes the query, so (causal attention) its hidden
state is the same vector for every prompt of the task -- the probe sees one
point per class (``distinct_per_class`` = 1, ``within`` ~ 0), and any
classifier separates 8 points.

Also: ``cosine_change`` (exp7's representational change between consecutive
layers) and ``crystallization_layer``.
"""

from __future__ import annotations

import numpy as np


def class_spread(features, labels, rel_tol: float = 1e-4) -> dict:
  """Within- vs between-class spread and distinct vectors per class.

  Args:
    features: ``[G, M, D]`` (or ``[M, D]``).
    labels: ``[M]``.
    rel_tol: two vectors of a class count as the same when their distance is
      at most ``rel_tol`` times the median feature norm of the slice
      (absorbs kernel rounding, e.g. from left padding).

  Returns:
    dict of ``[G]`` arrays: ``within`` (mean over classes of the RMS distance
    of members to their class centroid), ``between`` (RMS distance of the
    class centroids to their mean), ``ratio`` (within / between; 0 means
    every class is a single point), ``distinct_per_class`` (mean number of
    distinct vectors per class), ``max_within`` (largest member-to-centroid
    distance relative to the median norm).
  """
  x = np.asarray(features, np.float64)
  if x.ndim == 2:
    x = x[None]
  labels = np.asarray(labels)
  classes = np.unique(labels)
  g = x.shape[0]
  out = {k: np.zeros(g) for k in
         ("within", "between", "ratio", "distinct_per_class", "max_within")}
  for s in range(g):
    xs = x[s]
    scale = float(np.median(np.linalg.norm(xs, axis=-1))) or 1.0
    cents, within, distinct, max_w = [], [], [], 0.0
    for c in classes:
      xc = xs[labels == c]
      mu = xc.mean(axis=0)
      cents.append(mu)
      dist = np.linalg.norm(xc - mu, axis=-1)
      within.append(np.sqrt(np.mean(dist ** 2)))
      max_w = max(max_w, float(dist.max()) / scale)
      d2 = np.linalg.norm(xc[:, None] - xc[None], axis=-1)
      same = d2 <= rel_tol * scale
      # Row i is new unless it matches an earlier row.
      distinct.append(sum(1 for i in range(len(xc)) if not same[i, :i].any()))
    cents = np.stack(cents)
    between = float(np.sqrt(np.mean(
        np.sum((cents - cents.mean(axis=0)) ** 2, axis=-1))))
    out["within"][s] = float(np.mean(within))
    out["between"][s] = between
    out["ratio"][s] = out["within"][s] / between if between > 0 else np.inf
    out["distinct_per_class"][s] = float(np.mean(distinct))
    out["max_within"][s] = max_w
  return out


def cosine_change(features) -> np.ndarray:
  """``1 - mean_i cos(h_l[i], h_{l+1}[i])`` for consecutive slices.

  Args:
    features: ``[L, M, D]`` (layers in order).

  Returns:
    ``[L-1]``: entry l is the change from layer l to l+1 (exp7).
  """
  x = np.asarray(features, np.float64)
  a, b = x[:-1], x[1:]
  cos = np.sum(a * b, -1) / (
      np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-30)
  return 1.0 - cos.mean(axis=-1)


def crystallization_layer(accuracy, layers, threshold: float):
  """First layer whose accuracy reaches ``threshold`` (None if none does)."""
  for layer, acc in zip(layers, accuracy):
    if acc >= threshold:
      return int(layer)
  return None
