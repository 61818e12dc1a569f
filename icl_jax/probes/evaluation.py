"""Held-out accuracy of a probe over several splits, with a Wilson interval.

Shared by the logistic and nearest-centroid probes. Predictions arrive as
``[S, G, M]`` (splits x slices x examples) together with the ``[S, M]`` test
masks; accuracy is reported two ways:

* ``split_accuracy [S, G]`` and its mean / std over splits (the DOT-ICL exp2
  statistic: mean of per-split test accuracies, population std);
* pooled: all held-out predictions of all splits counted together,
  ``accuracy = n_correct / n_total`` with a Wilson score interval. With k-fold
  splits each example is counted once; with overlapping shuffle splits an
  example can be counted more than once, so the interval is optimistic (it
  treats those repeats as independent).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

try:  # The analysis package owns the shared statistics helpers.
  from icl_jax.analysis.stats import wilson_interval
except ImportError:  # pragma: no cover - depends on the other package's state.
  wilson_interval = None


def _wilson_fallback(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
  """Wilson score interval for k successes out of n, clipped to [0, 1]."""
  if n == 0:
    return (math.nan, math.nan)
  p = k / n
  denom = 1.0 + z * z / n
  centre = (p + z * z / (2 * n)) / denom
  half = z * math.sqrt((p * (1 - p) + z * z / (4 * n)) / n) / denom
  return (max(0.0, centre - half), min(1.0, centre + half))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
  """Wilson interval via ``icl_jax.analysis.stats`` if present, else locally."""
  if wilson_interval is not None:
    lo, hi = wilson_interval(k, n, z=z)
    return (float(lo), float(hi))
  return _wilson_fallback(k, n, z)


@dataclasses.dataclass(frozen=True)
class ProbeEvaluation:
  """Held-out results for ``G`` slices over ``S`` splits.

  Attributes:
    accuracy: ``[G]`` pooled held-out accuracy (n_correct / n_total).
    ci_low: ``[G]`` lower end of the Wilson interval of ``accuracy``.
    ci_high: ``[G]`` upper end.
    n_correct: ``[G]`` correct held-out predictions, all splits together.
    n_total: number of held-out predictions, all splits together.
    split_accuracy: ``[S, G]`` test accuracy per split.
    mean_split_accuracy: ``[G]`` mean of ``split_accuracy`` over splits.
    std_split_accuracy: ``[G]`` population std (ddof=0) over splits.
    predictions: ``[S, G, M]`` predicted class index, -1 off the test set.
    classes: ``[C]`` original label values; class index c means classes[c].
  """

  accuracy: np.ndarray
  ci_low: np.ndarray
  ci_high: np.ndarray
  n_correct: np.ndarray
  n_total: int
  split_accuracy: np.ndarray
  mean_split_accuracy: np.ndarray
  std_split_accuracy: np.ndarray
  predictions: np.ndarray
  classes: np.ndarray


def evaluate_predictions(
    predictions: np.ndarray,
    label_ids: np.ndarray,
    test_mask: np.ndarray,
    classes: np.ndarray,
    z: float = 1.96,
) -> ProbeEvaluation:
  """Scores ``[S, G, M]`` predictions against ``[M]`` class indices.

  Args:
    predictions: ``[S, G, M]`` predicted class indices (all examples).
    label_ids: ``[M]`` true class indices.
    test_mask: ``[S, M]`` bool, the held-out examples of each split.
    classes: ``[C]`` label values, stored in the result.
    z: normal quantile of the Wilson interval (1.96 = 95%).

  Returns:
    A :class:`ProbeEvaluation`.
  """
  predictions = np.asarray(predictions)
  test_mask = np.asarray(test_mask, dtype=bool)
  correct = (predictions == label_ids[None, None, :]) & test_mask[:, None, :]
  n_test = test_mask.sum(axis=1)  # [S]
  split_acc = correct.sum(axis=2) / n_test[:, None]  # [S, G]
  n_correct = correct.sum(axis=(0, 2))  # [G]
  n_total = int(n_test.sum())
  ci = np.array([wilson(int(k), n_total, z) for k in n_correct]).reshape(-1, 2)
  return ProbeEvaluation(
      accuracy=n_correct / n_total,
      ci_low=ci[:, 0],
      ci_high=ci[:, 1],
      n_correct=n_correct,
      n_total=n_total,
      split_accuracy=split_acc,
      mean_split_accuracy=split_acc.mean(axis=0),
      std_split_accuracy=split_acc.std(axis=0),
      predictions=np.where(test_mask[:, None, :], predictions, -1),
      classes=np.asarray(classes),
  )


def encode_labels(labels) -> tuple[np.ndarray, np.ndarray]:
  """Maps arbitrary labels to class indices ``0..C-1`` (sorted, like sklearn).

  Returns:
    ``(classes [C], label_ids [M] int32)``.
  """
  classes, ids = np.unique(np.asarray(labels), return_inverse=True)
  return classes, ids.astype(np.int32)
