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


@functools.partial(jax.jit,
                   static_argnames=("cfg", "max_new_tokens", "stop_rule"))
def greedy_generate(cfg: DecoderConfig, params, tokens, mask, tables,
                    max_new_tokens: int, stop_rule: str = "line",
                    pad_id: int = 0):
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

  def cond(state):
    t, _, _, _, _, done, _, _ = state
    return (t < max_new_tokens) & ~jnp.all(done)

  def body(state):
    t, logits, cache, key_pos, out, done, seen, n_gen = state
    tok = jnp.argmax(logits[:, 0], axis=-1).astype(jnp.int32)
    out = out.at[:, t].set(jnp.where(done, pad_id, tok))
    n_gen = n_gen + (~done).astype(jnp.int32)
    stop, seen = step_done(tok, seen, tables, stop_rule)
    done = done | stop
    pos = (next_pos + t)[:, None]
    slot = jnp.full((B, 1), T + t, jnp.int32)
    key_pos = key_pos.at[:, T + t].set(pos[:, 0])
    logits, cache = model.apply({"params": params}, tok[:, None], pos,
                                key_pos, cache=cache, slots=slot)
    return t + 1, logits, cache, key_pos, out, done, seen, n_gen

  out = jnp.full((B, max_new_tokens), pad_id, jnp.int32)
  state = (jnp.int32(0), logits, cache, key_pos, out,
           jnp.zeros((B,), bool), jnp.zeros((B,), bool),
           jnp.zeros((B,), jnp.int32))
  state = jax.lax.while_loop(cond, body, state)
  return state[4], state[7], first_logits
