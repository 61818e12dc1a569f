"""Aligned source -> target mapping by (demo, role, token index)."""

import numpy as np
import pytest

from icl_jax.tasks import PositionMismatchError
from icl_jax.tasks import UnknownPositionSetError
from icl_jax.tasks import build_prompt
from icl_jax.tasks import get_task
from icl_jax.tasks import map_positions
from icl_jax.tasks import token_layout


def _layout(tokenizer, name, k=5, query=None):
  t = get_task(name)
  q = query if query is not None else t.generate_test_inputs(1)[0]
  return token_layout(tokenizer, build_prompt(t.generate_demos(k), q))


def _roles(layout, idx):
  return [(layout.records[i].demo, layout.records[i].role,
           layout.records[i].role_index) for i in idx]


def test_uppercase_to_repeat_word_all_demo_on_gemma(gemma_tok):
  src = _layout(gemma_tok, "uppercase")
  tgt = _layout(gemma_tok, "repeat_word")
  # The output values differ in length (" APPLE" 1 token vs " apple apple"
  # 2 tokens): refuse names the group...
  with pytest.raises(PositionMismatchError) as e:
    map_positions(src, tgt, "all_demo", "refuse")
  msg = str(e.value)
  assert "demo 0 role 'output_value'" in msg and "' APPLE'" in msg
  assert "' apple apple'" in msg
  # ...skip drops only the mismatched answer groups...
  s, t = map_positions(src, tgt, "all_demo", "skip")
  assert _roles(src, s) == _roles(tgt, t)
  answers = {d for d, r, _ in _roles(tgt, t) if r == "output_value"}
  # Gemma: " BRAIN" = 2 tokens = " brain brain" -> demos 1-4 match; demo 0
  # (" APPLE" 1 token vs 2) is dropped.
  assert answers == {1, 2, 3, 4}
  # 15 input-line tokens + 10 output label/colon tokens + 4 x 2 answers.
  assert len(s) == 15 + 10 + 8
  # ...truncate pairs the first min(count) tokens of every group.
  s2, t2 = map_positions(src, tgt, "all_demo", "truncate")
  assert len(s2) == len(s) + 1
  assert (0, "output_value", 0) in _roles(tgt, t2)


def test_mapping_never_writes_into_the_query(tok):
  _, tokenizer = tok
  src = _layout(tokenizer, "linear_2x")  # longer demo block
  tgt = _layout(tokenizer, "length")
  for position_set in ("all_demo", "demo_region", "query", "final_token",
                       "first_query_token", "bos"):
    s, t = map_positions(src, tgt, position_set, "truncate")
    assert all(tgt.records[i].segment == "demo" for i in t)
    assert len(s) == len(t)
  s, t = map_positions(src, tgt, "query", "refuse")
  assert s.size == 0 and t.size == 0  # query tokens are never mapped


def test_identical_layouts_map_identically(tok):
  _, tokenizer = tok
  a = _layout(tokenizer, "uppercase", query="honey")
  b = _layout(tokenizer, "uppercase", query="crane")
  for position_set in ("all_demo", "output_only", "separators", "labels",
                       "last_demo_answer_token"):
    s, t = map_positions(a, b, position_set, "refuse")
    np.testing.assert_array_equal(s, t)
    np.testing.assert_array_equal(t, b.indices(b.mask(position_set)))
    assert s.dtype == np.int32


def test_cross_tokenizer_style_shift_is_aligned(smol_tok):
  # SmolLM2 (no BOS, split "\n\n"): uppercase -> first_letter output_only.
  src = _layout(smol_tok, "uppercase")
  tgt = _layout(smol_tok, "first_letter")
  s, t = map_positions(src, tgt, "output_only", "truncate")
  assert [tgt.records[i].role for i in t] == ["output_value"] * 5
  assert [tgt.records[i].demo for i in t] == [0, 1, 2, 3, 4]
  assert [src.records[i].role_index for i in s] == [0] * 5
  with pytest.raises(PositionMismatchError):
    map_positions(src, tgt, "output_only", "refuse")
  s, t = map_positions(src, tgt, "output_only", "skip")
  assert s.size == 0  # every uppercase answer has >= 2 tokens here


def test_fewer_target_demos(gemma_tok):
  src = _layout(gemma_tok, "uppercase", k=5)
  tgt = _layout(gemma_tok, "uppercase", k=3)
  s, t = map_positions(src, tgt, "input_only", "skip")
  assert sorted({tgt.records[i].demo for i in t}) == [0, 1, 2]
  with pytest.raises(PositionMismatchError, match="demo 3"):
    map_positions(src, tgt, "input_only", "refuse")


def test_bad_arguments(gemma_tok):
  lay = _layout(gemma_tok, "uppercase")
  with pytest.raises(UnknownPositionSetError, match="unknown position set"):
    map_positions(lay, lay, "everything", "skip")
  with pytest.raises(ValueError, match="on_mismatch"):
    map_positions(lay, lay, "all_demo", "ignore")
