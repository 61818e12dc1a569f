"""Config parsing: every flag, both HF schemas, loud failures."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from icl_jax.models import config as C
from icl_jax.models.decoder import param_shapes
from icl_jax.models.presets import HF_PRESETS, preset


def _n_params(cfg):
  return sum(math.prod(s.shape) for s in
             jax.tree_util.tree_leaves(param_shapes(cfg)))


@pytest.mark.parametrize("name,expected", [
    ("llama-3.2-1b", 1.236e9), ("llama-3.2-3b", 3.213e9),
    ("qwen2.5-1.5b", 1.544e9), ("gemma-2-2b", 2.614e9),
    ("gemma-3-1b", 0.9999e9), ("gemma-3-270m", 0.268e9)])
def test_presets_param_counts(name, expected):
  # Shape-only (jax.eval_shape): catches config typos without weights.
  n = _n_params(preset(name))
  assert abs(n - expected) / expected < 0.01, (name, n)


def test_family_flags():
  g2 = preset("gemma-2-2b")
  assert (g2.post_norms, g2.norm_offset, g2.embed_scale, g2.qk_norm) == (
      True, True, True, False)
  assert g2.attn_logit_softcap == 50.0 and g2.final_logit_softcap == 30.0
  assert g2.layer_types[:4] == ("sliding", "full", "sliding", "full")
  assert g2.attn_scale == pytest.approx(256 ** -0.5)
  g3 = preset("gemma-3-1b")
  assert g3.qk_norm and g3.rope_local.theta == 10000.0
  assert g3.rope_global.theta == 1e6
  assert [i for i, t in enumerate(g3.layer_types) if t == "full"] == [
      5, 11, 17, 23]
  q = preset("qwen2.5-1.5b")
  assert q.qkv_bias and q.tie_embeddings and q.head_dim == 128
  assert set(q.layer_types) == {"full"}  # use_sliding_window=False
  l = preset("llama-3.2-1b")
  assert l.rope_global.kind == "llama3" and l.rope_global.factor == 32.0


def test_llama3_inv_freq_matches_transformers():
  from transformers import LlamaConfig
  from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

  d = HF_PRESETS["llama-3.2-1b"]
  hf = LlamaConfig(**{k: v for k, v in d.items() if k != "model_type"})
  inv_ref, _ = ROPE_INIT_FUNCTIONS["llama3"](hf, "cpu")
  ours = C.rope_inv_freq(preset("llama-3.2-1b").rope_global, 64)
  np.testing.assert_allclose(ours, inv_ref.numpy(), rtol=1e-6)
  # Scaling changes the frequencies (it is not a no-op for short prompts).
  plain = C.rope_inv_freq(C.RopeConfig(theta=500000.0), 64)
  assert np.abs(ours - plain).max() > 1e-4


def test_transformers5_nested_rope_schema():
  d = dict(HF_PRESETS["gemma-3-270m"])
  d.pop("rope_theta"), d.pop("rope_local_base_freq")
  d["rope_parameters"] = {
      "full_attention": {"rope_type": "linear", "factor": 8.0,
                         "rope_theta": 1e6},
      "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}
  cfg = C.config_from_hf(d)
  assert cfg.rope_global == C.RopeConfig(theta=1e6, kind="linear", factor=8.0)
  assert cfg.rope_local == C.RopeConfig(theta=1e4)


@pytest.mark.parametrize("field,value", [
    ("rope_scaling_extra", 1), ("use_mystery_feature", True),
    ("partial_rotary_factor", 0.5)])
def test_unknown_field_fails_naming_it(field, value):
  d = dict(HF_PRESETS["llama-3.2-1b"], **{field: value})
  with pytest.raises(C.UnsupportedConfigError, match=field):
    C.config_from_hf(d)


@pytest.mark.parametrize("patch,match", [
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "yarn"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"mlp_bias": True}, "mlp_bias"),
    ({"attention_bias": True}, "attention_bias"),
    ({"model_type": "mistral"}, "mistral"),
    ({"num_key_value_heads": 5}, "multiple"),
])
def test_unsupported_values_fail(patch, match):
  d = dict(HF_PRESETS["llama-3.2-1b"], **patch)
  with pytest.raises(C.UnsupportedConfigError, match=match):
    C.config_from_hf(d)


def test_gemma1_legacy_gelu_maps_to_tanh():
  d = dict(model_type="gemma", vocab_size=10, hidden_size=8,
           intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
           num_key_value_heads=1, head_dim=4, hidden_act="gelu")
  assert C.config_from_hf(d).activation == "gelu_tanh"


def test_config_roundtrip():
  cfg = preset("gemma-3-1b")
  assert C.DecoderConfig.from_dict(cfg.to_dict()) == cfg
