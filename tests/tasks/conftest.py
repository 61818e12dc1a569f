"""Shared fixtures: the two embedded tokenizers, loaded once per session."""

import pytest

TOKENIZER_NAMES = ("gemma3-270m", "smollm2-135m")


@pytest.fixture(scope="session")
def embedded_tokenizers():
  """{name: tokenizer}; cached on disk after the first (~30 s) build."""
  from icl_jax.convert.tokenizers import load_tokenizer

  return {name: load_tokenizer(name) for name in TOKENIZER_NAMES}


@pytest.fixture(scope="session", params=TOKENIZER_NAMES)
def tok(request, embedded_tokenizers):
  """Each embedded tokenizer in turn (use ``tok.name_or_path`` sparingly)."""
  t = embedded_tokenizers[request.param]
  return request.param, t


@pytest.fixture(scope="session")
def gemma_tok(embedded_tokenizers):
  return embedded_tokenizers["gemma3-270m"]


@pytest.fixture(scope="session")
def smol_tok(embedded_tokenizers):
  return embedded_tokenizers["smollm2-135m"]
