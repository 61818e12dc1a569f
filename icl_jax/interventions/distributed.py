"""Several JAX processes (`jax.distributed`): one per host of a TPU pod slice
or a multi-host GPU cluster, all running the same program (SPMD).

How a sweep runs there. Every process runs the same script on the same
inputs. The engine's mesh is the global device list (`jax.devices()`), so
each compiled sweep call shards its cells over every device of every host;
parameters and clean target runs are replicated. Results are brought back
with `to_host` (a cross-process all-gather of the cell axis), so every
process holds identical rows. Forward passes outside the engine (captures,
probes) use each process's local devices and give identical values
everywhere. Only process 0 writes result files (`analysis.results.RunDir`);
the others keep the same rows in memory, starting from process 0's file.

On CPU, cross-process collectives use gloo (`jax_cpu_collectives_implementation`,
the default since jax 0.5.1); on GPU NCCL, on TPU the ICI/DCN network.

Launch: `python -m icl_jax.studies.launch [--coordinator=HOST:PORT
--num_processes=N --process_id=I] experiments/SCRIPT.py --flags...` on every
host (`icl_jax/studies/launch.py`). With a single process nothing here
changes anything.
"""

from __future__ import annotations

import numpy as np
import jax


def process_count() -> int:
  """JAX processes of this run (1 unless jax.distributed is initialized;
  never initializes a backend by itself)."""
  return jax.process_count() if jax.distributed.is_initialized() else 1


def is_primary() -> bool:
  """True for the process that writes files (process 0, or the only one)."""
  return process_count() == 1 or jax.process_index() == 0


def to_host(x) -> np.ndarray:
  """A (possibly multi-process) jax.Array as one numpy array on every
  process: local arrays directly, replicated ones from a local copy,
  sharded ones by an all-gather over processes."""
  if getattr(x, "is_fully_addressable", True):
    return np.asarray(x)
  if x.is_fully_replicated:
    return np.asarray(x.addressable_data(0))
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def agree_min(value: int) -> int:
  """The smallest of every process's `value` (e.g. a memory budget, so all
  processes cut the same chunks)."""
  if process_count() == 1:
    return int(value)
  from jax.experimental import multihost_utils

  # int32 (jax_enable_x64 is off): budgets are passed in MiB by callers.
  vals = multihost_utils.process_allgather(np.int32(value))
  return int(np.min(vals))


def broadcast_bytes(data: bytes) -> bytes:
  """Process 0's `data` on every process (what the others pass is
  ignored)."""
  if process_count() == 1:
    return data
  from jax.experimental import multihost_utils

  n = int(multihost_utils.broadcast_one_to_all(np.int32(len(data))))
  if n == 0:
    return b""
  buf = np.zeros(n, np.uint8)
  if is_primary():
    buf[:] = np.frombuffer(data, np.uint8)
  return np.asarray(multihost_utils.broadcast_one_to_all(buf)).tobytes()


def from_primary(fn, errors=()) -> bytes:
  """fn() -> bytes run on process 0 only; its result on every process. If
  it raises, every process raises: the same class where it is one of
  `errors`, else RuntimeError (process 0 re-raises the original)."""
  if process_count() == 1:
    return fn()
  if not is_primary():
    msg = broadcast_bytes(b"")
    if msg[:1] == b"R":
      return msg[1:]
    name, _, text = msg[1:].decode(errors="replace").partition(": ")
    err = {e.__name__: e for e in errors}.get(name, RuntimeError)
    raise err(f"process 0: {text}")
  try:
    data = fn()
  except Exception as e:
    broadcast_bytes(f"E{type(e).__name__}: {e}".encode())
    raise
  broadcast_bytes(b"R" + data)
  return data
