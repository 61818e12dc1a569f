"""ICL tasks of the DOT-ICL study: data, prompts, scorers, positions.

Quick tour::

  task = get_task("uppercase")              # own random.Random(42)
  queries = task.generate_test_inputs(50)   # 1st call: honey, frost, ...
  spec = build_prompt(task.generate_demos(5), queries[0])
  classify("HONEY", "honey", "uppercase", "repeat_word")  # -> "transfer"
  layout = token_layout(tokenizer, spec)
  layout.mask("output_only")                # bool [T]
  faithful_positions(tokenizer, spec.text)  # the study's index formulas
"""

from icl_jax.tasks.base import Task
from icl_jax.tasks.base import TaskSpec
from icl_jax.tasks.classify import BOTH
from icl_jax.tasks.classify import NEITHER
from icl_jax.tasks.classify import PRESERVE
from icl_jax.tasks.classify import TRANSFER
from icl_jax.tasks.classify import classify
from icl_jax.tasks.classify import is_correct
from icl_jax.tasks.episodes import Episode
from icl_jax.tasks.episodes import make_episodes
from icl_jax.tasks.positions import *  # noqa: F401,F403
from icl_jax.tasks.positions import __all__ as _positions_all
from icl_jax.tasks.prompts import ARROW_FORMAT
from icl_jax.tasks.prompts import STUDY_FORMAT
from icl_jax.tasks.prompts import PromptFormat
from icl_jax.tasks.prompts import PromptSpec
from icl_jax.tasks.prompts import Span
from icl_jax.tasks.prompts import build_prompt
from icl_jax.tasks.prompts import parse_prompt
from icl_jax.tasks.prompts import study_prompt_text
from icl_jax.tasks.registry import BASELINE_TASKS
from icl_jax.tasks.registry import CORE_TASKS
from icl_jax.tasks.registry import UnknownTaskError
from icl_jax.tasks.registry import get_task
from icl_jax.tasks.registry import task_names
from icl_jax.tasks.scoring import extract_d1
from icl_jax.tasks.scoring import extract_d3

__all__ = [
    "Task", "TaskSpec", "BOTH", "NEITHER", "PRESERVE", "TRANSFER",
    "classify", "is_correct", "Episode", "make_episodes", "ARROW_FORMAT",
    "STUDY_FORMAT", "PromptFormat", "PromptSpec", "Span", "build_prompt",
    "parse_prompt", "study_prompt_text", "BASELINE_TASKS", "CORE_TASKS",
    "UnknownTaskError", "get_task", "task_names", "extract_d1", "extract_d3",
] + list(_positions_all)
