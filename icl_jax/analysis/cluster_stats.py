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
* `prompt_columns` / `pooled_rate`: the cells of several pairs on one
  [cells, distinct prompts] matrix (NaN where a cell did not score a
  prompt) and their pooled rate with a prompt-resampling interval.
* `layer_prompt_matrix`: the [layers, pairs x prompts] outcomes that
  `split_half_best` and `best_layer_spread` read.
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


def prompt_columns(rows: Sequence[dict], label: str = "transfer"):
  """(matrix, strata): matrix [len(rows), P] over every distinct prompt of
  the rows (a prompt = (target task, index, query): pairs with the same
  target task reuse one prompt set), 1.0 where that row's prompt was
  `label`, NaN where the row did not score it; strata [P] numbers the target
  tasks (different prompt sets). Rows without examples are skipped."""
  rows = [r for r in rows if r.get("examples")]
  cols: dict[tuple, int] = {}
  for r in rows:
    for i, ex in enumerate(r["examples"]):
      cols.setdefault((str(r.get("target_task")), i, ex.get("query")),
                      len(cols))
  m = np.full((len(rows), len(cols)), np.nan)  # [cells, P]
  for c, r in enumerate(rows):
    for i, ex in enumerate(r["examples"]):
      key = (str(r.get("target_task")), i, ex.get("query"))
      m[c, cols[key]] = float(ex.get("label") == label)
  tasks = sorted({k[0] for k in cols})
  strata = np.array([tasks.index(k[0]) for k in cols], dtype=np.int64)
  return m, strata


def pooled_rate(rows: Sequence[dict], label: str = "transfer",
                seed: int = 0) -> dict | None:
  """Pooled rate of `label` over the cells `rows` with a 95% interval that
  resamples prompts (`cluster_bootstrap` over `prompt_columns`). Where the
  bootstrap is degenerate (no prompt, or every prompt, was `label`) the
  interval is widened to Wilson's at the number of distinct prompts (the
  independent units), never at the number of cells x prompts.

  Returns {"mean", "lo", "hi", "prompts", "cells", "k_cells" (cells with
  any `label`)} or None when no row holds examples."""
  m, strata = prompt_columns(rows, label)
  if m.size == 0:
    return None
  mu, lo, hi = cluster_bootstrap(m, strata, seed=seed)
  p = m.shape[1]
  wlo, whi = wilson_interval(int(round(mu * p)), p)
  if lo == hi:
    lo, hi = min(lo, wlo), max(hi, whi)
  return {"mean": mu, "lo": lo, "hi": hi, "prompts": p, "cells": m.shape[0],
          "k_cells": int(np.sum(np.nansum(m, 1) > 0))}


def layer_prompt_matrix(rows: Sequence[dict], label: str = "transfer"):
  """(layers, by_layer [L, P]): per prompt column (pair x prompt index) the
  outcome at each layer, for `split_half_best` / `best_layer_spread`. Every
  (pair, layer) cell must score the same N prompts; pairs missing a layer
  make that layer NaN for their columns, and such layers are dropped."""
  pairs = sorted({(str(r.get("source_task")), str(r.get("target_task")))
                  for r in rows if r.get("examples")})
  layers = sorted({r["layer"] for r in rows if isinstance(r.get("layer"),
                                                          int)})
  cell = {(str(r.get("source_task")), str(r.get("target_task")),
           r.get("layer")): r for r in rows if r.get("examples")}
  n = max((len(r["examples"]) for r in cell.values()), default=0)
  m = np.full((len(layers), len(pairs) * n), np.nan)  # [L, pairs * N]
  for li, layer in enumerate(layers):
    for pi, (s, t) in enumerate(pairs):
      r = cell.get((s, t, layer))
      if r is not None and len(r["examples"]) == n:
        m[li, pi * n:(pi + 1) * n] = [float(ex.get("label") == label)
                                      for ex in r["examples"]]
  keep = np.all(np.isfinite(m), axis=1)
  return [l for l, k in zip(layers, keep) if k], m[keep]
