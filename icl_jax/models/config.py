"""One config dataclass for every supported decoder family.

Families differ only through explicit flags (qkv bias, norm offset, post-norms,
soft-caps, sliding-window pattern, qk-norm, rope type); there is one decoder
implementation (`icl_jax.models.decoder`). `config_from_hf` parses a Hugging
Face ``config.json`` dict (transformers 4.x and 5.x schemas) and fails loudly,
naming the field, on anything it does not handle.

Axis vocabulary used across the package (einsum letters):
  B batch, T query positions, S key positions (cache slots), D d_model,
  N query heads, K kv heads, R query heads per kv head (N = K*R), H head_dim,
  F MLP hidden, V vocab, L layers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

FULL = "full"
SLIDING = "sliding"


class UnsupportedConfigError(ValueError):
  """A config field or value the converter does not handle."""


@dataclasses.dataclass(frozen=True)
class RopeConfig:
  """Rotary embedding parameters (HF rotate-half convention)."""

  theta: float
  kind: str = "default"  # "default" | "linear" | "llama3"
  factor: float = 1.0
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """Everything the decoder needs; no family-specific code paths elsewhere."""

  family: str
  vocab_size: int
  d_model: int
  n_layers: int
  n_heads: int
  n_kv_heads: int
  head_dim: int
  d_ff: int
  norm_eps: float
  max_position_embeddings: int
  activation: str  # "silu" | "gelu_tanh"
  # Gemma RMSNorm: x_norm * (1 + w), computed in fp32 and cast at the end.
  # Llama RMSNorm: w * x_norm.astype(input dtype).
  norm_offset: bool
  post_norms: bool  # Gemma 2/3: post-attention and post-MLP norms
  qk_norm: bool  # Gemma 3: RMSNorm over head_dim on q and k, before RoPE
  qkv_bias: bool  # Qwen2: bias on q/k/v projections (none on o)
  embed_scale: bool  # Gemma: embeddings * sqrt(d_model), in the param dtype
  tie_embeddings: bool
  attn_logit_softcap: float | None
  final_logit_softcap: float | None
  # Attention scale is query_pre_attn_scalar**-0.5 when set, else head_dim**-0.5
  query_pre_attn_scalar: float | None
  layer_types: tuple[str, ...]  # FULL or SLIDING per layer
  sliding_window: int | None
  rope_global: RopeConfig
  rope_local: RopeConfig | None = None  # RoPE of sliding layers (Gemma 3)
  bos_token_id: int | None = None
  eos_token_ids: tuple[int, ...] = ()
  pad_token_id: int | None = None

  def __post_init__(self):
    if self.n_heads % self.n_kv_heads:
      raise UnsupportedConfigError(
          f"num_attention_heads={self.n_heads} is not a multiple of "
          f"num_key_value_heads={self.n_kv_heads}"
      )
    if len(self.layer_types) != self.n_layers:
      raise UnsupportedConfigError(
          f"layer_types has {len(self.layer_types)} entries for "
          f"{self.n_layers} layers"
      )
    bad = set(self.layer_types) - {FULL, SLIDING}
    if bad:
      raise UnsupportedConfigError(f"unknown layer types {sorted(bad)}")
    if SLIDING in self.layer_types and not self.sliding_window:
      raise UnsupportedConfigError("sliding layers need a sliding_window")
    if self.activation not in ("silu", "gelu_tanh"):
      raise UnsupportedConfigError(f"unknown activation {self.activation!r}")

  @property
  def attn_scale(self) -> float:
    base = (
        self.query_pre_attn_scalar
        if self.query_pre_attn_scalar is not None
        else self.head_dim
    )
    return float(base) ** -0.5

  @property
  def is_sliding(self) -> tuple[bool, ...]:
    return tuple(t == SLIDING for t in self.layer_types)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "DecoderConfig":
    d = dict(d)
    d["rope_global"] = RopeConfig(**d["rope_global"])
    if d.get("rope_local") is not None:
      d["rope_local"] = RopeConfig(**d["rope_local"])
    d["layer_types"] = tuple(d["layer_types"])
    d["eos_token_ids"] = tuple(d["eos_token_ids"])
    return cls(**d)


# --------------------------------------------------------------------------
# Hugging Face config parsing
# --------------------------------------------------------------------------

# Keys that carry no information the forward pass depends on.
_BENIGN_KEYS = frozenset({
    "_name_or_path", "_model_name_or_path", "architectures", "model_type",
    "transformers_version", "dtype", "torch_dtype", "initializer_range",
    "use_cache", "attention_dropout", "bos_token_id", "eos_token_id",
    "pad_token_id", "unk_token_id", "output_attentions", "output_hidden_states",
    "return_dict", "id2label", "label2id", "problem_type",
    "is_encoder_decoder", "chunk_size_feed_forward", "quantization_config",
    "max_position_embeddings", "tie_word_embeddings", "cache_implementation",
    "final_logit_softcapping", "attn_logit_softcapping", "vocab_size",
    "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps",
    "rope_theta", "rope_scaling", "rope_parameters", "layer_types",
    "sliding_window", "tf_legacy_loss", "pruned_heads", "torchscript",
    "use_return_dict", "add_cross_attention", "tie_encoder_decoder",
    "is_decoder", "cross_attention_hidden_size", "finetuning_task",
    "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id",
    "task_specific_params", "base_model_tp_plan", "base_model_pp_plan",
})

# Keys each family may carry on top of the benign ones, with a validator.
_FAMILY_KEYS = {
    "llama": {"hidden_act", "attention_bias", "mlp_bias", "pretraining_tp"},
    "qwen2": {"hidden_act", "use_sliding_window", "max_window_layers",
              "attention_bias", "use_mrope", "bias"},
    "gemma": {"hidden_act", "hidden_activation", "attention_bias",
              "use_bidirectional_attention"},
    "gemma2": {"hidden_act", "hidden_activation", "attention_bias",
               "query_pre_attn_scalar", "use_bidirectional_attention"},
    "gemma3_text": {"hidden_act", "hidden_activation", "attention_bias",
                    "query_pre_attn_scalar", "use_bidirectional_attention",
                    "rope_local_base_freq", "sliding_window_pattern",
                    "_sliding_window_pattern", "final_logit_softcapping"},
}

SUPPORTED_FAMILIES = tuple(_FAMILY_KEYS)


def _require(d, key, allowed, family, default=None):
  v = d.get(key, default)
  if v not in allowed:
    raise UnsupportedConfigError(
        f"{family}: unsupported value {key}={v!r} (supported: {allowed})"
    )


def _parse_rope_dict(rd: dict[str, Any] | None, default_theta: float | None,
                     where: str) -> RopeConfig:
  rd = dict(rd or {})
  kind = rd.pop("rope_type", None) or rd.pop("type", None) or "default"
  rd.pop("type", None)
  theta = rd.pop("rope_theta", None)
  if theta is None:
    theta = default_theta
  if theta is None:
    raise UnsupportedConfigError(f"{where}: no rope_theta")
  known = {"factor", "low_freq_factor", "high_freq_factor",
           "original_max_position_embeddings", "attention_factor",
           "partial_rotary_factor"}
  unknown = set(rd) - known
  if unknown:
    raise UnsupportedConfigError(
        f"{where}: unsupported rope field(s) {sorted(unknown)}"
    )
  if rd.get("attention_factor") not in (None, 1, 1.0):
    raise UnsupportedConfigError(
        f"{where}: unsupported rope attention_factor={rd['attention_factor']}"
    )
  if rd.get("partial_rotary_factor") not in (None, 1, 1.0):
    raise UnsupportedConfigError(
        f"{where}: unsupported partial_rotary_factor="
        f"{rd['partial_rotary_factor']}"
    )
  needed = {"linear": ("factor",),
            "llama3": ("factor", "low_freq_factor", "high_freq_factor",
                       "original_max_position_embeddings")}.get(kind, ())
  absent = [k for k in needed if rd.get(k) is None]
  if absent:
    raise UnsupportedConfigError(
        f"{where}: rope type {kind!r} needs {', '.join(absent)}")
  if kind == "default":
    return RopeConfig(theta=float(theta))
  if kind == "linear":
    return RopeConfig(theta=float(theta), kind="linear",
                      factor=float(rd["factor"]))
  if kind == "llama3":
    return RopeConfig(
        theta=float(theta), kind="llama3", factor=float(rd["factor"]),
        low_freq_factor=float(rd["low_freq_factor"]),
        high_freq_factor=float(rd["high_freq_factor"]),
        original_max_position_embeddings=int(
            rd["original_max_position_embeddings"]),
    )
  raise UnsupportedConfigError(
      f"{where}: unsupported rope type {kind!r} "
      "(supported: default, linear, llama3)"
  )


def _parse_ropes(d: dict[str, Any], family: str):
  """Returns (global rope, local rope or None) from either HF schema."""
  rp = d.get("rope_parameters")
  if rp and ("full_attention" in rp or "sliding_attention" in rp):
    # transformers 5, per-layer-type schema (Gemma 3).
    extra = set(rp) - {"full_attention", "sliding_attention"}
    if extra:
      raise UnsupportedConfigError(
          f"{family}: unsupported rope_parameters keys {sorted(extra)}")
    g = _parse_rope_dict(rp.get("full_attention"), d.get("rope_theta"),
                         f"{family}.rope_parameters.full_attention")
    loc = rp.get("sliding_attention")
    l = (_parse_rope_dict(loc, None, f"{family}.rope_parameters."
                          "sliding_attention") if loc else None)
    return g, l
  if rp:
    g = _parse_rope_dict(rp, d.get("rope_theta"), f"{family}.rope_parameters")
  else:
    # transformers 4 schema: rope_theta + rope_scaling.
    g = _parse_rope_dict(d.get("rope_scaling"), d.get("rope_theta", 10000.0),
                         f"{family}.rope_scaling")
  local = None
  if family == "gemma3_text":
    # Local (sliding) layers use default RoPE with their own base.
    local = RopeConfig(theta=float(d.get("rope_local_base_freq", 10000.0)))
  return g, local


def _eos_ids(v) -> tuple[int, ...]:
  if v is None:
    return ()
  if isinstance(v, (list, tuple)):
    return tuple(int(x) for x in v)
  return (int(v),)


def _check_fields(d: dict[str, Any]) -> str:
  """The model family, after refusing unknown families and fields."""
  family = d.get("model_type")
  if family == "gemma3" and "text_config" in d:
    raise UnsupportedConfigError(
        "gemma3 (multimodal) checkpoints are not supported; use a "
        "gemma3_text (Gemma3ForCausalLM) checkpoint"
    )
  if family not in _FAMILY_KEYS:
    raise UnsupportedConfigError(
        f"unsupported model_type {family!r}; supported: "
        f"{', '.join(SUPPORTED_FAMILIES)}"
    )
  unknown = set(d) - _BENIGN_KEYS - _FAMILY_KEYS[family]
  if unknown:
    raise UnsupportedConfigError(
        f"{family}: unsupported config field(s) "
        + ", ".join(f"{k}={d[k]!r}" for k in sorted(unknown))
    )
  required = ("num_hidden_layers", "num_attention_heads", "hidden_size",
              "vocab_size", "intermediate_size")
  absent = [k for k in required if d.get(k) is None]
  if absent:
    raise UnsupportedConfigError(
        f"{family}: config has no {', '.join(absent)} (required)")
  return family


def _common_fields(d: dict[str, Any], family: str) -> dict[str, Any]:
  """DecoderConfig fields shared by every family."""
  n_layers = int(d["num_hidden_layers"])
  n_heads = int(d["num_attention_heads"])
  n_kv = int(d.get("num_key_value_heads") or n_heads)
  head_dim = int(d.get("head_dim") or d["hidden_size"] // n_heads)
  g_rope, l_rope = _parse_ropes(d, family)
  return dict(
      family=family,
      vocab_size=int(d["vocab_size"]),
      d_model=int(d["hidden_size"]),
      n_layers=n_layers,
      n_heads=n_heads,
      n_kv_heads=n_kv,
      head_dim=head_dim,
      d_ff=int(d["intermediate_size"]),
      norm_eps=float(d.get("rms_norm_eps", 1e-6)),
      max_position_embeddings=int(d.get("max_position_embeddings") or 2048),
      rope_global=g_rope,
      rope_local=l_rope,
      bos_token_id=d.get("bos_token_id"),
      eos_token_ids=_eos_ids(d.get("eos_token_id")),
      pad_token_id=d.get("pad_token_id"),
  )


def _llama_qwen2_config(d: dict[str, Any], family: str,
                        common: dict[str, Any]) -> DecoderConfig:
  _require(d, "hidden_act", ("silu",), family, default="silu")  # HF default
  if family == "llama":
    if d.get("mlp_bias"):
      raise UnsupportedConfigError("llama: unsupported mlp_bias=True")
    if d.get("pretraining_tp", 1) != 1:
      raise UnsupportedConfigError(
          f"llama: unsupported pretraining_tp={d['pretraining_tp']}")
  if d.get("use_mrope"):
    raise UnsupportedConfigError("qwen2: unsupported use_mrope=True")
  layer_types = _layer_types(d, common["n_layers"], family)
  return DecoderConfig(
      **common,
      activation="silu",
      norm_offset=False,
      post_norms=False,
      qk_norm=False,
      qkv_bias=(family == "qwen2"),
      embed_scale=False,
      tie_embeddings=bool(d.get("tie_word_embeddings", False)),
      attn_logit_softcap=None,
      final_logit_softcap=None,
      query_pre_attn_scalar=None,
      layer_types=layer_types,
      sliding_window=(int(d["sliding_window"]) if SLIDING in layer_types
                      else None),
  )


def _gemma_config(d: dict[str, Any], family: str,
                  common: dict[str, Any]) -> DecoderConfig:
  """Gemma 1/2/3."""
  act_key = "hidden_act" if family == "gemma" else "hidden_activation"
  act = d.get(act_key) or d.get("hidden_act") or "gelu_pytorch_tanh"
  if family == "gemma" and act == "gelu":
    act = "gelu_pytorch_tanh"  # legacy value; HF maps it to the tanh GELU
  if act not in ("gelu_pytorch_tanh",):
    raise UnsupportedConfigError(f"{family}: unsupported {act_key}={act!r}")
  softcap_attn = d.get("attn_logit_softcapping")
  softcap_final = d.get("final_logit_softcapping")
  if family == "gemma" and (softcap_attn or softcap_final):
    raise UnsupportedConfigError("gemma: soft-capping is not part of Gemma 1")
  layer_types = _layer_types(d, common["n_layers"], family)
  qpas = d.get("query_pre_attn_scalar")
  return DecoderConfig(
      **common,
      activation="gelu_tanh",
      norm_offset=True,
      post_norms=family in ("gemma2", "gemma3_text"),
      qk_norm=family == "gemma3_text",
      qkv_bias=False,
      embed_scale=True,
      tie_embeddings=bool(d.get("tie_word_embeddings", True)),
      attn_logit_softcap=float(softcap_attn) if softcap_attn else None,
      final_logit_softcap=float(softcap_final) if softcap_final else None,
      query_pre_attn_scalar=float(qpas) if qpas is not None else None,
      layer_types=layer_types,
      sliding_window=(int(d["sliding_window"]) if SLIDING in layer_types
                      else None),
  )


def config_from_hf(d: dict[str, Any]) -> DecoderConfig:
  """Builds a DecoderConfig from a Hugging Face config dict.

  Raises UnsupportedConfigError naming any field or value not handled.
  """
  d = dict(d)
  family = _check_fields(d)
  common = _common_fields(d, family)
  if d.get("attention_bias") and family != "qwen2":
    raise UnsupportedConfigError(f"{family}: unsupported attention_bias=True")
  if d.get("use_bidirectional_attention"):
    raise UnsupportedConfigError(
        f"{family}: unsupported use_bidirectional_attention=True")
  if family in ("llama", "qwen2"):
    return _llama_qwen2_config(d, family, common)
  return _gemma_config(d, family, common)


def _layer_types(d: dict[str, Any], n_layers: int, family: str):
  """Per-layer attention type, preferring an explicit `layer_types` list."""
  lt = d.get("layer_types")
  if lt is not None:
    mapping = {"full_attention": FULL, "sliding_attention": SLIDING}
    bad = [t for t in lt if t not in mapping]
    if bad:
      raise UnsupportedConfigError(
          f"{family}: unsupported layer_types entries {sorted(set(bad))}")
    if len(lt) != n_layers:
      raise UnsupportedConfigError(
          f"{family}: layer_types has {len(lt)} entries for {n_layers} layers")
    out = tuple(mapping[t] for t in lt)
    if family == "qwen2" and not d.get("use_sliding_window", False):
      # HF Qwen2 ignores the window unless use_sliding_window is set.
      out = tuple(FULL for _ in out)
    if family in ("llama", "gemma") and SLIDING in out:
      raise UnsupportedConfigError(f"{family}: sliding layers not supported")
    return out
  if family == "gemma2":
    # Sliding on even layers (HF: `not bool(layer_idx % 2)`).
    return tuple(SLIDING if i % 2 == 0 else FULL for i in range(n_layers))
  if family == "gemma3_text":
    pattern = int(d.get("sliding_window_pattern")
                  or d.get("_sliding_window_pattern") or 6)
    return tuple(FULL if (i + 1) % pattern == 0 else SLIDING
                 for i in range(n_layers))
  if family == "qwen2" and d.get("use_sliding_window"):
    mwl = int(d.get("max_window_layers", n_layers))
    return tuple(SLIDING if i >= mwl else FULL for i in range(n_layers))
  return tuple(FULL for _ in range(n_layers))


def depth_fraction(layer: int, n_layers: int) -> float:
  """Paper convention: layer L (block L's output) sits at depth L/n_layers."""
  return layer / n_layers


def rope_inv_freq(rope: RopeConfig, head_dim: int):
  """Inverse frequencies [H/2], float32 numpy.

  Computed in fp32 like HF (`base ** (arange(0, dim, 2).float() / dim)`), so the
  rotary angles match the reference bit for bit as far as possible.
  """
  import numpy as np

  f32 = np.float32
  exponent = np.arange(0, head_dim, 2, dtype=np.int64).astype(f32) / f32(
      head_dim)
  inv = (f32(1.0) / (f32(rope.theta) ** exponent)).astype(f32)
  if rope.kind == "default":
    return inv
  if rope.kind == "linear":
    return (inv / f32(rope.factor)).astype(f32)
  if rope.kind == "llama3":
    low_wl = rope.original_max_position_embeddings / rope.low_freq_factor
    high_wl = rope.original_max_position_embeddings / rope.high_freq_factor
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > low_wl, inv / rope.factor, inv)
    smooth = (rope.original_max_position_embeddings / wavelen
              - rope.low_freq_factor) / (rope.high_freq_factor
                                         - rope.low_freq_factor)
    smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
    is_medium = (wavelen >= high_wl) & (wavelen <= low_wl)
    return np.where(is_medium, smoothed, scaled).astype(f32)
  raise UnsupportedConfigError(f"unknown rope kind {rope.kind!r}")
