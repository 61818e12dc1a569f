"""Faithful scorers (artifacts included), strict scorers, classification."""

import pytest

from icl_jax.tasks import classify
from icl_jax.tasks import extract_d1
from icl_jax.tasks import extract_d3
from icl_jax.tasks import get_task
from icl_jax.tasks import is_correct


# -- extraction (protocol section 4) ---------------------------------------
def test_d1_has_no_leading_strip_d3_does():
  text = "\n HONEY\nInput: x"
  assert extract_d1(text) == ""
  assert extract_d3(text) == "HONEY"
  assert extract_d1(" HONEY \nInput") == "HONEY" == extract_d3(" HONEY \nInput")


# -- faithful rules of section 3.3 -----------------------------------------
def test_default_rule_correct_incorrect_malformed():
  t = get_task("uppercase")
  assert t.judge(" HONEY\nInput: frost", "honey") == "correct"
  assert t.judge("Honey", "honey") == "incorrect"  # case-sensitive
  assert t.judge("   \n", "honey") == "malformed"  # empty
  assert t.judge("H" * 26, "honey") == "malformed"


def test_default_rule_length_limit_boundary():
  t = get_task("uppercase")
  assert t.judge("X" * 25, "honey") == "incorrect"  # == 3*len+10: not longer
  assert t.judge("X" * 26, "honey") == "malformed"


def test_first_letter_is_case_insensitive_only_in_faithful():
  t = get_task("first_letter")
  assert t.is_correct("H", "honey") and t.is_correct("h", "honey")
  assert not t.is_correct_strict("H", "honey")
  assert t.is_correct_strict("h", "honey")
  assert t.judge("", "honey") == "malformed"


def test_antonym_alternates_and_unknown():
  t = get_task("antonym")
  for out in ("quiet", "Soft", "silent"):
    assert t.is_correct(out, "loud")
  assert t.is_correct("cool", "hot")  # demo-word alternates
  assert not t.is_correct("noisy", "loud")
  assert t.judge("weak", "bold") == "incorrect"
  assert t.is_correct("unknown", "honey")  # fallback for unknown inputs
  assert not t.is_correct_strict("unknown", "honey")
  assert t.is_correct_strict("soft", "loud")
  assert not t.is_correct_strict("Soft", "loud")  # strict is exact


def test_sentiment_goodbad_and_symbol_rules():
  gb = get_task("sentiment_goodbad")
  assert gb.judge("it is good", "happy") == "correct"
  assert gb.judge("bad", "happy") == "incorrect"
  assert gb.judge("neutral", "happy") == "malformed"
  sym = get_task("sentiment_symbol")
  assert sym.is_correct("+", "happy") and sym.is_correct("+ positive", "happy")
  assert not sym.is_correct(": positive", "happy")
  assert not sym.is_correct_strict("+ positive", "happy")
  assert sym.is_correct_strict("-", "sad")


def test_spell_out_accepts_swapped_hyphens_only_in_faithful():
  t = get_task("spell_out")
  assert t.is_correct("Twenty one", "21") and t.is_correct("twenty-one", "21")
  assert not t.is_correct_strict("twenty one", "21")
  assert t.is_correct_strict("twenty-one", "21")


def test_scorer_exceptions_count_as_not_correct():
  lin = get_task("linear_2x")
  with pytest.raises(ValueError):
    lin.judge("72", "honey")  # int("honey") raises inside the scorer
  assert lin.is_correct("72", "honey") is False
  assert classify("HONEY", "honey", "linear_2x", "uppercase") == "preserve"
  assert get_task("spell_out").is_correct("five", "honey") is False
  assert get_task("repeat_n").is_correct("honey", "honey") is False


# -- artifacts of protocol 11.2: faithful reproduces, strict removes --------
def test_artifact_pattern_completion_accepts_repeat_word_output():
  # 11.2.1: pattern scorer on a one-token input expects the input itself.
  out = "honey honey"
  assert classify(out, "honey", "pattern_completion",
                  "repeat_word") == "transfer"
  assert classify(out, "honey", "pattern_completion", "repeat_word",
                  scorer="strict") == "preserve"
  # Also pattern -> first_letter: any output starting with the word.
  assert classify("honey", "honey", "pattern_completion", "first_letter") == (
      "transfer")
  assert classify("honey", "honey", "pattern_completion", "first_letter",
                  scorer="strict") == "neither"


def test_artifact_uppercase_on_numbers_is_identity():
  # 11.2.2: uppercase -> linear_2x "transfer" = the model echoing the number.
  assert classify("36", "36", "uppercase", "linear_2x") == "transfer"
  assert classify("36", "36", "uppercase", "linear_2x",
                  scorer="strict") == "neither"
  assert classify("72", "36", "uppercase", "linear_2x",
                  scorer="strict") == "preserve"


def test_artifact_sentiment_substring_and_positive_fallback():
  # 11.2.3: "positive FLAME" is correct sentiment for the word "flame".
  assert get_task("sentiment").answer("flame") == "positive"
  assert classify("positive FLAME", "flame", "sentiment", "uppercase") == (
      "transfer")
  assert classify("positive FLAME", "flame", "sentiment", "uppercase",
                  scorer="strict") == "neither"
  assert classify("FLAME", "flame", "sentiment", "uppercase",
                  scorer="strict") == "preserve"
  # Substring on a real sentiment word:
  assert get_task("sentiment").is_correct("Negative feelings", "gloomy")
  assert not get_task("sentiment").is_correct_strict("Negative feelings",
                                                     "gloomy")
  assert get_task("sentiment").is_correct_strict("negative", "gloomy")


def test_artifact_repeat_n_two_is_both_correct():
  # 11.2.4 (exp33 Part C): for N=2 the repeat_n answer is also "w w".
  kwargs = dict(query_input="apple 2", source_task="repeat_word",
                target_task="repeat_n", source_input="apple")
  assert classify("apple apple", **kwargs) == "transfer"
  assert classify("apple apple", scorer="strict", **kwargs) == "both"
  # N=3: only the target's answer is "w w w".
  kwargs["query_input"] = "brain 3"
  kwargs["source_input"] = "brain"
  assert classify("brain brain", **kwargs) == "transfer"
  assert classify("brain brain", scorer="strict", **kwargs) == "transfer"
  assert classify("brain brain brain", scorer="strict", **kwargs) == "preserve"


def test_artifact_length_constant_five():
  # 11.2.6: "transfer from length" = "outputs 5" for every word of the pool.
  for x in ("honey", "frost", "badge"):
    assert classify("5", x, "length", "uppercase") == "transfer"
  # Length's answer on the shared pool is a constant, so strict cannot tell
  # computed lengths from a constant "5" on those inputs ...
  assert classify("5", "honey", "length", "uppercase", scorer="strict") == (
      "transfer")
  # ... but it rejects length "answers" outside the task's domain, which the
  # faithful scorer accepts (length of the string "36"):
  assert classify("2", "36", "length", "linear_2x") == "transfer"
  assert classify("2", "36", "length", "linear_2x", scorer="strict") == (
      "neither")


def test_artifact_both_correct_is_transfer_in_faithful_both_in_strict():
  # 11.2.7: source-first classification hides "both correct".
  assert classify("honey honey", "honey", "repeat_word", "repeat_word") == (
      "transfer")
  assert classify("honey honey", "honey", "repeat_word", "repeat_word",
                  scorer="strict") == "both"
  assert classify("5", "honey", "length", "length", scorer="strict") == "both"


def test_is_correct_rejects_unknown_scorer():
  with pytest.raises(ValueError, match="unknown scorer"):
    is_correct("uppercase", "HONEY", "honey", scorer="lenient")
  with pytest.raises(KeyError, match="unknown task"):
    classify("x", "honey", "upper", "uppercase")
