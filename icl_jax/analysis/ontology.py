"""exp6's task-ontology analysis in NumPy (protocol 8.6).

Given one vector per task (tasks sorted alphabetically as in the original):

* `cosine_matrix`: pairwise cosine similarity;
* `average_linkage`: hierarchical clustering, average linkage (UPGMA) on
  cosine distance (the original as run; the paper says Ward), returning the
  scipy-style merge list (a, b, height, size);
* `pca`: centred, unscaled PCA via SVD (sklearn's sign convention: the
  largest-magnitude loading of each component is positive);
* `silhouette`: mean silhouette score for a precomputed distance matrix
  (sklearn's definition: 0 for samples in singleton clusters);
* `permutation_test`: the original's 1000 label permutations with
  `np.random.RandomState(42)`; p = fraction of permuted scores >= observed;
* `within_between`: mean cosine within and between regime labels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
  v = np.asarray(vectors, np.float64)
  n = np.linalg.norm(v, axis=1, keepdims=True)
  u = v / np.where(n == 0, 1.0, n)
  return np.clip(u @ u.T, -1.0, 1.0)


def average_linkage(dist: np.ndarray) -> list[tuple[int, int, float, int]]:
  """UPGMA merges: (cluster a, cluster b, height, size), scipy numbering
  (singletons 0..n-1, merged clusters n, n+1, ...)."""
  d = np.asarray(dist, np.float64)
  n = d.shape[0]
  clusters = {i: [i] for i in range(n)}
  merges = []
  nxt = n
  while len(clusters) > 1:
    keys = sorted(clusters)
    best = None
    for i, a in enumerate(keys):
      for b in keys[i + 1:]:
        h = float(np.mean(d[np.ix_(clusters[a], clusters[b])]))
        if best is None or h < best[2] - 1e-15:
          best = (a, b, h)
    a, b, h = best
    members = clusters.pop(a) + clusters.pop(b)
    merges.append((a, b, h, len(members)))
    clusters[nxt] = members
    nxt += 1
  return merges


def describe_merges(merges, names: Sequence[str]) -> list[tuple[str, float]]:
  """Readable merges: ("repeat_word+uppercase", 0.065), ..."""
  n = len(names)
  label = {i: names[i] for i in range(n)}
  out = []
  for k, (a, b, h, _) in enumerate(merges):
    text = f"{label[a]}+{label[b]}"
    label[n + k] = f"({text})"
    out.append((text, h))
  return out


def pca(vectors: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
  """(coordinates [n,k], explained variance ratio [k])."""
  x = np.asarray(vectors, np.float64)
  x = x - x.mean(0)
  u, s, vt = np.linalg.svd(x, full_matrices=False)
  signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
  signs[signs == 0] = 1.0
  u, vt = u * signs, vt * signs[:, None]
  k = min(k, len(s))
  var = s ** 2
  ratio = var[:k] / var.sum() if var.sum() > 0 else np.zeros(k)
  return (u * s)[:, :k], ratio


def silhouette(dist: np.ndarray, labels: Sequence) -> float:
  d = np.asarray(dist, np.float64)
  labels = np.asarray(labels)
  uniq = np.unique(labels)
  if not 1 < len(uniq) < len(labels):
    raise ValueError("silhouette needs 2 <= n_labels <= n_samples - 1")
  s = np.zeros(len(labels))
  for i in range(len(labels)):
    own = labels == labels[i]
    if own.sum() == 1:
      continue  # singleton cluster: 0
    a = d[i, own & (np.arange(len(labels)) != i)].mean()
    b = min(d[i, labels == l].mean() for l in uniq if l != labels[i])
    s[i] = (b - a) / max(a, b) if max(a, b) > 0 else 0.0
  return float(s.mean())


def permutation_test(dist: np.ndarray, labels: Sequence, n_perm: int = 1000,
                     seed: int = 42) -> tuple[float, float]:
  """(observed silhouette, p = fraction of permuted scores >= observed)."""
  obs = silhouette(dist, labels)
  rng = np.random.RandomState(seed)
  lab = np.asarray(labels)
  hits = 0
  for _ in range(n_perm):
    if silhouette(dist, rng.permutation(lab)) >= obs:
      hits += 1
  return obs, hits / n_perm


def within_between(sim: np.ndarray, labels: Sequence) -> tuple[float, float]:
  sim = np.asarray(sim, np.float64)
  within, between = [], []
  n = len(labels)
  for i in range(n):
    for j in range(i + 1, n):
      (within if labels[i] == labels[j] else between).append(sim[i, j])
  mean = lambda v: float(np.mean(v)) if v else float("nan")
  return mean(within), mean(between)


def analyse(names: Sequence[str], vectors: np.ndarray,
            regimes: dict[str, str], n_perm: int = 1000) -> dict:
  """Every exp6 statistic for one set of task vectors."""
  sim = cosine_matrix(vectors)
  dist = np.clip(1.0 - sim, 0.0, None)
  np.fill_diagonal(dist, 0.0)
  labels = [regimes.get(t, t) for t in names]
  out = {"tasks": list(names), "similarity": sim.round(6).tolist(),
         "regimes": labels}
  try:
    obs, p = permutation_test(dist, labels, n_perm)
    out["silhouette"], out["perm_p"] = obs, p
  except ValueError:
    out["silhouette"], out["perm_p"] = None, None
  out["within"], out["between"] = within_between(sim, labels)
  merges = average_linkage(dist)
  out["merges"] = [list(m) for m in merges]
  out["merge_labels"] = describe_merges(merges, names)
  coords, ratio = pca(vectors, 3)
  out["pca"] = {t: [float(x) for x in c] for t, c in zip(names, coords)}
  out["pca_explained"] = [float(r) for r in ratio]
  return out
