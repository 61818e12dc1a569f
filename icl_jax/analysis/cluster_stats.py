"""Statistics that respect how the study reuses its prompts.

Every cell of a sweep (layer x condition, often x pair) scores the SAME N
target prompts, so cells are not independent draws: pooling 108 cells of
N=20 as if they were 2160 independent trials understates the uncertainty
(0/2160 reads as "<= 0.002", while 0/20 per cell only bounds each cell at
0.16). And a "best layer" picked as the argmax of ~20 noisy layer means is
biased upward when it is estimated on the prompts that picked it.

* `prompt_outcomes`: the [cells, prompts] outcome matrix of result rows (a
  row's `examples` are its prompts, in the target set's order).
* `cluster_bootstrap`: a pooled mean with a percentile interval from
  resampling PROMPTS (columns), within strata of columns that are different
  prompt sets (e.g. the target tasks of different pairs).
* `split_half_best`: choose the best layer on one random half of the prompts
  and estimate it on the other half (Wilson interval on the held-out
  prompts), so selection and estimate never see the same prompt.
* `best_layer_spread`: bootstrap over prompts of the argmax layer: how often
  each layer wins and a percentile interval of the best layer's depth.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from icl_jax.analysis.stats import wilson_interval

N_BOOT = 10_000


def prompt_outcomes(rows: Sequence[dict], label: str = "transfer"):
  """(cells, matrix): matrix [len(rows), N] is 1.0 where prompt i of row c
  was classified `label` (its `examples[i]["label"]`). Every row must hold
  the same number of examples (the same target prompts)."""
  if not rows:
    raise ValueError("no rows")
  ns = {len(r.get("examples") or ()) for r in rows}
  if len(ns) != 1 or 0 in ns:
    raise ValueError(f"rows hold different or no prompt examples: {ns}")
  m = np.array([[ex.get("label") == label for ex in r["examples"]]
                for r in rows], dtype=np.float64)  # [cells, N]
  return list(rows), m


def _resample_columns(strata: np.ndarray, rng: np.random.Generator,
                      n_boot: int) -> np.ndarray:
  """[n_boot, n_cols] column indices resampled within each stratum."""
  out = np.empty((n_boot, strata.size), dtype=np.int64)
  for s in np.unique(strata):
    cols = np.flatnonzero(strata == s)
    out[:, cols] = cols[rng.integers(0, cols.size, size=(n_boot, cols.size))]
  return out


def cluster_bootstrap(matrix, strata=None, n_boot: int = N_BOOT,
                      seed: int = 0) -> tuple[float, float, float]:
  """Mean of `matrix` [cells, prompts] (NaN = cell did not score that
  prompt) and its 95% percentile interval from resampling prompt columns
  with replacement (within `strata`, one id per column)."""
  m = np.asarray(matrix, dtype=np.float64)
  if m.ndim != 2 or m.size == 0:
    raise ValueError("matrix must be a non-empty [cells, prompts] array")
  strata = (np.zeros(m.shape[1], np.int64) if strata is None
            else np.asarray(strata))
  if strata.shape != (m.shape[1],):
    raise ValueError("strata needs one id per prompt column")
  rng = np.random.default_rng(seed)
  idx = _resample_columns(strata, rng, n_boot)  # [B, P]
  col_sum = np.nansum(m, axis=0)  # [P]
  col_n = np.sum(np.isfinite(m), axis=0)  # [P]
  means = col_sum[idx].sum(1) / np.maximum(col_n[idx].sum(1), 1)  # [B]
  lo, hi = np.percentile(means, [2.5, 97.5])
  return float(np.nansum(m) / np.sum(np.isfinite(m))), float(lo), float(hi)


def _argmax_first(x: np.ndarray) -> int:
  """Index of the largest value, the lowest index on ties."""
  return int(np.flatnonzero(x == x.max())[0])


def split_half_best(by_layer, layers: Sequence[int], seed: int = 0) -> dict:
  """Best layer chosen on a random half of the prompts, estimated on the
  other half.

  Args:
    by_layer: [L, P] per-prompt outcome at each layer (already averaged
      over cells that share the layer and the prompt, e.g. over pairs whose
      target prompts are the same set).
    layers: the layer of each row of `by_layer`.
  Returns:
    {"layer", "selection_mean", "estimate", "lo", "hi", "n_select",
     "n_test"}; the interval is Wilson's on the held-out prompts' pooled
     successes when the outcomes are 0/1, else a prompt bootstrap.
  """
  m = np.asarray(by_layer, dtype=np.float64)
  if m.ndim != 2 or m.shape[0] != len(layers) or m.shape[1] < 2:
    raise ValueError("by_layer must be [len(layers), P >= 2]")
  perm = np.random.default_rng(seed).permutation(m.shape[1])
  sel, test = perm[: m.shape[1] // 2], perm[m.shape[1] // 2:]
  i = _argmax_first(m[:, sel].mean(1))
  held = m[i, test]
  if np.all((held == 0) | (held == 1)):
    lo, hi = wilson_interval(int(held.sum()), held.size)
  else:
    _, lo, hi = cluster_bootstrap(held[None, :], seed=seed)
  return {"layer": int(layers[i]), "selection_mean": float(m[i, sel].mean()),
          "estimate": float(held.mean()), "lo": float(lo), "hi": float(hi),
          "n_select": int(sel.size), "n_test": int(test.size)}


def best_layer_spread(by_layer, layers: Sequence[int], n_layers: int,
                      n_boot: int = 2000, seed: int = 0) -> dict:
  """How stable the argmax layer is: resample prompts, take the argmax of
  the layer means each time.

  Returns {"layer" (argmax on all prompts), "depth", "depth_lo",
  "depth_hi" (2.5/97.5 percentiles of the resampled argmax depth),
  "win_share": {layer: share of resamples it won}}.
  """
  m = np.asarray(by_layer, dtype=np.float64)  # [L, P]
  if m.ndim != 2 or m.shape[0] != len(layers):
    raise ValueError("by_layer must be [len(layers), P]")
  layers = np.asarray(layers)
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, m.shape[1], size=(n_boot, m.shape[1]))  # [B, P]
  means = m[:, idx].mean(-1)  # [L, B]
  wins = np.array([_argmax_first(means[:, b]) for b in range(n_boot)])
  depth = layers[wins] / n_layers
  lo, hi = np.percentile(depth, [2.5, 97.5])
  best = _argmax_first(m.mean(1))
  share = {int(layers[i]): float(np.mean(wins == i))
           for i in np.unique(wins)}
  return {"layer": int(layers[best]), "depth": float(layers[best] / n_layers),
          "depth_lo": float(lo), "depth_hi": float(hi), "win_share": share}
