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


def _layer_map(cfg: DecoderConfig) -> dict[str, tuple[str, ...]]:
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


def _reshape(name: str, w: np.ndarray, cfg: DecoderConfig) -> np.ndarray:
  D, N, K, H = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
  if name == "q":
    return w.T.reshape(D, N, H)  # [(N H), D] -> [D, N, H]
  if name in ("k", "v"):
    return w.T.reshape(D, K, H)
  if name == "o":
    return w.T.reshape(N, H, D)  # [D, (N H)] -> [N, H, D]
  if name in ("gate", "up", "down"):
    return w.T
  if name == "q_bias":
    return w.reshape(N, H)
  if name in ("k_bias", "v_bias"):
    return w.reshape(K, H)
  return w


def _set(tree: dict, path: tuple[str, ...], value):
  for p in path[:-1]:
    tree = tree.setdefault(p, {})
  tree[path[-1]] = value


def convert_state_dict(state_dict: Mapping[str, np.ndarray],
                       cfg: DecoderConfig, dtype=np.float32) -> dict:
  """Converts HF tensors (numpy, any float dtype) to the decoder's params."""
  sd = {}
  for k, v in state_dict.items():
    nk = normalize_key(k)
    if nk in sd:
      raise CheckpointKeyError(f"duplicate key after prefix normalisation: {k}")
    sd[nk] = v
  consumed: set[str] = set()

  def take(key):
    if key not in sd:
      return None
    consumed.add(key)
    return np.asarray(sd[key], dtype=np.float32)

  missing: list[str] = []
  params: dict = {}
  embed = take("embed_tokens.weight")
  if embed is None:
    missing.append("model.embed_tokens.weight")
  else:
    params["embed"] = embed
  final = take("norm.weight")
  if final is None:
    missing.append("model.norm.weight")
  else:
    params["final_norm"] = {"scale": final}
  head = take("lm_head.weight")
  if cfg.tie_embeddings:
    if head is not None and embed is not None and not np.array_equal(
        head, embed):
      raise CheckpointKeyError(
          "tie_word_embeddings=True but lm_head.weight differs from "
          "embed_tokens.weight")
  else:
    if head is None:
      missing.append("lm_head.weight")
    else:
      params["lm_head"] = head.T  # [V,D] -> [D,V]

  lmap = _layer_map(cfg)
  per_layer: dict[tuple[str, ...], list[np.ndarray]] = {}
  for i in range(cfg.n_layers):
    for suffix, path in lmap.items():
      key = f"layers.{i}.{suffix}"
      w = take(key)
      if w is None:
        missing.append(f"model.{key}")
        continue
      per_layer.setdefault(path, []).append(_reshape(path[-1], w, cfg))
  unused = sorted(k for k in sd if k not in consumed
                  and not _IGNORABLE.match(k))
  if missing or unused:
    msg = []
    if missing:
      msg.append(f"missing weight keys ({len(missing)}): {missing}")
    if unused:
      msg.append(f"unused weight keys ({len(unused)}): {unused}")
    raise CheckpointKeyError("; ".join(msg))

  layers: dict = {}
  for path, ws in per_layer.items():
    _set(layers, path, np.stack(ws, axis=0))
  params["layers"] = {"block": layers}
  params["final_norm"] = params["final_norm"]
  return _cast(params, dtype)


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
