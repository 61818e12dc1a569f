"""GPT-2-style transformer with linear read-in/read-out for in-context regression.

Architecture (HF ``GPT2Model`` as used by Garg et al. 2022 and Han et al.
2024): linear read-in ``D -> d_model`` plus learned position embeddings,
``n_layers`` pre-LayerNorm blocks (causal multi-head attention, 4x MLP with
tanh-GELU = GPT-2 ``gelu_new``), final LayerNorm, linear read-out
``d_model -> 1``. No dropout (Garg et al. set every GPT-2 dropout to 0).

Initialisation follows HF GPT-2 inside the backbone (normal(0.02) weights,
zero biases, the attention/MLP output projections scaled by
``1/sqrt(2 n_layers)``) and PyTorch's ``nn.Linear`` default
(uniform(+-1/sqrt(fan_in)) for weight and bias) for the read-in and read-out,
which live outside ``GPT2Model`` in Garg et al.'s code.

Residuals, the same convention as the converted language models
(``DESIGN.md``): ``[n_layers + 1, batch, seq, d_model]``, index 0 = embedding
output (read-in + positions), index ``L + 1`` = output of block ``L``
(0-indexed), all *before* the final LayerNorm. They are sown, stacked, with
``self.sow('intermediates', 'residuals', x)`` at a single capture site, so
they cost nothing unless asked for: :func:`apply_model` with
``return_residuals=True`` (or ``SyntheticModel(...)(tokens,
return_residuals=True).residuals``) makes the collection mutable.

The blocks keep their own GPT-2 module (LayerNorm, learned positions) and
their per-block parameter names ``h_0 .. h_{L-1}`` (checkpoints depend on
them), but run through the loop every model here shares,
``icl_jax.models.blocks.block_loop``, unrolled (``unroll=True``: each block
traced separately, as this model always was, so its numerics and training
trajectories are unchanged).

A :class:`ResidualPatch` (arrays, so it can be vmapped) replaces or adds to
the residual stream at one layer and a set of positions; the patched value
is what the next block reads and what is reported as that residual. Layers
are numbered by block, as everywhere in icl_jax: layer ``l`` = output of
block ``l`` (residual index ``l + 1``), -1 = the embedding output.

Shape vocabulary: B batch, T tokens, D input dims, M d_model, H heads,
E head dim, L n_layers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from icl_jax.models.blocks import block_loop


@dataclasses.dataclass(frozen=True)
class GPT2RegressorConfig:
  """Model hyperparameters. Defaults = the paper's full size (App. D.2).

  ``d_model=256``: §3.3 says 128 but App. D.2 says 256 with 9.5M parameters,
  and only 256 gives ~9.5M (12 blocks at 128 hold ~2.4M).
  """

  n_dims: int = 16
  n_positions: int = 40  # max sequence length (2 * n_points)
  n_layers: int = 12
  n_heads: int = 8
  d_model: int = 256
  mlp_ratio: int = 4
  layer_norm_eps: float = 1e-5
  init_std: float = 0.02

  def __post_init__(self):
    if self.d_model % self.n_heads:
      raise ValueError(
          f"d_model={self.d_model} not divisible by n_heads={self.n_heads}"
      )

  @property
  def head_dim(self) -> int:
    return self.d_model // self.n_heads


PRESETS: dict[str, GPT2RegressorConfig] = {
    # The paper's model (App. D.2): 12 layers, 8 heads, d=256, ~9.5M params.
    "paper": GPT2RegressorConfig(),
    # The CPU-sized run documented in BUILD_NOTES.md.
    "reduced": GPT2RegressorConfig(n_layers=4, n_heads=4, d_model=64),
    # CI smoke tests.
    "tiny": GPT2RegressorConfig(n_layers=2, n_heads=2, d_model=32),
}


# ResidualPatch.layer for "no patch" (any value outside [-1, n_layers)).
NO_PATCH = -2


@flax.struct.dataclass
class ResidualPatch:
  """Edit of the residual stream at one layer (data, not a hook).

  layer: int scalar, block index in ``[-1, n_layers)``: the output of
    block ``layer`` (residual index ``layer + 1``); -1 = the embedding
    output. ``NO_PATCH`` (-2) for "no patch".
  positions: bool ``[T]`` or ``[B, T]``: which tokens are edited.
  values: ``[T, M]`` or ``[B, T, M]``: replacement (or added) vectors.
  add: if True, ``x + values``; else replace ``x`` by ``values``.
  """

  layer: jax.Array
  positions: jax.Array
  values: jax.Array
  add: bool = flax.struct.field(pytree_node=False, default=False)

  def apply(self, layer, x: jax.Array) -> jax.Array:
    """x (the output of block `layer`, -1: embeddings) with the patch."""
    pos = jnp.broadcast_to(self.positions, x.shape[:-1])
    sel = (jnp.asarray(self.layer) == layer) & pos
    new = x + self.values if self.add else jnp.broadcast_to(self.values, x.shape)
    return jnp.where(sel[..., None], new.astype(x.dtype), x)


@flax.struct.dataclass
class RegressorOutput:
  predictions: jax.Array  # [B, K] y-hat_i read at the x_i tokens
  outputs: jax.Array  # [B, T] read-out at every token
  residuals: Any = None  # [L+1, B, T, M] when asked for


def _torch_linear_init(fan_in: int):
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class CausalSelfAttention(nn.Module):
  config: GPT2RegressorConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg = self.config
    b, t, m = x.shape
    h, e = cfg.n_heads, cfg.head_dim
    init = nn.initializers.normal(cfg.init_std)
    proj_init = nn.initializers.normal(cfg.init_std / math.sqrt(2 * cfg.n_layers))
    qkv = nn.Dense(3 * m, kernel_init=init, name="c_attn")(x)
    q, k, v = jnp.split(qkv.reshape(b, t, 3, h, e), 3, axis=2)
    q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]  # [B, T, H, E]
    logits = jnp.einsum("bthe,bshe->bhts", q, k) / math.sqrt(e)
    causal = jnp.tril(jnp.ones((t, t), bool))
    logits = jnp.where(causal, logits.astype(jnp.float32), jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(x.dtype)
    out = jnp.einsum("bhts,bshe->bthe", probs, v).reshape(b, t, m)
    return nn.Dense(m, kernel_init=proj_init, name="c_proj")(out)


class MLP(nn.Module):
  config: GPT2RegressorConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg = self.config
    init = nn.initializers.normal(cfg.init_std)
    proj_init = nn.initializers.normal(cfg.init_std / math.sqrt(2 * cfg.n_layers))
    hdn = nn.Dense(cfg.mlp_ratio * cfg.d_model, kernel_init=init, name="c_fc")(x)
    hdn = jax.nn.gelu(hdn, approximate=True)  # GPT-2 "gelu_new"
    return nn.Dense(cfg.d_model, kernel_init=proj_init, name="c_proj")(hdn)


class Block(nn.Module):
  config: GPT2RegressorConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    eps = self.config.layer_norm_eps
    x = x + CausalSelfAttention(self.config, name="attn")(
        nn.LayerNorm(epsilon=eps, name="ln_1")(x)
    )
    x = x + MLP(self.config, name="mlp")(nn.LayerNorm(epsilon=eps, name="ln_2")(x))
    return x


class GPT2Regressor(nn.Module):
  """``tokens [B, T, D] -> outputs [B, T]``; sows residuals (see module doc)."""

  config: GPT2RegressorConfig

  def _blocks(self, x, patch):
    """All blocks on x through the shared block loop (patched outputs)."""
    cfg = self.config
    if self.is_initializing():  # creates each block's parameters
      for l in range(cfg.n_layers):
        Block(cfg, name=f"h_{l}")(x)
    per_block = [self.variables["params"][f"h_{l}"]
                 for l in range(cfg.n_layers)]
    edit = None if patch is None else (lambda l, x_in, y: patch.apply(l, y))
    collect = self.is_mutable_collection("intermediates")
    records = ({"resid": jnp.zeros((cfg.n_layers,) + x.shape, x.dtype)}
               if collect else None)
    block = Block(cfg, parent=None)

    def apply_block(p, l, x, state):
      del l
      return block.apply({"params": p}, x), state, None

    x, _, records = block_loop(apply_block, per_block, x, 0, cfg.n_layers,
                               edit=edit, records=records, unroll=True)
    return x, (records["resid"] if collect else None)

  @nn.compact
  def __call__(
      self, tokens: jax.Array, patch: ResidualPatch | None = None
  ) -> jax.Array:
    cfg = self.config
    t = tokens.shape[1]
    if t > cfg.n_positions:
      raise ValueError(f"sequence length {t} > n_positions {cfg.n_positions}")
    read_in = nn.Dense(
        cfg.d_model,
        kernel_init=_torch_linear_init(cfg.n_dims),
        bias_init=_torch_linear_init(cfg.n_dims),
        name="read_in",
    )
    wpe = self.param(
        "wpe", nn.initializers.normal(cfg.init_std), (cfg.n_positions, cfg.d_model)
    )
    x = read_in(tokens) + wpe[:t]
    if patch is not None:
      x = patch.apply(-1, x)
    emb = x
    x, resid = self._blocks(x, patch)
    if resid is not None:  # the single capture site
      self.sow("intermediates", "residuals",
               jnp.concatenate([emb[None], resid], axis=0))
    x = nn.LayerNorm(epsilon=cfg.layer_norm_eps, name="ln_f")(x)
    out = nn.Dense(
        1,
        kernel_init=_torch_linear_init(cfg.d_model),
        bias_init=_torch_linear_init(cfg.d_model),
        name="read_out",
    )(x)
    return out[..., 0]


def init_params(key: jax.Array, config: GPT2RegressorConfig) -> Any:
  """Initial parameters (fp32)."""
  dummy = jnp.zeros((1, config.n_positions, config.n_dims), jnp.float32)
  return GPT2Regressor(config).init(key, dummy)["params"]


def count_params(params: Any) -> int:
  return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def param_count(config: GPT2RegressorConfig) -> int:
  """Parameter count without allocating (``jax.eval_shape``)."""
  shapes = jax.eval_shape(lambda k: init_params(k, config), jax.random.key(0))
  return count_params(shapes)


def apply_model(
    params: Any,
    tokens: jax.Array,
    config: GPT2RegressorConfig,
    *,
    return_residuals: bool = False,
    patch: ResidualPatch | None = None,
) -> RegressorOutput:
  """Pure forward pass. ``predictions[:, i]`` = y-hat_i (read at x_i)."""
  module = GPT2Regressor(config)
  if return_residuals:
    outputs, state = module.apply(
        {"params": params}, tokens, patch, mutable=["intermediates"]
    )
    residuals = state["intermediates"]["residuals"][0]
  else:
    outputs = module.apply({"params": params}, tokens, patch)
    residuals = None
  return RegressorOutput(
      predictions=outputs[:, 0::2], outputs=outputs, residuals=residuals
  )


class SyntheticModel:
  """Config + params bound together; ``model(tokens, return_residuals=True)``.

  Mirrors the converted language models' ``lm(input_ids,
  return_residuals=True).residuals`` calling convention. The forward pass is
  jitted once per (return_residuals, patch structure).
  """

  def __init__(self, config: GPT2RegressorConfig, params: Any):
    self.config = config
    self.params = params
    self._fwd = jax.jit(
        lambda p, t, patch, rr: apply_model(
            p, t, config, return_residuals=rr, patch=patch
        ),
        static_argnums=(3,),
    )

  @property
  def n_layers(self) -> int:
    return self.config.n_layers

  @property
  def d_model(self) -> int:
    return self.config.d_model

  def __call__(
      self,
      tokens: jax.Array,
      *,
      return_residuals: bool = False,
      patch: ResidualPatch | None = None,
  ) -> RegressorOutput:
    return self._fwd(self.params, tokens, patch, bool(return_residuals))
