"""Output extraction rules and the study's scorers (faithful and strict).

Extraction (protocol section 4):

* ``extract_d1``: ``text.split("\\n")[0].strip()`` -- exp1's rule; no leading
  strip, so a generation that starts with a newline becomes ``""``.
* ``extract_d3``: ``text.strip().split("\\n")[0].strip()`` -- the multi-position
  experiments' rule, and also what every scorer applies first.

Faithful scorers reproduce protocol section 3.3 *including its artifacts*
(pattern_completion's one-token fallback, sentiment substring matching with a
"positive" fallback, first_letter case-insensitivity, antonym alternates).
They return one of ``CORRECT``, ``INCORRECT``, ``MALFORMED``.

The strict scorer accepts exactly the task's answer set for inputs inside the
task's domain (after the same first-line cleaning) and nothing otherwise.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Protocol

CORRECT = "correct"
INCORRECT = "incorrect"
MALFORMED = "malformed"


def extract_d1(text: str) -> str:
  """exp1 / ``HookedModel.generate`` extraction: first line, then strip."""
  return text.split("\n")[0].strip()


def extract_d3(text: str) -> str:
  """Multi-position extraction: strip, first line, strip."""
  return text.strip().split("\n")[0].strip()


# Every scorer of the study starts with this cleaning.
clean_output = extract_d3


class FaithfulScorer(Protocol):
  """``judge(output, x, answer) -> CORRECT | INCORRECT | MALFORMED``.

  ``answer`` is the task's faithful answer function; it may raise for inputs
  the task cannot handle (callers treat that as "not correct").
  """

  def judge(self, output: str, x: str, answer: Callable[[str], str]) -> str:
    ...


@dataclasses.dataclass(frozen=True)
class ExactScorer:
  """Default rule: case-sensitive equality; malformed if empty or too long."""

  def judge(self, output, x, answer):
    expected = answer(x)
    cleaned = clean_output(output)
    if not cleaned or len(cleaned) > 3 * len(expected) + 10:
      return MALFORMED
    return CORRECT if cleaned == expected else INCORRECT


@dataclasses.dataclass(frozen=True)
class CaseInsensitiveLetterScorer:
  """first_letter: expected letter, or its upper- or lower-case form."""

  def judge(self, output, x, answer):
    expected = answer(x)
    cleaned = clean_output(output)
    if not cleaned:
      return MALFORMED
    ok = cleaned in (expected, expected.upper(), expected.lower())
    return CORRECT if ok else INCORRECT


@dataclasses.dataclass(frozen=True)
class LabelSubstringScorer:
  """sentiment / sentiment_goodbad: expected label is a substring.

  Correct if the expected label occurs in the lower-cased first line,
  incorrect if (only) another label occurs, malformed if no label occurs.
  """

  labels: tuple[str, ...]

  def judge(self, output, x, answer):
    expected = answer(x)
    line = clean_output(output).lower()
    if expected in line:
      return CORRECT
    if any(label in line for label in self.labels if label != expected):
      return INCORRECT
    return MALFORMED


@dataclasses.dataclass(frozen=True)
class SymbolPrefixScorer:
  """sentiment_symbol: first line equals or starts with the symbol."""

  def judge(self, output, x, answer):
    expected = answer(x)
    cleaned = clean_output(output)
    if not cleaned:
      return MALFORMED
    return CORRECT if cleaned.startswith(expected) else INCORRECT


@dataclasses.dataclass(frozen=True)
class AcceptableSetScorer:
  """antonym: lower-cased first line must be in the acceptable set.

  ``accepted(x)`` gives the set for known inputs and ``None`` for unknown
  ones, which then fall back to ``{answer(x)}`` (``{"unknown"}``).
  """

  accepted: Callable[[str], frozenset[str] | None]

  def judge(self, output, x, answer):
    cleaned = clean_output(output).lower()
    if not cleaned:
      return MALFORMED
    ok_set = self.accepted(x) or frozenset({answer(x)})
    return CORRECT if cleaned in ok_set else INCORRECT


@dataclasses.dataclass(frozen=True)
class FirstTokenScorer:
  """pattern_completion: first whitespace token of the first line.

  Compared with ``answer(x)``, which for a one-token input is the input
  itself -- so any output starting with the query word is "correct".
  """

  def judge(self, output, x, answer):
    expected = answer(x)
    cleaned = clean_output(output)
    if not cleaned:
      return MALFORMED
    return CORRECT if cleaned.split()[0] == expected else INCORRECT


@dataclasses.dataclass(frozen=True)
class HyphenSpaceScorer:
  """spell_out: lower-cased; exact, or with spaces and hyphens swapped."""

  def judge(self, output, x, answer):
    expected = answer(x)
    cleaned = clean_output(output).lower()
    if not cleaned:
      return MALFORMED
    ok = expected in (
        cleaned, cleaned.replace(" ", "-"), cleaned.replace("-", " ")
    )
    return CORRECT if ok else INCORRECT


def strict_correct(output: str, answers: frozenset[str]) -> bool:
  """Strict rule: the cleaned first line is exactly one of ``answers``."""
  return bool(answers) and clean_output(output) in answers
