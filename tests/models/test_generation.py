"""KV-cached greedy generation equals a naive recompute loop; stop rules."""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from icl_jax.models.config import config_from_hf
from icl_jax.models.decoder import init_params
from icl_jax.models.generation import (StopTables, greedy_generate,
                                      greedy_token, step_done)
from icl_jax.models.lm import LanguageModel


@pytest.fixture(scope="module")
def lm():
  cfg = config_from_hf(dict(
      model_type="gemma2", vocab_size=61, hidden_size=32,
      intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
      num_key_value_heads=2, head_dim=8, sliding_window=3,
      max_position_embeddings=64, eos_token_id=1, pad_token_id=0,
      query_pre_attn_scalar=8))
  params = init_params(cfg, jax.random.PRNGKey(0))
  params = jax.tree_util.tree_map(lambda x: x * 6.0, params)  # peaky logits
  return LanguageModel(cfg, params, tokenizer=None, name="tiny")


def _naive_greedy(lm, ids, n):
  seq = list(ids)
  for _ in range(n):
    logits = lm(np.asarray([seq], np.int32), logits="last").logits
    seq.append(int(jnp.argmax(logits[0, -1])))
  return seq[len(ids):]


def test_cached_equals_naive_recompute(lm):
  rs = np.random.RandomState(0)
  for n in (3, 9):  # 9 > sliding window 3: cache + window interplay
    ids = rs.randint(2, 61, n)
    toks, n_gen = lm.generate_ids(ids[None].astype(np.int32),
                                  np.ones((1, n), np.int32), 10, "eos")
    naive = _naive_greedy(lm, ids, 10)
    got = toks[0, :n_gen[0]].tolist()
    assert got == naive[:len(got)]
    assert n_gen[0] == 10 or naive[n_gen[0] - 1] == 1  # only EOS stops


def test_left_padded_batch_equals_single_rows(lm):
  rs = np.random.RandomState(1)
  seqs = [rs.randint(2, 61, n).tolist() for n in (4, 11, 7)]
  ids, mask, _ = lm.pad_left(seqs, pad_to_multiple=16)
  toks, n_gen = lm.generate_ids(ids, mask, 6, "eos")
  for r, s in enumerate(seqs):
    single, n1 = lm.generate_ids(np.asarray([s], np.int32),
                                 np.ones((1, len(s)), np.int32), 6, "eos")
    assert toks[r, :n_gen[r]].tolist() == single[0, :n1[0]].tolist()


def test_stop_rules_per_token():
  # vocab: 0 pad, 1 eos, 2 "\n", 3 " A", 4 "A\n", 5 "\nB", 6 " "
  texts = ["", "</s>", "\n", " A", "A\n", "\nB", " "]

  class Tok:
    eos_token_id = 1

    def __len__(self):
      return len(texts)

    def batch_decode(self, ids, skip_special_tokens=False):
      return [texts[i[0]] for i in ids]

  t = StopTables.from_tokenizer(Tok(), 7).as_arrays()
  seen0 = jnp.zeros(1, bool)
  seen1 = jnp.ones(1, bool)

  def stops(tok, seen, rule):
    return bool(step_done(jnp.array([tok]), seen, t, rule)[0][0])

  # "line": a leading newline does not stop; a newline after text does.
  assert not stops(2, seen0, "line")
  assert stops(2, seen1, "line")
  assert stops(4, seen0, "line")  # "A\n": newline after text in one token
  assert not stops(5, seen0, "line")  # "\nB": text starts after the newline
  assert stops(1, seen0, "line")
  # "newline": any newline stops (D1 reads up to the first newline).
  assert stops(2, seen0, "newline") and stops(5, seen0, "newline")
  assert not stops(3, seen0, "newline")
  assert not stops(2, seen1, "eos") and stops(1, seen0, "eos")


def test_while_loop_stops_early_when_all_rows_done(lm):
  # With every token marked EOS, the loop must stop after one step.
  tables = StopTables(np.ones(61, bool), *(np.zeros(61, bool),) * 3)
  ids = np.full((2, 4), 5, np.int32)
  out, n_gen, _ = greedy_generate(lm.config, lm.params, ids,
                                  np.ones_like(ids), tables.as_arrays(), 12,
                                  "eos", 0)
  assert n_gen.tolist() == [1, 1]
  assert (np.asarray(out)[:, 1:] == 0).all()


@pytest.mark.parametrize("V,block", [(4096, 1024), (61, 1024), (1000, 64),
                                     (97, 8)])
def test_greedy_token_equals_argmax(V, block):
  rng = np.random.default_rng(V)
  x = rng.normal(size=(40, V)).astype(np.float32)
  # Ties (first index wins), ties across block borders, -inf rows, padding.
  x[0, [3, V - 1]] = 50.0
  b = min(block, V - 1)
  x[1, [b - 1, b]] = 50.0
  x[2] = -np.inf
  x[3, V - 1] = 60.0
  x[4] = np.round(x[4])  # many exact ties
  x[5, :] = 1.0
  got = np.asarray(jax.jit(lambda a: greedy_token(a, block))(x))
  np.testing.assert_array_equal(got, np.argmax(x, axis=-1))
  assert got.dtype == np.int32


def test_greedy_token_nan_counts_as_max():
  x = np.zeros((2, 70), np.float32)
  x[0, 5], x[0, 9] = 3.0, np.nan
  x[1, 2] = np.nan
  np.testing.assert_array_equal(np.asarray(greedy_token(x, 16)), [9, 2])


def test_compacted_decode_equals_plain(lm):
  # Rows stop at different steps (a quarter of the vocabulary is EOS); the
  # compacted phases (16, 8, 4, 2 rows) give the same tokens as one phase.
  tables = StopTables.eos_only(61, range(3, 61, 4)).as_arrays()
  rs = np.random.RandomState(3)
  ids = rs.randint(2, 61, (16, 5)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[::3, :2] = 0  # some left padding
  plain = greedy_generate(lm.config, lm.params, ids, mask, tables, 10, "eos",
                          0, 0)
  compact = greedy_generate(lm.config, lm.params, ids, mask, tables, 10,
                            "eos", 0, 2)
  assert len(set(np.asarray(plain[1]).tolist())) >= 3
  for a, b in zip(plain, compact):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
