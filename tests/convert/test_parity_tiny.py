"""Converted tiny models equal transformers' eager fp32 forward.

Every family and variant (MHA/GQA/MQA, tied/untied, llama3 and linear RoPE
scaling, q/k/v bias, soft-caps, a sliding window smaller than the sequence,
Gemma 3 qk-norm with separate local/global RoPE) is saved with
`save_pretrained` (real safetensors) and loaded through `icl_jax.load`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import icl_jax
from icl_jax.models.decoder import RMSNorm
from tests.conftest import TINY_VARIANTS, make_tiny_hf_model

TOL = 1e-4  # relative to the largest reference magnitude
SEQ = 12  # longer than the sliding windows (4, 5) of the Gemma variants


@pytest.fixture(scope="module", params=sorted(TINY_VARIANTS))
def converted(request, tmp_path_factory):
  family, kwargs = TINY_VARIANTS[request.param]
  hf = make_tiny_hf_model(family, **kwargs)
  d = tmp_path_factory.mktemp(request.param)
  if request.param == "llama_mha_untied":
    # Exercise the sharded-index path too.
    hf.save_pretrained(str(d / "ckpt"), max_shard_size="40KB")
    assert (d / "ckpt" / "model.safetensors.index.json").exists()
  else:
    hf.save_pretrained(str(d / "ckpt"))
  lm = icl_jax.load(str(d / "ckpt"), cache_dir=d / "cache")
  return request.param, hf, lm


def _rel(a, b):
  return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
               .max() / np.abs(np.asarray(b, np.float64)).max())


def _final_norm(lm, x):
  c = lm.config
  return RMSNorm(c.norm_eps, c.norm_offset).apply(
      {"params": {"scale": lm.params["final_norm"]["scale"]}}, x)


def test_logits_and_hidden_states_match(converted):
  name, hf, lm = converted
  ids = np.random.RandomState(1).randint(3, hf.config.vocab_size, (2, SEQ))
  with torch.no_grad():
    ref = hf(torch.tensor(ids), output_hidden_states=True)
  out = lm(ids, return_residuals=True)
  assert out.logits.shape == (2, SEQ, hf.config.vocab_size)
  L = lm.config.n_layers
  assert out.residuals.shape == (L + 1, 2, SEQ, lm.config.d_model)
  assert _rel(out.logits, ref.logits.numpy()) < TOL, name
  for i in range(L):
    assert _rel(out.residuals[i], ref.hidden_states[i].numpy()) < TOL, (name, i)
  # HF's last hidden state is after the final norm.
  assert _rel(_final_norm(lm, out.residuals[L]),
              ref.hidden_states[L].numpy()) < TOL, name
  # ...and is *not* our raw last residual (the convention matters).
  assert _rel(out.residuals[L], ref.hidden_states[L].numpy()) > 1e-2


def test_left_padded_batch_matches(converted):
  name, hf, lm = converted
  rs = np.random.RandomState(2)
  lengths = [SEQ, 7, 9]
  ids = np.zeros((3, SEQ), np.int64)
  mask = np.zeros((3, SEQ), np.int64)
  for r, n in enumerate(lengths):
    ids[r, SEQ - n:] = rs.randint(3, hf.config.vocab_size, n)
    mask[r, SEQ - n:] = 1
  pos = np.clip(np.cumsum(mask, -1) - 1, 0, None)
  with torch.no_grad():
    ref = hf(torch.tensor(ids), attention_mask=torch.tensor(mask),
             position_ids=torch.tensor(pos), output_hidden_states=True)
  out = lm(ids, mask, return_residuals=True)
  real = mask.astype(bool)
  ref_logits = ref.logits.numpy()
  assert _rel(np.asarray(out.logits)[real], ref_logits[real]) < TOL, name
  for i in range(lm.config.n_layers):
    assert _rel(np.asarray(out.residuals[i])[real],
                ref.hidden_states[i].numpy()[real]) < TOL, (name, i)
  # Each padded row equals the same prompt run alone.
  for r, n in enumerate(lengths):
    alone = lm(ids[r:r + 1, SEQ - n:])
    np.testing.assert_allclose(np.asarray(out.logits[r, SEQ - n:]),
                               np.asarray(alone.logits[0]), rtol=0,
                               atol=TOL * float(np.abs(alone.logits).max()))


def test_greedy_generation_matches_hf(converted):
  name, hf, lm = converted
  rs = np.random.RandomState(3)
  new = 8
  for n in (5, SEQ):
    ids = rs.randint(3, hf.config.vocab_size, (1, n))
    with torch.no_grad():
      g = hf.generate(torch.tensor(ids), max_new_tokens=new, do_sample=False,
                      eos_token_id=None, pad_token_id=0)
    toks, n_gen = lm.generate_ids(ids.astype(np.int32),
                                  np.ones_like(ids, np.int32), new, "eos")
    assert n_gen[0] == new
    assert toks[0].tolist() == g[0, n:].tolist(), name


def test_components_sum_to_residual_update(converted):
  _, hf, lm = converted
  ids = np.random.RandomState(4).randint(3, hf.config.vocab_size, (1, 6))
  out = lm(ids, return_residuals=True, return_components=True)
  delta = np.asarray(out.residuals[1:]) - np.asarray(out.residuals[:-1])
  np.testing.assert_allclose(
      np.asarray(out.attn_out) + np.asarray(out.mlp_out), delta,
      atol=1e-4 * float(np.abs(delta).max()))
