"""Task-vector injection at the final token equals a naive patched run."""

import numpy as np
import jax
import pytest

import icl_jax
from icl_jax.interventions.engine import Engine
from icl_jax.interventions.naive import naive_patched_generate
from icl_jax.probes import injection


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
  return icl_jax.load(str(tiny_model_dir), cache=False)


def test_group_by_length():
  assert injection.group_by_length([3, 1, 3, 2]) == {1: [1], 2: [3],
                                                      3: [0, 2]}


@pytest.mark.parametrize("mode", ["replace", "add"])
def test_inject_final_token_matches_naive(tiny_lm, mode):
  lm = tiny_lm
  prompts = ["Input: apple\nOutput: APPLE\n\nInput: honey\nOutput:",
             "Input: apple\nOutput: APPLE\n\nInput: hippopotamus\nOutput:",
             "Input: apple\nOutput: APPLE\n\nInput: frost\nOutput:"]
  rs = np.random.RandomState(0)
  d = lm.config.d_model
  vectors = rs.normal(0, 2.0, (2, 2, d)).astype(np.float32)  # [V, L, D]
  layers = [0, 1]
  alpha = 0.5
  eng = Engine(lm, max_new_tokens=4)
  res = injection.inject_final_token(eng, prompts, vectors, layers,
                                     mode=mode, alpha=alpha, bucket=2)
  assert res.changed.all()
  assert res.baseline == lm.generate(prompts, max_new_tokens=4)
  for i, p in enumerate(prompts):
    ids = lm.tokenizer(p, add_special_tokens=True)["input_ids"]
    mask = np.zeros(len(ids), bool)
    mask[-1] = True
    for v in range(2):
      for li, layer in enumerate(layers):
        val = vectors[v, li] * (alpha if mode == "add" else 1.0)
        toks, _ = naive_patched_generate(
            lm, ids, layer, mask, np.broadcast_to(val, (len(ids), d)),
            a=0.0 if mode == "replace" else 1.0, max_new_tokens=4)
        want = lm.tokenizer.decode(toks, skip_special_tokens=True)
        assert res.texts[v][li][i] == want, (v, layer, i)


def test_inject_rejects_bad_mode(tiny_lm):
  eng = Engine(tiny_lm, max_new_tokens=2)
  with pytest.raises(ValueError, match="mode"):
    injection.inject_final_token(eng, ["Input: a\nOutput:"],
                                 np.zeros((1, 1, tiny_lm.config.d_model)),
                                 [0], mode="swap")
