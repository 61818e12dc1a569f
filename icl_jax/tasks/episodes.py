"""Demo + query episodes for a task: fixed demos (faithful) or sampled.

``demo_mode``:
  "fixed"          the first k demos of the fixed list for every query (the
                   study as run).
  "sampled"        per query, k demos drawn without replacement from the
                   task's demo candidates minus that query, with
                   ``random.Random(seed)`` advancing through the queries.
  "sampled_shared" one draw of k demos, disjoint from all n queries, shared
                   by every episode (so all prompts share one demo block).

Queries always come from the task's own RNG replay (``generate_test_inputs``),
so the i-th call on a Task object returns the study's i-th permutation.
"""

from __future__ import annotations

import dataclasses
import random

from icl_jax.tasks import prompts
from icl_jax.tasks import registry
from icl_jax.tasks.base import Task

DEMO_MODES = ("fixed", "sampled", "sampled_shared")


@dataclasses.dataclass(frozen=True)
class Episode:
  task: str
  demos: tuple[tuple[str, str], ...]
  query: str
  expected: str | None  # faithful answer; None if the task cannot answer

  def prompt(self, fmt: prompts.PromptFormat = prompts.STUDY_FORMAT):
    return prompts.build_prompt(self.demos, self.query, fmt)


def _expected(task: Task, x: str) -> str | None:
  try:
    return task.answer(x)
  except Exception:  # pylint: disable=broad-except
    return None


def make_episodes(
    task: str | Task,
    n: int,
    k: int = 5,
    demo_mode: str = "fixed",
    seed: int = 0,
    queries: list[str] | None = None,
) -> list[Episode]:
  """``n`` episodes of ``task`` (one RNG call unless ``queries`` is given)."""
  task = registry.resolve(task)
  if demo_mode not in DEMO_MODES:
    raise ValueError(
        f"demo_mode must be one of {DEMO_MODES}, got {demo_mode!r}"
    )
  if queries is None:
    queries = task.generate_test_inputs(n)
  rng = random.Random(seed)
  shared = None
  if demo_mode == "fixed":
    shared = tuple(task.generate_demos(k))
  elif demo_mode == "sampled_shared":
    shared = tuple(task.sample_demos(k, rng, exclude=queries))
  out = []
  for q in queries:
    demos = shared
    if demos is None:
      demos = tuple(task.sample_demos(k, rng, exclude=[q]))
    out.append(Episode(task.name, demos, q, _expected(task, q)))
  return out
