r"""Runs report-suite steps (scripts/report_suite.sh): the one
implementation of a step's ETA line, run, compile count, record and failure
note, for both of the suite's modes.

    python -m experiments.suite_process OUT --step NAME -- SCRIPT ARGS...
    python -m experiments.suite_process OUT QUEUE

--step: one step in this process (the default mode: a process per step).
It exits 0 once the step is recorded, whether the step passed or failed
(a failure is in OUT/.suite_failed); a non-zero exit means this runner
itself died (e.g. killed for memory) and the caller records that.

QUEUE (`ONE_PROCESS=1`): every step in ONE process, in order; one JSON
object per line, {"name": step, "argv": [SCRIPT.py | -m MODULE, args...]},
written by report_suite.sh.

Each step runs as its script would as a process (`runpy`, `sys.argv` set,
absl's `app.run` re-parsing its flags), its output (file descriptors 1 and
2 too, so XLA's) in OUT/<step>.log, under its own compile counter, between
the suite's ETA and record lines (`icl_jax.analysis.suite_timing`), with
the seconds spent inside the model's generation and forward calls
(`icl_jax.models.work_meter`): suite.json and suite_times.txt are the same
in both modes. Running a script
in this process, removing its flags and keeping the memory mappings under
the kernel's limit live in `icl_jax.analysis.in_process`.

Saved: the Python start and imports, the model load (one per suite:
`common.REUSE_MODELS`), and compiling programs a later step runs again
(JAX's in-memory caches; the persistent cache keeps only programs slower
than `icl_jax.xla_cache.MIN_COMPILE_SECONDS` across processes). After each
step the flags it defined (its script's, `experiments.common`'s) are
removed. A step that raises or exits non-zero is recorded as failed and
the next one runs; one that kills the process (out of memory) ends the
suite there: rerun it, every step resumes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from icl_jax.models import work_meter
from icl_jax.analysis import compile_count, in_process


def run_steps(out: Path, queue: Path) -> int:
  """Every queued step in order; returns 1 if any failed, else 0."""
  from experiments import common

  steps = [json.loads(l) for l in queue.read_text().splitlines() if l.strip()]
  common.REUSE_MODELS = True
  try:
    rcs = []
    for s in steps:
      rcs.append(run_step(out, s["name"], s["argv"]))
      if in_process.drop_programs_if_crowded():
        print(f"(dropped the compiled programs after {s['name']}: "
              f"{in_process.MAX_MAP_SHARE:.0%} of the memory-mapping "
              "limit reached)", flush=True)
    return int(any(rc != 0 for rc in rcs))
  finally:
    common.REUSE_MODELS = False
    common.forget_models()


def run_step(out: Path, name: str, argv: list[str]) -> int:
  """One step: ETA line, the run, its compile count and record; a failure
  is printed and noted in OUT/.suite_failed. Returns its exit status."""
  from icl_jax.analysis import suite_timing

  print(suite_timing.eta_line(out, name), flush=True)
  print(f"=== {name}: {' '.join(argv)}", flush=True)
  log = out / f"{name}.log"
  counter = compile_count.CompileCounter().start()
  flags_before = in_process.flag_names()
  work_meter.reset()
  t0 = time.time()
  rc = in_process.run_in_process(argv, log)
  wall = time.time() - t0
  counter.stop()
  in_process.remove_flags_defined_since(flags_before)
  rec = counter.record()
  rec["work"] = work_meter.totals()  # seconds inside the model's calls
  maps = in_process.memory_maps()
  if maps:  # this process's memory mappings at the step's end
    rec["memory_maps"] = maps[0]
  with open(log, "a", encoding="utf-8") as f:
    f.write(compile_count.summary_line(rec) + "\n")
  compiles = out / f".compiles_{name}.json"
  compiles.write_text(json.dumps(rec), encoding="utf-8")
  line = suite_timing.record(out, name, wall, rc, str(compiles))
  print(line, flush=True)
  with open(out / "suite_times.txt", "a", encoding="utf-8") as f:
    f.write(line + "\n")
  if rc != 0:
    print(f"{name} FAILED (rc={rc}, see {log})")
    print("".join(log.read_text(errors="replace").splitlines(True)[-5:]))
    with open(out / ".suite_failed", "a", encoding="utf-8") as f:
      f.write(name + "\n")
  return rc


USAGE = ("usage: python -m experiments.suite_process OUT QUEUE\n"
         "       python -m experiments.suite_process OUT --step NAME -- "
         "SCRIPT ARGS...")


def main(argv: list[str]) -> int:
  if len(argv) >= 5 and argv[1] == "--step" and argv[3] == "--":
    run_step(Path(argv[0]), argv[2], argv[4:])
    return 0  # recorded, passed or failed
  if len(argv) != 2 or argv[1].startswith("-"):
    print(USAGE, file=sys.stderr)
    return 2
  return run_steps(Path(argv[0]), Path(argv[1]))


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
