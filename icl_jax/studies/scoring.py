"""Scoring: judging outputs against the source and target tasks, and the
transfer / preserve / neither / both classification (the one scorer of the
studies; `tasks` holds the per-task rules)."""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from icl_jax import tasks as T
from icl_jax.tasks.classify import SCORERS


@dataclasses.dataclass
class Judgement:
  src_faithful: bool
  tgt_faithful: bool
  src_strict: bool
  tgt_strict: bool
  expected_source: object
  expected_target: object


class TaskScoring:
  """Scores with the tasks' faithful and strict scorers.

  `source_input(query)` gives the input the source task is scored on (exp33
  Part C scores repeat_word on the word of a repeat_n item); `source_rule`
  replaces the source check entirely: `source_rule(output, query) -> bool`
  (used for both scorers).
  """

  def __init__(self, source_task: str | None, target_task: str,
               source_input: Callable[[str], str] | None = None,
               source_rule: Callable[[str, str], bool] | None = None):
    self.source_task = source_task
    self.target_task = target_task
    self._src = T.get_task(source_task) if source_task else None
    self._tgt = T.get_task(target_task)
    self.source_input = source_input
    self.source_rule = source_rule

  def judge(self, ep, text: str) -> Judgement:
    q = ep.query
    sx = self.source_input(q) if self.source_input else q
    if self.source_rule is not None:
      sf = ss = bool(self.source_rule(text, q))
      exp_src = None
    elif self._src is not None:
      sf = T.is_correct(self._src, text, sx, "faithful")
      ss = T.is_correct(self._src, text, sx, "strict")
      try:
        exp_src = self._src.answer(sx)
      except Exception:  # the source rule may not apply to target inputs
        exp_src = None
    else:
      sf = ss = False
      exp_src = None
    tf = T.is_correct(self._tgt, text, q, "faithful")
    ts = T.is_correct(self._tgt, text, q, "strict")
    return Judgement(sf, tf, ss, ts, exp_src, ep.expected)


class AnswerScoring:
  """Scores prompt-file prompts against the answers given in the file.

  Both scorers are the strict rule: the first line of the stripped output
  must equal one of the expected answers.
  """

  def __init__(self, source_name: str | None, target_name: str):
    self.source_task = source_name
    self.target_task = target_name

  def judge(self, ep, text: str) -> Judgement:
    out = T.extract_d3(text)
    src = tuple(getattr(ep, "expected_source", ()) or ())
    tgt = tuple(getattr(ep, "answers", ()) or ())
    s = out in src
    t = out in tgt
    return Judgement(s, t, s, t, list(src) or None, list(tgt) or None)


class MixedScoring:
  """Scoring of a sweep whose source and target are each a task or a prompt
  file.

  A target task: the tasks' scorers (`TaskScoring`; source None when the
  source is a file). A target file: its answer columns (`AnswerScoring`);
  transfer from its third column, or, where a prompt has none, from the
  source task's scorers.
  """

  def __init__(self, source: str | None, target: str, source_is_task: bool,
               target_is_task: bool):
    self.source_task, self.target_task = source, target
    self._task = TaskScoring(source if source_is_task else None,
                             target) if target_is_task else None
    self._src = T.get_task(source) if source_is_task else None
    self._file = AnswerScoring(source, target)
    self.target_is_task = target_is_task

  def judge(self, ep, text: str) -> Judgement:
    if self.target_is_task:
      return self._task.judge(ep, text)
    j = self._file.judge(ep, text)
    if not ep.expected_source and self._src is not None:
      j.src_faithful = T.is_correct(self._src, text, ep.query, "faithful")
      j.src_strict = T.is_correct(self._src, text, ep.query, "strict")
    return j


def classify(j: Judgement, scorer: str, order: str = "source_first") -> str:
  """transfer / preserve / neither / both (strict only) of one judgement.

  source_first: the study's rule (transfer wins ties; protocol 3.3).
  target_first: exp4's interpolation reading (P(A correct), then P(B
  correct | not A)): the target task wins ties. Strict scoring reports ties
  as "both" either way.
  """
  if scorer not in SCORERS:
    raise ValueError(f"unknown scorer {scorer!r}; use one of {SCORERS}")
  src, tgt = ((j.src_faithful, j.tgt_faithful) if scorer == "faithful"
              else (j.src_strict, j.tgt_strict))
  if scorer == "strict" and src and tgt:
    return T.BOTH
  if order == "source_first":
    return T.TRANSFER if src else T.PRESERVE if tgt else T.NEITHER
  if order == "target_first":
    return T.PRESERVE if tgt else T.TRANSFER if src else T.NEITHER
  raise ValueError(f"unknown order {order!r}")


def rates(js: Sequence[Judgement], scorer: str,
          order: str = "source_first") -> dict:
  """Shares of each label over the judgements."""
  n = len(js)
  c = {T.TRANSFER: 0, T.PRESERVE: 0, T.NEITHER: 0, T.BOTH: 0}
  for j in js:
    c[classify(j, scorer, order)] += 1
  return {k: v / n for k, v in c.items()}


def is_malformed(task: str, output: str, x: str) -> bool:
  """The faithful judge says malformed, or cannot score the input at all."""
  from icl_jax.tasks import scoring

  try:
    return T.get_task(task).judge(output, x) == scoring.MALFORMED
  except Exception:  # pylint: disable=broad-except
    return True


def score_texts(setup, scoring, texts: Sequence[str]):
  """Judgements and examples for one cell's outputs."""
  js, examples = [], []
  for ep, text in zip(setup.target_episodes, texts):
    j = scoring.judge(ep, text)
    js.append(j)
    examples.append({"query": ep.query, "output": T.extract_d3(text),
                     "raw_output": text, "expected_source": j.expected_source,
                     "expected_target": j.expected_target})
  return js, examples


def malformed_rate(setup, examples) -> float | None:
  """Share of "neither" outputs both faithful judges call malformed; None
  for prompt-file setups (no task rules)."""
  tasks = [t for t in (setup.source_task, setup.target_task) if t]
  try:
    for t in tasks:
      T.get_task(t)
  except T.UnknownTaskError:
    return None
  if not examples:
    return None
  bad = sum(1 for e in examples if e["label"] == T.NEITHER and all(
      is_malformed(t, e["raw_output"], e["query"]) for t in tasks))
  return bad / len(examples)
