"""Stratified, seeded train/test splits for probes (pure NumPy).

Two schemes:

* :func:`stratified_shuffle_split` reproduces scikit-learn's
  ``StratifiedShuffleSplit(n_splits, test_size, random_state=seed)`` index for
  index (same ``np.random.RandomState`` stream, same draw order), which is what
  the DOT-ICL exp2 probe used (protocol section 8.2: 3 splits, 20% test, seed
  42). Reproducing it here keeps scikit-learn a test-only dependency.
* :func:`stratified_kfold` reproduces ``StratifiedKFold(n_splits,
  shuffle=True, random_state=seed)``: every example is held out exactly once,
  so pooled held-out predictions are independent draws (a cleaner basis for a
  Wilson interval than overlapping shuffle splits).

A split list is ``[(train_idx, test_idx), ...]``; :func:`split_masks` turns it
into the static-shape boolean masks ``[S, M]`` that the vmapped probes use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Split = tuple[np.ndarray, np.ndarray]


def _approximate_mode(
    class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState
) -> np.ndarray:
  """Approximate mode of a multivariate hypergeometric (sklearn's algorithm).

  Floors the proportional allocation, then hands the missing draws to the
  classes with the largest remainders; equal remainders are broken with
  ``rng.choice`` (which consumes the RNG even when all tied classes are taken,
  exactly like scikit-learn).
  """
  continuous = class_counts / class_counts.sum() * n_draws
  floored = np.floor(continuous)
  need_to_add = int(n_draws - floored.sum())
  if need_to_add > 0:
    remainder = continuous - floored
    for value in np.sort(np.unique(remainder))[::-1]:
      (inds,) = np.where(remainder == value)
      add_now = min(len(inds), need_to_add)
      inds = rng.choice(inds, size=add_now, replace=False)
      floored[inds] += 1
      need_to_add -= add_now
      if need_to_add == 0:
        break
  return floored.astype(int)


def stratified_shuffle_split(
    labels: Sequence[int] | np.ndarray,
    n_splits: int = 3,
    test_size: float = 0.2,
    seed: int = 42,
) -> list[Split]:
  """Stratified random train/test splits, identical to scikit-learn's.

  Args:
    labels: ``[M]`` class labels (any sortable values).
    n_splits: number of independent re-shuffles.
    test_size: fraction of examples held out; ``n_test = ceil(test_size*M)``,
      ``n_train = M - n_test`` (scikit-learn's rounding).
    seed: seed of the ``np.random.RandomState`` stream shared by all splits.

  Returns:
    ``n_splits`` pairs ``(train_idx, test_idx)`` of int arrays, in
    scikit-learn's order (itself a random permutation).
  """
  labels = np.asarray(labels)
  m = labels.shape[0]
  n_test = math.ceil(test_size * m)
  n_train = m - n_test
  _, y_idx, class_counts = np.unique(
      labels, return_inverse=True, return_counts=True)
  n_classes = class_counts.shape[0]
  if class_counts.min() < 2:
    raise ValueError("every class needs at least 2 members")
  if n_train < n_classes or n_test < n_classes:
    raise ValueError(
        f"train ({n_train}) and test ({n_test}) sizes must be >= the number "
        f"of classes ({n_classes})")
  # Per class, its example indices in increasing order.
  class_indices = np.split(
      np.argsort(y_idx, kind="stable"), np.cumsum(class_counts)[:-1])
  rng = np.random.RandomState(seed)
  splits = []
  for _ in range(n_splits):
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train, test = [], []
    for i in range(n_classes):
      perm = class_indices[i].take(rng.permutation(class_counts[i]),
                                   mode="clip")
      train.extend(perm[:n_i[i]])
      test.extend(perm[n_i[i]:n_i[i] + t_i[i]])
    splits.append((rng.permutation(train), rng.permutation(test)))
  return splits


def stratified_kfold(
    labels: Sequence[int] | np.ndarray, n_splits: int = 5, seed: int = 0
) -> list[Split]:
  """Shuffled stratified k-fold, identical to sklearn's ``StratifiedKFold``.

  Args:
    labels: ``[M]`` class labels.
    n_splits: number of folds; each example is in exactly one test fold.
    seed: seed of the ``np.random.RandomState`` that shuffles fold membership.

  Returns:
    ``n_splits`` pairs ``(train_idx, test_idx)``, indices sorted ascending.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError("labels must be 1-D")
  rng = np.random.RandomState(seed)
  # Classes are numbered by order of first appearance (as scikit-learn does).
  _, first_idx, inverse = np.unique(
      labels, return_index=True, return_inverse=True)
  _, class_perm = np.unique(first_idx, return_inverse=True)
  y_enc = class_perm[inverse]
  n_classes = len(first_idx)
  counts = np.bincount(y_enc)
  if np.all(n_splits > counts):
    raise ValueError(f"n_splits={n_splits} exceeds every class's size")
  # Round-robin allocation of each class's members over the folds.
  y_order = np.sort(y_enc)
  allocation = np.asarray([
      np.bincount(y_order[i::n_splits], minlength=n_classes)
      for i in range(n_splits)
  ])
  test_folds = np.empty(len(labels), dtype=np.int32)
  for c in range(n_classes):
    folds_for_class = np.arange(n_splits).repeat(allocation[:, c])
    rng.shuffle(folds_for_class)
    test_folds[y_enc == c] = folds_for_class
  ids = np.arange(len(labels))
  return [(ids[test_folds != f], ids[test_folds == f])
          for f in range(n_splits)]


def split_masks(
    splits: Sequence[Split], num_examples: int
) -> tuple[np.ndarray, np.ndarray]:
  """Converts index splits to boolean masks.

  Args:
    splits: ``S`` pairs ``(train_idx, test_idx)``.
    num_examples: ``M``.

  Returns:
    ``(train_mask [S, M], test_mask [S, M])`` bool arrays.
  """
  s = len(splits)
  train = np.zeros((s, num_examples), dtype=bool)
  test = np.zeros((s, num_examples), dtype=bool)
  for i, (tr, te) in enumerate(splits):
    train[i, np.asarray(tr, dtype=np.int64)] = True
    test[i, np.asarray(te, dtype=np.int64)] = True
  if np.any(train & test):
    raise ValueError("a split has an example in both train and test")
  return train, test
