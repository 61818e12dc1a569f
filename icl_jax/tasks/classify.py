"""Source/target outcome classification (protocol section 3.3).

faithful: source-first -- "transfer" if the source scorer accepts the output,
else "preserve" if the target scorer does, else "neither". A scorer that
raises (e.g. linear_2x on "honey") counts as not correct. An output correct
for both tasks is therefore reported as "transfer".

strict: exact answers only (no fallbacks); an output correct for both tasks
is reported as "both".
"""

from __future__ import annotations

from icl_jax.tasks import registry
from icl_jax.tasks.base import Task

TRANSFER = "transfer"
PRESERVE = "preserve"
NEITHER = "neither"
BOTH = "both"
SCORERS = ("faithful", "strict")


def is_correct(task: str | Task, output: str, x: str, scorer: str) -> bool:
  """Correctness of ``output`` for ``task`` on input ``x`` under ``scorer``."""
  task = registry.resolve(task)
  if scorer == "faithful":
    return task.is_correct(output, x)
  if scorer == "strict":
    return task.is_correct_strict(output, x)
  raise ValueError(f"unknown scorer {scorer!r}; use one of {SCORERS}")


def classify(
    output: str,
    query_input: str,
    source_task: str | Task,
    target_task: str | Task,
    scorer: str = "faithful",
    source_input: str | None = None,
) -> str:
  """Classifies an (intervened) output as transfer/preserve/neither/both.

  Args:
    output: the generated text (raw or already extracted; scorers take the
      first line of the stripped text).
    query_input: the target prompt's query input.
    source_task: task whose answer counts as "transfer".
    target_task: task whose answer counts as "preserve".
    scorer: "faithful" or "strict".
    source_input: input for the source task's expected answer when it is not
      the query itself (exp33 Part C scores repeat_word on the word of a
      repeat_n item, "apple 2" -> "apple").

  Returns:
    "transfer", "preserve", "neither", or (strict only) "both".
  """
  src_x = query_input if source_input is None else source_input
  src_ok = is_correct(source_task, output, src_x, scorer)
  tgt_ok = is_correct(target_task, output, query_input, scorer)
  if scorer == "strict" and src_ok and tgt_ok:
    return BOTH
  if src_ok:
    return TRANSFER
  if tgt_ok:
    return PRESERVE
  return NEITHER
