"""A tiny random model with a real tokenizer, for end-to-end script smoke runs."""

from __future__ import annotations

import pytest

from tests.conftest import make_tiny_hf_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
  """Tiny llama (2 layers, d=32) with SmolLM2's tokenizer (vocab 49152)."""
  from icl_jax.convert.tokenizers import load_tokenizer

  d = tmp_path_factory.mktemp("tiny_with_tokenizer") / "tiny-llama"
  model = make_tiny_hf_model(
      "llama", vocab_size=49152, hidden_size=32, intermediate_size=64,
      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
      max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
      pad_token_id=2, tie_word_embeddings=True)
  model.save_pretrained(str(d))
  load_tokenizer("smollm2-135m").save_pretrained(str(d))
  return d
