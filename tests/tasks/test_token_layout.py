"""Aligned layouts on both embedded tokenizers: masks decode to their spans."""

import numpy as np
import pytest

from icl_jax.tasks import ARROW_FORMAT
from icl_jax.tasks import POSITION_SETS
from icl_jax.tasks import UnknownPositionSetError
from icl_jax.tasks import build_prompt
from icl_jax.tasks import get_task
from icl_jax.tasks import task_names
from icl_jax.tasks import token_layout
from icl_jax.tasks.prompts import DEMO_ROLES


def _prompt(name, k=5):
  t = get_task(name)
  return build_prompt(t.generate_demos(k), t.generate_test_inputs(1)[0])


def _decode(tokenizer, layout, mask):
  return tokenizer.decode([int(i) for i in layout.token_ids[mask]])


def _concat(spec, parts):
  return "".join(spec.span(role, demo).text for role, demo in parts)


@pytest.mark.parametrize("name", task_names())
def test_every_part_decodes_to_exactly_its_span(tok, name):
  _, tokenizer = tok
  spec = _prompt(name)
  layout = token_layout(tokenizer, spec)
  assert not any(r.mixed for r in layout.records)  # no cross-part tokens
  for span in spec.spans:
    demos = None if span.demo is None else [span.demo]
    m = layout.role_mask([span.role], demos)
    if span.demo is None:
      m &= layout.mask("query")
    assert m.any(), span
    # offsets of the group cover exactly the span (incl. the merged space)
    assert layout.text_of(m) == span.text, span
    assert _decode(tokenizer, layout, m) == span.text, span
    idx = layout.indices(m)
    assert list(idx) == list(range(idx[0], idx[-1] + 1))  # contiguous
    assert [layout.records[i].role_index for i in idx] == list(range(len(idx)))
  # every token is accounted for: specials + parts
  n_special = int(layout.mask("bos").sum())
  assert n_special + sum(
      1 for r in layout.records if r.segment != "special") == len(layout)


@pytest.mark.parametrize("name", task_names())
def test_named_sets_decode_to_the_parts_they_name(tok, name):
  _, tokenizer = tok
  spec = _prompt(name)
  lay = token_layout(tokenizer, spec)
  k_last = spec.n_demos - 1
  for k in range(spec.n_demos):
    y = spec.demos[k][1]
    assert _decode(tokenizer, lay, lay.mask("output_only", demo=k)) == " " + y
    assert _decode(tokenizer, lay, lay.mask("answer_tokens", demo=k)) == " " + y
    assert _decode(tokenizer, lay, lay.mask("input_only", demo=k)) == (
        f"Input: {spec.demos[k][0]}")
    assert _decode(tokenizer, lay, lay.mask("output_line", demo=k)) == (
        f"Output: {y}")
    assert _decode(tokenizer, lay, lay.mask("all_demo", demo=k)) == (
        f"Input: {spec.demos[k][0]}Output: {y}")
    assert _decode(tokenizer, lay, lay.mask("labels", demo=k)) == (
        "Input:Output:")
    assert _decode(tokenizer, lay, lay.mask("separators", demo=k)) == "\n\n\n"
    assert _decode(tokenizer, lay, lay.mask("demo_region", demo=k)) == (
        _concat(spec, [(r, k) for r in DEMO_ROLES]))
  assert _decode(tokenizer, lay, lay.mask("last_demo")) == (
      f"Input: {spec.demos[k_last][0]}Output: {spec.demos[k_last][1]}")
  assert _decode(tokenizer, lay, lay.mask("query")) == (
      f"Input: {spec.query}\nOutput:")
  assert _decode(tokenizer, lay, lay.mask("query_value")) == " " + spec.query
  assert _decode(tokenizer, lay, lay.mask("final_token")) == ":"
  assert lay.mask("final_token")[-1] and lay.mask("final_token").sum() == 1
  # single-token sets: the ends of their parts
  last_ans = lay.indices(lay.mask("last_demo_answer_token"))
  assert last_ans.tolist() == [lay.group(k_last, "output_value")[-1]]
  first_q = lay.indices(lay.mask("first_query_token"))
  assert first_q.tolist() == [lay.indices(lay.mask("query_value"))[0]]
  assert (" " + spec.query).startswith(_decode(tokenizer, lay,
                                               lay.mask("first_query_token")))
  assert _decode(tokenizer, lay, lay.mask("last_demo_separator")) == "\n\n"
  # sets partition as documented
  assert not (lay.mask("demo_region") & lay.mask("query")).any()
  assert (lay.mask("all_demo") == (lay.mask("input_only")
                                   | lay.mask("output_line"))).all()


def test_bos_and_newline_conventions_of_the_two_tokenizers(gemma_tok,
                                                           smol_tok):
  spec = _prompt("uppercase")
  g = token_layout(gemma_tok, spec)
  s = token_layout(smol_tok, spec)
  # Gemma: <bos> at index 0 and "\n\n" is ONE token.
  assert g.records[0].role == "bos" and g.mask("bos").tolist().count(True) == 1
  assert gemma_tok.convert_ids_to_tokens(int(g.token_ids[0])) == "<bos>"
  for k in range(5):
    sep = g.group(k, "demo_separator")
    assert len(sep) == 1 and gemma_tok.decode([int(g.token_ids[sep[0]])]) == (
        "\n\n")
  # SmolLM2: no BOS, and "\n\n" is TWO "\n" tokens inside the prompt.
  assert not s.mask("bos").any() and s.records[0].role == "input_label"
  for k in range(5):
    sep = s.group(k, "demo_separator")
    assert [smol_tok.decode([int(s.token_ids[i])]) for i in sep] == ["\n",
                                                                     "\n"]
  assert (len(g), len(s)) == (51, 58)
  # Per-demo answer token counts differ between the tokenizers.
  assert [len(g.group(k, "output_value")) for k in range(5)] == [1, 2, 2, 2, 2]
  assert [len(s.group(k, "output_value")) for k in range(5)] == [2, 2, 3, 2, 3]


@pytest.mark.parametrize("name", ["uppercase", "linear_2x",
                                  "pattern_completion", "repeat_n",
                                  "reverse_spaced"])
def test_offset_free_fallback_gives_the_same_layout(tok, name):
  _, tokenizer = tok
  spec = _prompt(name)
  fast = token_layout(tokenizer, spec)
  slow = token_layout(tokenizer, spec, use_offsets=False)
  assert slow.records == fast.records
  np.testing.assert_array_equal(slow.token_ids, fast.token_ids)


def test_arrow_format_layout(tok):
  _, tokenizer = tok
  spec = build_prompt(get_task("uppercase").generate_demos(3), "honey",
                      ARROW_FORMAT)
  lay = token_layout(tokenizer, spec)
  for k in range(3):
    y = spec.demos[k][1]
    assert _decode(tokenizer, lay, lay.mask("output_only", demo=k)) == " " + y
    assert _decode(tokenizer, lay, lay.mask("input_values", demo=k)) == (
        spec.demos[k][0])
  assert _decode(tokenizer, lay, lay.mask("query_value")) == "honey"
  assert lay.records[-1].role == "final_output_label"
  # A token merging whitespace with a label is flagged and takes the label.
  for r in lay.records:
    if r.mixed:
      assert spec.text[r.start:r.end].startswith(" ") and r.role.endswith(
          "label")


def test_unknown_position_set_and_demo_errors(gemma_tok):
  lay = token_layout(gemma_tok, _prompt("uppercase", k=3))
  with pytest.raises(UnknownPositionSetError) as e:
    lay.mask("output_tokens")
  assert "'output_tokens'" in str(e.value) and "output_only" in str(e.value)
  with pytest.raises(ValueError, match="demo 3 does not occur"):
    lay.mask("output_only", demo=3)
  with pytest.raises(ValueError, match="demo 7 does not occur"):
    lay.group(7, "output_value")
  assert set(POSITION_SETS) >= {
      "all_demo", "input_only", "output_only", "labels", "separators",
      "last_demo", "answer_tokens", "last_demo_answer_token", "query",
      "final_token", "first_query_token"}
