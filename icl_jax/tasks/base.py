"""The ``Task`` object: fixed demos, a test pool, the RNG replay, scoring.

RNG replay (protocol section 2): every Task owns ``random.Random(seed)``
(seed 42). Each ``generate_test_inputs(n)`` call copies the pool in its
original order, shuffles the copy with the *continuing* RNG and returns the
first ``n`` -- so the k-th call on one object returns the k-th permutation.
The exp15 custom tasks instead draw their 5 demos with ``rng.sample`` when
the object is built and then ``rng.sample(pool, min(n, len(pool)))`` per call
(``test_sampling="sample"``).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Callable, Sequence

from icl_jax.tasks import scoring

Pair = tuple[str, str]


def _no_strict_answer(x: str) -> frozenset[str]:
  del x
  return frozenset()


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """Static description of a task.

  Attributes:
    name: registry name.
    regime: the study's regime label ("procedural", "counting", ...).
    demo_inputs: fixed demo inputs, or ``None`` for tasks whose demos are
      sampled from the pool with the task's RNG at construction (exp15).
    pool: test inputs in the original order.
    answer: faithful answer function (may raise; may have fallbacks).
    strict_answers: accepted outputs for the strict scorer; the empty set
      means "input outside the task's domain" (never correct).
    scorer: faithful scorer (``icl_jax.tasks.scoring``).
    demo_outputs: explicit demo outputs when they are not ``answer(x)``.
    test_sampling: "shuffle" (registry tasks) or "sample" (exp15 tasks).
    n_sampled_demos: demos drawn at construction when ``demo_inputs`` is None.
    source: where the task is defined in the original code.
  """

  name: str
  regime: str
  demo_inputs: tuple[str, ...] | None
  pool: tuple[str, ...]
  answer: Callable[[str], str]
  scorer: scoring.FaithfulScorer
  strict_answers: Callable[[str], frozenset[str]] = _no_strict_answer
  demo_outputs: tuple[str, ...] | None = None
  test_sampling: str = "shuffle"
  n_sampled_demos: int = 5
  seed: int = 42
  source: str = ""


class Task:
  """A stateful task: owns its RNG exactly like the original Task objects."""

  def __init__(self, spec: TaskSpec):
    self.spec = spec
    self.name = spec.name
    self.reset()

  def reset(self) -> None:
    """Re-seeds the RNG (and re-draws sampled demos) as at construction."""
    self._rng = random.Random(self.spec.seed)
    if self.spec.demo_inputs is None:
      inputs = tuple(
          self._rng.sample(self.spec.pool, self.spec.n_sampled_demos)
      )
    else:
      inputs = self.spec.demo_inputs
    outputs = self.spec.demo_outputs or tuple(
        self.spec.answer(x) for x in inputs
    )
    self._demos: tuple[Pair, ...] = tuple(zip(inputs, outputs))

  def __repr__(self) -> str:
    return f"Task({self.name!r})"

  # -- data ---------------------------------------------------------------
  @property
  def demos(self) -> tuple[Pair, ...]:
    """The fixed demo list (all of it)."""
    return self._demos

  @property
  def pool(self) -> tuple[str, ...]:
    return self.spec.pool

  def generate_demos(self, k: int = 5) -> list[Pair]:
    """First ``k`` demos of the fixed list (the study never samples)."""
    if not 0 <= k <= len(self._demos):
      raise ValueError(
          f"task {self.name!r} has {len(self._demos)} fixed demos; "
          f"asked for k={k}"
      )
    return list(self._demos[:k])

  def generate_test_inputs(self, n: int) -> list[str]:
    """Next RNG call: a fresh permutation (or sample) of the pool, first n."""
    if n < 0:
      raise ValueError(f"n must be >= 0, got {n}")
    if self.spec.test_sampling == "sample":
      return self._rng.sample(self.spec.pool, min(n, len(self.spec.pool)))
    items = list(self.spec.pool)
    self._rng.shuffle(items)
    return items[:n]

  def demo_candidates(self) -> tuple[str, ...]:
    """Inputs usable as sampled demos: fixed demo inputs + pool, unique."""
    seen = dict.fromkeys(x for x, _ in self._demos)
    seen.update(dict.fromkeys(self.spec.pool))
    return tuple(seen)

  def sample_demos(
      self, k: int, rng: random.Random, exclude: Sequence[str] = ()
  ) -> list[Pair]:
    """Samples ``k`` demos without replacement, disjoint from ``exclude``.

    Uses the caller's ``rng`` (never the task's own test-input RNG, so the
    protocol's call-order replay is unaffected).
    """
    banned = set(exclude)
    candidates = [x for x in self.demo_candidates() if x not in banned]
    if k > len(candidates):
      raise ValueError(
          f"task {self.name!r}: cannot sample {k} demos from "
          f"{len(candidates)} candidates"
      )
    return [(x, self.answer(x)) for x in rng.sample(candidates, k)]

  # -- answers and scoring ------------------------------------------------
  def answer(self, x: str) -> str:
    """Faithful expected answer (may raise for out-of-domain inputs)."""
    return self.spec.answer(x)

  def strict_answers(self, x: str) -> frozenset[str]:
    """Outputs the strict scorer accepts; empty outside the task's domain."""
    return self.spec.strict_answers(x)

  def judge(self, output: str, x: str) -> str:
    """Faithful outcome: "correct" / "incorrect" / "malformed" (may raise)."""
    return self.spec.scorer.judge(output, x, self.spec.answer)

  def is_correct(self, output: str, x: str) -> bool:
    """Faithful correctness; a scorer exception counts as not correct."""
    try:
      return self.judge(output, x) == scoring.CORRECT
    except Exception:  # pylint: disable=broad-except
      # The original wraps every cross-task score in a bare try/except.
      return False

  def is_correct_strict(self, output: str, x: str) -> bool:
    """Strict correctness: exact answer after strip + first line."""
    return scoring.strict_correct(output, self.strict_answers(x))
