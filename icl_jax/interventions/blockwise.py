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
    knocked prefix keys". No attention code is copied: the block loop is
    `models.decoder.run_blocks` with per-block key positions (`key_pos_at`)
    and a `skip` edit hook.

  multi-layer skip (exp12 Part B): blocks with `skip[l]` have their output
    replaced by their input on the prompt forward (their K/V are still
    computed from their actual input, as the original's forward hook did);
    with `skip_decode` also on every generated token (the block removed).

  head groups across layers (issue 19 step 4): at every block l, the summed
    output of the heads `heads[l]` (bool [L,N]) is replaced by
    `head_values[l]` at the prompt slots `head_positions` (prompt forward
    only: the edited K/V stay in the cache, the engine's "prefill" timing;
    generated tokens are not edited). All layers are edited in the same
    forward, so an edit at block l changes the residual every later block
    reads, while the values are fixed (the source run's clean head
    outputs): the standard "patch the group together" of TransformerLens /
    pyvene multi-component patches. The edit inside a block is the engine's
    (`sweep.site_edits`, head_out, replace); blocks with no selected head
    are untouched.

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

from icl_jax.interventions.decode import greedy_decode
from icl_jax.interventions.spec import SITES
from icl_jax.interventions.sweep import site_edits
from icl_jax.models.config import DecoderConfig
from icl_jax.models.decoder import (embed, final_logits, params_dtype,
                                    run_blocks)


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
  heads: np.ndarray | None = None  # bool [L,N]: replaced heads per block
  head_positions: np.ndarray | None = None  # bool [T]: edited prompt slots
  head_values: np.ndarray | None = None  # float [L,T,D]: the groups' sums


def _skip_edit(skip):
  """Edit hook: block l's output replaced by its input where skip[l]."""
  return lambda l, x, y: jnp.where(skip[l], x, y)


def _head_edit(heads, mask, values, lo, hi, B):
  """site_edit hook: at block l, heads[l] ([L,N]) replaced by values[l]
  ([L,T,D]) at the slots [lo, hi) where mask ([T]); B rows share it."""
  def at(l):
    h = heads[l]  # [N]
    m = mask[lo:hi] & h.any()  # no selected head: nothing edited
    v = jax.lax.dynamic_index_in_dim(values, l, 0, False)[lo:hi]  # [T',D]
    bc = lambda a: jnp.broadcast_to(a[None], (B,) + a.shape)
    z = jnp.zeros((B,), jnp.float32)
    return site_edits(SITES.index("head_out"), bc(h), bc(m), bc(v), z, z, z,
                      jnp.zeros((B,), bool), jnp.zeros((B,) + v.shape,
                                                       jnp.float32))
  return at


def _knock_at(key_pos, knocked, lo, hi):
  """Per-block key positions: `knocked` [S] slots hidden at blocks
  [lo, hi)."""
  alt = jnp.where(knocked[None], -1, key_pos)
  return lambda l: jnp.where((l >= lo) & (l < hi), alt, key_pos)


@functools.partial(jax.jit, static_argnames=(
    "cfg", "max_new_tokens", "stop_rule", "skip_decode", "knock_generated",
    "with_heads"))
def _blockwise_cell(cfg: DecoderConfig, params, prefix_ids, q_ids, q_len,
                    knock_lo, knock_hi, knock_keys, skip, tables,
                    max_new_tokens: int, stop_rule: str, skip_decode: bool,
                    knock_generated: bool, heads=None, head_mask=None,
                    head_values=None, with_heads: bool = False):
  dt = params_dtype(params)
  L, K, H = cfg.n_layers, cfg.n_kv_heads, cfg.head_dim
  P = prefix_ids.shape[0]
  N, Q = q_ids.shape
  M = max_new_tokens
  # ---- prefix chunk (shared by all prompts; never knocked) ---------------
  pos = jnp.arange(P)[None]
  pcache = {n: jnp.zeros((L, 1, P, K, H), dt) for n in ("k", "v")}
  x = embed(cfg, params, prefix_ids[None])
  hedit = lambda lo, hi, B: (_head_edit(heads, head_mask, head_values, lo,
                                         hi, B) if with_heads else None)
  _, pcache = run_blocks(cfg, params, x, pos, pos, cache=pcache, slots=pos,
                         edit=_skip_edit(skip), site_edit=hedit(0, P, 1))
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
  x = embed(cfg, params, q_ids)
  x, cache = run_blocks(cfg, params, x, q_pos, key_pos, cache=cache,
                        slots=q_pos,
                        key_pos_at=_knock_at(key_pos, ko, knock_lo, knock_hi),
                        edit=_skip_edit(skip), site_edit=hedit(P, P + Q, N))
  last = x[jnp.arange(N), q_len - 1]
  first_logits = final_logits(cfg, params, last[:, None])[:, 0]  # [N,V]
  # ---- greedy decoding -----------------------------------------------------
  dec_skip = skip if skip_decode else jnp.zeros_like(skip)
  d_lo = knock_lo if knock_generated else 0
  d_hi = knock_hi if knock_generated else 0

  def step_layers(tok, p, slot, key_pos, cache, t, rows):
    del t, rows  # no per-row edit state; no compaction here
    x = embed(cfg, params, tok[:, None])
    return run_blocks(cfg, params, x, p[:, None], key_pos, cache=cache,
                      slots=jnp.broadcast_to(slot, (tok.shape[0], 1)),
                      key_pos_at=_knock_at(key_pos, ko, d_lo, d_hi),
                      edit=_skip_edit(dec_skip))

  tokens, n_gen = greedy_decode(cfg, params, first_logits, cache, key_pos,
                                P + q_len, P + Q, M, tables, stop_rule,
                                step_layers)
  return tokens, n_gen, first_logits


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


def _head_arrays(cfg, e: BlockwiseEdit, T: int):
  """(heads [L,N], mask [T], values [L,T,D], with_heads) of a cell's head
  edit, checked; no head edit: (None, None, None, False)."""
  if e.heads is None:
    if e.head_positions is not None or e.head_values is not None:
      raise ValueError("head_positions / head_values need heads")
    return None, None, None, False
  L, N, D = cfg.n_layers, cfg.n_heads, cfg.d_model
  heads = np.asarray(e.heads, bool)
  mask = np.asarray(e.head_positions, bool).reshape(-1)
  vals = np.asarray(e.head_values, np.float32)
  if heads.shape != (L, N):
    raise ValueError(f"heads must be bool [{L}, {N}], got {heads.shape}")
  if mask[T:].any():
    raise ValueError(f"head position {int(np.nonzero(mask)[0].max())} "
                     f"outside the prompts' {T} slots")
  if vals.shape != (L, mask.shape[0], D):
    raise ValueError(f"head_values must be [{L}, {mask.shape[0]}, {D}], got "
                     f"{vals.shape}")
  if not np.isfinite(vals).all():
    raise ValueError("head values contain NaN or inf")
  pad = max(0, T - mask.shape[0])
  mask = np.pad(mask, (0, pad))[:T]
  vals = np.pad(vals, ((0, 0), (0, pad), (0, 0)))[:, :T]
  return jnp.asarray(heads), jnp.asarray(mask), jnp.asarray(vals), True


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
        stop, bool(skip_decode), bool(knock_generated),
        *_head_arrays(cfg, e, split + int(q_ids.shape[1])))
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
