"""Host-memory helpers of the converter: aligned arrays, handing freed heap
pages back to the OS, and an fp32 -> bf16 cast that needs no second buffer.

Why: a first load must peak near one copy of the fp32 parameters (BUILD_NOTES,
"Conversion memory and load times"). XLA's CPU client uses a 64-byte-aligned
numpy buffer in place (`jax.device_put`) instead of copying it, so leaves are
allocated aligned; glibc keeps freed small-object memory (metadata, tokenizer
build) mapped unless asked (`malloc_trim`); and a bf16 load casts each fp32
leaf into the first half of its own buffer and releases the second half's
pages (`madvise(MADV_DONTNEED)`), so the cast adds no leaf-sized buffer.
"""

from __future__ import annotations

import ctypes
import gc
import mmap

import numpy as np

ALIGN = 64
_MADV_DONTNEED = 4
_libc = None


def _c():
  global _libc
  if _libc is None:
    try:
      _libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
      _libc = False
  return _libc


def aligned_empty(shape, dtype, align: int = ALIGN) -> np.ndarray:
  """np.empty(shape, dtype) whose data starts on an `align`-byte boundary."""
  dtype = np.dtype(dtype)
  n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  raw = np.empty(n + align, np.uint8)
  start = (-raw.ctypes.data) % align
  return raw[start:start + n].view(dtype).reshape(shape)


def release_memory() -> None:
  """Collects garbage and returns free heap pages to the OS (glibc's
  malloc_trim), so that a phase's transients (metadata, tokenizer build)
  do not stay resident under the parameter tree that follows."""
  gc.collect()
  libc = _c()
  if libc and hasattr(libc, "malloc_trim"):
    libc.malloc_trim(0)


def _drop_pages(start: int, stop: int) -> None:
  """Releases the whole pages inside [start, stop) (their contents become
  zeros; the range must hold nothing anyone reads)."""
  page = mmap.PAGESIZE
  lo, hi = -(-start // page) * page, stop // page * page
  libc = _c()
  if hi > lo and libc:
    libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo),
                 _MADV_DONTNEED)


def bf16_in_place(x: np.ndarray, dtype, block: int = 1 << 20) -> np.ndarray:
  """`x` (C-contiguous fp32, owned by the caller and not used again) cast to
  `dtype` (bfloat16) into the first half of its own buffer, block by block;
  the second half's pages are released. Same values as x.astype(dtype).

  Safe in place: block [a, b) reads bytes [4a, 4b) into a temporary before
  writing bytes [2a, 2b), and later blocks read only from byte 4b >= 2b.
  """
  dtype = np.dtype(dtype)
  assert x.dtype == np.float32 and dtype.itemsize == 2 and x.flags.c_contiguous
  src = x.reshape(-1)
  out = src.view(np.uint8)[:2 * src.size].view(dtype)
  for a in range(0, src.size, block):
    out[a:a + block] = src[a:a + block].astype(dtype)
  base = src.ctypes.data
  _drop_pages(base + 2 * src.size, base + 4 * src.size)
  return out.reshape(x.shape)
