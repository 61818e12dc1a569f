"""Layer x position-set x prompt grids of patches, and locating tokens.

    grid = icl_jax.patch_grid(lm, targets, {"last": [-1], "query": q},
                              sources=sources, answer_tokens=answers)
    plt.imshow(grid.mean().T)          # [sets, layers], averaged on prompts
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from icl_jax.interventions.api import Patch, token_ids
from icl_jax.interventions.patching import (PatchResults, layer_list,
                                            capture, run_patches)

METRICS = ("logprob", "prob", "logprob_change", "first_token_changed",
           "text_changed")


@dataclasses.dataclass(eq=False)
class Grid:
  """One patch per (layer, position set), run on every prompt.

  values float [Lg,S,N]: the metric; first_token int [Lg,S,N]; logprob
  [Lg,S,N] (log-prob of each prompt's first answer token, with
  answer_tokens); texts [Lg][S][N]; clean_texts [N] / clean_logprob [N]:
  the unpatched prompts; results: the underlying PatchResults, patch
  k = layer_index * S + set_index.
  """

  layers: np.ndarray  # int [Lg], block indices
  sets: list  # [S] position-set names
  metric: str
  values: np.ndarray  # [Lg,S,N]
  first_token: np.ndarray  # [Lg,S,N]
  texts: list  # [Lg][S][N]
  logprob: np.ndarray | None
  clean_texts: list
  clean_logprob: np.ndarray | None
  results: PatchResults

  def mean(self) -> np.ndarray:
    """The metric averaged over prompts: [layers, sets]."""
    return self.values.mean(-1)

  def table(self) -> list:
    """One dict per (layer, set, prompt): layer, set, prompt, value, text,
    clean_text, first_token (+ logprob, clean_logprob)."""
    rows = []
    for a, layer in enumerate(self.layers):
      for b, name in enumerate(self.sets):
        for n in range(self.values.shape[2]):
          rows.append(_row(self, a, b, n, layer, name,
                           float(self.values[a, b, n])))
    return rows


def _row(g, a, b, n, layer, name, value=None):
  r = dict(layer=int(layer), set=name, prompt=n, value=value,
           text=g.texts[a][b][n], clean_text=g.clean_texts[n],
           first_token=int(g.first_token[a, b, n]))
  if g.logprob is not None:
    r["logprob"] = float(g.logprob[a, b, n])
    r["clean_logprob"] = float(g.clean_logprob[n])
  return r


def _named_sets(position_sets) -> dict:
  if isinstance(position_sets, dict):
    out = dict(position_sets)
  else:
    out = {str(s): s for s in position_sets}
  if not out:
    raise ValueError("no position sets")
  return out


def _source_patches(lm, sources, n, layers, sets, source_sets):
  """Replace patches with the sources' own activations at each layer and
  set: one source (shared by all prompts) or one per prompt."""
  if len(sources) not in (1, n):
    raise ValueError(f"{len(sources)} sources for {n} prompts (give one, "
                     "or one per prompt)")
  src = source_sets or {}
  unknown = set(src) - set(sets)
  if unknown:
    raise ValueError(f"source_sets names {sorted(unknown)} are not "
                     "position sets")
  acts = capture(lm, sources, layers)
  patches = []
  for layer in layers:
    for name, spec in sets.items():
      vals = acts.values(layer, src.get(name, spec))
      vals = vals[0] if len(sources) == 1 else vals
      patches.append(Patch.replace(layer, spec, vals,
                                   name=f"{name}@{layer}"))
  return patches


def _metric_values(metric, g: Grid) -> np.ndarray:
  Lg, S, N = g.first_token.shape
  if callable(metric):
    out = np.zeros((Lg, S, N), np.float32)
    for a in range(Lg):
      for b in range(S):
        for n in range(N):
          out[a, b, n] = metric(_row(g, a, b, n, g.layers[a], g.sets[b]))
    return out
  if metric in ("logprob", "prob", "logprob_change") and g.logprob is None:
    raise ValueError(f"metric {metric!r} needs answer_tokens")
  if metric == "logprob":
    return g.logprob
  if metric == "prob":
    return np.exp(g.logprob)
  if metric == "logprob_change":
    return g.logprob - g.clean_logprob
  clean = g.results.clean
  if metric == "first_token_changed":
    return (g.first_token != clean.first_token[0]).astype(np.float32)
  if metric == "text_changed":
    return np.array([[[t.strip() != c.strip()
                       for t, c in zip(row, g.clean_texts)]
                      for row in rows] for rows in g.texts], np.float32)
  raise ValueError(f"unknown metric {metric!r}; known: {METRICS} or a "
                   "callable(row dict) -> float")


def patch_grid(lm, prompts, position_sets, layers="all", *, sources=None,
               source_sets: dict | None = None,
               patch: Callable | None = None, answer_tokens=None,
               metric=None, max_new_tokens: int = 1,
               timing: str = "prefill", stop: str = "line",
               **engine_options) -> Grid:
  """Every layer x every position set x every prompt, in one sweep.

  Args:
    prompts: N target prompts (strings or token id lists).
    position_sets: {name: positions} (or a list of specs): token indices of
      each target prompt (negative: from its end; see `Patch`).
    layers: block indices, or "all" (0..n_layers-1; add -1 for the
      embedding output explicitly).
    sources: one source prompt, or one per target prompt: each patch
      replaces the residual with the source's at the same layer, at the
      set's positions resolved in the source (`source_sets` {name:
      positions} gives other source positions; counts must match).
    patch: instead of sources, `patch(layer, positions) -> Patch`, e.g.
      `lambda l, p: Patch.noise(l, p, 0.5, relative=True)`.
    answer_tokens: see `run_patches`; enables the log-prob metrics.
    metric: one of METRICS or callable(row) -> float over a `Grid.table`
      row; default "logprob" with answer_tokens, else
      "first_token_changed" (vs the clean run).
    max_new_tokens, timing, stop, engine_options: see `run_patches`.
  Returns:
    Grid with values [len(layers), len(sets), N].
  """
  if (sources is None) == (patch is None):
    raise ValueError("give exactly one of sources= and patch=")
  if metric in METRICS[:3] and answer_tokens is None:
    raise ValueError(f"metric {metric!r} needs answer_tokens")
  n = len(token_ids(lm, prompts))
  layers = layer_list(lm, layers, lowest=0)
  sets = _named_sets(position_sets)
  if sources is not None:
    patches = _source_patches(lm, list(sources), n, layers, sets,
                              source_sets)
  else:
    patches = [patch(layer, spec) for layer in layers
               for spec in sets.values()]
  res = run_patches(lm, prompts, patches, max_new_tokens=max_new_tokens,
                    timing=timing, stop=stop, answer_tokens=answer_tokens,
                    baseline=True, **engine_options)
  Lg, S = len(layers), len(sets)
  shape = (Lg, S, n)
  lp = (None if res.answer_logprobs is None
        else res.answer_logprobs[..., 0].reshape(shape))
  g = Grid(np.asarray(layers), list(sets), "", np.zeros(shape, np.float32),
           res.first_token.reshape(shape),
           [[res.texts[a * S + b] for b in range(S)] for a in range(Lg)],
           lp, res.clean.texts[0],
           None if lp is None else res.clean.answer_logprobs[0, :, 0], res)
  g.metric = (metric if isinstance(metric, str) else
              getattr(metric, "__name__", "custom") if metric else
              "logprob" if lp is not None else "first_token_changed")
  g.values = np.asarray(_metric_values(metric or g.metric, g), np.float32)
  return g


def find_positions(lm, prompt: str, text: str,
                   occurrence: int = 0) -> list:
  """Token indices (as the tokenizer returns `prompt`) of the tokens that
  overlap the `occurrence`-th match of `text` in `prompt` (-1: the last).
  Needs a fast tokenizer (character offsets)."""
  tok = lm.tokenizer
  if tok is None or not getattr(tok, "is_fast", False):
    raise ValueError("find_positions needs a model with a fast tokenizer")
  starts, i = [], prompt.find(text)
  while i >= 0 and text:
    starts.append(i)
    i = prompt.find(text, i + 1)
  if not starts:
    raise ValueError(f"{text!r} does not occur in the prompt")
  try:
    start = starts[occurrence]
  except IndexError:
    raise ValueError(f"{text!r} occurs {len(starts)} times; no occurrence "
                     f"{occurrence}") from None
  end = start + len(text)
  enc = tok(prompt, add_special_tokens=True, return_offsets_mapping=True)
  return [t for t, (a, b) in enumerate(enc["offset_mapping"])
          if b > a and a < end and b > start]
