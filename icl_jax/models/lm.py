"""`LanguageModel`: a converted model with its tokenizer, as pure jitted calls.

    lm = icl_jax.load("gemma3-270m")
    out = lm(input_ids, attention_mask, return_residuals=True)
    out.logits      # [B,T,V] fp32
    out.residuals   # [L+1,B,T,D]: embedding output, then block L at L+1
    lm.generate(["Input: a\\nOutput: A\\n\\nInput: b\\nOutput:"])
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import numpy as np
import jax
import jax.numpy as jnp

from icl_jax.models import work_meter
from icl_jax.models.config import DecoderConfig
from icl_jax.models.decoder import (Decoder, collect_components,
                                    collect_residuals)
from icl_jax.models.generation import (StopTables, default_compaction,
                                       greedy_generate, positions_from_mask)


class ContextLengthError(ValueError):
  pass


class TokenIdError(ValueError):
  """A token id outside the model's vocabulary."""


def _host_ids(x):
  """x as a host numpy array when that costs no device sync, else None
  (device-resident jax arrays and tracers are not range-checked)."""
  if isinstance(x, jax.core.Tracer):
    return None
  if isinstance(x, jax.Array):
    try:
      if all(d.platform == "cpu" for d in x.devices()):
        return np.asarray(x)
    except Exception:  # pylint: disable=broad-except
      pass
    return None
  return np.asarray(x)


def _check_positive_int(value, what: str) -> int:
  import numbers

  if not isinstance(value, numbers.Integral) or isinstance(value, bool):
    raise TypeError(f"{what} must be an integer, got "
                    f"{type(value).__name__} {value!r}")
  if value < 1:
    raise ValueError(f"{what} must be >= 1, got {value}")
  return int(value)


def _as_prompt_list(prompts, what: str = "prompts") -> list[str]:
  if isinstance(prompts, str):
    return [prompts]
  if prompts is None or not hasattr(prompts, "__iter__"):
    raise TypeError(f"{what} must be a string or a list of strings, got "
                    f"{type(prompts).__name__}")
  out = list(prompts)
  if not out:
    raise ValueError(f"{what} is empty: give at least one prompt")
  for i, p in enumerate(out):
    if not isinstance(p, str):
      raise TypeError(f"{what}[{i}] must be a string, got "
                      f"{type(p).__name__} {p!r:.60}")
  return out


@dataclasses.dataclass
class ModelOutput:
  logits: Any  # fp32 [B,T,V], or [B,1,V] with logits="last", or None
  residuals: Any = None  # [L+1,B,T,D]
  attn_out: Any = None  # [L,B,T,D]
  mlp_out: Any = None  # [L,B,T,D]


@functools.partial(jax.jit, static_argnames=("cfg", "return_residuals",
                                             "return_components", "logits"))
def forward(cfg: DecoderConfig, params, tokens, mask, return_residuals=False,
            return_components=False, logits="all"):
  """Full forward of left-padded tokens [B,T]; see `LanguageModel.__call__`."""
  model = Decoder(cfg, jax.tree_util.tree_leaves(params)[0].dtype)
  q_pos, key_pos = positions_from_mask(mask)
  B, T = tokens.shape
  kwargs = dict(
      compute_logits=logits is not None,
      logits_index=(jnp.full((B,), T - 1) if logits == "last" else None))
  if not (return_residuals or return_components):
    out, _ = model.apply({"params": params}, tokens, q_pos, key_pos, **kwargs)
    return ModelOutput(out)
  (out, _), state = model.apply({"params": params}, tokens, q_pos, key_pos,
                                mutable=["intermediates"], **kwargs)
  inter = state["intermediates"]
  res = collect_residuals(inter) if return_residuals else None
  attn, mlp = collect_components(inter) if return_components else (None, None)
  return ModelOutput(out, res, attn, mlp)


jax.tree_util.register_dataclass(
    ModelOutput, data_fields=["logits", "residuals", "attn_out", "mlp_out"],
    meta_fields=[])


class LanguageModel:
  """A decoder config, its parameters and its transformers tokenizer."""

  def __init__(self, config: DecoderConfig, params, tokenizer, name: str = "",
               hf_config: dict | None = None,
               stop_tables: StopTables | None = None):
    self.config = config
    self.params = params
    self.tokenizer = tokenizer
    self.name = name
    self.hf_config = hf_config or {}
    self._stop_tables = stop_tables

  @property
  def n_layers(self) -> int:
    return self.config.n_layers

  @property
  def dtype(self):
    return jax.tree_util.tree_leaves(self.params)[0].dtype

  @property
  def pad_id(self) -> int:
    p = self.config.pad_token_id
    if p is None:
      p = self.tokenizer.pad_token_id
    return int(p) if p is not None else 0

  @property
  def stop_tables(self) -> StopTables:
    if self._stop_tables is None and self.tokenizer is None:
      self._stop_tables = StopTables.eos_only(self.config.vocab_size,
                                              self.config.eos_token_ids)
    if self._stop_tables is None:
      self._stop_tables = StopTables.from_tokenizer(
          self.tokenizer, self.config.vocab_size, self.config.eos_token_ids)
    return self._stop_tables

  def check_ids(self, ids, what: str = "input_ids") -> None:
    """Raises TokenIdError naming the first id outside [0, vocab_size).

    Host (numpy / list) ids only: device arrays are left unchecked rather
    than synchronised. An out-of-range id would make every logit NaN (or
    wrap round silently if negative)."""
    a = _host_ids(ids)
    if a is None or a.size == 0:
      return
    if not np.issubdtype(a.dtype, np.integer):
      if np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a)) \
          and np.all(a == np.round(a)):
        a = a.astype(np.int64)
      else:
        raise TokenIdError(f"{what} must be integer token ids, got dtype "
                           f"{a.dtype}")
    vocab = self.config.vocab_size
    lo, hi = a.min(), a.max()
    if lo < 0 or hi >= vocab:
      bad = int(lo) if lo < 0 else int(hi)
      where = tuple(int(i) for i in np.argwhere(a == bad)[0])
      raise TokenIdError(
          f"{what}: token id {bad} at index {where} is outside the model's "
          f"vocabulary (vocab_size {vocab}: ids 0..{vocab - 1})")

  def check_length(self, n_tokens: int, what: str = "prompt") -> None:
    limit = self.config.max_position_embeddings
    if n_tokens > limit:
      raise ContextLengthError(
          f"{what} of {n_tokens} tokens is longer than the model's context "
          f"({limit} positions, model {self.name or self.config.family})")

  def __call__(self, input_ids, attention_mask=None, return_residuals=False,
               return_components=False, logits="all") -> ModelOutput:
    """Forward pass.

    Args:
      input_ids: int [B,T]; left padded when rows differ in length.
      attention_mask: [B,T] (1 = real token); default all ones.
      return_residuals: also return residuals [L+1,B,T,D].
      return_components: also return attn_out / mlp_out [L,B,T,D].
      logits: "all" ([B,T,V]), "last" ([B,1,V]) or None.
    """
    if input_ids is None:
      raise TypeError("input_ids must be an int array [B,T], got None")
    self.check_ids(input_ids)
    ids = jnp.asarray(input_ids, jnp.int32)
    if ids.ndim == 1:
      ids = ids[None]
    if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
      raise ValueError(f"input_ids must be a non-empty [B,T] array, got "
                       f"shape {tuple(ids.shape)}")
    self.check_length(ids.shape[1])
    mask = (jnp.ones_like(ids) if attention_mask is None
            else jnp.asarray(attention_mask, jnp.int32))
    if logits not in ("all", "last", None):
      raise ValueError(f"logits must be 'all', 'last' or None, got {logits!r}")
    with work_meter.metered("forward", ids.shape[0]):
      out = forward(self.config, self.params, ids, mask, return_residuals,
                    return_components, logits)
      jax.block_until_ready([out.logits, out.residuals, out.attn_out,
                             out.mlp_out])
    return out

  def encode(self, prompts: Sequence[str], pad_to_multiple: int = 1):
    """Tokenizes with the tokenizer's own BOS rule; left pads.

    Returns (ids int32 [B,T], mask int32 [B,T], lengths [B]).
    """
    prompts = _as_prompt_list(prompts)
    if self.tokenizer is None:
      raise ValueError(f"model {self.name!r} has no tokenizer; pass token ids")
    seqs = [self.tokenizer(p, add_special_tokens=True)["input_ids"]
            for p in prompts]
    return self.pad_left(seqs, pad_to_multiple)

  def pad_left(self, seqs, pad_to_multiple: int = 1):
    if seqs is None or isinstance(seqs, (str, bytes)):
      raise TypeError("seqs must be a list of token id lists, got "
                      f"{type(seqs).__name__}")
    seqs = list(seqs)
    if not seqs:
      raise ValueError("no sequences: the batch is empty")
    _check_positive_int(pad_to_multiple, "pad_to_multiple")
    lengths = np.array([len(s) for s in seqs])
    if (lengths == 0).any():
      raise ValueError(f"empty prompt (sequence {int(np.argmin(lengths))} "
                       "has no tokens)")
    for i, s in enumerate(seqs):
      self.check_ids(s, f"sequence {i}")
    T = int(lengths.max())
    self.check_length(T)
    T = -(-T // pad_to_multiple) * pad_to_multiple
    ids = np.full((len(seqs), T), self.pad_id, np.int32)
    mask = np.zeros((len(seqs), T), np.int32)
    for i, s in enumerate(seqs):
      ids[i, T - len(s):] = s
      mask[i, T - len(s):] = 1
    return ids, mask, lengths

  def generate_ids(self, ids, mask, max_new_tokens: int = 30,
                   stop: str = "line"):
    """Greedy continuation of left-padded ids; returns (tokens, n_generated)."""
    _check_positive_int(max_new_tokens, "max_new_tokens")
    if ids is None or mask is None:
      raise TypeError("generate_ids needs ids and mask arrays [B,T]")
    self.check_ids(ids, "ids")
    if np.shape(ids) != np.shape(mask) or len(np.shape(ids)) != 2 \
        or 0 in np.shape(ids):
      raise ValueError(f"ids and mask must be non-empty [B,T] arrays of one "
                       f"shape, got {np.shape(ids)} and {np.shape(mask)}")
    self.check_length(int(np.asarray(mask).sum(-1).max()) + max_new_tokens,
                      "prompt plus max_new_tokens")
    tables = self.stop_tables.as_arrays()
    with work_meter.metered("generate", np.shape(ids)[0]):
      out, n_gen, _ = greedy_generate(
          self.config, self.params, jnp.asarray(ids), jnp.asarray(mask),
          tables, max_new_tokens, stop, self.pad_id, default_compaction())
      out, n_gen = np.asarray(out), np.asarray(n_gen)
    return out, n_gen

  def generate(self, prompts: Sequence[str], max_new_tokens: int = 30,
               stop: str = "line", batch_size: int = 32) -> list[str]:
    """Greedy continuations (decoded, special tokens skipped) of prompts."""
    prompts = _as_prompt_list(prompts)
    _check_positive_int(max_new_tokens, "max_new_tokens")
    _check_positive_int(batch_size, "batch_size")
    texts: list[str] = []
    for start in range(0, len(prompts), batch_size):
      chunk = list(prompts[start:start + batch_size])
      # Bucket lengths to limit recompilation; left padding keeps results
      # identical (positions come from the mask).
      ids, mask, _ = self.encode(chunk, pad_to_multiple=16)
      toks, n_gen = self.generate_ids(ids, mask, max_new_tokens, stop)
      texts.extend(self.decode_generated(toks, n_gen))
    return texts

  def decode_generated(self, toks, n_gen) -> list[str]:
    return [self.tokenizer.decode(list(row[:n]), skip_special_tokens=True)
            for row, n in zip(np.asarray(toks), np.asarray(n_gen))]
