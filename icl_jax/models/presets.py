"""HF config dicts of real checkpoints, for shape checks without weights.

Values transcribed from the models' config.json files (see
../shared/reference/anchors_and_conversion.md section 5); parsed with
`config_from_hf` exactly like a downloaded checkpoint would be.
"""

from __future__ import annotations

from icl_jax.models.config import DecoderConfig, config_from_hf

HF_PRESETS: dict[str, dict] = {
    "llama-3.2-1b": dict(
        model_type="llama", vocab_size=128256, hidden_size=2048,
        intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, rms_norm_eps=1e-5,
        tie_word_embeddings=True, hidden_act="silu",
        max_position_embeddings=131072, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 32.0,
                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192}),
    "llama-3.2-3b": dict(
        model_type="llama", vocab_size=128256, hidden_size=3072,
        intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
        num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-5,
        tie_word_embeddings=True, hidden_act="silu",
        max_position_embeddings=131072, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 32.0,
                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192}),
    "qwen2.5-1.5b": dict(
        model_type="qwen2", vocab_size=151936, hidden_size=1536,
        intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, rms_norm_eps=1e-6, tie_word_embeddings=True,
        hidden_act="silu", max_position_embeddings=32768, rope_theta=1e6,
        use_sliding_window=False, sliding_window=32768, max_window_layers=21),
    "gemma-2-2b": dict(
        model_type="gemma2", vocab_size=256000, hidden_size=2304,
        intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
        num_key_value_heads=4, head_dim=256, rms_norm_eps=1e-6,
        hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=256,
        attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
        sliding_window=4096, max_position_embeddings=8192, rope_theta=10000.0),
    "gemma-3-1b": dict(
        model_type="gemma3_text", vocab_size=262144, hidden_size=1152,
        intermediate_size=6912, num_hidden_layers=26, num_attention_heads=4,
        num_key_value_heads=1, head_dim=256, rms_norm_eps=1e-6,
        hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=256,
        sliding_window=512, sliding_window_pattern=6,
        max_position_embeddings=32768, rope_theta=1e6,
        rope_local_base_freq=10000.0),
    "gemma-3-270m": dict(
        model_type="gemma3_text", vocab_size=262144, hidden_size=640,
        intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
        num_key_value_heads=1, head_dim=256, rms_norm_eps=1e-6,
        hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=256,
        sliding_window=512, sliding_window_pattern=6,
        max_position_embeddings=32768, rope_theta=1e6,
        rope_local_base_freq=10000.0),
}


def preset(name: str) -> DecoderConfig:
  if name not in HF_PRESETS:
    raise KeyError(f"unknown preset {name!r}; known: {sorted(HF_PRESETS)}")
  return config_from_hf(HF_PRESETS[name])
