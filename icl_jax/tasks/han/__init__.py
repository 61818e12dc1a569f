"""Han et al.'s own task families (spec ``han_task_vectors.md`` 3.2-3.4).

Two families of six tasks plus Null; within a family every task sees the same
input distribution and only the demonstrated rule tells them apart::

  family_tasks("bitwise")  # ("and", "nand", "or", "nor", "xor", "xnor", "null")
  examples("bitwise", "xor", "eval", 3, seed=0)  # [("00011 11101", "11110"),..]
  prompts("pos", "noun", n=100, shots=4, seed=0)  # [(prompt, answer), ...]
  score("pos", " Vinken\\nPierre", "Vinken")     # True

Template [ASSUMPTION] (spec 3.3, Hendel style, recorded here because TD
depends on it): each demo is ``"{x} -> {y}\\n"`` and the prompt ends with
``"{x*} ->"``; the answer follows after one space, so the last prompt token
(the one TD and task vectors read) is the arrow. This is the study's
``ARROW_FORMAT`` (:mod:`icl_jax.tasks.prompts`).
[ASSUMPTION] Draws: every task draws its own inputs (seeded by the seed and
the task name), as "N prompts per task, all drawn from task z" reads; tasks
do not share a seed's queries, which would make each prompt's nearest
neighbours its same-input siblings of the other classes and push kNN TD
below chance. The POS eval split holds 132 sentences, so 100 draws per task
still overlap heavily across tasks (as they must have in Han's split too).
Within a draw the inputs are distinct; a request for more examples than the
split holds draws with replacement.
Demonstrations always come from "train"; with ``split="train"`` a query's own
input is never among its demonstrations.
"""

from __future__ import annotations

import random

from icl_jax.tasks.han import bitwise
from icl_jax.tasks.han import pos
from icl_jax.tasks.han.pos_data import INSTALL_HINT
from icl_jax.tasks.han.pos_data import PennDataUnavailable
from icl_jax.tasks.han.pos_data import penn_available
from icl_jax.tasks.prompts import ARROW_FORMAT
from icl_jax.tasks.prompts import PromptSpec
from icl_jax.tasks.prompts import build_prompt as _study_build_prompt

FAMILIES = ("pos", "bitwise")
SPLITS = ("train", "eval")
_TASKS = {"pos": pos.TASKS, "bitwise": bitwise.TASKS}


def _check(family: str, task: str | None = None, split: str | None = None):
  if family not in _TASKS:
    raise ValueError(f"unknown Han family {family!r}; have {FAMILIES}")
  if task is not None and task not in _TASKS[family]:
    raise ValueError(f"unknown {family} task {task!r}; have {_TASKS[family]}")
  if split is not None and split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def family_tasks(family: str) -> tuple[str, ...]:
  """Task names of ``family``, "null" last."""
  _check(family)
  return _TASKS[family]


def _inputs(family: str, split: str):
  """The split's pool: POS ``(sentence, tags)``, bitwise input strings."""
  if family == "pos":
    return pos.split_sentences(split)
  return bitwise.pool(split)


def _draw(family: str, task: str, split: str, n: int, key: str,
          exclude: str | None = None) -> list[tuple[str, str]]:
  """``n`` seeded (input, answer) pairs of ``task``."""
  items = _inputs(family, split)
  if exclude is not None:
    items = [it for it in items
             if (it[0] if family == "pos" else it) != exclude]
  rng = random.Random(f"han|{family}|{task}|{split}|{key}")
  if n <= len(items):
    picks = rng.sample(range(len(items)), n)
  else:
    picks = [rng.randrange(len(items)) for _ in range(n)]
  ans_rng = random.Random(f"han|{family}|{task}|{split}|{key}|answers")
  out = []
  for i in picks:
    if family == "pos":
      sentence, tags = items[i]
      out.append((sentence, pos.answer(sentence, tags, task, ans_rng)))
    else:
      out.append((items[i], bitwise.answer(items[i], task, ans_rng)))
  return out


def examples(family: str, task: str, split: str, n: int,
             seed: int) -> list[tuple[str, str]]:
  """``n`` (input text, answer text) pairs of ``task`` from ``split``."""
  _check(family, task, split)
  return _draw(family, task, split, n, str(seed))


def prompt_spec(family: str, demos: list[tuple[str, str]],
                query: str) -> PromptSpec:
  """The prompt with its spans (demo answers, answer-preceding arrows)."""
  _check(family)
  return _study_build_prompt(demos, query, fmt=ARROW_FORMAT)


def build_prompt(family: str, demos: list[tuple[str, str]], query: str) -> str:
  """The prompt text, ending right before the answer (after the arrow)."""
  return prompt_spec(family, demos, query).text


def score(family: str, generated: str, answer: str) -> bool:
  """Exact match of the first generated line (stripped) with ``answer``."""
  _check(family)
  return generated.split("\n", 1)[0].strip() == answer.strip()


def prompt_specs(family: str, task: str, n: int, shots: int, seed: int,
                 split: str = "eval") -> list[tuple[PromptSpec, str]]:
  """As :func:`prompts`, with the prompts' spans (``PromptSpec``)."""
  _check(family, task, split)
  out = []
  for i, (x, y) in enumerate(_draw(family, task, split, n, str(seed))):
    demos = _draw(family, task, "train", shots, f"{seed}/demos/{i}",
                  exclude=x if split == "train" else None)
    out.append((prompt_spec(family, demos, x), y))
  return out


def prompts(family: str, task: str, n: int, shots: int, seed: int,
            split: str = "eval") -> list[tuple[str, str]]:
  """``n`` (prompt, answer) pairs: queries from ``split``, demos from train."""
  return [(spec.text, y)
          for spec, y in prompt_specs(family, task, n, shots, seed, split)]


__all__ = [
    "FAMILIES", "SPLITS", "family_tasks", "examples", "build_prompt",
    "prompt_spec", "score", "prompts", "prompt_specs", "PennDataUnavailable",
    "INSTALL_HINT", "penn_available",
]
