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

Cells are split into chunks that fit a memory budget, and the cell axis is
sharded over all visible devices (`jax.sharding.Mesh` + `NamedSharding`), so
the same call runs on one CPU, one GPU or a TPU slice; chunking and sharding
do not change results.

Layout of a target set: slots [0, P) hold the shared prefix, slots
[P, P+Q) the right-padded query tokens, slots [P+Q, P+Q+max_new) generated
tokens. Positions equal slot indices for prompt tokens (so the study's
absolute indices address the same tokens), padding slots get key position -1.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import weakref
from typing import Sequence

import numpy as np
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from icl_jax.interventions.spec import TIMINGS, CellBatch, apply_edit
from icl_jax.models.config import DecoderConfig
from icl_jax.models.decoder import Block, Decoder, rope_tables
from icl_jax.models.generation import (default_compaction, greedy_loop,
                                       take_cache_rows)


# --------------------------------------------------------------------------
# Device-side building blocks
# --------------------------------------------------------------------------

def _dtype(params):
  return jax.tree_util.tree_leaves(params)[0].dtype


def run_layers(cfg: DecoderConfig, params, x, start, stop, q_pos, key_pos,
               cache, slots, *, key_pos_alt=None, alt_lo=0, alt_hi=0,
               skip=None):
  """Runs blocks [start, stop) on x [B,T,D] (the input of block `start`).

  `start`/`stop` may be traced scalars (fori_loop with dynamic bounds). Each
  block writes its K/V for the chunk into cache {"k","v": [L,B,S,K,H]} at
  `slots` [B,T]; keys are attended per `key_pos` [B,S] (see decoder.py).

  Edits of `blockwise` (the default None leaves the program unchanged):
  blocks in [alt_lo, alt_hi) attend per `key_pos_alt` instead; `skip[l]`
  (bool [n_layers]) replaces block l's output by its input (its K/V are
  still computed from that input).
  """
  stacked = params["layers"]["block"]
  is_sliding = jnp.asarray(cfg.is_sliding)
  block = Block(cfg, _dtype(params))
  rope = rope_tables(cfg, q_pos)

  def body(l, carry):
    x, cache = carry
    p = jax.tree_util.tree_map(
        lambda a: jax.lax.dynamic_index_in_dim(a, l, 0, keepdims=False),
        stacked)
    kv = {n: jax.lax.dynamic_index_in_dim(cache[n], l, 0, keepdims=False)
          for n in ("k", "v")}
    kp = key_pos
    if key_pos_alt is not None:
      kp = jnp.where((l >= alt_lo) & (l < alt_hi), key_pos_alt, key_pos)
    y, new_kv = block.apply({"params": p}, x, is_sliding[l], kv, rope, q_pos,
                            kp, slots)
    if skip is not None:
      y = jnp.where(skip[l], x, y)
    cache = {n: jax.lax.dynamic_update_index_in_dim(cache[n], new_kv[n], l, 0)
             for n in ("k", "v")}
    return y, cache

  return jax.lax.fori_loop(start, stop, body, (x, cache))


def greedy_decode(cfg: DecoderConfig, params, first_logits, cache, key_pos,
                  row_len, gen_slot, max_new_tokens: int, tables, stop_rule,
                  step_layers, compact_min_rows: int = 0):
  """Greedy decoding of R rows until every row stops or max_new_tokens.

  Token t is written at slot `gen_slot + t` (position `row_len + t`);
  `step_layers(tok [R'], pos [R'], slot, key_pos, cache, t, rows [R']) ->
  (x [R',1,D], cache)` runs the blocks on it for the rows `rows` (indices
  into the R rows; fewer once finished rows are compacted away, see
  `greedy_loop`; the forward after the last token is never run). Returns
  (tokens [R,M] (0 after a row stopped), n_gen [R]).
  """

  def forward(tok, t, carry, rows):
    cache, key_pos = carry
    pos = row_len[rows] + t
    key_pos = key_pos.at[:, gen_slot + t].set(pos)
    x, cache = step_layers(tok, pos, gen_slot + t, key_pos, cache, t, rows)
    return _logits(cfg, params, x)[:, 0], (cache, key_pos)

  tokens, n_gen, _ = greedy_loop(first_logits, max_new_tokens, tables,
                                 stop_rule, forward, (cache, key_pos),
                                 take_rows=take_cache_rows,
                                 compact_min_rows=compact_min_rows)
  return tokens, n_gen


def _embed(cfg, params, tokens):
  return Decoder(cfg, _dtype(params)).apply(
      {"params": params}, tokens, method=lambda m, t: m.embed_tokens(t))


def _logits(cfg, params, x):
  """x [B,T,D] block-stack output -> fp32 logits [B,T,V]."""
  return Decoder(cfg, _dtype(params)).apply(
      {"params": params}, x, method=lambda m, h: m.unembed(m.final_norm(h)))


@functools.partial(jax.jit, static_argnames=("cfg",))
def clean_run(cfg: DecoderConfig, params, prefix_ids, q_ids, q_len):
  """Clean residuals and K/V of a target set.

  Args:
    prefix_ids: int [P] shared prefix; q_ids: int [N,Q] right-padded queries;
    q_len: int [N].
  Returns dict: prefix_resid [L+1,P,D], prefix_k/v [L,P,K,H],
    query_resid [L+1,N,Q,D], query_k/v [L,N,Q,K,H], first_logits [N,V].
  """
  from icl_jax.models.decoder import collect_residuals

  dt = _dtype(params)
  L, K, H = cfg.n_layers, cfg.n_kv_heads, cfg.head_dim
  P = prefix_ids.shape[0]
  N, Q = q_ids.shape
  model = Decoder(cfg, dt)
  out = {}
  if P > 0:
    pos = jnp.arange(P)[None]
    cache = {n: jnp.zeros((L, 1, P, K, H), dt) for n in ("k", "v")}
    (_, cache), inter = model.apply(
        {"params": params}, prefix_ids[None], pos, pos, cache=cache,
        slots=pos, compute_logits=False, mutable=["intermediates"])
    out["prefix_resid"] = collect_residuals(inter["intermediates"])[:, 0]
    out["prefix_k"], out["prefix_v"] = cache["k"][:, 0], cache["v"][:, 0]
  else:
    out["prefix_resid"] = jnp.zeros((L + 1, 0, cfg.d_model), dt)
    out["prefix_k"] = out["prefix_v"] = jnp.zeros((L, 0, K, H), dt)
  q_pos = jnp.broadcast_to(P + jnp.arange(Q), (N, Q))
  q_keys = jnp.where(jnp.arange(Q)[None] < q_len[:, None], q_pos, -1)
  key_pos = jnp.concatenate(
      [jnp.broadcast_to(jnp.arange(P), (N, P)), q_keys], axis=1)
  cache = {n: jnp.concatenate(
      [jnp.broadcast_to(out[f"prefix_{n}"][:, None], (L, N, P, K, H)),
       jnp.zeros((L, N, Q, K, H), dt)], axis=2) for n in ("k", "v")}
  (_, cache), inter = model.apply(
      {"params": params}, q_ids, q_pos, key_pos, cache=cache, slots=q_pos,
      compute_logits=False, mutable=["intermediates"])
  res = collect_residuals(inter["intermediates"])  # [L+1,N,Q,D]
  out["query_resid"] = res
  out["query_k"], out["query_v"] = cache["k"][:, :, P:], cache["v"][:, :, P:]
  last = res[-1][jnp.arange(N), q_len - 1]  # [N,D]
  out["first_logits"] = _logits(cfg, params, last[:, None])[:, 0]
  return out


def _noise(seed, shape):
  return jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float32)


@functools.partial(jax.jit, static_argnames=(
    "cfg", "max_new_tokens", "stop_rule", "timing", "want_logits",
    "compact_min_rows", "prefix_start"))
def sweep_layer(cfg: DecoderConfig, params, layer, clean, q_len, cells,
                tables, max_new_tokens: int, stop_rule: str, timing: str,
                want_logits: bool = False, compact_min_rows: int = 0,
                prefix_start: int = 0):
  """All cells of one layer over all target prompts, decoded greedily.

  Args:
    layer: int scalar (traced), block whose output is edited (-1: embeddings).
    clean: output of `clean_run` (without first_logits).
    q_len: int [N].
    cells: dict of CellBatch arrays with leading axis C (layer excluded).
    tables: StopTables.as_arrays().
    compact_min_rows: decode compaction (`greedy_loop`); 0 = off.
    prefix_start: static; no cell edits a prefix slot before it, so those
      tokens keep their clean K/V and the prefix phase runs [prefix_start, P)
      only (`Engine.run` passes the chunk's first edited slot, rounded down).
  Returns dict: tokens [C,N,max_new], n_gen [C,N], delta [C] (max |edit|),
    first_logits [C,N,V] (if want_logits).
  """
  dt = _dtype(params)
  L, K, H, D = cfg.n_layers, cfg.n_kv_heads, cfg.head_dim, cfg.d_model
  P = clean["prefix_resid"].shape[1]
  _, N, Q, _ = clean["query_resid"].shape
  T = P + Q
  S = T + max_new_tokens
  C = cells["mask"].shape[0]
  start = layer + 1
  inp_idx = jnp.maximum(layer, 0)  # block input (only used by `skip`)
  noise = jax.vmap(lambda s: _noise(s, (T, D)))(cells["seed"])  # [C,T,D]
  edit_args = (cells["a"], cells["c"], cells["sigma"], cells["relative"])

  # ---- prefix phase: once per cell ---------------------------------------
  def prefix_cell(mask, values, a, c, sigma, rel, nz):
    out = jax.lax.dynamic_index_in_dim(clean["prefix_resid"], start, 0, False)
    inp = jax.lax.dynamic_index_in_dim(clean["prefix_resid"], inp_idx, 0,
                                       False)
    x, delta = apply_edit(out, inp, mask[:P], values[:P], a, c, sigma, rel,
                          nz[:P])
    # Tokens before `prefix_start` (no cell of the chunk edits them) keep
    # their clean K/V at every layer (causal attention): only [p0, P) runs.
    cache = {n: clean[f"prefix_{n}"][:, None] for n in ("k", "v")}
    keys = jnp.arange(P)[None]
    pos = keys[:, prefix_start:]
    _, cache = run_layers(cfg, params, x[None, prefix_start:], start, L, pos,
                          keys, cache, pos)
    return {n: cache[n][:, 0] for n in ("k", "v")}, delta

  if P > prefix_start:
    pcache, pdelta = jax.vmap(prefix_cell)(
        cells["mask"], cells["values"], *edit_args, noise)
  else:  # no prefix token edited (or no prefix): the clean prefix K/V
    pcache = {n: jnp.broadcast_to(clean[f"prefix_{n}"], (C, L, P, K, H))
              for n in ("k", "v")}
    pdelta = jnp.zeros((C,), jnp.float32)

  # ---- query phase: per (cell, prompt) -------------------------------------
  q_pos = P + jnp.arange(Q)
  dec_pad = jnp.full((max_new_tokens,), -1, jnp.int32)

  def query_row(pk, pv, mask, values, a, c, sigma, rel, nz, qres, qk, qv, ql):
    out = jax.lax.dynamic_index_in_dim(qres, start, 0, False)  # [Q,D]
    inp = jax.lax.dynamic_index_in_dim(qres, inp_idx, 0, False)
    x, delta = apply_edit(out, inp, mask[P:], values[P:], a, c, sigma, rel,
                          nz[P:])
    zeros = jnp.zeros((L, max_new_tokens, K, H), dt)
    patched = {"k": jnp.concatenate([pk, qk, zeros], 1)[:, None],
               "v": jnp.concatenate([pv, qv, zeros], 1)[:, None]}
    key_pos = jnp.concatenate(
        [jnp.arange(P), jnp.where(jnp.arange(Q) < ql, q_pos, -1),
         dec_pad])[None]
    x, patched = run_layers(cfg, params, x[None], start, L, q_pos[None],
                            key_pos, patched, q_pos[None])
    logits = _logits(cfg, params, x[:, ql - 1][:, None])[0, 0]  # [V]
    if timing == "first_token":
      # D2: later tokens come from the clean prompt (no patch in the cache).
      cache = {"k": jnp.concatenate([clean["prefix_k"], qk, zeros], 1),
               "v": jnp.concatenate([clean["prefix_v"], qv, zeros], 1)}
    else:
      cache = {n: patched[n][:, 0] for n in ("k", "v")}
    return cache, key_pos[0], logits, delta

  per_prompt = jax.vmap(
      query_row,
      in_axes=(None, None, None, None, None, None, None, None, None,
               1, 1, 1, 0))
  per_cell = jax.vmap(per_prompt, in_axes=(0, 0, 0, 0, 0, 0, 0, 0, 0,
                                           None, None, None, None))
  cache, key_pos, logits, qdelta = per_cell(
      pcache["k"], pcache["v"], cells["mask"], cells["values"], *edit_args,
      noise, clean["query_resid"], clean["query_k"], clean["query_v"], q_len)
  # cache [C,N,L,S,K,H] -> rows R = C*N: [L,R,S,K,H]
  R = C * N
  cache = {n: jnp.moveaxis(cache[n].reshape(R, L, S, K, H), 0, 1)
           for n in ("k", "v")}
  key_pos = key_pos.reshape(R, S)
  first_logits = logits  # [C,N,V]
  delta = jnp.maximum(pdelta, qdelta.max(axis=1))

  # ---- decode: all rows together, stop when every row is done ------------
  row_len = jnp.tile(P + q_len, C)  # prompt length per row
  rep = lambda v: jnp.repeat(v, N, axis=0)  # per-cell -> per-row
  r_a, r_c, r_sig, r_rel = (rep(v) for v in edit_args)
  r_dv = rep(cells["decode_values"])
  r_seed = rep(cells["seed"])

  def step_layers(tok, pos, slot, key_pos, cache, t, rows):
    x = _embed(cfg, params, tok[:, None])  # [R',1,D]
    qp = pos[:, None]
    sl = jnp.broadcast_to(slot, (tok.shape[0], 1))
    if timing != "every_step":
      return run_layers(cfg, params, x, 0, L, qp, key_pos, cache, sl)
    x_in, cache = run_layers(cfg, params, x, 0, inp_idx, qp, key_pos, cache,
                             sl)
    x_out, cache = run_layers(cfg, params, x_in, inp_idx, start, qp, key_pos,
                              cache, sl)
    nz = jax.vmap(lambda s: _noise(s + 7919 * (t + 1), (1, D)))(r_seed[rows])
    x_out, _ = jax.vmap(apply_edit)(
        x_out, x_in, jnp.ones((tok.shape[0], 1), bool), r_dv[rows][:, None],
        r_a[rows], r_c[rows], r_sig[rows], r_rel[rows], nz)
    return run_layers(cfg, params, x_out, start, L, qp, key_pos, cache, sl)

  tokens, n_gen = greedy_decode(cfg, params, logits.reshape(R, -1), cache,
                                key_pos, row_len, T, max_new_tokens, tables,
                                stop_rule, step_layers, compact_min_rows)
  result = {"tokens": tokens.reshape(C, N, max_new_tokens),
            "n_gen": n_gen.reshape(C, N), "delta": delta}
  if want_logits:
    result["first_logits"] = first_logits
  return result


# --------------------------------------------------------------------------
# Host-side orchestration
# --------------------------------------------------------------------------

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
    pre = np.asarray(self.clean["prefix_resid"][index])
    q = np.asarray(self.clean["query_resid"][index])
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


def default_memory_budget() -> int:
  """Bytes the sweep may use: half a GPU's memory, or a quarter of RAM."""
  dev = jax.devices()[0]
  try:
    stats = dev.memory_stats()
    if stats and "bytes_limit" in stats:
      return int(stats["bytes_limit"] * 0.5)
  except Exception:  # CPU backends may not implement memory_stats
    pass
  try:
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError):
    ram = 8 << 30
  return int(ram * 0.25)


# model -> {devices: (its params, their replicas)}; dropped with the model.
_REPLICAS = weakref.WeakKeyDictionary()


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
    self.memory_budget = memory_budget or default_memory_budget()
    self.devices = list(devices or jax.devices())
    self.mesh = Mesh(np.array(self.devices), ("cells",))
    self.chunk_cells = chunk_cells
    self.compact_min_rows = (default_compaction() if compact_min_rows is None
                             else int(compact_min_rows))

  @property
  def params(self):
    """lm.params replicated over the devices, made once per model and
    device set for all its engines; the model object is not changed."""
    per_model = _REPLICAS.setdefault(self.lm, {})
    src, rep = per_model.get(tuple(self.devices), (None, None))
    if src is not self.lm.params:
      rep = jax.device_put(self.lm.params,
                           NamedSharding(self.mesh, PartitionSpec()))
      per_model[tuple(self.devices)] = (self.lm.params, rep)
    return rep

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
    clean = clean_run(self.cfg, self.params, jnp.asarray(token_ids[0][:P],
                                                         jnp.int32),
                      jnp.asarray(q_ids), jnp.asarray(q_len))
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
    c = self.cfg
    S = targets.slots + self.max_new_tokens
    item = np.dtype(self.lm.dtype).itemsize
    cache = 2 * c.n_layers * S * c.n_kv_heads * c.head_dim * item
    acts = 8 * S * max(c.d_model, c.d_ff) * 4 + 2 * c.vocab_size * 4
    return 3 * cache + acts  # cache copies (prefix, patched, concat)

  def chunk_size(self, targets: TargetSet) -> int:
    if self.chunk_cells:
      c = self.chunk_cells
    else:
      per_cell = targets.n * self._row_bytes(targets) + (
          targets.slots * self.cfg.d_model * 8)
      c = max(1, self.memory_budget // per_cell)
    nd = len(self.devices)
    return max(nd, (c // nd) * nd)

  def _check_cells(self, targets: TargetSet, cells: CellBatch) -> CellBatch:
    L = self.cfg.n_layers
    bad = [int(l) for l in np.unique(cells.layer) if not -1 <= l < L]
    if bad:
      raise ValueError(f"layer(s) {bad} outside the model (0..{L - 1}, or -1 "
                       "for the embedding output)")
    if ((cells.c != 0) & (cells.layer < 0)).any():
      raise ValueError("skip edits need a block (layer >= 0)")
    T = targets.slots
    mask, values = cells.mask, cells.values
    if mask.shape[1] > T:
      if mask[:, T:].any():
        last = int(np.nonzero(mask.any(0))[0].max())
        raise ValueError(
            f"position {last} out of range: the target prompts have at most "
            f"{T} tokens (drop out-of-range indices first, as faithful mode "
            "does)")
      mask, values = mask[:, :T], values[:, :T]
    elif mask.shape[1] < T:
      padw = T - mask.shape[1]
      mask = np.pad(mask, ((0, 0), (0, padw)))
      values = np.pad(values, ((0, 0), (0, padw), (0, 0)))
    if not np.isfinite(values).all():
      raise ValueError("patch values contain NaN or inf")
    return dataclasses.replace(cells, mask=mask, values=values)

  def run(self, targets: TargetSet, cells: CellBatch,
          return_logits: bool = False, progress: bool = False) -> SweepResult:
    """Evaluates every cell on every target prompt."""
    cells = self._check_cells(targets, cells)
    C = len(cells)
    chunk = self.chunk_size(targets)
    tables = self.lm.stop_tables.as_arrays()
    shard = NamedSharding(self.mesh, PartitionSpec("cells"))
    repl = NamedSharding(self.mesh, PartitionSpec())
    q_len = jax.device_put(jnp.asarray(targets.q_len), repl)
    clean = {k: v for k, v in targets.clean.items() if k != "first_logits"}
    clean = jax.device_put(clean, repl)
    tokens = np.zeros((C, targets.n, self.max_new_tokens), np.int32)
    n_gen = np.zeros((C, targets.n), np.int32)
    delta = np.zeros((C,), np.float32)
    logits = (np.zeros((C, targets.n, self.cfg.vocab_size), np.float32)
              if return_logits else None)
    work = []
    for layer in np.unique(cells.layer):
      idx = np.nonzero(cells.layer == layer)[0]
      for s in range(0, len(idx), chunk):
        work.append((int(layer), idx[s:s + chunk]))
    bar = None
    if progress:
      from tqdm import tqdm

      bar = tqdm(total=C, desc="cells", unit="cell")
    for layer, idx in work:
      # Pad to the chunk size (static shapes, one compile) with no-op cells.
      size = chunk if len(idx) == chunk else int(
          math.ceil(len(idx) / len(self.devices)) * len(self.devices))
      take = np.concatenate([idx, np.full(size - len(idx), idx[0])])
      sub = cells.take(take)
      sub.mask[len(idx):] = False
      arrays = {f.name: jax.device_put(jnp.asarray(getattr(sub, f.name)),
                                       shard)
                for f in dataclasses.fields(sub) if f.name != "layer"}
      out = sweep_layer(self.cfg, self.params, jnp.int32(layer), clean,
                        q_len, arrays, tables, self.max_new_tokens,
                        self.stop, self.timing, return_logits,
                        self.compact_min_rows,
                        prefix_start(sub.mask, targets.prefix_len))
      k = len(idx)
      tokens[idx] = np.asarray(out["tokens"])[:k]
      n_gen[idx] = np.asarray(out["n_gen"])[:k]
      delta[idx] = np.asarray(out["delta"])[:k]
      if return_logits:
        logits[idx] = np.asarray(out["first_logits"])[:k]
      if bar is not None:
        bar.update(k)
    if bar is not None:
      bar.close()
    texts = self._decode(tokens, n_gen)
    return SweepResult(tokens, n_gen, texts, delta,
                       cells.mask.sum(1).astype(np.int32), logits)

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
