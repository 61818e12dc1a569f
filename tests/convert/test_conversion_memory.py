"""The streaming converter holds one copy of the parameters (plus one
tensor in flight), not a state dict, a stacked copy and a cast copy."""

from __future__ import annotations

import tracemalloc

import numpy as np

from icl_jax.convert.streaming import convert_stream
from icl_jax.models.config import config_from_hf
from tests.conftest import make_tiny_hf_model


def test_streaming_conversion_holds_one_copy():
  model = make_tiny_hf_model("llama", vocab_size=20000, hidden_size=64,
                             intermediate_size=256, num_hidden_layers=4,
                             num_attention_heads=4, num_key_value_heads=2,
                             tie_word_embeddings=False)
  cfg = config_from_hf(model.config.to_dict())
  shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
  weights = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
  del model
  largest = max(int(np.prod(s)) * 4 for s in shapes.values())
  total = sum(int(np.prod(s)) * 4 for s in shapes.values())

  def stream():  # each tensor is allocated as it is read, as from a file
    for k in shapes:
      yield k, weights[k].astype(np.float32, copy=True)

  tracemalloc.start()
  try:
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    params = convert_stream(stream(), cfg, "tiny")
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  used = peak - base
  # The tree itself (one copy) must be there...
  assert used >= total * 0.95, (used, total)
  # ...plus at most one tensor in flight and one transient layout copy of
  # it; the old path (state dict + per-layer list + np.stack + cast) held
  # about three copies of everything.
  assert used <= total + 2 * largest + (1 << 20), (used / total, largest / total)
  n = sum(a.size for a in _leaves(params))
  assert 4 * n == total


def _leaves(tree):
  if isinstance(tree, dict):
    for v in tree.values():
      yield from _leaves(v)
  else:
    yield tree
