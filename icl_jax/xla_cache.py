"""JAX's persistent compilation cache for icl_jax's scripts.

Every experiment script is its own process, so without a persistent cache
each one recompiles the same engine, forward and probe programs (the report
suite runs ~27 of them). `enable()` points JAX's persistent compilation
cache at ``$ICL_JAX_CACHE/xla`` (or ``$ICL_JAX_XLA_CACHE``), so a program
compiled once (same HLO, compile options, backend, jax version: JAX's cache
key) is loaded from disk by every later process instead of compiled again.
A cache hit runs the very executable that was compiled before, so results
are unchanged; only compile time goes away.

``ICL_JAX_XLA_CACHE=off`` (or ``0``) disables it; any other value is the
directory. The experiment scripts call `enable()` when they load a model
(experiments/common.py); library users call it themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "ICL_JAX_XLA_CACHE"
# Programs that compile faster than this are not written (JAX's default is
# 1 s; the engine's small decode programs take ~0.3-1 s on a 2-core CPU).
MIN_COMPILE_SECONDS = 0.3


def cache_dir() -> Path | None:
  """The directory in use by `enable()`, or None when disabled."""
  value = os.environ.get(ENV)
  if value is not None and value.strip().lower() in ("off", "0", ""):
    return None
  if value:
    return Path(value).expanduser()
  from icl_jax.convert.embedded import cache_root

  return cache_root() / "xla"


def enable(directory: str | Path | None = None,
           min_compile_seconds: float = MIN_COMPILE_SECONDS) -> Path | None:
  """Turns on the persistent compilation cache; returns its directory (None
  when ``ICL_JAX_XLA_CACHE=off`` and no `directory` is given)."""
  import jax

  path = Path(directory).expanduser() if directory else cache_dir()
  if path is None:
    return None
  path.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    float(min_compile_seconds))
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path
