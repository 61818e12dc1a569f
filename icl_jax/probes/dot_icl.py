"""The DOT-ICL study's probes, as run (protocol sections 8.2 and 8.7).

* exp2 ("localization"): ``NearestCentroid`` (Euclidean, unscaled features)
  scored on ``StratifiedShuffleSplit(n_splits=3, test_size=0.2,
  random_state=42)``; the reported score is the mean test accuracy over the 3
  splits, with the std over splits. (The paper calls it a linear probe and the
  config mentions 5-fold / L2; neither was used. ``C=1.0`` was passed and
  ignored.) Chance is 1/8 with the 8 core tasks.
* exp7 ("trajectory"): ``LogisticRegression(C=1, lbfgs, multinomial,
  max_iter=1000)`` on unscaled features, fitted and scored on the same samples
  (training accuracy, not held-out).

Deviations we know of: the study fed fp16 features to scikit-learn (float64
maths after conversion); we compute in float32. Both probes are exact
algorithms up to rounding, so only examples at rounding-level distance from a
decision boundary can differ.
"""

from __future__ import annotations

import numpy as np

from icl_jax.probes import centroid
from icl_jax.probes import evaluation
from icl_jax.probes import logistic
from icl_jax.probes import splits as splits_lib


def exp2_probe(
    features, labels, *, n_splits: int = 3, test_size: float = 0.2,
    seed: int = 42,
) -> evaluation.ProbeEvaluation:
  """exp2's nearest-centroid probe for every (layer, position) slice.

  Args:
    features: ``[G, M, D]``, e.g. ``[L * P, M, D]`` for L layers x P position
      types (reshape back with ``result.mean_split_accuracy.reshape(L, P)``).
    labels: ``[M]`` task labels (400 = 8 tasks x 50 prompts in the study).
    n_splits: 3 as run.
    test_size: 0.2 as run (80 test samples of 400).
    seed: 42 as run; the splits equal scikit-learn's index for index.

  Returns:
    ProbeEvaluation; the study's score is ``mean_split_accuracy`` and its
    spread ``std_split_accuracy`` (population std over the splits).
  """
  _, ids = evaluation.encode_labels(labels)
  splits = splits_lib.stratified_shuffle_split(
      ids, n_splits=n_splits, test_size=test_size, seed=seed)
  return centroid.evaluate_nearest_centroid(features, labels, splits)


def exp2_best_cell(scores) -> tuple[int, ...]:
  """The study's "optimal" cell: first maximum in row-major order.

  The script scanned cells with a strict ``>``, so the first cell reaching the
  maximum wins (layer 0 / last_demo_token as run; the stored JSON was then
  hand-edited to layer 14). ``np.argmax`` has the same first-hit rule.

  Args:
    scores: e.g. ``[L, P]`` mean accuracies, in the study's scan order.

  Returns:
    The multi-index of the first maximum.
  """
  scores = np.asarray(scores)
  flat = int(np.argmax(scores))
  return tuple(int(i) for i in np.unravel_index(flat, scores.shape))


def exp7_training_accuracy(
    features,
    labels,
    *,
    C: float = 1.0,  # pylint: disable=invalid-name
    max_iter: int = 1000,
    tol: float = 1e-5,
) -> np.ndarray:
  """exp7's per-layer logistic probe accuracy on its own training data.

  Args:
    features: ``[L, M, D]`` (160 = 8 tasks x 20 prompts in the study, at the
      ``last_demo_token`` position).
    labels: ``[M]`` task labels.
    C: scikit-learn's C (1 as run); ``l2 = 1 / (C * M)``.
    max_iter: 1000 as run.
    tol: gradient-norm tolerance of our L-BFGS loop.

  Returns:
    ``[L]`` training accuracies (a scalar for ``[M, D]`` features).
  """
  _, ids = evaluation.encode_labels(labels)
  probe = logistic.fit_logistic(
      features, ids, C=C, standardize=False, max_iter=max_iter, tol=tol)
  pred = np.asarray(logistic.logistic_predict(probe, features))  # [L, M]
  return (pred == ids).mean(axis=-1)
