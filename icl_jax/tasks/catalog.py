"""Definitions of every task of the study (protocol sections 3.1 and 3.2).

Each ``TaskSpec`` pairs a faithful answer function (artifacts included) with
a strict answer set. Strict domains: word tasks need an alphabetic input,
numeric tasks an integer, lookup tasks a known word, pattern_completion a
5-symbol alternating string, repeat_n a "word N" input.
"""

from __future__ import annotations

import re

from icl_jax.tasks import data
from icl_jax.tasks import numbers
from icl_jax.tasks import scoring
from icl_jax.tasks.base import TaskSpec

_VOWELS = "aeiou"


def _words(x: str) -> bool:
  return x.isalpha()


def _integer(x: str) -> bool:
  return re.fullmatch(r"-?\d+", x) is not None


def _only_if(pred, fn):
  """Strict answers: ``{fn(x)}`` when ``pred(x)``, else the empty set."""
  return lambda x: frozenset({fn(x)}) if pred(x) else frozenset()


def pig_latin(word: str) -> str:
  """Vowel-initial: +"ay"; else move the leading consonants, +"ay".

  Vowels are a, e, i, o, u; a word without one (e.g. "glyph") gets "ay".
  """
  if word[0] in _VOWELS:
    return word + "ay"
  for i, ch in enumerate(word):
    if ch in _VOWELS:
      return word[i:] + word[:i] + "ay"
  return word + "ay"


def _length_word(x: str) -> str:
  n = len(x)
  return numbers.number_word(n) if 1 <= n <= 10 else str(n)


# -- lookup tables ---------------------------------------------------------
_SENTIMENT = dict(data.SENTIMENT_ITEMS) | dict(data.SENTIMENT_DEMOS)
_GOODBAD = {"positive": "good", "negative": "bad"}
_SYMBOL = {"positive": "+", "negative": "-"}

_ANTONYM_PRIMARY = {w: a for w, a, _ in data.ANTONYM_ITEMS} | dict(
    data.ANTONYM_DEMOS
)
_ANTONYM_ACCEPTED = {
    w: frozenset((a,) + alts) for w, a, alts in data.ANTONYM_ITEMS
} | {
    w: frozenset((a,) + data.ANTONYM_DEMO_ALTERNATES[w])
    for w, a in data.ANTONYM_DEMOS
}


def _sentiment(x: str) -> str:
  return _SENTIMENT.get(x, "positive")  # fallback for unknown inputs


def _sentiment_strict(mapping=None):
  def fn(x):
    label = _SENTIMENT.get(x)
    if label is None:
      return frozenset()
    return frozenset({mapping[label] if mapping else label})
  return fn


def _antonym(x: str) -> str:
  return _ANTONYM_PRIMARY.get(x, "unknown")


def _pattern(x: str) -> str:
  tokens = x.split()
  return tokens[1] if len(tokens) >= 2 else x  # [!] one-token fallback


def _is_alternating_pattern(x: str) -> bool:
  t = x.split()
  return (
      len(t) == 5 and all(len(s) == 1 for s in t) and t[0] != t[1]
      and t[0] == t[2] == t[4] and t[1] == t[3]
  )


def _repeat_n_parse(x: str) -> tuple[str, int]:
  word, n = x.rsplit(" ", 1)
  return word, int(n)


def _repeat_n(x: str) -> str:
  word, n = _repeat_n_parse(x)
  return " ".join([word] * n)


def _is_repeat_n_input(x: str) -> bool:
  return re.fullmatch(r"[A-Za-z]+ [1-9]\d*", x) is not None


def _spell_out(x: str) -> str:
  return numbers.number_word(int(x))


def _word_task(name, answer, source, scorer=None, regime="procedural",
               demo_outputs=None):
  return TaskSpec(
      name=name, regime=regime, demo_inputs=data.WORD_DEMO_INPUTS,
      pool=data.WORDS_50, answer=answer,
      scorer=scorer or scoring.ExactScorer(),
      strict_answers=_only_if(_words, answer), demo_outputs=demo_outputs,
      source=source,
  )


def _exp15_task(name, pool, answer):
  return TaskSpec(
      name=name, regime="procedural", demo_inputs=None, pool=pool,
      answer=answer, scorer=scoring.ExactScorer(),
      strict_answers=_only_if(_words, answer), test_sampling="sample",
      source="scripts/15_cross_format_control.py",
  )


def _sentiment_variant(name, mapping, scorer, source):
  return TaskSpec(
      name=name, regime="bayesian",
      demo_inputs=tuple(x for x, _ in data.SENTIMENT_DEMOS),
      pool=tuple(w for w, _ in data.SENTIMENT_ITEMS),
      answer=lambda x: mapping[_sentiment(x)],
      scorer=scorer, strict_answers=_sentiment_strict(mapping),
      source=source,
  )


def _core_specs() -> list[TaskSpec]:
  """The core registry tasks, in registry order."""
  return [
      _word_task("reverse", lambda x: x[::-1], "src/tasks/string_tasks.py"),
      _word_task("uppercase", str.upper, "src/tasks/string_tasks.py"),
      _word_task(
          "pig_latin", pig_latin, "src/tasks/string_tasks_extra.py",
          demo_outputs=tuple(y for _, y in data.PIG_LATIN_DEMOS),
      ),
      _word_task(
          "first_letter", lambda x: x[0], "src/tasks/string_tasks_extra.py",
          scorer=scoring.CaseInsensitiveLetterScorer(),
      ),
      _word_task("repeat_word", lambda x: f"{x} {x}",
                 "src/tasks/string_tasks_extra.py"),
      _word_task("length", lambda x: str(len(x)), "src/tasks/numeric_tasks.py",
                 regime="counting"),
      TaskSpec(
          name="linear_2x", regime="gd_like",
          demo_inputs=tuple(x for x, _ in data.LINEAR_DEMOS),
          pool=data.LINEAR_POOL, answer=lambda x: str(2 * int(x)),
          scorer=scoring.ExactScorer(),
          strict_answers=_only_if(_integer, lambda x: str(2 * int(x))),
          source="src/tasks/numeric_tasks.py",
      ),
      TaskSpec(
          name="sentiment", regime="bayesian",
          demo_inputs=tuple(x for x, _ in data.SENTIMENT_DEMOS),
          pool=tuple(w for w, _ in data.SENTIMENT_ITEMS), answer=_sentiment,
          scorer=scoring.LabelSubstringScorer(("positive", "negative")),
          strict_answers=_sentiment_strict(),
          source="src/tasks/semantic_tasks.py",
      ),
      TaskSpec(
          name="antonym", regime="retrieval",
          demo_inputs=tuple(x for x, _ in data.ANTONYM_DEMOS),
          pool=tuple(w for w, _, _ in data.ANTONYM_ITEMS), answer=_antonym,
          scorer=scoring.AcceptableSetScorer(_ANTONYM_ACCEPTED.get),
          strict_answers=lambda x: _ANTONYM_ACCEPTED.get(x, frozenset()),
          source="src/tasks/semantic_tasks.py",
      ),
      TaskSpec(
          name="pattern_completion", regime="induction",
          demo_inputs=tuple(x for x, _ in data.PATTERN_DEMOS),
          pool=data.PATTERN_POOL, answer=_pattern,
          scorer=scoring.FirstTokenScorer(),
          strict_answers=_only_if(_is_alternating_pattern, _pattern),
          source="src/tasks/pattern_tasks.py",
      ),
  ]


def _variant_specs() -> list[TaskSpec]:
  """The exp15 / exp32 / exp33 variant tasks."""
  return [
      # --- exp15 cross-format variants (own Random(42), sampled demos) ---
      _exp15_task("uppercase_period", data.EXP15_WORDS_UPPER,
                  lambda x: x.upper() + "."),
      _exp15_task("length_word", data.LENGTH_WORD_WORDS, _length_word),
      _exp15_task("repeat_comma", data.EXP15_WORDS_REPEAT,
                  lambda x: f"{x}, {x}"),
      _exp15_task("reverse_exp15", data.EXP15_WORDS_REVERSE,
                  lambda x: x[::-1]),
      _exp15_task("reverse_spaced", data.EXP15_WORDS_REVERSE,
                  lambda x: " ".join(x[::-1])),
      # --- exp32 sentiment label variants ------------------------------
      _sentiment_variant(
          "sentiment_goodbad", _GOODBAD,
          scoring.LabelSubstringScorer(("good", "bad")),
          "scripts/32_sentiment_variants.py",
      ),
      _sentiment_variant(
          "sentiment_symbol", _SYMBOL, scoring.SymbolPrefixScorer(),
          "scripts/32_sentiment_variants.py",
      ),
      # --- exp33 variable-length tasks ---------------------------------
      TaskSpec(
          name="repeat_n", regime="procedural",
          demo_inputs=tuple(x for x, _ in data.REPEAT_N_DEMOS),
          pool=data.REPEAT_N_POOL, answer=_repeat_n,
          scorer=scoring.ExactScorer(),
          strict_answers=_only_if(_is_repeat_n_input, _repeat_n),
          source="scripts/33_variable_length.py",
      ),
      TaskSpec(
          name="spell_out", regime="procedural",
          demo_inputs=tuple(x for x, _ in data.SPELL_OUT_DEMOS),
          pool=data.SPELL_OUT_POOL, answer=_spell_out,
          scorer=scoring.HyphenSpaceScorer(),
          strict_answers=_only_if(
              lambda x: _integer(x) and 0 <= int(x) <= 99, _spell_out
          ),
          source="scripts/33_variable_length.py",
      ),
  ]


def _build() -> dict[str, TaskSpec]:
  return {s.name: s for s in _core_specs() + _variant_specs()}


TASK_SPECS: dict[str, TaskSpec] = _build()
