"""exp1: baseline k-shot ICL accuracy per task (protocol section 8.1).

For every task: k fixed demos (k=5), the first RNG call's n test inputs, one
greedy generation per prompt, scored twice:

* faithful: D1 extraction (``text.split("\\n")[0].strip()``) + the study's
  scorer (artifacts included) -- comparable with protocol section 9.1;
* strict: exact answer after strip + first line, no fallbacks.

Writes ``<out_dir>/baseline/results.jsonl`` (one object per task; a re-run
skips tasks already there), ``summary.json`` and ``baseline.png``.

  python experiments/baseline.py --model=gemma3-270m --n=50
"""

from __future__ import annotations

import time
from typing import Sequence

from absl import app
from absl import flags
from absl import logging

from icl_jax.studies import baseline
from icl_jax.tasks import BASELINE_TASKS

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the script's flags (only when run as a script, so importing
  this module never clashes on flag names)."""
  from icl_jax.convert.embedded import MODEL_FLAG_HELP

  flags.DEFINE_string("model", "gemma3-270m", MODEL_FLAG_HELP)
  flags.DEFINE_integer("n", 50, "Test inputs per task.", lower_bound=1)
  flags.DEFINE_list("tasks", list(BASELINE_TASKS), "Tasks to evaluate.")
  flags.DEFINE_string("out_dir", "runs", "Run directory.")
  flags.DEFINE_integer("max_new_tokens", 30,
                       "Generation budget (original: 30).", lower_bound=1)
  flags.DEFINE_enum("mode", "faithful", ["faithful", "aligned"],
                    "Protocol mode recorded with the results. The baseline "
                    "has no positions; aligned mode additionally allows "
                    "sampled demos (--demo_mode).")
  flags.DEFINE_integer("k", 5, "Demos per prompt.", lower_bound=0)
  flags.DEFINE_enum("demo_mode", "fixed",
                    ["fixed", "sampled", "sampled_shared"],
                    "fixed = the study's fixed demo lists (required in "
                    "faithful mode); sampled = seeded, disjoint from the "
                    "query.")
  flags.DEFINE_integer("demo_seed", 0, "Seed of sampled demos.")
  flags.DEFINE_string("dtype", None, "Model dtype (float32 / bfloat16).")


def main(argv: Sequence[str]) -> None:
  del argv
  from experiments import common
  from icl_jax.analysis.results import hold_run_dir

  baseline.validate(FLAGS.tasks, FLAGS.mode, FLAGS.demo_mode, FLAGS.n,
                    FLAGS.max_new_tokens, FLAGS.k)
  load_s, lm = None, None
  if baseline.pending_tasks(FLAGS.model, FLAGS.tasks, FLAGS.n, FLAGS.out_dir,
                            FLAGS.mode, FLAGS.k, FLAGS.demo_mode):
    hold_run_dir(FLAGS.out_dir, baseline.EXPERIMENT)  # a 2nd process: refused
    t0 = time.perf_counter()
    lm = common.load(FLAGS.model, FLAGS.dtype)
    load_s = time.perf_counter() - t0
  else:
    logging.info("every task is already in results.jsonl; not loading")
  rows = baseline.run(lm, FLAGS.model, FLAGS.tasks, FLAGS.n, FLAGS.out_dir,
                      FLAGS.max_new_tokens, FLAGS.mode, FLAGS.k,
                      FLAGS.demo_mode, FLAGS.demo_seed, load_seconds=load_s,
                      dtype=FLAGS.dtype)
  if rows:
    print(baseline.format_rows(rows))


if __name__ == "__main__":
  define_flags()
  app.run(main)
