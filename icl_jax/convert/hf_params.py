"""Hugging Face state dict -> icl_jax parameter tree (a pure function).

HF `nn.Linear.weight` is [out, in]; we store `x @ W` layouts with heads split:
  q: [D,N,H]  k,v: [D,K,H]  o: [N,H,D]  gate/up: [D,F]  down: [F,D]
  q/k/v bias: [N,H]/[K,H]  norms: [D] (q/k-norm: [H])
Layers are stacked on a leading axis L (the decoder scans over them).

Norm names: Llama/Gemma 1 `post_attention_layernorm` is the *pre-MLP* norm
(-> mlp_norm); in Gemma 2/3 it is the post-attention norm (-> post_attn_norm)
and `pre_feedforward_layernorm` is the pre-MLP norm.

Every expected key must be present and every key must be consumed; otherwise
a `CheckpointKeyError` lists them.
"""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np

from icl_jax.models.config import DecoderConfig

# Prefixes seen across transformers versions and wrappers.
_PREFIXES = ("model.language_model.", "language_model.model.",
             "language_model.", "model.")
# Non-persistent buffers some older checkpoints still carry.
_IGNORABLE = re.compile(r".*rotary_emb\.inv_freq$")


class CheckpointKeyError(KeyError):
  def __str__(self):
    return str(self.args[0])


def normalize_key(key: str) -> str:
  if key.startswith("lm_head."):
    return key
  for p in _PREFIXES:
    if key.startswith(p):
      return key[len(p):]
  return key


def is_ignorable(key: str) -> bool:
  """Non-persistent buffers some older checkpoints still carry."""
  return bool(_IGNORABLE.match(key))


def layer_map(cfg: DecoderConfig) -> dict[str, tuple[str, ...]]:
  """HF per-layer suffix -> path inside the block's param tree."""
  m = {
      "self_attn.q_proj.weight": ("attn", "q"),
      "self_attn.k_proj.weight": ("attn", "k"),
      "self_attn.v_proj.weight": ("attn", "v"),
      "self_attn.o_proj.weight": ("attn", "o"),
      "mlp.gate_proj.weight": ("mlp", "gate"),
      "mlp.up_proj.weight": ("mlp", "up"),
      "mlp.down_proj.weight": ("mlp", "down"),
      "input_layernorm.weight": ("attn_norm", "scale"),
  }
  if cfg.post_norms:
    m["post_attention_layernorm.weight"] = ("post_attn_norm", "scale")
    m["pre_feedforward_layernorm.weight"] = ("mlp_norm", "scale")
    m["post_feedforward_layernorm.weight"] = ("post_mlp_norm", "scale")
  else:
    m["post_attention_layernorm.weight"] = ("mlp_norm", "scale")
  if cfg.qkv_bias:
    m["self_attn.q_proj.bias"] = ("attn", "q_bias")
    m["self_attn.k_proj.bias"] = ("attn", "k_bias")
    m["self_attn.v_proj.bias"] = ("attn", "v_bias")
  if cfg.qk_norm:
    m["self_attn.q_norm.weight"] = ("attn", "q_norm", "scale")
    m["self_attn.k_norm.weight"] = ("attn", "k_norm", "scale")
  return m


def convert_state_dict(state_dict: Mapping[str, np.ndarray],
                       cfg: DecoderConfig, dtype=np.float32) -> dict:
  """Converts HF tensors (numpy, any float dtype) to the decoder's params.

  The same conversion as the streaming loader (`streaming.ParamWriter`),
  applied to an in-memory state dict.
  """
  from icl_jax.convert.streaming import convert_stream

  params = convert_stream(state_dict.items(), cfg, "state dict")
  if np.dtype(dtype) != np.float32:
    params = _cast(params, dtype)
  return params


def _cast(tree, dtype):
  if isinstance(tree, dict):
    return {k: _cast(v, dtype) for k, v in tree.items()}
  return np.asarray(tree).astype(dtype)


def check_against_model(params, cfg: DecoderConfig) -> None:
  """Raises if the converted tree's structure/shapes differ from the module."""
  import jax

  from icl_jax.models.decoder import param_shapes

  expected = param_shapes(cfg)
  exp_flat = {jax.tree_util.keystr(p): s.shape for p, s in
              jax.tree_util.tree_flatten_with_path(expected)[0]}
  got_flat = {jax.tree_util.keystr(p): np.shape(v) for p, v in
              jax.tree_util.tree_flatten_with_path(params)[0]}
  if exp_flat.keys() != got_flat.keys():
    raise CheckpointKeyError(
        f"param tree mismatch: missing {sorted(exp_flat.keys() - got_flat)}, "
        f"unexpected {sorted(got_flat.keys() - exp_flat)}")
  bad = {k: (got_flat[k], exp_flat[k]) for k in exp_flat
         if tuple(got_flat[k]) != tuple(exp_flat[k])}
  if bad:
    raise CheckpointKeyError(f"param shape mismatch (got, expected): {bad}")
