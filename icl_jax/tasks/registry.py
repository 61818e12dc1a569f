"""Task registry: ``get_task(name)`` returns a fresh Task with its own RNG."""

from __future__ import annotations

from icl_jax.tasks.base import Task
from icl_jax.tasks.catalog import TASK_SPECS

# The 8 core tasks used from exp2 on (protocol section 3.1).
CORE_TASKS: tuple[str, ...] = (
    "uppercase", "first_letter", "repeat_word", "length", "linear_2x",
    "sentiment", "antonym", "pattern_completion",
)
# exp1's task set: the 8 core tasks + the two dropped after exp1.
BASELINE_TASKS: tuple[str, ...] = CORE_TASKS + ("reverse", "pig_latin")
# The original TaskRegistry order.
REGISTRY_ORDER: tuple[str, ...] = (
    "reverse", "uppercase", "pig_latin", "first_letter", "repeat_word",
    "length", "linear_2x", "sentiment", "antonym", "pattern_completion",
)


class UnknownTaskError(KeyError):
  """Raised for a task name that is not registered."""

  def __str__(self) -> str:  # KeyError would repr() the message.
    return str(self.args[0])


def task_names() -> tuple[str, ...]:
  """Every registered task name."""
  return tuple(TASK_SPECS)


def get_task(name: str) -> Task:
  """A new Task object (fresh ``random.Random(42)``) for ``name``."""
  spec = TASK_SPECS.get(name)
  if spec is None:
    raise UnknownTaskError(
        f"unknown task {name!r}; known tasks: {', '.join(sorted(TASK_SPECS))}"
    )
  return Task(spec)


def resolve(task: str | Task) -> Task:
  """Accepts a name or a Task object."""
  return task if isinstance(task, Task) else get_task(task)
