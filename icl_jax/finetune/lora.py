"""LoRA adapters over the converted Flax decoder, applied functionally.

An adapter on projection W (of block l) adds scale * A @ B to it, with
A [in, r], B [r, out], scale = alpha / r (Hu et al. 2021; PEFT's
defaults: A Kaiming-uniform, B zero, so a fresh adapter changes nothing).
The decoder's projections (models/decoder.py) and their in / out axes:

    attn q [D, N, H]   k, v [D, K, H]   o [N, H, D]
    mlp  gate, up [D, F]                down [F, D]

`icl_jax.models` is not changed. Adapters live in their own tree
({target: {"a": [S, in, r], "b": [S, r, out]}}, S = the adapted layers in
`LoraConfig.layers` order) and are merged into a copy of the stacked block
weights: W[l] + scale * A_l @ B_l (`merge`). Merging is exact LoRA
arithmetic (x W + x A B scale = x (W + scale A B)).

Dropout on the adapter input (PEFT applies it per token and feature to the
projection's input x) needs activations the decoder does not expose (the
inputs of o and down are internal to its attention / MLP). Instead of
editing the model, dropout here is applied to the rows of A (the input
features) with one mask per example, shared by that example's tokens:
x (diag(m) A) B / (1 - p). Per-example masks mean per-example merged
weights, so the adapted layers run vmapped over the batch (`forward`);
layers without adapters run batched and unchanged. This is a deviation
from PEFT's per-token mask (same rate, same expectation, coarser noise).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from icl_jax.models.decoder import embed, final_logits, run_blocks
from icl_jax.models.generation import positions_from_mask

# target -> (sub-module, number of leading input axes of the weight)
TARGETS = {"q": ("attn", 1), "k": ("attn", 1), "v": ("attn", 1),
           "o": ("attn", 2), "gate": ("mlp", 1), "up": ("mlp", 1),
           "down": ("mlp", 1)}


@dataclasses.dataclass(frozen=True)
class LoraConfig:
  """Which layers and projections get adapters, and their size."""

  layers: tuple  # block indices, sorted, unique
  rank: int = 16
  alpha: float = 16.0
  dropout: float = 0.1
  targets: tuple = tuple(TARGETS)

  def __post_init__(self):
    layers = tuple(int(l) for l in self.layers)
    if not layers or list(layers) != sorted(set(layers)):
      raise ValueError(f"layers must be sorted unique block indices, got "
                       f"{self.layers!r}")
    bad = [t for t in self.targets if t not in TARGETS]
    if bad:
      raise ValueError(f"unknown LoRA targets {bad}; known: {tuple(TARGETS)}")
    if self.rank < 1 or not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"need rank >= 1 and 0 <= dropout < 1, got rank="
                       f"{self.rank}, dropout={self.dropout}")
    object.__setattr__(self, "layers", layers)
    object.__setattr__(self, "targets", tuple(self.targets))

  @property
  def scale(self) -> float:
    return float(self.alpha) / self.rank


def layer_thirds(n_layers: int) -> dict:
  """{"first": the first third of the blocks, "last": the last third}
  (floor(L/3) blocks each: Han et al.'s first 10 / last 10 of
  Llama-3.1-8B's 32)."""
  k = max(1, n_layers // 3)
  return {"first": tuple(range(k)),
          "last": tuple(range(n_layers - k, n_layers))}


def _block(params):
  return params["layers"]["block"]


def _in_out(w, n_in: int):
  """(in, out) sizes of one layer's weight w [*in_axes, *out_axes]."""
  return (math.prod(w.shape[:n_in]), math.prod(w.shape[n_in:]))


def init_lora(params, lcfg: LoraConfig, key):
  """Adapter tree {target: {"a": [S, in, r], "b": [S, r, out]}} (fp32).

  A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT: kaiming_uniform(a=sqrt(5)) has
  this bound), B = 0."""
  blk, S = _block(params), len(lcfg.layers)
  out = {}
  for t, key_t in zip(lcfg.targets, jax.random.split(key, len(lcfg.targets))):
    mod, n_in = TARGETS[t]
    d_in, d_out = _in_out(blk[mod][t][0], n_in)
    bound = 1.0 / math.sqrt(d_in)
    out[t] = {"a": jax.random.uniform(key_t, (S, d_in, lcfg.rank),
                                      jnp.float32, -bound, bound),
              "b": jnp.zeros((S, lcfg.rank, d_out), jnp.float32)}
  return out


def deltas(adapter, lcfg: LoraConfig, shapes: dict, row_mask=None) -> dict:
  """{target: scale * A @ B reshaped to the weights [S, *shape]}.

  row_mask: None, or {target: [S, in]} dropout masks on A's rows (already
  divided by 1 - p)."""
  out = {}
  for t, ab in adapter.items():
    a = ab["a"] if row_mask is None else ab["a"] * row_mask[t][..., None]
    d = jnp.einsum("SIR,SRO->SIO", a, ab["b"]) * lcfg.scale
    out[t] = d.reshape((d.shape[0],) + tuple(shapes[t]))
  return out


def _shapes(blk, lcfg):
  return {t: blk[TARGETS[t][0]][t].shape[1:] for t in lcfg.targets}


def merge(params, adapter, lcfg: LoraConfig):
  """The decoder's params with every adapted weight W[l] replaced by
  W[l] + scale * A_l @ B_l (a new tree; `params` is not modified)."""
  blk = _block(params)
  idx = jnp.asarray(lcfg.layers)
  new = jax.tree_util.tree_map(lambda x: x, blk)
  for t, d in deltas(adapter, lcfg, _shapes(blk, lcfg)).items():
    mod = TARGETS[t][0]
    w = blk[mod][t]
    new[mod] = dict(new[mod])
    new[mod][t] = w.at[idx].add(d.astype(w.dtype))
  layers = dict(params["layers"], block=new)
  return dict(params, layers=layers)


def _segments(n_layers: int, layers) -> list:
  """[(start, stop, adapted)]: maximal runs of blocks with / without
  adapters, in order."""
  sel = set(layers)
  out, s = [], 0
  for l in range(1, n_layers + 1):
    if l == n_layers or ((l in sel) != (s in sel)):
      out.append((s, l, s in sel))
      s = l
  return out


def _sub(cfg, s, e, blk):
  """A config and params for blocks [s, e) alone (blk: their weights)."""
  sub_cfg = dataclasses.replace(cfg, n_layers=e - s,
                                layer_types=cfg.layer_types[s:e])
  return sub_cfg, {"layers": {"block": blk}}


def _adapted_segment(cfg, params, adapter, lcfg, s, e, x, q_pos, key_pos,
                     masks):
  """Blocks [s, e) (all adapted) on x [B,T,D]; masks None (no dropout) or
  {target: [B, S, in]} per-example dropout masks (vmapped over B)."""
  blk = jax.tree_util.tree_map(lambda a: a[s:e], _block(params))
  rows = [lcfg.layers.index(l) for l in range(s, e)]
  sub_ad = jax.tree_util.tree_map(lambda a: a[jnp.asarray(rows)], adapter)
  shapes = _shapes(blk, lcfg)

  def run(xb, qb, kb, mb):
    ds = deltas(sub_ad, lcfg, shapes,
                None if mb is None else {t: m[jnp.asarray(rows)]
                                         for t, m in mb.items()})
    new = {m: dict(v) for m, v in blk.items()}
    for t, d in ds.items():
      mod = TARGETS[t][0]
      new[mod][t] = blk[mod][t] + d.astype(blk[mod][t].dtype)
    sub_cfg, sub_params = _sub(cfg, s, e, new)
    return run_blocks(sub_cfg, sub_params, xb, qb, kb)[0]

  if masks is None:
    return run(x, q_pos, key_pos, None)
  one = lambda xb, qb, kb, mb: run(xb[None], qb[None], kb[None], mb)[0]
  return jax.vmap(one)(x, q_pos, key_pos, masks)


def dropout_masks(adapter, lcfg: LoraConfig, batch: int, key) -> dict:
  """{target: [B, S, in]} keep-masks / (1 - p) for a batch of examples."""
  p = lcfg.dropout
  out = {}
  for t, k in zip(sorted(adapter), jax.random.split(key, len(adapter))):
    S, d_in = adapter[t]["a"].shape[:2]
    keep = jax.random.bernoulli(k, 1.0 - p, (batch, S, d_in))
    out[t] = keep.astype(jnp.float32) / (1.0 - p)
  return out


def forward(cfg, params, adapter, lcfg: LoraConfig, tokens, mask, *,
            key=None, gather=None):
  """Logits of the adapted model on left-padded tokens [B,T] / mask [B,T].

  key: None (no dropout: exactly `merge`'s model) or a PRNG key (training:
  per-example dropout masks on the adapters' inputs, see module doc).
  gather: None (logits at every position [B,T,V]) or int [B,A] positions
  (logits [B,A,V] there only; fp32, as the decoder's head computes them).
  """
  q_pos, key_pos = positions_from_mask(mask)
  x = embed(cfg, params, tokens)  # [B,T,D]
  masks = None
  if key is not None and lcfg.dropout > 0:
    masks = dropout_masks(adapter, lcfg, tokens.shape[0], key)
  for s, e, adapted in _segments(cfg.n_layers, lcfg.layers):
    if adapted:
      x = _adapted_segment(cfg, params, adapter, lcfg, s, e, x, q_pos,
                           key_pos, masks)
    else:
      x = run_blocks(cfg, params, x, q_pos, key_pos, start=s, stop=e)[0]
  if gather is not None:
    x = jnp.take_along_axis(x, gather[..., None], axis=1)  # [B,A,D]
  return final_logits(cfg, params, x)
