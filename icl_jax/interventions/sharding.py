"""Where the engine's cells run: the device mesh, replicated parameters and
chunks of cells that fit a memory budget. Chunking and sharding never change
results; they only decide how many cells one compiled call evaluates."""

from __future__ import annotations

import math
import os
import weakref

import numpy as np
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# model -> {devices: (its params, their replicas)}; dropped with the model.
_REPLICAS = weakref.WeakKeyDictionary()


def free_device_memory(device) -> int | None:
  """Bytes still free on an accelerator device (its allocator's
  bytes_limit - bytes_in_use, so loaded parameters are counted), or None
  where memory_stats reports nothing (CPU)."""
  try:
    stats = device.memory_stats()
  except Exception:  # CPU backends may not implement memory_stats
    return None
  if not stats or "bytes_limit" not in stats:
    return None
  return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def default_memory_budget(devices=None) -> int:
  """Bytes one compiled sweep call may use over all `devices` (default:
  every device). Accelerators: half the free memory of the fullest local
  device, times the number of devices (cells are sharded evenly over
  them). CPU (no memory_stats): a quarter of the host's RAM, which its
  devices share, times the number of processes. With several processes
  every one gets the smallest answer, so all cut the same chunks."""
  from icl_jax.interventions import distributed

  devices = list(devices or jax.devices())
  local = [d for d in devices if d.process_index == jax.process_index()]
  free = [free_device_memory(d) for d in local or devices[:1]]
  if all(f is not None for f in free):
    total = int(min(free) * 0.5) * len(devices)
  else:
    try:
      ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
      ram = 8 << 30
    total = int(ram * 0.25) * distributed.process_count()
  if distributed.process_count() == 1:
    return total
  # Agreed in MiB (an int32 collective): every process the same budget.
  return distributed.agree_min(total >> 20) << 20


def cell_mesh(devices) -> Mesh:
  """A one-axis mesh ("cells") over `devices`."""
  return Mesh(np.array(devices), ("cells",))


def replicated(mesh: Mesh):
  return NamedSharding(mesh, PartitionSpec())


def sharded_cells(mesh: Mesh):
  """Arrays with a leading cell axis split over the mesh."""
  return NamedSharding(mesh, PartitionSpec("cells"))


def replicated_params(lm, devices, mesh: Mesh):
  """lm.params replicated over `devices`, made once per model and device set
  (for all its engines); the model object is not changed."""
  per_model = _REPLICAS.setdefault(lm, {})
  src, rep = per_model.get(tuple(devices), (None, None))
  if src is not lm.params:
    rep = jax.device_put(lm.params, replicated(mesh))
    per_model[tuple(devices)] = (lm.params, rep)
  return rep


def row_bytes(cfg, slots: int, max_new_tokens: int, dtype) -> int:
  """Estimated bytes of one (cell, prompt) row of a sweep."""
  S = slots + max_new_tokens
  item = np.dtype(dtype).itemsize
  cache = 2 * cfg.n_layers * S * cfg.n_kv_heads * cfg.head_dim * item
  acts = 8 * S * max(cfg.d_model, cfg.d_ff) * 4 + 2 * cfg.vocab_size * 4
  return 3 * cache + acts  # cache copies (prefix, patched, concat)


def chunk_cells(per_cell_bytes: int, memory_budget: int, n_devices: int,
                fixed: int | None = None) -> int:
  """Cells per compiled call: `fixed`, or as many as fit the budget; a
  multiple of the device count."""
  c = fixed if fixed else max(1, memory_budget // per_cell_bytes)
  return max(n_devices, (c // n_devices) * n_devices)


def chunk_work(layers: np.ndarray, chunk: int):
  """[(layer, cell indices)]: the cells of each layer in chunks."""
  work = []
  for layer in np.unique(layers):
    idx = np.nonzero(layers == layer)[0]
    for s in range(0, len(idx), chunk):
      work.append((int(layer), idx[s:s + chunk]))
  return work


def padded_size(n: int, chunk: int, n_devices: int) -> int:
  """A chunk of n cells is padded to this many (static shapes: one compile
  per full chunk; a last partial chunk rounds up to the device count)."""
  return chunk if n == chunk else int(math.ceil(n / n_devices) * n_devices)
