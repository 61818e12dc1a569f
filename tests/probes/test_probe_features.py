"""icl_jax.probes.features: batched residual gathering equals per-prompt runs."""

import numpy as np
import jax
import pytest

from icl_jax.models.config import config_from_hf
from icl_jax.models.decoder import init_params
from icl_jax.models.lm import LanguageModel
from icl_jax.probes import features


def _tiny_lm():
  cfg = config_from_hf(dict(
      model_type="llama", vocab_size=41, hidden_size=16, intermediate_size=32,
      num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1,
      max_position_embeddings=64, eos_token_id=1, pad_token_id=0))
  params = init_params(cfg, jax.random.PRNGKey(0))
  return LanguageModel(cfg, params, tokenizer=None, name="tiny")


def test_collect_matches_unpadded_forward():
  lm = _tiny_lm()
  rs = np.random.RandomState(0)
  seqs = [rs.randint(2, 41, n).tolist() for n in (5, 9, 3, 12, 7)]
  sets = {
      "last": [[len(s) - 1] for s in seqs],
      "mean02": [[0, 2] for s in seqs],
  }
  got = features.collect(lm, seqs, sets, batch_size=2, pad_to_multiple=4)
  keep = features.collect(lm, seqs, sets, residual_indices=[3, 1],
                          batch_size=3)
  for i, s in enumerate(seqs):
    res = np.asarray(lm(np.asarray([s]), return_residuals=True,
                        logits=None).residuals)[:, 0]  # [L+1, T, D]
    np.testing.assert_allclose(got["last"][:, i], res[:, -1], rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(got["mean02"][:, i],
                               res[:, [0, 2]].mean(axis=1), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(keep["last"][:, i], res[[3, 1], -1],
                               rtol=1e-4, atol=1e-5)
  assert got["last"].shape == (4, 5, 16)


def test_position_weights_validation():
  w = features.position_weights([[0, 2], [1]], [3, 2], 4)
  np.testing.assert_allclose(w, [[0, .5, 0, .5], [0, 0, 0, 1.]])
  with pytest.raises(ValueError, match="outside"):
    features.position_weights([[3]], [3], 4)
  with pytest.raises(ValueError, match="empty"):
    features.position_weights([[]], [3], 4)


def test_collect_rejects_wrong_set_length():
  lm = _tiny_lm()
  with pytest.raises(ValueError, match="entries"):
    features.collect(lm, [[2, 3]], {"x": [[0], [1]]})


def test_layout_and_faithful_index_sets():
  from icl_jax import tasks as T
  from icl_jax.convert.tokenizers import load_tokenizer

  tok = load_tokenizer("smollm2-135m")
  eps = T.make_episodes("uppercase", 2, k=3)
  specs = [e.prompt() for e in eps]
  ids, sets = features.layout_index_sets(
      tok, specs, ["final_token", "pre_answer_tokens", "first_query_token"])
  for i, spec in enumerate(specs):
    assert ids[i] == tok(spec.text, add_special_tokens=True)["input_ids"]
    assert sets["final_token"][i] == [len(ids[i]) - 1]
    assert len(sets["pre_answer_tokens"][i]) == 3  # one ':' per demo
    for j in sets["pre_answer_tokens"][i]:
      assert tok.decode([ids[i][j]]) == ":"
      assert tok.decode([ids[i][j - 1]]).strip() == "Output"
  fids, fsets = features.faithful_index_sets(
      tok, [s.text for s in specs], ["first_query_token"])
  assert fids == ids
  assert fsets["first_query_token"] == sets["first_query_token"]
