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
counted. Each kind also counts its (outermost) ``calls``.

Device batches: inside its calls the engine runs one device program per
chunk of cells (`Engine.run`: the cells of one layer x the N targets).
`batch(kind, rows)` times each such program, net of compiling, into the
power-of-two bucket of its rows, so a run's rate can be read by batch size
(a chunk of few rows uses the CPU's matrix units less well than the
headline's 4 cells x 20 targets).

  work_meter.reset()
  ...                           # any work
  work_meter.totals()  # {"engine": {"count", "calls", "seconds",
                       #             "compile_s", "batches": {...}}, ...}
"""

from __future__ import annotations

import contextlib
import time

KINDS = ("engine", "generate", "forward")
_COMPILE_PREFIX = "/jax/core/compile/"
# kind -> [count, seconds, compile seconds, calls]
_TOTALS: dict[str, list] = {}
# (kind, bucket low end) -> [calls, rows, seconds, compile seconds]
_BATCHES: dict[tuple[str, int], list] = {}
# compile_s: every compile event's seconds since the listener was registered
# (monotonic; a block's compile time is its difference).
_STATE = {"depth": 0, "compile_s": 0.0}
_REGISTERED = [False]


def _listener(name, duration, **kwargs):
  del kwargs
  if name.startswith(_COMPILE_PREFIX):
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
  compile0 = _STATE["compile_s"]
  _STATE["depth"] += 1
  t0 = time.perf_counter()
  try:
    yield
  finally:
    _STATE["depth"] -= 1
  if outer:
    wall = time.perf_counter() - t0
    comp = min(_STATE["compile_s"] - compile0, wall)
    tot = _TOTALS.setdefault(kind, [0, 0.0, 0.0, 0])
    tot[0] += int(count)
    tot[1] += wall - comp
    tot[2] += comp
    tot[3] += 1


def bucket(rows: int) -> int:
  """The low end of the power-of-two bucket holding `rows` (>= 1)."""
  if rows < 1:
    raise ValueError(f"a batch has at least one row, got {rows}")
  return 1 << (int(rows).bit_length() - 1)


@contextlib.contextmanager
def batch(kind: str, rows: int):
  """Times one device program over `rows` rows (the caller blocks on its
  results inside the block) into `kind`'s bucket for `rows`, net of the
  compile events inside it. Independent of `metered`'s nesting."""
  if kind not in KINDS:
    raise ValueError(f"unknown work kind {kind!r}; one of {KINDS}")
  key = (kind, bucket(rows))
  _register()
  compile0 = _STATE["compile_s"]
  t0 = time.perf_counter()
  yield
  wall = time.perf_counter() - t0
  comp = min(_STATE["compile_s"] - compile0, wall)
  rec = _BATCHES.setdefault(key, [0, 0, 0.0, 0.0])
  rec[0] += 1
  rec[1] += int(rows)
  rec[2] += wall - comp
  rec[3] += comp


def reset() -> None:
  _TOTALS.clear()
  _BATCHES.clear()


def totals() -> dict:
  """{kind: {"count", "calls", "seconds" (net of compiling), "compile_s"}}
  since the last `reset`, for the kinds that ran; a kind with device
  batches adds "batches": {"LO-HI" rows: {"calls", "rows", "seconds",
  "compile_s"}} in bucket order."""
  out = {k: {"count": c, "calls": n, "seconds": round(s, 3),
             "compile_s": round(cs, 3)}
         for k, (c, s, cs, n) in _TOTALS.items()}
  for (kind, lo), (n, rows, s, cs) in sorted(_BATCHES.items()):
    out.setdefault(kind, {"count": 0, "calls": 0, "seconds": 0.0,
                          "compile_s": 0.0}).setdefault("batches", {})[
        f"{lo}-{2 * lo - 1}"] = {"calls": n, "rows": rows,
                                 "seconds": round(s, 3),
                                 "compile_s": round(cs, 3)}
  return out
