"""Counts JAX compilations (and their seconds) with `jax.monitoring`.

JAX reports every compilation as duration events named
``/jax/core/compile/<stage>`` (``jaxpr_trace_duration``,
``jaxpr_to_mlir_module_duration``, ``backend_compile_duration``). One
process-wide listener (listeners cannot be removed) forwards them to the
active :class:`CompileCounter` objects. ``count`` = XLA backend compile
events (one per program obtained); ``cache_hits`` = those of them that
JAX's persistent compilation cache loaded from disk instead of compiling
(jax 0.10 still reports a ``backend_compile_duration`` for a hit; the
event ``/jax/compilation_cache/cache_hits`` marks it), so ``compiled =
count - cache_hits`` programs were really compiled; ``seconds`` = all
compile stages together (a hit's load time included).

  counter = CompileCounter().start()
  ...                       # jitted work
  counter.count, counter.seconds, counter.seconds_by_kind()

Run any script under a counter (the report suite does this): the count is
printed as the last line of its output and, with ``--record=FILE``, written
as JSON::

  python -m icl_jax.analysis.compile_count --record=c.json -- \
      experiments/trajectory.py --model=... # or: -- -m experiments.main ...
"""

from __future__ import annotations

import atexit
import json
import runpy
import sys

PREFIX = "/jax/core/compile/"
BACKEND = PREFIX + "backend_compile_duration"
CACHE_HIT = "/jax/compilation_cache/cache_hits"
_ACTIVE: list = []
_REGISTERED = [False]


def _listener(name, duration, **kwargs):
  del kwargs
  if name.startswith(PREFIX):
    for counter in _ACTIVE:
      counter.events.append((name, float(duration)))


def _hit_listener(name, **kwargs):
  del kwargs
  if name == CACHE_HIT:
    for counter in _ACTIVE:
      counter.events.append((name, 0.0))


class CompileCounter:
  """Compile events seen between `start` and `stop` (or `clear`)."""

  def __init__(self):
    self.events: list[tuple[str, float]] = []

  def start(self) -> "CompileCounter":
    if not _REGISTERED[0]:
      import jax.monitoring

      jax.monitoring.register_event_duration_secs_listener(_listener)
      jax.monitoring.register_event_listener(_hit_listener)
      _REGISTERED[0] = True
    if self not in _ACTIVE:
      _ACTIVE.append(self)
    return self

  def stop(self) -> "CompileCounter":
    if self in _ACTIVE:
      _ACTIVE.remove(self)
    return self

  def clear(self) -> None:
    self.events.clear()

  @property
  def count(self) -> int:
    """XLA backend compilations (compiled programs)."""
    return sum(1 for name, _ in self.events if name == BACKEND)

  @property
  def cache_hits(self) -> int:
    """Programs loaded from the persistent compilation cache."""
    return sum(1 for name, _ in self.events if name == CACHE_HIT)

  @property
  def compiled(self) -> int:
    """Programs really compiled (not loaded from the persistent cache)."""
    return self.count - self.cache_hits

  @property
  def seconds(self) -> float:
    """Seconds in every compile stage (trace, lowering, backend)."""
    return sum(d for _, d in self.events)

  def seconds_by_kind(self) -> dict[str, float]:
    """{stage name (last path part): seconds}."""
    out: dict[str, float] = {}
    for name, d in self.events:
      if name == CACHE_HIT:
        continue
      kind = name.rsplit("/", 1)[-1]
      out[kind] = out.get(kind, 0.0) + d
    return out

  def record(self) -> dict:
    return {"compiles": self.count, "cache_hits": self.cache_hits,
            "compile_s": round(self.seconds, 3),
            "compile_s_by_kind": {k: round(v, 3) for k, v in
                                  self.seconds_by_kind().items()}}


def summary_line(rec: dict) -> str:
  """The last line of a counted run's output, from `CompileCounter.record`."""
  return (f"[compile_count] {rec['compiles']} XLA compiles "
          f"({rec['cache_hits']} from the persistent cache), "
          f"{rec['compile_s']:.1f} s compiling")


def _report(counter: CompileCounter, path: str | None) -> None:
  rec = counter.record()
  print(summary_line(rec), flush=True)
  if path:
    with open(path, "w", encoding="utf-8") as f:
      json.dump(rec, f)


def main(argv: list[str]) -> None:
  """``[--record=FILE] -- SCRIPT.py args...`` or ``... -- -m MODULE args``."""
  record = None
  while argv and argv[0] != "--":
    arg = argv.pop(0)
    if arg.startswith("--record="):
      record = arg.split("=", 1)[1]
    else:
      raise SystemExit(f"compile_count: unknown argument {arg!r}")
  if not argv or len(argv) < 2:
    raise SystemExit("usage: python -m icl_jax.analysis.compile_count "
                     "[--record=FILE] -- SCRIPT.py|-m MODULE [args...]")
  argv.pop(0)
  counter = CompileCounter().start()
  atexit.register(_report, counter, record)
  run_script(argv)


def run_script(argv: list[str]) -> None:
  """Runs ``SCRIPT.py args...`` or ``-m MODULE args...`` as ``__main__`` in
  this process, with ``sys.argv`` set as the script would see it."""
  if argv[0] == "-m":
    sys.argv = [argv[1], *argv[2:]]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
  else:
    sys.argv = list(argv)
    runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
  main(sys.argv[1:])
