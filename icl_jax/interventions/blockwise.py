"""Edits the engine does not express: attention knockout and multi-layer skips.

`blockwise_generate` runs the decoder block by block on a prompt split into
a *prefix chunk* (tokens [0, split): e.g. BOS + the demonstrations) and a
*query chunk* (tokens [split, T) of each prompt), then decodes greedily with
a KV cache. Two edits, per cell:

  attention knockout (exp10, the "true" version the original only claimed):
    at blocks [knock_lo, knock_hi), tokens of the query chunk -- and, with
    `knock_generated`, every generated token -- may not attend to the
    prefix slots in `knock_keys`. Everything else is the clean model: the
    knocked keys still exist (their K/V are computed and other tokens attend
    to them), and the prefix chunk itself is unaffected.
    Implementation: attention in `models.decoder` masks keys per *key*
    (`key_pos = -1` hides a slot from every query of a call), not per
    (query, key). Because the prefix chunk is processed in its own call and
    the query chunk in a second call that reads the prefix K/V from the
    cache, hiding the knocked slots from the second call (at the knocked
    blocks only) is exactly a per-(query, key) mask "query-chunk tokens x
    knocked prefix keys". No attention code is copied; `Block` is reused.

  multi-layer skip (exp12 Part B): blocks with `skip[l]` have their output
    replaced by their input on the prompt forward (their K/V are still
    computed from their actual input, as the original's forward hook did);
    with `skip_decode` also on every generated token (the block removed).

Exactness (tests/interventions/test_transfer_blockwise.py): no edit equals
`LanguageModel.generate_ids`; a single-block skip equals the engine's `skip`
cell; knocking every prefix key at every block equals a forward of the query
chunk alone; a one-block knockout equals an independent two-pass computation
on the unsplit sequence.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import numpy as np
import jax
import jax.numpy as jnp

from icl_jax.interventions.engine import _dtype, _embed, _logits
from icl_jax.models.config import DecoderConfig
from icl_jax.models.decoder import Block, rope_tables
from icl_jax.models.generation import step_done


@dataclasses.dataclass
class BlockwiseEdit:
  """One cell: knocked blocks [knock_lo, knock_hi) and keys; skipped blocks.

  knock_keys: bool [split] -- prefix slots hidden from the query chunk (and
    generated tokens) at the knocked blocks; None = none.
  skip: bool [n_layers] -- blocks skipped on the prompt forward; None = none.
  """

  knock_lo: int = 0
  knock_hi: int = 0
  knock_keys: np.ndarray | None = None
  skip: np.ndarray | None = None


def run_blocks(cfg: DecoderConfig, params, x, q_pos, key_pos, key_pos_alt,
               alt_lo, alt_hi, skip, cache, slots):
  """All blocks on chunk x [B,T,D]; blocks in [alt_lo, alt_hi) attend per
  `key_pos_alt`, the others per `key_pos`; `skip[l]`: output := input.

  K/V of every block are written to `cache` {"k","v": [L,B,S,K,H]} at
  `slots` (computed from the block's actual input, skipped or not).
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
    kp = jnp.where((l >= alt_lo) & (l < alt_hi), key_pos_alt, key_pos)
    y, new_kv = block.apply({"params": p}, x, is_sliding[l], kv, rope, q_pos,
                            kp, slots)
    y = jnp.where(skip[l], x, y)
    cache = {n: jax.lax.dynamic_update_index_in_dim(cache[n], new_kv[n], l, 0)
             for n in ("k", "v")}
    return y, cache

  return jax.lax.fori_loop(0, cfg.n_layers, body, (x, cache))


@functools.partial(jax.jit, static_argnames=(
    "cfg", "max_new_tokens", "stop_rule", "skip_decode", "knock_generated"))
def _blockwise_cell(cfg: DecoderConfig, params, prefix_ids, q_ids, q_len,
                    knock_lo, knock_hi, knock_keys, skip, tables,
                    max_new_tokens: int, stop_rule: str, skip_decode: bool,
                    knock_generated: bool):
  dt = _dtype(params)
  L, K, H = cfg.n_layers, cfg.n_kv_heads, cfg.head_dim
  P = prefix_ids.shape[0]
  N, Q = q_ids.shape
  M = max_new_tokens
  S = P + Q + M
  # ---- prefix chunk (shared by all prompts; never knocked) ---------------
  pos = jnp.arange(P)[None]
  pcache = {n: jnp.zeros((L, 1, P, K, H), dt) for n in ("k", "v")}
  x = _embed(cfg, params, prefix_ids[None])
  _, pcache = run_blocks(cfg, params, x, pos, pos, pos, 0, 0, skip, pcache,
                         pos)
  # ---- query chunk ---------------------------------------------------------
  cache = {n: jnp.concatenate(
      [jnp.broadcast_to(pcache[n], (L, N, P, K, H)),
       jnp.zeros((L, N, Q + M, K, H), dt)], axis=2) for n in ("k", "v")}
  q_pos = jnp.broadcast_to(P + jnp.arange(Q), (N, Q))
  q_keys = jnp.where(jnp.arange(Q)[None] < q_len[:, None], q_pos, -1)
  key_pos = jnp.concatenate(
      [jnp.broadcast_to(jnp.arange(P), (N, P)), q_keys,
       jnp.full((N, M), -1, jnp.int32)], axis=1)  # [N,S]
  ko = jnp.concatenate([knock_keys, jnp.zeros((Q + M,), bool)])  # [S]
  x = _embed(cfg, params, q_ids)
  x, cache = run_blocks(cfg, params, x, q_pos, key_pos,
                        jnp.where(ko[None], -1, key_pos), knock_lo, knock_hi,
                        skip, cache, q_pos)
  last = x[jnp.arange(N), q_len - 1]
  first_logits = _logits(cfg, params, last[:, None])[:, 0]  # [N,V]
  # ---- greedy decoding -----------------------------------------------------
  dec_skip = skip if skip_decode else jnp.zeros_like(skip)
  d_lo = knock_lo if knock_generated else 0
  d_hi = knock_hi if knock_generated else 0
  row_len = P + q_len

  def cond(state):
    t, _, _, _, _, done, _, _ = state
    return (t < M) & ~jnp.all(done)

  def body(state):
    t, lg, cache, key_pos, out, done, seen, n_gen = state
    tok = jnp.argmax(lg, axis=-1).astype(jnp.int32)
    out = out.at[:, t].set(jnp.where(done, 0, tok))
    n_gen = n_gen + (~done).astype(jnp.int32)
    stop, seen = step_done(tok, seen, tables, stop_rule)
    done = done | stop
    p = row_len + t
    key_pos = key_pos.at[:, P + Q + t].set(p)
    x = _embed(cfg, params, tok[:, None])
    slot = jnp.broadcast_to(P + Q + t, (N, 1))
    x, cache = run_blocks(cfg, params, x, p[:, None], key_pos,
                          jnp.where(ko[None], -1, key_pos), d_lo, d_hi,
                          dec_skip, cache, slot)
    lg = _logits(cfg, params, x)[:, 0]
    return t + 1, lg, cache, key_pos, out, done, seen, n_gen

  state = (jnp.int32(0), first_logits, cache, key_pos,
           jnp.zeros((N, M), jnp.int32), jnp.zeros((N,), bool),
           jnp.zeros((N,), bool), jnp.zeros((N,), jnp.int32))
  state = jax.lax.while_loop(cond, body, state)
  return state[4], state[7], first_logits


@dataclasses.dataclass
class BlockwiseResult:
  tokens: np.ndarray  # [C,N,max_new]
  n_gen: np.ndarray  # [C,N]
  first_logits: np.ndarray  # [C,N,V]
  texts: list[list[str]]  # [C][N]


def split_prompts(token_ids: Sequence[Sequence[int]], split: int):
  """(prefix ids [split], right-padded query ids [N,Q], lengths [N])."""
  token_ids = [list(map(int, s)) for s in token_ids]
  if not token_ids:
    raise ValueError("no prompts")
  prefix = token_ids[0][:split]
  if split < 1:
    raise ValueError(f"split must be >= 1, got {split}")
  for s in token_ids:
    if len(s) <= split:
      raise ValueError(f"a prompt of {len(s)} tokens has no query chunk "
                       f"after split {split}")
    if s[:split] != prefix:
      raise ValueError("prompts differ inside the prefix chunk [0, split); "
                       "run them as separate batches")
  qs = [s[split:] for s in token_ids]
  Q = max(len(q) for q in qs)
  q_ids = np.zeros((len(qs), Q), np.int32)
  for i, q in enumerate(qs):
    q_ids[i, :len(q)] = q
  return (np.asarray(prefix, np.int32), q_ids,
          np.array([len(q) for q in qs], np.int32))


def blockwise_generate(lm, token_ids: Sequence[Sequence[int]], split: int,
                       edits: Sequence[BlockwiseEdit], *,
                       max_new_tokens: int = 8, stop: str = "line",
                       skip_decode: bool = False,
                       knock_generated: bool = True) -> BlockwiseResult:
  """Greedy continuations of the prompts under each edit (see module doc).

  Args:
    token_ids: prompts (with BOS if the tokenizer adds one) sharing the
      prefix chunk [0, split).
    split: first token of the query chunk.
    edits: one BlockwiseEdit per cell.
    skip_decode: skipped blocks are skipped for generated tokens too.
    knock_generated: generated tokens are knocked out like query tokens.
  """
  cfg = lm.config
  L = cfg.n_layers
  prefix, q_ids, q_len = split_prompts(token_ids, split)
  lm.check_length(split + int(q_ids.shape[1]) + max_new_tokens,
                  "prompt plus max_new_tokens")
  tables = lm.stop_tables.as_arrays()
  toks, ngen, logits = [], [], []
  for e in edits:
    keys = (np.zeros(split, bool) if e.knock_keys is None
            else np.asarray(e.knock_keys, bool))
    if keys.shape != (split,):
      raise ValueError(f"knock_keys must be bool [{split}], got {keys.shape}")
    skip = (np.zeros(L, bool) if e.skip is None
            else np.asarray(e.skip, bool))
    if skip.shape != (L,):
      raise ValueError(f"skip must be bool [{L}], got {skip.shape}")
    if not (0 <= e.knock_lo <= e.knock_hi <= L):
      raise ValueError(f"knocked blocks [{e.knock_lo}, {e.knock_hi}) outside "
                       f"the model (0..{L})")
    t, n, lg = _blockwise_cell(
        cfg, lm.params, jnp.asarray(prefix), jnp.asarray(q_ids),
        jnp.asarray(q_len), jnp.int32(e.knock_lo), jnp.int32(e.knock_hi),
        jnp.asarray(keys), jnp.asarray(skip), tables, int(max_new_tokens),
        stop, bool(skip_decode), bool(knock_generated))
    toks.append(np.asarray(t))
    ngen.append(np.asarray(n))
    logits.append(np.asarray(lg))
  tokens = np.stack(toks) if toks else np.zeros((0, len(q_len),
                                                 max_new_tokens), np.int32)
  n_gen = np.stack(ngen) if ngen else np.zeros((0, len(q_len)), np.int32)
  first = (np.stack(logits) if logits else
           np.zeros((0, len(q_len), cfg.vocab_size), np.float32))
  if lm.tokenizer is None:
    texts = [["" for _ in row] for row in tokens]
  else:
    texts = [lm.decode_generated(tokens[c], n_gen[c])
             for c in range(tokens.shape[0])]
  return BlockwiseResult(tokens, n_gen, first, texts)
