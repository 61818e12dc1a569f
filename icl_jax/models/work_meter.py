"""Where a run's time goes: seconds inside the model's work calls, net of
compiling.

The report suite reads it per step (experiments/suite_process.py), so a
step's generation rate can be set beside the engine's headline rate without
the model load, compiling, probe fits and Python work around the calls.
Three kinds, metered by the calls that do the work:

  engine    `Engine.prepare` (the targets' clean run; count 0) and
            `Engine.run` (count = cells x target prompts): the patched
            generations, the same calls `benchmarks/sweep.py` times for
            its headline.
  generate  `DecoderLM.generate_ids`: clean greedy generations (count =
            prompts).
  forward   `DecoderLM.__call__`: forward passes (count = batch rows),
            source captures and feature reads included.

A metered call blocks until its results are ready (its caller would block
on them anyway), so its wall time covers the device work. The compile
events that fire inside it (`jax.monitoring`: ``/jax/core/compile/*``, i.e.
tracing, lowering, and an XLA compile or a persistent-cache load) are
subtracted from its seconds and kept as ``compile_s``. A metered call made
inside another counts in the outermost one only. A call that raises is not
counted.

  work_meter.reset()
  ...                           # any work
  work_meter.totals()  # {"engine": {"count", "seconds", "compile_s"}, ...}
"""

from __future__ import annotations

import contextlib
import time

KINDS = ("engine", "generate", "forward")
_COMPILE_PREFIX = "/jax/core/compile/"
_TOTALS: dict[str, list] = {}  # kind -> [count, seconds, compile seconds]
_STATE = {"depth": 0, "compile_s": 0.0}
_REGISTERED = [False]


def _listener(name, duration, **kwargs):
  del kwargs
  if _STATE["depth"] and name.startswith(_COMPILE_PREFIX):
    _STATE["compile_s"] += float(duration)


def _register() -> None:
  if not _REGISTERED[0]:
    import jax.monitoring

    jax.monitoring.register_event_duration_secs_listener(_listener)
    _REGISTERED[0] = True


@contextlib.contextmanager
def metered(kind: str, count: int):
  """Times the block as `count` units of `kind` (see the module doc)."""
  if kind not in KINDS:
    raise ValueError(f"unknown work kind {kind!r}; one of {KINDS}")
  _register()
  outer = _STATE["depth"] == 0
  if outer:
    _STATE["compile_s"] = 0.0
  _STATE["depth"] += 1
  t0 = time.perf_counter()
  try:
    yield
  finally:
    _STATE["depth"] -= 1
  if outer:
    wall = time.perf_counter() - t0
    comp = min(_STATE["compile_s"], wall)
    tot = _TOTALS.setdefault(kind, [0, 0.0, 0.0])
    tot[0] += int(count)
    tot[1] += wall - comp
    tot[2] += comp


def reset() -> None:
  _TOTALS.clear()


def totals() -> dict:
  """{kind: {"count", "seconds" (net of compiling), "compile_s"}} since the
  last `reset`, for the kinds that ran."""
  return {k: {"count": c, "seconds": round(s, 3), "compile_s": round(cs, 3)}
          for k, (c, s, cs) in _TOTALS.items()}
