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


def default_memory_budget() -> int:
  """Bytes the sweep may use: half a GPU's memory, or a quarter of RAM."""
  dev = jax.devices()[0]
  try:
    stats = dev.memory_stats()
    if stats and "bytes_limit" in stats:
      return int(stats["bytes_limit"] * 0.5)
  except Exception:  # CPU backends may not implement memory_stats
    pass
  try:
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError):
    ram = 8 << 30
  return int(ram * 0.25)


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
