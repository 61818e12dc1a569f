"""Shared test setup: fp32 with highest matmul precision, tiny HF models."""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# The suite compiles thousands of tiny programs: keep them out of the
# persistent compilation cache (icl_jax.xla_cache; tests/test_xla_cache.py
# tests it with its own directories). Subprocesses inherit this.
os.environ.setdefault("ICL_JAX_XLA_CACHE", "off")

import gc  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def memory_map_count() -> int:
  """Number of memory mappings of this process (Linux; 0 elsewhere)."""
  try:
    with open("/proc/self/maps") as f:
      return sum(1 for _ in f)
  except OSError:
    return 0


@pytest.fixture(autouse=True, scope="module")
def release_compiled_programs():
  """Drops every compiled XLA program after each test module.

  XLA's CPU backend maps the code of each compiled program into memory
  (about 3 mappings per program). One pytest process compiles thousands of
  programs; at the kernel's vm.max_map_count (65530 by default) the next
  compile segfaults (CI of session 6: "Fatal Python error: Segmentation
  fault" in backend_compile_and_load, 239 tests in; the process had 37,776
  mappings at test 158 of that run). Clearing JAX's caches between modules
  unmaps them (300 compiles: 437 -> 1401 mappings, 520 after
  jax.clear_caches()); programs are recompiled where a later module needs
  them.
  """
  yield
  jax.clear_caches()
  gc.collect()

# Tiny Hugging Face configs with non-default values, one per family/variant.
# (family, config kwargs); all use eager attention and fp32.
TINY_VARIANTS = {
    "llama_mha_untied": ("llama", dict(
        num_attention_heads=4, num_key_value_heads=4,
        tie_word_embeddings=False, rope_theta=5000.0, rms_norm_eps=1e-5)),
    "llama_gqa_tied_llama3": ("llama", dict(
        num_attention_heads=4, num_key_value_heads=2,
        tie_word_embeddings=True, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 32.0,
                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64})),
    "llama_mqa_linear_rope": ("llama", dict(
        num_attention_heads=4, num_key_value_heads=1, head_dim=12,
        rope_scaling={"rope_type": "linear", "factor": 4.0})),
    "qwen2_gqa_bias_tied": ("qwen2", dict(
        num_attention_heads=4, num_key_value_heads=2,
        tie_word_embeddings=True, rope_theta=1e6)),
    "qwen2_mha_bias_untied": ("qwen2", dict(
        num_attention_heads=2, num_key_value_heads=2,
        tie_word_embeddings=False)),
    "gemma_mqa": ("gemma", dict(
        num_attention_heads=4, num_key_value_heads=1, head_dim=20)),
    "gemma2_softcap_window": ("gemma2", dict(
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
        query_pre_attn_scalar=20, sliding_window=4,
        num_hidden_layers=4)),
    "gemma3_qknorm_window": ("gemma3_text", dict(
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        query_pre_attn_scalar=24, sliding_window=5, num_hidden_layers=4,
        layer_types=["sliding_attention", "full_attention",
                     "sliding_attention", "sliding_attention"],
        rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 8.0,
                               "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default",
                                  "rope_theta": 10000.0}})),
}


def make_tiny_hf_model(family: str, seed: int = 0, **overrides):
  """A tiny random transformers model with non-trivial norms and biases."""
  import torch
  import transformers as tr

  classes = {
      "llama": (tr.LlamaConfig, tr.LlamaForCausalLM),
      "qwen2": (tr.Qwen2Config, tr.Qwen2ForCausalLM),
      "gemma": (tr.GemmaConfig, tr.GemmaForCausalLM),
      "gemma2": (tr.Gemma2Config, tr.Gemma2ForCausalLM),
      "gemma3_text": (tr.Gemma3TextConfig, tr.Gemma3ForCausalLM),
  }
  cfg_cls, model_cls = classes[family]
  kwargs = dict(vocab_size=101, hidden_size=48, intermediate_size=96,
                num_hidden_layers=3, max_position_embeddings=64,
                bos_token_id=1, eos_token_id=2, pad_token_id=0)
  kwargs.update(overrides)
  cfg = cfg_cls(**kwargs)
  cfg._attn_implementation = "eager"
  torch.manual_seed(seed)
  model = model_cls(cfg).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name:  # random norm weights: the (1 + w) offset matters
        p.normal_(0.0, 0.3)
      elif name.endswith("bias"):
        p.normal_(0.0, 0.2)
      else:
        p.normal_(0.0, 0.15)
  model.set_attn_implementation("eager")
  return model


def tiny_llama_lm(tokenizer=None, scale: float = 1.0):
  """A tiny random Flax llama (2 layers, d=16, GQA 2/1) with SmolLM2's real
  tokenizer (vocab 49152) by default; `scale` multiplies every weight
  (> 1: peaky logits, so greedy outputs depend on the edits)."""
  from icl_jax.convert.tokenizers import load_tokenizer
  from icl_jax.models.config import config_from_hf
  from icl_jax.models.decoder import init_params
  from icl_jax.models.lm import LanguageModel

  cfg = config_from_hf(dict(
      model_type="llama", vocab_size=49152, hidden_size=16,
      intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
      num_key_value_heads=1, max_position_embeddings=256, eos_token_id=2,
      bos_token_id=1, pad_token_id=2, tie_word_embeddings=True))
  params = init_params(cfg, jax.random.PRNGKey(0))
  if scale != 1.0:
    params = jax.tree_util.tree_map(lambda x: x * scale, params)
  tok = tokenizer if tokenizer is not None else load_tokenizer("smollm2-135m")
  return LanguageModel(cfg, params, tokenizer=tok, name="tiny")


@pytest.fixture
def rng():
  return np.random.RandomState(0)


def save_tiny_model_with_tokenizer(d):
  """Tiny llama (2 layers, d=32) with SmolLM2's tokenizer (vocab 49152),
  saved as an HF directory at `d` (also used by benchmarks/soak_resume.py)."""
  from icl_jax.convert.tokenizers import load_tokenizer

  model = make_tiny_hf_model(
      "llama", vocab_size=49152, hidden_size=32, intermediate_size=64,
      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
      max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
      pad_token_id=2, tie_word_embeddings=True)
  model.save_pretrained(str(d))
  load_tokenizer("smollm2-135m").save_pretrained(str(d))
  return d


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
  """The tiny llama with a tokenizer: end-to-end script and engine tests."""
  d = tmp_path_factory.mktemp("tiny_with_tokenizer") / "tiny-llama"
  return save_tiny_model_with_tokenizer(d)
