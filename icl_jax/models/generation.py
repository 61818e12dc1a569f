"""Greedy generation with a KV cache, jit-compiled, batched with left padding.

Rows stop independently; the loop ends when every row has stopped or after
`max_new_tokens`. Stop rules (per row):
  "line":    end of sequence, or the generated text with leading whitespace
             stripped contains a newline. Safe for the study's D3 extraction
             (`text.strip().split("\\n")[0]`): a leading "\\n" does not stop.
  "newline": end of sequence or any newline (safe for D1: `split("\\n")[0]`).
  "eos":     end of sequence only.
Token properties come from decoding every vocabulary entry once
(`StopTables.from_tokenizer`).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import jax
import jax.numpy as jnp

from icl_jax.models.config import DecoderConfig
from icl_jax.models.decoder import Decoder

STOP_RULES = ("line", "newline", "eos")


@dataclasses.dataclass(frozen=True)
class StopTables:
  """Boolean [V] tables describing each token's decoded text."""

  is_eos: np.ndarray
  has_newline: np.ndarray
  has_text: np.ndarray  # any non-whitespace character
  newline_after_text: np.ndarray  # a newline after a non-whitespace char

  @classmethod
  def from_tokenizer(cls, tokenizer, vocab_size: int,
                     eos_ids=()) -> "StopTables":
    n = vocab_size
    texts = tokenizer.batch_decode([[i] for i in range(min(n, len(tokenizer)))],
                                   skip_special_tokens=False)
    texts += [""] * (n - len(texts))
    has_nl = np.array(["\n" in t for t in texts])
    has_text = np.array([bool(t.strip()) for t in texts])
    nl_after = np.array(["\n" in t.lstrip() for t in texts])
    is_eos = np.zeros(n, bool)
    for i in set(eos_ids) | {tokenizer.eos_token_id}:
      if i is not None and 0 <= i < n:
        is_eos[i] = True
    return cls(is_eos, has_nl, has_text, nl_after)

  @classmethod
  def eos_only(cls, vocab_size: int, eos_ids=()) -> "StopTables":
    """For models without a tokenizer: only end-of-sequence stops a row."""
    is_eos = np.zeros(vocab_size, bool)
    for i in eos_ids:
      if 0 <= i < vocab_size:
        is_eos[i] = True
    z = np.zeros(vocab_size, bool)
    return cls(is_eos, z, z.copy(), z.copy())

  def as_arrays(self):
    return tuple(jnp.asarray(a) for a in (self.is_eos, self.has_newline,
                                          self.has_text,
                                          self.newline_after_text))

  def save(self, path):
    np.savez(path, is_eos=self.is_eos, has_newline=self.has_newline,
             has_text=self.has_text,
             newline_after_text=self.newline_after_text)

  @classmethod
  def load(cls, path) -> "StopTables":
    z = np.load(path)
    return cls(z["is_eos"], z["has_newline"], z["has_text"],
               z["newline_after_text"])


def positions_from_mask(mask):
  """Left-padded mask [B,T] -> (q_pos [B,T], key_pos [B,T]); pads get -1."""
  pos = jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1
  q_pos = jnp.maximum(pos, 0)
  key_pos = jnp.where(mask.astype(bool), q_pos, -1)
  return q_pos, key_pos


def empty_cache(cfg: DecoderConfig, batch: int, slots: int, dtype):
  shape = (cfg.n_layers, batch, slots, cfg.n_kv_heads, cfg.head_dim)
  return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}


def step_done(tok, seen, tables, rule: str):
  """Whether each row stops at token `tok` [B]; updated `seen` [B]."""
  is_eos, has_nl, has_text, nl_after_text = tables
  if rule == "eos":
    stop = is_eos[tok]
  elif rule == "newline":
    stop = is_eos[tok] | has_nl[tok]
  elif rule == "line":
    stop = is_eos[tok] | (seen & has_nl[tok]) | nl_after_text[tok]
  else:
    raise ValueError(f"unknown stop rule {rule!r}; known {STOP_RULES}")
  return stop, seen | has_text[tok]


def greedy_token(logits, block: int = 1024):
  """Greedy token per row: the first index of the maximum, [R,V] -> int32 [R].

  Same result as `jnp.argmax(logits, -1)` for finite logits (first index on
  ties; NaN is treated as +inf, so a NaN row picks its first NaN or +inf).
  Written as two plain max reductions because XLA:CPU lowers argmax to a
  slow variadic reduce: for [80, 262144] (Gemma 3's vocabulary) argmax took
  64-106 ms against 11-20 ms here, once per decode step (BUILD_NOTES 4).
  Blocks of `block` vocabulary entries ([R,nb,W]): the maximum of each
  block, the first block holding the row maximum, then the first hit inside
  that block. A vocabulary that is not a multiple of `block` is padded -inf.
  """
  R, V = logits.shape
  lg = jnp.where(jnp.isnan(logits), jnp.inf, logits)
  W = min(block, V)
  nb = -(-V // W)
  if nb * W != V:
    lg = jnp.pad(lg, ((0, 0), (0, nb * W - V)), constant_values=-jnp.inf)
  b = lg.reshape(R, nb, W)
  block_max = jnp.max(b, axis=-1)  # [R,nb]
  row_max = jnp.max(block_max, axis=-1, keepdims=True)  # [R,1]
  first = lambda hit, n: jnp.min(  # first True along the last axis
      jnp.where(hit, jax.lax.broadcasted_iota(jnp.int32, hit.shape,
                                              hit.ndim - 1), n), axis=-1)
  blk = first(block_max == row_max, nb)  # [R]
  inside = jnp.take_along_axis(b, blk[:, None, None], axis=1)[:, 0]  # [R,W]
  return (blk * W + first(inside == row_max, W)).astype(jnp.int32)


def default_compaction() -> int:
  """compact_min_rows for the default backend: 8 on CPU (a decode step's
  cost grows with its rows), 0 (off) on accelerators, where a step over 80
  rows costs about what one over 10 does and compaction only adds gathers
  and compiled phases."""
  return 8 if jax.default_backend() == "cpu" else 0


def take_cache_rows(carry, idx):
  """(cache {"k","v": [L,R,S,K,H]}, key_pos [R,S]) -> rows idx."""
  cache, key_pos = carry
  return {n: jnp.take(c, idx, axis=1) for n, c in cache.items()}, key_pos[idx]


def compaction_sizes(rows: int, min_rows: int) -> list[int]:
  """Batch sizes of the decode phases: rows, rows/2, ... while >= min_rows.

  min_rows <= 0 turns compaction off (one phase of every row)."""
  sizes = [rows]
  while min_rows > 0 and sizes[-1] // 2 >= min_rows:
    sizes.append(sizes[-1] // 2)
  return sizes


def greedy_loop(first_logits, max_new_tokens: int, tables, stop_rule: str,
                forward, carry, pad_id: int = 0, take_rows=None,
                compact_min_rows: int = 0):
  """Greedy decoding of R rows; each row stops per `stop_rule`.

  `first_logits` [R,V] give token 0. `forward(tok [R'], t, carry, rows [R'])
  -> (logits [R',V], carry)` feeds token t of the rows `rows` (indices into
  the original R rows) and returns their logits for token t+1. A token is fed
  only when a next one is still wanted: the forward after the last token
  (every row done, or max_new_tokens reached) is never run, and the loop
  ends as soon as every row is done.

  Compaction (`take_rows(carry, idx [R'']) -> carry` and compact_min_rows >
  0): rows that stopped early are still computed until the batch ends, so
  decoding runs in phases of R, R/2, R/4, ... rows (down to
  compact_min_rows); a phase ends when its active rows fit the next size,
  and the active rows are gathered into the smaller batch. Results are
  unchanged (each row's computation is row-independent); it pays where cost
  grows with the batch (CPU), not on a GPU at these sizes.
  Returns (tokens [R,M] (pad_id after a row stopped), n_gen [R] (stop token
  included), carry of the last phase).
  """
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  R = first_logits.shape[0]
  sizes = compaction_sizes(R, compact_min_rows if take_rows else 0)

  def pick(t, lg, rows, out, done, seen, n_gen):
    tok = greedy_token(lg)
    out = out.at[rows, t].set(jnp.where(done, pad_id, tok))
    n_gen = n_gen.at[rows].add((~done).astype(jnp.int32))
    stop, seen = step_done(tok, seen, tables, stop_rule)
    return tok, out, done | stop, seen, n_gen

  def body(state):
    t, tok, rows, out, done, seen, n_gen, carry = state
    lg, carry = forward(tok, t - 1, carry, rows)  # feed t-1, read token t
    tok, out, done, seen, n_gen = pick(t, lg, rows, out, done, seen, n_gen)
    return t + 1, tok, rows, out, done, seen, n_gen, carry

  rows = jnp.arange(R)
  zeros = jnp.zeros((R,), bool)
  tok, out, done, seen, n_gen = pick(
      0, first_logits, rows, jnp.full((R, max_new_tokens), pad_id, jnp.int32),
      zeros, zeros, jnp.zeros((R,), jnp.int32))
  t = jnp.int32(1)
  for i, size in enumerate(sizes):
    if i > 0:  # active rows first (stable: keeps row order), then the cut
      keep = jnp.argsort(done, stable=True)[:size]
      rows, tok, done, seen = rows[keep], tok[keep], done[keep], seen[keep]
      carry = take_rows(carry, keep)
    fits = sizes[i + 1] if i + 1 < len(sizes) else 0

    def cond(state, fits=fits):
      t, done = state[0], state[4]
      return (t < max_new_tokens) & (jnp.sum(~done) > fits)

    t, tok, rows, out, done, seen, n_gen, carry = jax.lax.while_loop(
        cond, body, (t, tok, rows, out, done, seen, n_gen, carry))
  return out, n_gen, carry


@functools.partial(jax.jit,
                   static_argnames=("cfg", "max_new_tokens", "stop_rule",
                                    "pad_id", "compact_min_rows"))
def greedy_generate(cfg: DecoderConfig, params, tokens, mask, tables,
                    max_new_tokens: int, stop_rule: str = "line",
                    pad_id: int = 0, compact_min_rows: int = 0):
  """Greedy continuation of left-padded prompts.

  Args:
    tokens, mask: int/bool [B,T], left padded (real tokens right-aligned).
    tables: StopTables.as_arrays().
  Returns:
    (new tokens int [B, max_new_tokens] (pad_id after a row stopped),
     number of generated tokens per row [B] (stop token included),
     first-step logits fp32 [B,V]).
  """
  model = Decoder(cfg, jax.tree_util.tree_leaves(params)[0].dtype)
  B, T = tokens.shape
  S = T + max_new_tokens
  q_pos, prompt_key_pos = positions_from_mask(mask)
  key_pos = jnp.full((B, S), -1, jnp.int32).at[:, :T].set(prompt_key_pos)
  cache = empty_cache(cfg, B, S, jax.tree_util.tree_leaves(params)[0].dtype)
  slots = jnp.broadcast_to(jnp.arange(T), (B, T))
  logits, cache = model.apply({"params": params}, tokens, q_pos, key_pos,
                              cache=cache, slots=slots,
                              logits_index=jnp.full((B,), T - 1))
  first_logits = logits[:, 0]
  next_pos = q_pos[:, -1] + 1  # [B]

  def forward(tok, t, carry, rows):
    cache, key_pos = carry
    pos = (next_pos[rows] + t)[:, None]
    slot = jnp.full((tok.shape[0], 1), T + t, jnp.int32)
    key_pos = key_pos.at[:, T + t].set(pos[:, 0])
    logits, cache = model.apply({"params": params}, tok[:, None], pos,
                                key_pos, cache=cache, slots=slot)
    return logits[:, 0], (cache, key_pos)

  out, n_gen, _ = greedy_loop(first_logits, max_new_tokens, tables,
                              stop_rule, forward, (cache, key_pos), pad_id,
                              take_rows=take_cache_rows,
                              compact_min_rows=compact_min_rows)
  return out, n_gen, first_logits
