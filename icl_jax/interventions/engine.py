"""The vectorized intervention engine.

One jit-compiled program per (target set shape, decode settings) evaluates a
batch of cells (position mask x edit values x ...) at one layer over all N
target prompts and greedily decodes every (cell, prompt) row. The layer is a
traced scalar, so every layer reuses the same compiled program.

What is never recomputed:
  * layers <= L: the patch at block L's output cannot change them. Cells start
    from the clean residual at index L+1 (computed once per target set) and
    run blocks L+1..n-1 only (a `fori_loop` with a dynamic start);
  * tokens before the first edited slot of a chunk: they keep their clean
    K/V at every layer (causal attention), so the prefix phase starts there;
  * the shared demo block: the N target prompts of a task differ only in
    their query. Their longest common token prefix (P tokens) is run once per
    cell ("prefix phase"); each prompt then runs only its query tokens
    ("query phase") against that cell's prefix K/V;
  * decoding stops as soon as every row has finished its first line, never
    runs the forward after the last token, and (on CPU) gathers the rows
    still running into smaller batches as others finish;
  * logits are computed only at the last prompt position and at decode steps.

Per-target cells (`CellBatch.target_mask` [C,N,T] / `target_seed` [C,N]:
each prompt its own positions and noise draw, e.g. fresh noise per
generation) run in the same call: their prefix phase runs per (cell,
prompt) when it is edited, as the prompts' prefixes then differ.

Cells are split into chunks that fit a memory budget, and the cell axis is
sharded over all visible devices (`jax.sharding.Mesh` + `NamedSharding`), so
the same call runs on one CPU, one GPU or a TPU slice; chunking and sharding
do not change results.

Modules: `sweep` (the device programs: clean run, one layer's sweep),
`decode` (greedy decoding with per-step block callbacks), `sharding` (mesh,
replicas, chunks); this module keeps the host-side orchestration and
re-exports their public names.

Layout of a target set: slots [0, P) hold the shared prefix, slots
[P, P+Q) the right-padded query tokens, slots [P+Q, P+Q+max_new) generated
tokens. Positions equal slot indices for prompt tokens (so the study's
absolute indices address the same tokens), padding slots get key position -1.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import jax
import jax.numpy as jnp

from icl_jax.models import work_meter
from icl_jax.interventions import sharding
from icl_jax.interventions.decode import greedy_decode
from icl_jax.interventions.distributed import to_host
from icl_jax.interventions.sharding import default_memory_budget
from icl_jax.interventions.spec import TIMINGS, CellBatch
from icl_jax.interventions.sweep import clean_run, sweep_layer
from icl_jax.models.generation import default_compaction

__all__ = [
    "CellBatch", "Engine", "PREFIX_STEP", "SweepResult", "TargetSet",
    "clean_run", "common_prefix_len", "default_memory_budget",
    "greedy_decode", "prefix_start", "sweep_layer",
]


@dataclasses.dataclass
class TargetSet:
  """N target prompts split into a shared prefix and per-prompt queries."""

  token_ids: list[list[int]]
  prefix_len: int  # P
  query_len: int  # Q (max)
  q_ids: np.ndarray  # [N,Q]
  q_len: np.ndarray  # [N]
  clean: dict  # clean_run output (device arrays)
  prompts: list[str] | None = None

  @property
  def n(self) -> int:
    return len(self.token_ids)

  @property
  def slots(self) -> int:
    """T = P + Q: the length of position masks for this target set."""
    return self.prefix_len + self.query_len

  @property
  def lengths(self) -> np.ndarray:
    return self.prefix_len + self.q_len

  def residual(self, index: int) -> np.ndarray:
    """Clean residual at residual index [N,T,D] in slot coordinates."""
    pre = to_host(self.clean["prefix_resid"][index])
    q = to_host(self.clean["query_resid"][index])
    return np.concatenate(
        [np.broadcast_to(pre, (self.n,) + pre.shape), q], axis=1)


@dataclasses.dataclass
class SweepResult:
  tokens: np.ndarray  # [C,N,max_new]
  n_gen: np.ndarray  # [C,N]
  texts: list[list[str]]  # [C][N]
  delta: np.ndarray  # [C]: max |edited - clean| residual at the edited layer
  n_positions: np.ndarray  # [C]: masked positions
  first_logits: np.ndarray | None = None  # [C,N,V]

  @property
  def changed(self) -> np.ndarray:
    """Per cell: did the patch change the residual at all?"""
    return self.delta > 0


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
  """Longest common token prefix, leaving every sequence >= 1 query token."""
  n = min(len(s) for s in seqs) - 1
  first = seqs[0]
  p = 0
  while p < n and all(s[p] == first[p] for s in seqs):
    p += 1
  return p


# prefix_start is rounded down to a multiple of this (each value compiles
# its own sweep_layer).
PREFIX_STEP = 16


def prefix_start(mask: np.ndarray, prefix_len: int) -> int:
  """First prefix slot any cell of `mask` [C,T] edits, rounded down to a
  multiple of PREFIX_STEP; prefix_len if no cell edits the prefix."""
  edited = np.nonzero(mask[:, :prefix_len].any(axis=0))[0]
  if len(edited) == 0:
    return prefix_len
  return int(edited[0]) // PREFIX_STEP * PREFIX_STEP


class Engine:
  """Runs patch sweeps for one model with fixed decode settings."""

  def __init__(self, lm, max_new_tokens: int = 8, stop: str = "line",
               timing: str = "prefill", memory_budget: int | None = None,
               devices=None, chunk_cells: int | None = None,
               compact_min_rows: int | None = None):
    """compact_min_rows: decode compaction (see `greedy_loop`); None picks
    the backend's default (on for CPU, off for accelerators), 0 is off."""
    if timing not in TIMINGS:
      raise ValueError(f"unknown timing {timing!r}; known: {TIMINGS}")
    self.lm = lm
    self.cfg = lm.config
    self.max_new_tokens = int(max_new_tokens)
    self.stop = stop
    self.timing = timing
    # Every device of every process (jax.distributed: the global mesh).
    self.devices = list(devices or jax.devices())
    self.memory_budget = memory_budget or default_memory_budget(self.devices)
    self.mesh = sharding.cell_mesh(self.devices)
    self.chunk_cells = chunk_cells
    self.compact_min_rows = (default_compaction() if compact_min_rows is None
                             else int(compact_min_rows))

  @property
  def params(self):
    """lm.params replicated over the devices, made once per model and
    device set for all its engines; the model object is not changed."""
    return sharding.replicated_params(self.lm, self.devices, self.mesh)

  # -- targets --------------------------------------------------------------
  def prepare(self, prompts: Sequence[str] | None = None,
              token_ids: Sequence[Sequence[int]] | None = None,
              prefix_len: int | None = None,
              query_len: int | None = None) -> TargetSet:
    """Tokenizes target prompts and runs them once, clean.

    prefix_len (<= the common prefix) / query_len (>= the longest query)
    force the slot layout, e.g. so that one-prompt target sets share one
    compiled program; slots still equal token indices.
    """
    if token_ids is None:
      if prompts is None:
        raise ValueError("give prompts or token_ids")
      token_ids = [self.lm.tokenizer(p, add_special_tokens=True)["input_ids"]
                   for p in prompts]
    token_ids = [list(map(int, s)) for s in token_ids]
    if not token_ids or min(len(s) for s in token_ids) == 0:
      raise ValueError("empty target prompt")
    longest = max(len(s) for s in token_ids)
    self.lm.check_length(longest + self.max_new_tokens,
                         "target prompt plus max_new_tokens")
    P = common_prefix_len(token_ids)
    if prefix_len is not None and not 0 <= prefix_len <= P:
      raise ValueError(f"prefix_len={prefix_len} outside [0, {P}]")
    P = P if prefix_len is None else int(prefix_len)
    qs = [s[P:] for s in token_ids]
    Q = max(max(len(q) for q in qs), int(query_len or 0))
    q_ids = np.zeros((len(qs), Q), np.int32)
    for i, q in enumerate(qs):
      q_ids[i, :len(q)] = q
    q_len = np.array([len(q) for q in qs], np.int32)
    with work_meter.metered("engine", 0):  # the clean run before the cells
      clean = clean_run(self.cfg, self.params,
                        jnp.asarray(token_ids[0][:P], jnp.int32),
                        jnp.asarray(q_ids), jnp.asarray(q_len))
      jax.block_until_ready(clean)
    return TargetSet(token_ids, P, Q, q_ids, q_len, clean,
                     list(prompts) if prompts is not None else None)

  def capture(self, prompts: Sequence[str] | None = None,
              token_ids: Sequence[Sequence[int]] | None = None):
    """Source capture: residuals [L+1,B,T,D] at absolute positions.

    One forward over the (left-padded) batch; rows are re-aligned so index t
    is the t-th token of each prompt (zeros past a row's length).
    Returns (residuals, lengths [B]).
    """
    if token_ids is None:
      token_ids = [self.lm.tokenizer(p, add_special_tokens=True)["input_ids"]
                   for p in prompts]
    ids, mask, lengths = self.lm.pad_left(token_ids)
    res = np.asarray(self.lm(ids, mask, return_residuals=True,
                             logits=None).residuals)
    T = ids.shape[1]
    out = np.zeros_like(res)
    for b, n in enumerate(lengths):
      out[:, b, :n] = res[:, b, T - n:]
    return out, lengths

  # -- sweeps ---------------------------------------------------------------
  def _row_bytes(self, targets: TargetSet) -> int:
    return sharding.row_bytes(self.cfg, targets.slots, self.max_new_tokens,
                              self.lm.dtype)

  def chunk_size(self, targets: TargetSet, per_target: bool = False) -> int:
    """Cells per chunk; per-target cells hold N noise draws and N edited
    prefix caches each."""
    draws = targets.n if per_target else 1
    per_cell = (targets.n + draws - 1) * self._row_bytes(targets) + (
        draws * targets.slots * self.cfg.d_model * 8)
    return sharding.chunk_cells(per_cell, self.memory_budget,
                                len(self.devices), self.chunk_cells)

  def _check_cells(self, targets: TargetSet, cells: CellBatch) -> CellBatch:
    L = self.cfg.n_layers
    bad = [int(l) for l in np.unique(cells.layer) if not -1 <= l < L]
    if bad:
      raise ValueError(f"layer(s) {bad} outside the model (0..{L - 1}, or -1 "
                       "for the embedding output)")
    if ((cells.c != 0) & (cells.layer < 0)).any():
      raise ValueError("skip edits need a block (layer >= 0)")
    T = targets.slots
    mask, values, tmask = cells.mask, cells.values, cells.target_mask
    if tmask is not None and tmask.shape[1] != targets.n:
      raise ValueError(f"per-target cells for {tmask.shape[1]} targets, "
                       f"the target set has {targets.n}")
    if mask.shape[1] > T:
      if mask[:, T:].any():
        last = int(np.nonzero(mask.any(0))[0].max())
        raise ValueError(
            f"position {last} out of range: the target prompts have at most "
            f"{T} tokens (drop out-of-range indices first, as faithful mode "
            "does)")
      mask, values = mask[:, :T], values[:, :T]
      tmask = None if tmask is None else tmask[:, :, :T]
    elif mask.shape[1] < T:
      padw = T - mask.shape[1]
      mask = np.pad(mask, ((0, 0), (0, padw)))
      values = np.pad(values, ((0, 0), (0, padw), (0, 0)))
      tmask = None if tmask is None else np.pad(tmask,
                                                ((0, 0), (0, 0), (0, padw)))
    if not np.isfinite(values).all():
      raise ValueError("patch values contain NaN or inf")
    heads = cells.heads
    if heads.shape[1] > self.cfg.n_heads:
      raise ValueError(f"head index {heads.shape[1] - 1} outside the model "
                       f"({self.cfg.n_heads} heads)")
    heads = np.pad(heads, ((0, 0), (0, self.cfg.n_heads - heads.shape[1])))
    return dataclasses.replace(cells, mask=mask, values=values, heads=heads,
                               target_mask=tmask)

  def run(self, targets: TargetSet, cells: CellBatch,
          return_logits: bool = False, progress: bool = False) -> SweepResult:
    """Evaluates every cell on every target prompt."""
    cells = self._check_cells(targets, cells)
    with work_meter.metered("engine", len(cells) * targets.n):
      return self._run(targets, cells, return_logits, progress)

  def _run(self, targets, cells, return_logits, progress) -> SweepResult:
    C = len(cells)
    chunk = self.chunk_size(targets, cells.per_target)
    tables = self.lm.stop_tables.as_arrays()
    repl = sharding.replicated(self.mesh)
    q_len = jax.device_put(jnp.asarray(targets.q_len), repl)
    clean = {k: v for k, v in targets.clean.items() if k != "first_logits"}
    clean = jax.device_put(clean, repl)
    out = {"tokens": np.zeros((C, targets.n, self.max_new_tokens), np.int32),
           "n_gen": np.zeros((C, targets.n), np.int32),
           "delta": np.zeros((C,), np.float32)}
    if return_logits:
      out["first_logits"] = np.zeros((C, targets.n, self.cfg.vocab_size),
                                     np.float32)
    bar = None
    if progress:
      from tqdm import tqdm

      bar = tqdm(total=C, desc="cells", unit="cell")
    # Chunks share a layer and a site (both are per-program): grouped by
    # the key site * (L + 1) + layer + 1.
    key = cells.site.astype(np.int64) * (self.cfg.n_layers + 1) + cells.layer
    for _, idx in sharding.chunk_work(key + 1, chunk):
      layer = int(cells.layer[idx[0]])
      with work_meter.batch("engine", len(idx) * targets.n):
        res = self._run_chunk(targets, cells, layer, idx, chunk,
                              (clean, q_len, tables), return_logits)
        for k, v in out.items():
          v[idx] = to_host(res[k])[:len(idx)]  # all-gathered over processes
      if bar is not None:
        bar.update(len(idx))
    if bar is not None:
      bar.close()
    texts = self._decode(out["tokens"], out["n_gen"])
    return SweepResult(out["tokens"], out["n_gen"], texts, out["delta"],
                       cells.mask.sum(1).astype(np.int32),
                       out.get("first_logits"))

  def _run_chunk(self, targets, cells, layer, idx, chunk, device_args,
                 return_logits):
    """sweep_layer on the cells `idx` (all at `layer`), padded to a
    static size with no-op cells (empty masks); device_args = (clean,
    q_len, stop tables)."""
    clean, q_len, tables = device_args
    size = sharding.padded_size(len(idx), chunk, len(self.devices))
    take = np.concatenate([idx, np.full(size - len(idx), idx[0])])
    sub = cells.take(take)
    sub.mask[len(idx):] = False
    if sub.per_target:
      sub.target_mask[len(idx):] = False
    shard = sharding.sharded_cells(self.mesh)
    arrays = {f.name: jax.device_put(jnp.asarray(getattr(sub, f.name)), shard)
              for f in dataclasses.fields(sub)
              if f.name not in ("layer", "site")
              and getattr(sub, f.name) is not None}
    return sweep_layer(self.cfg, self.params, jnp.int32(layer), clean, q_len,
                       arrays, tables, self.max_new_tokens, self.stop,
                       self.timing, return_logits, self.compact_min_rows,
                       prefix_start(sub.mask, targets.prefix_len),
                       int(sub.site[0]))

  def _decode(self, tokens, n_gen):
    if self.lm.tokenizer is None:
      return [["" for _ in row] for row in tokens]
    return [self.lm.decode_generated(tokens[c], n_gen[c])
            for c in range(tokens.shape[0])]

  def baseline(self, targets: TargetSet) -> SweepResult:
    """Clean continuations of the targets (one cell with an empty mask)."""
    from icl_jax.interventions.spec import make_cells

    cells = make_cells("zero", [0], np.zeros((1, targets.slots), bool),
                       self.cfg.d_model)
    return self.run(targets, cells)
