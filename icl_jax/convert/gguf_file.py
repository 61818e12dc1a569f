"""A small GGUF reader: header, metadata and tensor table in one pass.

The converter used to parse a GGUF's metadata three times (gguf-py's
`GGUFReader` twice and transformers' GGUF config loader), each time holding
every element of the tokenizer arrays as numpy views or Python objects
(Gemma 3's 262k-token vocabulary: ~1 GB transient, ~0.6 GB of it kept for the
whole conversion). This reader streams the header once and keeps only what
the config and the tensor table need: scalar keys, small arrays, and the
*lengths* of the `tokenizer.*` arrays (the tokenizer is built from the file
by transformers, before any parameter is allocated). Tensor bytes are read
later, row block by row block, with `os.pread`.

`transformers_config_dict` rebuilds the config dict that transformers'
`load_gguf_checkpoint` derives from the same metadata, for the architectures
whose mapping is plain renames (llama/mistral, qwen2, gemma2, gemma3); tests
compare it with transformers' own result (tests/convert/test_gguf_memory.py).
"""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

_MAGIC = b"GGUF"
_VERSIONS = (2, 3)
_DEFAULT_ALIGNMENT = 32
# value type -> struct format (GGUF value types 0..12 but 8 string, 9 array)
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f",
           7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# Arrays under these keys are skipped (only their length is kept): the
# tokenizer's vocabulary, scores, token types and merges.
_SKIPPED_PREFIX = "tokenizer."
# GGUF architectures whose transformers config is built here; others go
# through transformers' own loader.
FAST_CONFIG_ARCHS = ("llama", "qwen2", "gemma2", "gemma3")


class GGUFFormatError(ValueError):
  """The file is not a complete, readable GGUF file."""


@dataclasses.dataclass(frozen=True)
class SkippedArray:
  """A metadata array that was not read: its element type and length."""
  element_type: int
  count: int


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  name: str
  ggml_type: Any  # gguf.GGMLQuantizationType
  dims: tuple[int, ...]  # ggml order (fastest-moving first)
  offset: int  # absolute byte offset of the data in the file
  n_bytes: int
  np_dtype: np.dtype  # of the stored items (uint8 for quantized blocks)
  np_shape: tuple[int, ...]  # the stored items' array shape (gguf-py's)

  @property
  def shape(self) -> tuple[int, ...]:
    """The dequantized tensor's shape (numpy order)."""
    return tuple(reversed(self.dims))


@dataclasses.dataclass
class GGUFHeader:
  path: Path
  version: int
  metadata: dict[str, Any]  # in file order; skipped arrays as SkippedArray
  tensors: list[TensorInfo]
  data_offset: int

  @property
  def architecture(self) -> str:
    return str(self.metadata.get("general.architecture", ""))


class _Stream:
  """Sequential little-endian reads from a buffered file; EOF raises."""

  def __init__(self, f, size: int):
    self.f, self.size = f, size

  def take(self, n: int) -> bytes:
    b = self.f.read(n)
    if len(b) != n:
      raise GGUFFormatError(
          f"the header runs past the end of the file ({self.size} bytes)")
    return b

  def skip(self, n: int) -> None:
    if self.f.seek(n, os.SEEK_CUR) > self.size:
      raise GGUFFormatError(
          f"the header runs past the end of the file ({self.size} bytes)")

  def unpack(self, fmt: str):
    return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

  def string(self) -> str:
    n = self.unpack("<Q")
    if n > self.size:
      raise GGUFFormatError(f"string length {n} exceeds the file size")
    return self.take(n).decode("utf-8")


def _read_value(s: _Stream, vtype: int, skip: bool):
  if vtype in _SCALAR:
    return s.unpack(_SCALAR[vtype])
  if vtype == _STRING:
    return s.string()
  if vtype != _ARRAY:
    raise GGUFFormatError(f"unknown metadata value type {vtype}")
  etype, count = s.unpack("<I"), s.unpack("<Q")
  if count > s.size:
    raise GGUFFormatError(f"array length {count} exceeds the file size")
  if etype in _SCALAR:
    width = struct.calcsize(_SCALAR[etype])
    if skip:
      s.skip(width * count)
      return SkippedArray(etype, count)
    return list(struct.unpack(f"<{count}{_SCALAR[etype][1]}",
                              s.take(width * count)))
  if skip and etype == _STRING:
    for _ in range(count):
      s.skip(s.unpack("<Q"))
    return SkippedArray(etype, count)
  out: list = []
  for _ in range(count):  # gguf-py flattens nested arrays; so do we
    v = _read_value(s, etype, False)
    out.extend(v) if isinstance(v, list) else out.append(v)
  return out


def _read_metadata(s: _Stream, count: int) -> dict[str, Any]:
  meta: dict[str, Any] = {}
  for _ in range(count):
    key = s.string()
    if key in meta:
      raise GGUFFormatError(f"duplicate metadata key {key!r}")
    meta[key] = _read_value(s, s.unpack("<I"),
                            skip=key.startswith(_SKIPPED_PREFIX))
  return meta


def _tensor_info(name: str, dims: tuple[int, ...], raw_type: int,
                 offset: int) -> TensorInfo:
  from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
  from gguf.quants import quant_shape_to_byte_shape

  try:
    qtype = GGMLQuantizationType(raw_type)
  except ValueError as e:
    raise GGUFFormatError(f"tensor {name}: unknown ggml type {raw_type}") from e
  n_elems = int(np.prod(dims, dtype=np.int64))
  block, type_size = GGML_QUANT_SIZES[qtype]
  np_shape = tuple(reversed(dims))
  plain = {"F16": np.float16, "F32": np.float32, "F64": np.float64,
           "I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64}
  if qtype.name in plain:
    dtype = np.dtype(plain[qtype.name])
  else:
    dtype = np.dtype(np.uint8)
    try:
      np_shape = quant_shape_to_byte_shape(np_shape, qtype)
    except ValueError as e:
      raise GGUFFormatError(f"tensor {name}: {e}") from e
  return TensorInfo(name, qtype, dims, offset, n_elems * type_size // block,
                    dtype, tuple(int(d) for d in np_shape))


def _read_tensor_table(s: _Stream, count: int) -> list[tuple]:
  entries, names = [], set()
  for _ in range(count):
    name = s.string()
    if name in names:
      raise GGUFFormatError(f"duplicate tensor {name!r}")
    names.add(name)
    n_dims = s.unpack("<I")
    if n_dims > 8:
      raise GGUFFormatError(f"tensor {name}: {n_dims} dimensions")
    dims = struct.unpack(f"<{n_dims}Q", s.take(8 * n_dims))
    entries.append((name, dims, s.unpack("<I"), s.unpack("<Q")))
  return entries


def read_header(path: str | Path) -> GGUFHeader:
  """Parses a GGUF's header, metadata and tensor table (one pass).

  Raises GGUFFormatError for a file that is not a complete GGUF: bad magic
  or version, a header cut short, or tensor data past the end of the file.
  """
  path = Path(path)
  size = path.stat().st_size
  with open(path, "rb", buffering=1 << 20) as f:
    s = _Stream(f, size)
    if s.take(4) != _MAGIC:
      raise GGUFFormatError("bad magic (not a GGUF file)")
    version = s.unpack("<I")
    if version & 0xFFFF == 0 and version:
      raise GGUFFormatError("big-endian GGUF files are not supported")
    if version not in _VERSIONS:
      raise GGUFFormatError(f"unsupported GGUF version {version}")
    n_tensors, n_kv = s.unpack("<Q"), s.unpack("<Q")
    if n_tensors > size or n_kv > size:
      raise GGUFFormatError(f"implausible counts ({n_tensors} tensors, "
                            f"{n_kv} metadata keys)")
    meta = _read_metadata(s, n_kv)
    entries = _read_tensor_table(s, n_tensors)
    end = f.tell()
  align = meta.get("general.alignment", _DEFAULT_ALIGNMENT)
  if not isinstance(align, int) or align <= 0 or align & (align - 1):
    raise GGUFFormatError(f"invalid general.alignment {align!r}")
  data_offset = -(-end // align) * align
  tensors = [_tensor_info(n, d, t, data_offset + o) for n, d, t, o in entries]
  for t in tensors:
    if t.offset + t.n_bytes > size:
      raise GGUFFormatError(
          f"truncated: tensor {t.name} ends at byte {t.offset + t.n_bytes} "
          f"but the file has {size} bytes")
  return GGUFHeader(path, version, meta, tensors, data_offset)


def read_rows(fd: int, t: TensorInfo, start: int, stop: int) -> np.ndarray:
  """Rows [start, stop) (leading axis) of a tensor's stored items."""
  shape = t.np_shape if t.np_shape else (1,)
  row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * t.np_dtype.itemsize
  n = (stop - start) * row_bytes
  buf = np.empty(n, np.uint8)
  if n and os.preadv(fd, [buf], t.offset + start * row_bytes) != n:
    raise GGUFFormatError(f"short read of tensor {t.name}")
  return buf.view(t.np_dtype).reshape((stop - start,) + tuple(shape[1:]))


# --------------------------------------------------------------------------
# The transformers config
# --------------------------------------------------------------------------

def _field_value(v):
  """A metadata value as transformers' GGUF loader parses it."""
  if isinstance(v, list) and len(v) == 1:
    return v[0]
  return v


def transformers_config_dict(header: GGUFHeader) -> dict | None:
  """The config dict `load_gguf_checkpoint(...)["config"]` returns, or None
  for an architecture not in FAST_CONFIG_ARCHS (or an unusual file)."""
  from transformers.integrations.ggml import (GGUF_CONFIG_DEFAULTS_MAPPING,
                                              GGUF_CONFIG_MAPPING)

  meta = header.metadata
  arch = meta.get("general.architecture")
  if arch not in FAST_CONFIG_ARCHS:
    return None
  names = [meta["general.name"]] if "general.name" in meta else []
  updated = "mistral" if "llama" in arch and "mistral" in names else arch
  config: dict[str, Any] = {"tie_word_embeddings": all(
      t.name != "output.weight" for t in header.tensors)}
  for k, v in GGUF_CONFIG_DEFAULTS_MAPPING.get(
      updated, GGUF_CONFIG_DEFAULTS_MAPPING.get(arch) or {}).items():
    config.setdefault(k, v)
  for key, raw in meta.items():
    key = key.replace(arch, updated)
    prefix, _, config_key = key.partition(".")
    renames = GGUF_CONFIG_MAPPING.get(prefix, {})
    if config_key not in renames:
      continue
    if isinstance(raw, SkippedArray):
      return None  # a mapped key we did not read: let transformers do it
    value = _field_value(raw)
    if isinstance(value, str) and arch in value:
      value = value.replace(arch, updated)
    if renames[config_key] not in (None, -1):
      config[renames[config_key]] = value
  if config.get("model_type") == "gemma3":
    config["model_type"] = "gemma3_text"
  tokens = meta.get("tokenizer.ggml.tokens")
  if "vocab_size" not in config and tokens is not None:
    if not isinstance(tokens, SkippedArray) or tokens.count == 1:
      return None  # (transformers would take len() of the one token)
    config["vocab_size"] = tokens.count
  return config
