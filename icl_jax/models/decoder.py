"""The decoder: one Flax implementation for Llama, Qwen2 and Gemma 1/2/3.

Everything family-specific is a flag of `DecoderConfig`. Block parameters
are stacked on a leading layer axis L (`params["layers"]["block"]`, created
by `nn.scan` at init). Every run of the blocks -- this module's forward, the
intervention engine, the naive reference, knockout and skip edits -- goes
through `run_blocks` (one `models.blocks.block_loop`), which takes traced
start/stop blocks, a per-block edit hook and per-block key positions.

Attention runs over explicit key slots. A call processes a chunk of T query
tokens with absolute positions `q_pos [B,T]`; keys live in S slots with
positions `key_pos [B,S]` (-1 = empty or padding, never attended). Without a
cache, the chunk's own keys are the slots (S = T). With a cache, the chunk's
keys/values are first written at `slots [B,T]`, then attention runs over all
S slots. Query i may attend key j iff 0 <= key_pos[j] <= q_pos[i] (and, on
sliding layers, q_pos[i] - key_pos[j] < window: the window includes the
current token, as in HF). This one rule covers left padding, prefill, KV-cached
decoding and prefix reuse.

Residuals are sown into the 'intermediates' collection (read them with
`collect_residuals` / `collect_components`):
  embed_out [B,T,D]; resid [L,B,T,D] (block outputs);
  attn_out / mlp_out [L,B,T,D] (what each sub-block adds to the residual,
  i.e. after Gemma's post-norms).
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn

from icl_jax.models.blocks import block_loop
from icl_jax.models.config import DecoderConfig, RopeConfig, rope_inv_freq

# Masked attention logits. A large finite negative (not -inf) so a fully masked
# row (a padding query) yields a uniform softmax instead of NaNs.
_MASK_VALUE = float(np.finfo(np.float32).min)


def rope_cos_sin(rope: RopeConfig, head_dim: int, positions):
  """cos, sin [B,T,H] in fp32 for integer positions [B,T] (rotate-half)."""
  inv = jnp.asarray(rope_inv_freq(rope, head_dim), jnp.float32)  # [H/2]
  freqs = positions.astype(jnp.float32)[..., None] * inv  # [B,T,H/2]
  emb = jnp.concatenate([freqs, freqs], axis=-1)  # [B,T,H]
  return jnp.cos(emb), jnp.sin(emb)


def apply_rope(x, cos, sin):
  """x [B,T,N,H]; cos/sin [B,T,H] -> rotated x (HF rotate-half convention)."""
  half = x.shape[-1] // 2
  x1, x2 = x[..., :half], x[..., half:]
  rotated = jnp.concatenate([-x2, x1], axis=-1)
  cos = cos[:, :, None, :].astype(x.dtype)
  sin = sin[:, :, None, :].astype(x.dtype)
  return x * cos + rotated * sin


class RMSNorm(nn.Module):
  """RMSNorm over the last axis; statistics always in fp32."""

  eps: float
  offset: bool  # Gemma: (1 + w), weights initialised at 0
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    init = nn.initializers.zeros if self.offset else nn.initializers.ones
    w = self.param("scale", init, (x.shape[-1],), self.param_dtype)
    xf = x.astype(jnp.float32)
    normed = xf * jax.lax.rsqrt(jnp.mean(xf * xf, -1, keepdims=True) + self.eps)
    if self.offset:
      # Gemma: scale in fp32, cast at the end (HF PR #29402).
      return (normed * (1.0 + w.astype(jnp.float32))).astype(x.dtype)
    # Llama/Qwen: cast to the input dtype first, then multiply by the weight.
    return w * normed.astype(x.dtype)


def _dense_init():
  return nn.initializers.normal(stddev=0.02)


class Attention(nn.Module):
  cfg: DecoderConfig
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, cos, sin, q_pos, key_pos, is_sliding, layer_kv, slots,
               head_edit=None):
    """head_edit: None, or `(z [B,T,N,H], wo [N,H,D], a [B,T,D]) -> a`: an
    edit of the heads' outputs (head n's output is z[..., n, :] @ wo[n],
    `BTNH,NHD->BTND`) expressed on their sum `a` (the "head_out" site)."""
    c = self.cfg
    D, N, K, H = c.d_model, c.n_heads, c.n_kv_heads, c.head_dim
    R = N // K
    B, T, _ = x.shape
    wq = self.param("q", _dense_init(), (D, N, H), self.param_dtype)
    wk = self.param("k", _dense_init(), (D, K, H), self.param_dtype)
    wv = self.param("v", _dense_init(), (D, K, H), self.param_dtype)
    wo = self.param("o", _dense_init(), (N, H, D), self.param_dtype)
    q = jnp.einsum("BTD,DNH->BTNH", x, wq)
    k = jnp.einsum("BTD,DKH->BTKH", x, wk)
    v = jnp.einsum("BTD,DKH->BTKH", x, wv)
    if c.qkv_bias:
      q = q + self.param("q_bias", nn.initializers.zeros, (N, H),
                         self.param_dtype)
      k = k + self.param("k_bias", nn.initializers.zeros, (K, H),
                         self.param_dtype)
      v = v + self.param("v_bias", nn.initializers.zeros, (K, H),
                         self.param_dtype)
    if c.qk_norm:
      q = RMSNorm(c.norm_eps, c.norm_offset, self.param_dtype, name="q_norm")(q)
      k = RMSNorm(c.norm_eps, c.norm_offset, self.param_dtype, name="k_norm")(k)
    q = apply_rope(q, cos, sin)
    k = apply_rope(k, cos, sin)

    if layer_kv is None:
      keys, values = k, v  # [B,S=T,K,H]
      new_kv = None
    else:
      b_idx = jnp.arange(B)[:, None]
      keys = layer_kv["k"].at[b_idx, slots].set(k.astype(layer_kv["k"].dtype))
      values = layer_kv["v"].at[b_idx, slots].set(
          v.astype(layer_kv["v"].dtype))
      new_kv = {"k": keys, "v": values}

    qg = q.reshape(B, T, K, R, H)
    # Scores in fp32 (HF eager: softmax in fp32).
    s = jnp.einsum("BTKRH,BSKH->BKRTS", qg, keys,
                   preferred_element_type=jnp.float32) * c.attn_scale
    if c.attn_logit_softcap is not None:
      s = jnp.tanh(s / c.attn_logit_softcap) * c.attn_logit_softcap
    kp = key_pos[:, None, :]  # [B,1,S]
    qp = q_pos[:, :, None]  # [B,T,1]
    allowed = (kp >= 0) & (kp <= qp)  # [B,T,S]
    if c.sliding_window is not None:
      in_window = (qp - kp) < c.sliding_window
      allowed = allowed & jnp.where(is_sliding, in_window, True)
    s = jnp.where(allowed[:, None, None, :, :], s, _MASK_VALUE)
    for name, val in (("q", q), ("k", k), ("v", v), ("scores", s)):
      self.sow("intermediates", name, val)  # read by attribution's QK fix
    probs = jax.nn.softmax(s, axis=-1).astype(values.dtype)
    out = jnp.einsum("BKRTS,BSKH->BTKRH", probs, values).reshape(B, T, N, H)
    self.sow("intermediates", "z", out)  # per-head outputs before W_O
    a = jnp.einsum("BTNH,NHD->BTD", out, wo)
    if head_edit is not None:
      a = head_edit(out, wo, a)
    return a, new_kv


class MLP(nn.Module):
  cfg: DecoderConfig
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = self.cfg
    wg = self.param("gate", _dense_init(), (c.d_model, c.d_ff), self.param_dtype)
    wu = self.param("up", _dense_init(), (c.d_model, c.d_ff), self.param_dtype)
    wd = self.param("down", _dense_init(), (c.d_ff, c.d_model),
                    self.param_dtype)
    g = jnp.einsum("BTD,DF->BTF", x, wg)
    u = jnp.einsum("BTD,DF->BTF", x, wu)
    if c.activation == "silu":
      a = jax.nn.silu(g)
    else:  # "gelu_tanh": Gemma's gelu_pytorch_tanh
      a = jax.nn.gelu(g, approximate=True)
    return jnp.einsum("BTF,FD->BTD", a * u, wd)


class Block(nn.Module):
  """One decoder block. Returns (block output, updated layer KV or None)."""

  cfg: DecoderConfig
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, is_sliding, layer_kv, rope, q_pos, key_pos, slots,
               site_edit=None):
    """site_edit: None, or a dict of edits of this block's components (see
    `run_blocks`): "head_out" (`Attention`'s head_edit), "attn_out" /
    "mlp_out" (`value [B,T,D] -> value`, after Gemma's post-norms, i.e.
    what is added to the residual)."""
    c = self.cfg
    site_edit = site_edit or {}
    (cos_g, sin_g), (cos_l, sin_l) = rope
    cos = jnp.where(is_sliding, cos_l, cos_g)
    sin = jnp.where(is_sliding, sin_l, sin_g)
    norm = lambda name: RMSNorm(c.norm_eps, c.norm_offset, self.param_dtype,
                                name=name)
    h = norm("attn_norm")(x)
    a, new_kv = Attention(c, self.param_dtype, name="attn")(
        h, cos, sin, q_pos, key_pos, is_sliding, layer_kv, slots,
        head_edit=site_edit.get("head_out"))
    if c.post_norms:
      a = norm("post_attn_norm")(a)
    if "attn_out" in site_edit:
      a = site_edit["attn_out"](a)
    x = x + a
    h = norm("mlp_norm")(x)
    m = MLP(c, self.param_dtype, name="mlp")(h)
    if c.post_norms:
      m = norm("post_mlp_norm")(m)
    if "mlp_out" in site_edit:
      m = site_edit["mlp_out"](m)
    x = x + m
    self.sow("intermediates", "attn_out", a)
    self.sow("intermediates", "mlp_out", m)
    self.sow("intermediates", "resid", x)
    return x, new_kv


class _ScanBody(nn.Module):
  cfg: DecoderConfig
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, is_sliding, layer_kv, rope, q_pos, key_pos, slots):
    x, new_kv = Block(self.cfg, self.param_dtype, name="block")(
        x, is_sliding, layer_kv, rope, q_pos, key_pos, slots)
    return x, new_kv


def rope_tables(cfg: DecoderConfig, positions):
  """((cos_g, sin_g), (cos_l, sin_l)), each [B,T,H] fp32."""
  g = rope_cos_sin(cfg.rope_global, cfg.head_dim, positions)
  loc = (rope_cos_sin(cfg.rope_local, cfg.head_dim, positions)
         if cfg.rope_local is not None else g)
  return g, loc


class Decoder(nn.Module):
  """Token ids -> logits; residuals sown when 'intermediates' is mutable."""

  cfg: DecoderConfig
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    c = self.cfg
    self.embed = self.param("embed", _dense_init(), (c.vocab_size, c.d_model),
                            self.param_dtype)
    self.layers = nn.scan(
        _ScanBody,
        variable_axes={"params": 0, "intermediates": 0},
        split_rngs={"params": True},
        in_axes=(0, 0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
        length=c.n_layers,
    )(c, self.param_dtype)
    self.final_norm = RMSNorm(c.norm_eps, c.norm_offset, self.param_dtype)
    if not c.tie_embeddings:
      self.lm_head = self.param("lm_head", _dense_init(),
                                (c.d_model, c.vocab_size), self.param_dtype)

  def embed_tokens(self, tokens):
    x = jnp.take(self.embed, tokens, axis=0)  # [B,T,D]
    if self.cfg.embed_scale:
      # HF: torch.tensor(sqrt(d)) (fp32) cast to the weight dtype, then
      # multiplied (sqrt(640)=25.298 -> 25.25 in bf16).
      scale = jnp.asarray(np.float32(self.cfg.d_model ** 0.5)).astype(x.dtype)
      x = x * scale
    return x

  def unembed(self, x):
    """x [B,T,D] (already final-normed) -> fp32 logits [B,T,V]."""
    c = self.cfg
    if c.tie_embeddings:
      logits = jnp.einsum("BTD,VD->BTV", x, self.embed)
    else:
      logits = jnp.einsum("BTD,DV->BTV", x, self.lm_head)
    logits = logits.astype(jnp.float32)
    if c.final_logit_softcap is not None:
      cap = c.final_logit_softcap
      logits = jnp.tanh(logits / cap) * cap
    return logits

  def head(self, x):
    """x [B,T,D] block-stack output -> fp32 logits [B,T,V]."""
    return self.unembed(self.final_norm(x))

  def __call__(self, tokens, q_pos, key_pos, cache=None, slots=None,
               logits_index=None, compute_logits=True):
    """Runs the decoder on a chunk.

    Args:
      tokens: int [B,T].
      q_pos: int [B,T] absolute positions of the chunk tokens.
      key_pos: int [B,S] positions of the key slots (-1 = empty/padding);
        with cache=None, S = T and these are the chunk's own keys.
      cache: None or {"k","v": [L,B,S,K,H]}; the chunk is written at `slots`.
      slots: int [B,T] cache slots of the chunk tokens (with a cache).
      logits_index: None (logits at every position) or int [B]: the one
        position per row whose logits are computed (saves the [B,T,V]
        tensor, which for Gemma 3 is the largest in the model).
      compute_logits: False returns (None, cache).

    Returns:
      (logits fp32 [B,T,V] or [B,1,V] or None, new cache or None)
    """
    x = self.embed_tokens(tokens)
    self.sow("intermediates", "embed_out", x)
    if self.is_initializing():  # nn.scan creates the stacked parameters
      x, new_cache = self.layers(
          x, jnp.asarray(self.cfg.is_sliding), cache,
          rope_tables(self.cfg, q_pos), q_pos, key_pos, slots)
    else:
      collect = self.is_mutable_collection("intermediates")
      out = run_blocks(self.cfg, self.variables["params"], x, q_pos, key_pos,
                       cache=cache, slots=slots, collect=collect)
      x, new_cache = out[0], out[1]
      for name, value in (out[2].items() if collect else ()):
        self.sow("intermediates", name, value)
    if not compute_logits:
      return None, new_cache
    if logits_index is not None:
      x = x[jnp.arange(x.shape[0]), logits_index][:, None, :]
    return self.head(x), new_cache


def collect_residuals(intermediates) -> jnp.ndarray:
  """[L+1,B,T,D]: embedding output, then each block's output."""
  emb = intermediates["embed_out"][0]
  blocks = intermediates["resid"][0]
  return jnp.concatenate([emb[None], blocks], axis=0)


def collect_components(intermediates):
  """(attn_out, mlp_out), each [L,B,T,D]."""
  return intermediates["attn_out"][0], intermediates["mlp_out"][0]


# What `run_blocks(collect=...)` can record per block. Attention internals
# (q [B,T,N,H], k / v [B,T,K,H] after RoPE, masked fp32 scores [B,K,R,T,T])
# only without a cache (the chunk's own keys).
RECORDS = ("resid", "attn_out", "mlp_out", "z", "q", "k", "v", "scores")


def params_dtype(params):
  """The dtype of a parameter tree (its first leaf's)."""
  return jax.tree_util.tree_leaves(params)[0].dtype


def embed(cfg: DecoderConfig, params, tokens):
  """Token ids [B,T] -> embedding output [B,T,D] (the input of block 0)."""
  return Decoder(cfg, params_dtype(params)).apply(
      {"params": params}, tokens, method=lambda m, t: m.embed_tokens(t))


def final_logits(cfg: DecoderConfig, params, x):
  """x [B,T,D] block-stack output -> fp32 logits [B,T,V] (final norm,
  unembedding, soft-cap)."""
  return Decoder(cfg, params_dtype(params)).apply(
      {"params": params}, x, method=lambda m, h: m.unembed(m.final_norm(h)))


def run_blocks(cfg: DecoderConfig, params, x, q_pos, key_pos, *, start=0,
               stop=None, cache=None, slots=None, key_pos_at=None, edit=None,
               site_edit=None, collect=False):
  """Runs blocks [start, stop) on x [B,T,D] (the input of block `start`).

  The one block loop of the decoder (`models.blocks.block_loop`).

  Args:
    params: the decoder's parameters (blocks at params["layers"]["block"]).
    q_pos: int [B,T] positions of the chunk; key_pos: int [B,S] (see module
      doc).
    start, stop: blocks to run (ints or traced scalars; stop None = all).
    cache: None (the chunk's own keys, S = T) or {"k","v": [L,B,S,K,H]};
      each block writes the chunk's K/V at `slots` [B,T].
    key_pos_at: None, or `l -> key_pos [B,S]`: the key positions block l
      attends per (e.g. a knockout at some blocks).
    edit: None, or `(l, x_in, y) -> y` applied to block l's output.
    site_edit: None, or `l -> dict` of block l's component edits (see
      `Block`; keys "head_out", "attn_out", "mlp_out"; l may be traced).
    collect: also return {"resid", "attn_out", "mlp_out"}: [L,B,T,D] each
      (rows of blocks outside [start, stop) are zero); or a tuple of names
      from RECORDS ("z": per-head attention outputs before W_O,
      [L,B,T,N,H]).
  Returns:
    (x, cache), or (x, cache, records) with `collect`.
  """
  if collect and collect is not True and set(collect) - set(RECORDS):
    raise ValueError(f"collect: unknown records {collect}; known: {RECORDS}")
  stop = cfg.n_layers if stop is None else stop
  block = Block(cfg, params_dtype(params), parent=None)
  is_sliding = jnp.asarray(cfg.is_sliding)
  rope = rope_tables(cfg, q_pos)

  def apply_block(p, l, x, cache):
    kv = None
    if cache is not None:
      kv = {n: jax.lax.dynamic_index_in_dim(cache[n], l, 0, keepdims=False)
            for n in ("k", "v")}
    kp = key_pos if key_pos_at is None else key_pos_at(l)
    args = ({"params": p}, x, is_sliding[l], kv, rope, q_pos, kp, slots,
            None if site_edit is None else site_edit(l))
    extras = None
    if names:
      (y, new_kv), st = block.apply(*args, mutable=["intermediates"])
      inter = st["intermediates"]
      got = {"attn_out": inter["attn_out"][0], "mlp_out": inter["mlp_out"][0],
             **{k: v[0] for k, v in inter["attn"].items()}}
      extras = {k: got[k] for k in names if k != "resid"}
    else:
      y, new_kv = block.apply(*args)
    if cache is not None:
      cache = {n: jax.lax.dynamic_update_index_in_dim(cache[n], new_kv[n], l,
                                                      0)
               for n in ("k", "v")}
    return y, cache, extras

  names = (RECORDS[:3] if collect is True else tuple(collect or ()))
  records = None
  if names:
    B, T = x.shape[:2]
    N, K, H = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    shapes = {"z": (B, T, N, H), "q": (B, T, N, H), "k": (B, T, K, H),
              "v": (B, T, K, H), "scores": (B, K, N // K, T, T)}
    records = {k: jnp.zeros((cfg.n_layers,) + shapes.get(k, x.shape),
                            jnp.float32 if k == "scores" else x.dtype)
               for k in names}
  x, cache, records = block_loop(apply_block, params["layers"]["block"], x,
                                 start, stop, state=cache, edit=edit,
                                 records=records)
  return (x, cache, records) if collect else (x, cache)


def init_params(cfg: DecoderConfig, rng, param_dtype=jnp.float32):
  """Random parameters (for tests and shape checks)."""
  model = Decoder(cfg, param_dtype)
  tokens = jnp.zeros((1, 2), jnp.int32)
  pos = jnp.arange(2)[None]
  return model.init(rng, tokens, pos, pos)["params"]


def param_shapes(cfg: DecoderConfig, param_dtype=jnp.float32):
  """Parameter ShapeDtypeStructs without allocating (jax.eval_shape)."""
  model = Decoder(cfg, param_dtype)
  tokens = jnp.zeros((1, 2), jnp.int32)
  pos = jnp.arange(2)[None]
  return jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), tokens, pos, pos))["params"]
