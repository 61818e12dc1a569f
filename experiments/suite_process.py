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
the suite's ETA and record lines (`icl_jax.analysis.suite_timing`):
suite.json and suite_times.txt are the same in both modes.

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
import os
import sys
import time
import traceback
from pathlib import Path

from icl_jax.analysis import compile_count


def _exit_code(code) -> int:  # SystemExit's code as an exit status
  return 0 if code is None else code if isinstance(code, int) else 1


def run_in_process(argv: list[str], log: Path) -> int:
  """Runs `argv` (SCRIPT.py args... or -m MODULE args...) as __main__ with
  its output (file descriptors 1 and 2, sys.stdout and sys.stderr) on
  `log`; returns its exit status."""
  sys.stdout.flush()
  sys.stderr.flush()
  saved, old_argv, old_streams = (os.dup(1), os.dup(2)), sys.argv, (
      sys.stdout, sys.stderr)
  rc = 0
  with open(log, "w", encoding="utf-8", buffering=1) as f:
    os.dup2(f.fileno(), 1)  # C-level output (XLA) shares f's file offset
    os.dup2(f.fileno(), 2)
    sys.stdout = sys.stderr = f  # also where a caller replaced them
    try:
      compile_count.run_script(argv)
    except SystemExit as e:
      rc = _exit_code(e.code)
      if isinstance(e.code, str):  # the message a process would print
        print(e.code, file=sys.stderr)
    except KeyboardInterrupt:
      raise
    except BaseException:  # noqa: BLE001 -- a failed step, not the suite
      traceback.print_exc()
      rc = 1
    finally:
      f.flush()
      sys.stdout, sys.stderr = old_streams
      os.dup2(saved[0], 1)
      os.dup2(saved[1], 2)
      for fd in saved:
        os.close(fd)
      sys.argv = old_argv
  return rc


def remove_step_flags() -> None:
  """Deletes the absl flags a step defined (in its script, run as
  __main__, or through `experiments.*`)."""
  from absl import flags

  fv = flags.FLAGS
  for name in list(fv):
    module = fv.find_module_defining_flag(name) or ""
    if module == "__main__" or module.startswith("experiments"):
      delattr(fv, name)
  fv.unparse_flags()


# Share of vm.max_map_count above which the compiled programs are dropped
# between steps. Each program XLA:CPU compiles holds its own memory
# mappings (LLVM code sections; ~180 per engine program at gemma3-270m
# study sizes), and a process past the kernel's limit (65,530 by default)
# aborts inside LLVM ("Unable to allocate section memory"): measured,
# session 21, a one-process study-size suite aborted in its 13th step
# after ~370 programs. One step alone (a process per step) stays under it
# (the largest, demo_ablation, compiles ~200 programs); below this share
# programs are kept for later steps to reuse.
MAX_MAP_SHARE = 0.25


def memory_maps() -> tuple[int, int] | None:
  """(memory mappings of this process, the kernel's vm.max_map_count), or
  None where /proc does not tell (not Linux)."""
  try:
    with open("/proc/self/maps", "rb") as f:
      n = sum(1 for _ in f)
    return n, int(Path("/proc/sys/vm/max_map_count").read_text())
  except (OSError, ValueError):
    return None


def drop_programs_if_crowded(share: float = MAX_MAP_SHARE) -> bool:
  """Drops JAX's compiled programs (in-memory caches; the persistent cache
  on disk stays) when this process holds more than `share` of the
  kernel's memory-mapping limit; returns whether it did."""
  maps = memory_maps()
  if maps is None or maps[0] <= share * maps[1]:
    return False
  import gc

  import jax

  jax.clear_caches()
  gc.collect()
  return True


def run_steps(out: Path, queue: Path) -> int:
  """Every queued step in order; returns 1 if any failed, else 0."""
  from experiments import common

  steps = [json.loads(l) for l in queue.read_text().splitlines() if l.strip()]
  common.REUSE_MODELS = True
  try:
    rcs = []
    for s in steps:
      rcs.append(run_step(out, s["name"], s["argv"]))
      if drop_programs_if_crowded():
        print(f"(dropped the compiled programs after {s['name']}: "
              f"{MAX_MAP_SHARE:.0%} of the memory-mapping limit reached)",
              flush=True)
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
  t0 = time.time()
  rc = run_in_process(argv, log)
  wall = time.time() - t0
  counter.stop()
  remove_step_flags()
  rec = counter.record()
  maps = memory_maps()
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
