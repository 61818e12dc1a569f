"""Running scripts one after another inside ONE Python process: a script's
run with its output on a log file, the absl flags it defined removed after
it, and the process's memory mappings kept under the kernel's limit by
dropping JAX's compiled programs. The report suite's one-process mode
(`experiments/suite_process.py`) is built on these.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from icl_jax.analysis import compile_count


def _exit_code(code) -> int:  # SystemExit's code as an exit status
  return 0 if code is None else code if isinstance(code, int) else 1


def run_in_process(argv: list[str], log: Path) -> int:
  """Runs `argv` (SCRIPT.py args... or -m MODULE args...) as __main__ with
  its output (file descriptors 1 and 2, sys.stdout and sys.stderr) on
  `log`; returns its exit status. An exception in the script is printed
  on `log` and returns 1; only KeyboardInterrupt propagates."""
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
    except BaseException:  # noqa: BLE001 -- a failed script, not the caller
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


def flag_names() -> set[str]:
  """The names of the absl flags defined now."""
  from absl import flags

  return set(flags.FLAGS)


def remove_flags_defined_since(before: set[str]) -> None:
  """Deletes the absl flags defined since `before` (`flag_names()` taken
  before a script ran: its own and those it defined through helper
  modules), except absl's own (its help flags are defined once per
  process), and unparses the rest, so the next script defines its own
  flags with their defaults."""
  from absl import flags

  fv = flags.FLAGS
  for name in set(fv) - before:
    if not (fv.find_module_defining_flag(name) or "").startswith("absl."):
      delattr(fv, name)
  fv.unparse_flags()


# Share of vm.max_map_count above which the compiled programs are dropped
# between scripts. Each program XLA:CPU compiles holds its own memory
# mappings (LLVM code sections), and a process past the kernel's limit
# (65,530 by default) aborts inside LLVM ("Unable to allocate section
# memory"). Measured, gemma3-270m at study sizes (session 21): a
# one-process suite that kept every program aborted while compiling in its
# 13th step, 317 programs of earlier steps in memory. The largest step,
# demo_ablation (189 programs), took the process from ~5,700 mappings to
# 43,760 (67% of the limit); noise_tracing (102) from ~1,000 to 15,384.
# Starting each step below 10% keeps the largest under ~70%; below this
# share the programs stay for later steps to reuse.
MAX_MAP_SHARE = 0.10


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
