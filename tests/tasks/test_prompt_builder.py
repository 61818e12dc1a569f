"""Prompt text and character spans."""

import pytest

from icl_jax.tasks import ARROW_FORMAT
from icl_jax.tasks import build_prompt
from icl_jax.tasks import get_task
from icl_jax.tasks import parse_prompt
from icl_jax.tasks import study_prompt_text
from icl_jax.tasks import task_names

UPPERCASE_PROMPT = (
    "Input: apple\nOutput: APPLE\n\nInput: brain\nOutput: BRAIN\n\n"
    "Input: cloud\nOutput: CLOUD\n\nInput: delta\nOutput: DELTA\n\n"
    "Input: flame\nOutput: FLAME\n\nInput: honey\nOutput:"
)


def test_study_prompt_is_exactly_the_protocol_example():
  demos = get_task("uppercase").generate_demos(5)
  assert build_prompt(demos, "honey").text == UPPERCASE_PROMPT
  assert study_prompt_text(demos, "honey") == UPPERCASE_PROMPT


@pytest.mark.parametrize("name", task_names())
def test_builder_equals_line_join_for_every_task(name):
  t = get_task(name)
  for k in (0, 1, 3, 5):
    q = t.generate_test_inputs(1)[0]
    assert build_prompt(t.generate_demos(k), q).text == study_prompt_text(
        t.generate_demos(k), q)


def test_spans_tile_the_text_and_name_every_part():
  spec = build_prompt(get_task("repeat_word").generate_demos(2), "honey")
  assert "".join(s.text for s in spec.spans) == spec.text
  assert all(spec.text[s.start:s.end] == s.text for s in spec.spans)
  got = [(s.role, s.demo, s.text) for s in spec.spans]
  assert got == [
      ("input_label", 0, "Input"), ("input_colon", 0, ":"),
      ("input_value", 0, " apple"), ("newline", 0, "\n"),
      ("output_label", 0, "Output"), ("output_colon", 0, ":"),
      ("output_value", 0, " apple apple"), ("demo_separator", 0, "\n\n"),
      ("input_label", 1, "Input"), ("input_colon", 1, ":"),
      ("input_value", 1, " brain"), ("newline", 1, "\n"),
      ("output_label", 1, "Output"), ("output_colon", 1, ":"),
      ("output_value", 1, " brain brain"), ("demo_separator", 1, "\n\n"),
      ("query_label", None, "Input"), ("query_colon", None, ":"),
      ("query_value", None, " honey"), ("query_newline", None, "\n"),
      ("final_output_label", None, "Output"),
      ("final_output_colon", None, ":"),
  ]


def test_arrow_format():
  spec = build_prompt([("apple", "APPLE"), ("brain", "BRAIN")], "honey",
                      ARROW_FORMAT)
  assert spec.text == "apple -> APPLE\nbrain -> BRAIN\nhoney ->"
  assert spec.span("output_value", 1).text == " BRAIN"
  assert spec.span("input_value", 0).text == "apple"
  assert spec.span("final_output_label").text == "->"
  assert parse_prompt(spec.text, ARROW_FORMAT) == spec


def test_parse_prompt_roundtrip_and_errors():
  spec = parse_prompt(UPPERCASE_PROMPT)
  assert spec.demos[4] == ("flame", "FLAME") and spec.query == "honey"
  assert spec.text == UPPERCASE_PROMPT
  with pytest.raises(ValueError):
    parse_prompt(UPPERCASE_PROMPT + " ")  # trailing space is not canonical
  with pytest.raises(ValueError):
    parse_prompt("Q: apple\nA: APPLE")


def test_missing_demo_errors():
  spec = build_prompt(get_task("uppercase").generate_demos(3), "honey")
  assert spec.find_demo(("cloud", "CLOUD")) == 2
  with pytest.raises(ValueError, match="does not occur in the prompt"):
    spec.find_demo(("delta", "DELTA"))
  with pytest.raises(ValueError, match="demo 3 does not occur"):
    spec.span("output_value", 3)
