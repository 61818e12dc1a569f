"""`icl_jax.load`: embedded names, GGUF files and Hugging Face directories.

Sources:
  - an embedded name (`gemma3-270m`, `smollm2-135m`, `qwen2.5-0.5b`,
    `qwen2.5-1.5b`), see `embedded.py`;
  - a `.gguf` file of a supported family (dequantized tensor by tensor with
    transformers' own GGUF processing, see `streaming.py`);
  - a local HF directory: config.json + model.safetensors or a sharded
    model.safetensors.index.json (shards must lie inside the directory).

Conversion streams one tensor at a time into the final parameter tree
(`streaming.ParamWriter`; a GGUF tensor is dequantized in place), so a first
load holds about one copy of the fp32 parameters: the GGUF metadata is read
once (`gguf_file`), the tokenizer and the cache's other files come before
the tree, and the tree becomes JAX arrays without a copy on CPU (bf16: cast
in each leaf's own buffer; see `hostmem`). Converted parameters are cached
under `$ICL_JAX_CACHE/models/<stem>-<key>/` (fp32, one .npy per leaf, see
`_save_params` for why not orbax; with the HF config, the tokenizer and the
generation stop tables). The key hashes the source files'
*contents* (sha256, computed once per file version and remembered by path,
size and mtime_ns), the converter version and the stored dtype. Every cached
file's size and sha256 are listed in the cache's `manifest.json`, written
last, and checked on every load; any mismatch or read error rebuilds the
cache once, with a warning that says why. Caches are written into a unique
temporary folder and renamed into place, so concurrent conversions of one
model all succeed and a half-written cache is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from icl_jax.convert import digests, embedded, hostmem, streaming
from icl_jax.convert.streaming import CheckpointError
from icl_jax.models.config import config_from_hf
from icl_jax.models.generation import StopTables
from icl_jax.models.lm import LanguageModel

log = logging.getLogger(__name__)

__all__ = ["CheckpointError", "CacheWarning", "load", "resolve_source",
           "read_hf_dir", "CONVERTER_VERSION", "SUPPORTED_DTYPES"]

# Bump when conversion output changes, to invalidate caches.
CONVERTER_VERSION = 3
SUPPORTED_DTYPES = ("float32", "bfloat16")
_STORED_DTYPE = "float32"


class CacheWarning(UserWarning):
  """A converted-model cache was damaged or stale and is being rebuilt."""


def _dtype_name(dtype) -> str:
  if dtype is None:
    return "float32"
  name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
  if name not in SUPPORTED_DTYPES:
    raise ValueError(
        f"unsupported dtype {name!r}; use one of {SUPPORTED_DTYPES} "
        "(float16 overflows in Gemma 2/3 and Qwen2.5)")
  return name


def _shards(p: Path, index: Path) -> list[Path]:
  try:
    names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
  except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as e:
    raise CheckpointError(f"{index}: malformed index ({e})") from e
  root = p.resolve()
  files = []
  for s in names:
    f = (p / str(s)).resolve()
    if not f.is_relative_to(root):
      raise CheckpointError(
          f"{index}: shard {s!r} lies outside the checkpoint folder {p}")
    files.append(f)
  missing = [str(f) for f in files if not f.exists()]
  if missing:
    raise CheckpointError(f"{p}: shards listed in the index are missing: "
                          f"{missing}")
  return files


def resolve_source(name_or_path) -> tuple[str, Path, list[Path]]:
  """-> (kind "gguf"|"hf_dir", path, files that define the checkpoint)."""
  name_or_path = str(name_or_path)
  if embedded.is_embedded_name(name_or_path):
    p = embedded.embedded_gguf_path(name_or_path)
    return "gguf", p, [p]
  p = Path(name_or_path).expanduser()
  if p.is_file() and p.suffix == ".gguf":
    return "gguf", p, [p]
  if p.is_dir():
    cfg = p / "config.json"
    if not cfg.exists():
      raise CheckpointError(f"{p}: no config.json in the directory")
    index = p / "model.safetensors.index.json"
    if index.exists():
      files = _shards(p, index)
    elif (p / "model.safetensors").exists():
      files = [p / "model.safetensors"]
    else:
      raise CheckpointError(
          f"{p}: no model.safetensors or model.safetensors.index.json "
          "(only safetensors checkpoints are supported)")
    return "hf_dir", p, [cfg, *files]
  if p.exists():
    raise CheckpointError(
        f"{p}: not a .gguf file or a Hugging Face checkpoint directory")
  raise ValueError(
      f"unknown model {name_or_path!r}: not an embedded model name "
      f"({', '.join(sorted(embedded.EMBEDDED_MODELS))}), an existing .gguf "
      "file or a directory with config.json + safetensors")


def _read_hf_config(path: Path) -> dict:
  try:
    return json.loads((path / "config.json").read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(f"{path}/config.json: malformed JSON ({e})") from e


def read_hf_dir(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
  """(config dict, state dict as fp32 numpy) from an HF safetensors dir.

  For tests and tools; `load` streams instead of building this dict.
  """
  _, _, files = resolve_source(str(path))
  return _read_hf_config(path), dict(streaming.iter_safetensors(files[1:]))


def source_digest(kind: str, path: Path, files: list[Path]) -> str:
  """sha256 over the checkpoint files' contents (and their names)."""
  h = hashlib.sha256()
  root = path.resolve() if kind == "hf_dir" else path.resolve().parent
  for f in files:
    rel = f.resolve().relative_to(root).as_posix()
    h.update(f"{rel}:{digests.sha256_of(f)}\n".encode())
  return h.hexdigest()


def _cache_dir(stem: str, key: str, cache_dir: Path | None) -> Path:
  root = cache_dir or (embedded.cache_root() / "models")
  return Path(root) / f"{stem}-{key}"


# --------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------

def _begin_cache(d: Path, hf_config: dict, tokenizer, stops) -> Path:
  """A new temporary cache folder with everything but the parameters.

  Written before the parameter tree exists: saving a tokenizer has
  transients (~0.1 GB for Gemma 3's) that would otherwise add to the peak.
  """
  tmp = digests.new_temp_dir(d)
  try:
    (tmp / "hf_config.json").write_text(json.dumps(hf_config, default=str))
    if tokenizer is not None:
      tokenizer.save_pretrained(str(tmp / "tokenizer"))
    stops.save(tmp / "stop_tables.npz")
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return tmp


def _end_cache(tmp: Path, d: Path, params, meta: dict) -> None:
  """Adds the parameters, meta.json and the manifest to `tmp`, then
  publishes it as the cache folder `d`."""
  try:
    _save_params(tmp / "params", params)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    # Written last: a cache without a manifest is never used.
    manifest = digests.dir_manifest(tmp)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  digests.publish_dir(tmp, d, existing_ok=lambda p: _cache_problem(p) is None)


def _cache_problem(d: Path) -> str | None:
  """None if the cache folder is complete and intact, else why not."""
  try:
    manifest = json.loads((d / "manifest.json").read_text())
  except FileNotFoundError:
    return "it has no manifest.json (incomplete, or from an older version)"
  except (OSError, ValueError) as e:
    return f"its manifest.json is unreadable ({e})"
  if not isinstance(manifest, dict) or "meta.json" not in manifest:
    return "its manifest.json is incomplete"
  return digests.check_manifest(d, manifest)


# The parameters are stored as one .npy file per leaf (written from the
# array's own buffer, read straight into one new array; allow_pickle=False),
# not with orbax: orbax's tensorstore save and restore held about 2x the
# tree in transient buffers (measured: 1 GiB tree, save peak +1.9 GiB,
# restore peak +1.5 GiB), which broke the 1.3x memory bound of a load.
def _leaves(tree, prefix=()):
  if isinstance(tree, dict):
    for k in sorted(tree):
      yield from _leaves(tree[k], prefix + (k,))
  else:
    yield prefix, tree


def _save_params(d: Path, params) -> None:
  d.mkdir()
  index = []
  for path, leaf in _leaves(params):
    name = ".".join(path)
    np.save(d / f"{name}.npy", np.asarray(leaf), allow_pickle=False)
    index.append({"path": list(path), "shape": list(np.shape(leaf))})
  (d / "index.json").write_text(json.dumps(index))


def _read_npy(f: Path, dtype: np.dtype, block_bytes: int = 16 << 20):
  """A cached .npy leaf read into a new 64-byte-aligned array of `dtype`
  (fp32: read in place; bf16: cast block by block), or np.load's result
  for a file this reader does not expect."""
  with open(f, "rb") as fh:
    version = np.lib.format.read_magic(fh)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    shape, fortran, stored = (read_header(fh) if read_header
                              else ((), True, None))
    if fortran or stored != np.dtype("<f4"):
      return np.load(f, allow_pickle=False)  # not written by _save_params
    out = hostmem.aligned_empty(shape, dtype)
    flat = out.reshape(-1)
    step = max(1, flat.size if dtype == stored else block_bytes // 4)
    buf = flat if dtype == stored else np.empty(min(step, flat.size), stored)
    for i in range(0, flat.size, step):
      n = min(step, flat.size - i)
      if fh.readinto(memoryview(buf[:n]).cast("B")) != 4 * n:
        raise ValueError(f"{f.name}: truncated array data")
      if buf is not flat:
        flat[i:i + n] = buf[:n]
  return out


def _restore_params(d: Path, dtype_name: str):
  """Restores the cached fp32 params, cast leaf by leaf to `dtype_name`."""
  tree: dict = {}
  dtype = _np_dtype(dtype_name)
  for entry in json.loads((d / "params" / "index.json").read_text()):
    path = tuple(entry["path"])
    leaf = _read_npy(d / "params" / f"{'.'.join(path)}.npy", dtype)
    if list(leaf.shape) != entry["shape"]:
      raise ValueError(f"params/{'.'.join(path)}.npy has shape {leaf.shape}")
    node = tree
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = _cast_tree(leaf, dtype_name)
    del leaf
  return tree


def _load_cache(d: Path, dtype_name: str):
  from icl_jax.convert.tokenizers import read_tokenizer_dir

  hf_config = json.loads((d / "hf_config.json").read_text())
  cfg = config_from_hf(hf_config)
  # The tokenizer first: its load's transients are gone before the tree.
  tok = (read_tokenizer_dir(d / "tokenizer")
         if (d / "tokenizer").exists() else None)
  stops = StopTables.load(d / "stop_tables.npz")
  hostmem.release_memory()
  params = _restore_params(d, dtype_name)
  return hf_config, cfg, params, tok, stops


def _try_cache(d: Path, dtype_name: str):
  """(cached model parts, seconds spent verifying) or (None, seconds)."""
  if not d.exists():
    return None, 0.0
  t0 = time.perf_counter()
  problem = _cache_problem(d)
  verify = time.perf_counter() - t0
  if problem is None:
    try:
      return _load_cache(d, dtype_name), verify
    except Exception as e:  # any read error: rebuild below
      problem = f"reading it failed ({type(e).__name__}: {e})"
  msg = f"converted-model cache {d} is damaged: {problem}; rebuilding it"
  log.warning(msg)
  warnings.warn(msg, CacheWarning, stacklevel=3)
  # Removed now: a copy that passes its manifest but cannot be read must
  # not be kept in preference to the rebuilt one.
  digests.discard_dir(d)
  return None, verify


# --------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------

def _np_dtype(dtype_name: str) -> np.dtype:
  import jax.numpy as jnp

  return np.dtype(jnp.bfloat16 if dtype_name == "bfloat16" else np.float32)


def _cast_leaf(x, dtype_name: str):
  """One leaf (consumed: the caller must not use it again) -> a jax array
  of `dtype_name`, with jnp.asarray's values.

  A C-contiguous, 64-byte-aligned numpy leaf of the target dtype is handed
  to `jax.device_put`, which on CPU aliases it instead of copying. An
  aligned fp32 leaf becomes bf16 in its own buffer (`hostmem.bf16_in_place`);
  any other leaf is cast into a new aligned array.
  """
  import jax
  import jax.numpy as jnp

  dt = _np_dtype(dtype_name)
  if not isinstance(x, np.ndarray):
    return jnp.asarray(x, dt)
  aligned = x.flags.c_contiguous and x.ctypes.data % hostmem.ALIGN == 0
  if x.dtype == np.float32 and dt.itemsize == 2 and aligned:
    x = hostmem.bf16_in_place(x, dt)  # numpy's (ml_dtypes') cast, as jnp's
  elif x.dtype != dt or not aligned:
    y = hostmem.aligned_empty(x.shape, dt)
    y[...] = x
    x = y
  return jax.device_put(x)


def _cast_tree(tree, dtype_name: str):
  """numpy/jax tree -> jax arrays of `dtype_name`, freeing each source leaf
  as it goes, smallest leaf first (bf16 peak: the fp32 tree less what is
  done, plus the largest leaf in bf16; fp32: no copy on CPU)."""
  if not isinstance(tree, dict):
    return _cast_leaf(tree, dtype_name)
  todo: list = []  # (source dict, output dict, key, nbytes)

  def skeleton(src: dict) -> dict:
    out = {}
    for k, v in src.items():
      out[k] = skeleton(v) if isinstance(v, dict) else None
      if not isinstance(v, dict):
        todo.append((src, out, k, getattr(v, "nbytes", 0)))
    return out

  result = skeleton(tree)
  for src, out, k, _ in sorted(todo, key=lambda e: e[3]):
    out[k] = _cast_leaf(src.pop(k), dtype_name)
  return result


def _sources(kind: str, path: Path, files: list[Path]):
  """(hf_config, cfg, tokenizer, GGUF header or None); the one parse of a
  GGUF's metadata, and the tokenizer, built or read before any parameter."""
  from icl_jax.convert.tokenizers import load_tokenizer

  if kind == "gguf":
    header = streaming.read_gguf_header(path)
    hf_config = streaming.gguf_config(path, header)
    cfg = config_from_hf(hf_config)
    return hf_config, cfg, load_tokenizer(str(path)), header
  hf_config = _read_hf_config(path)
  cfg = config_from_hf(hf_config)
  has_tok = any((path / f).exists() for f in (
      "tokenizer.json", "tokenizer_config.json", "tokenizer.model"))
  # Tokenizer-less checkpoints (e.g. tiny test models) still run on ids.
  return hf_config, cfg, load_tokenizer(str(path)) if has_tok else None, None


def _convert_params(kind: str, path: Path, files: list[Path],
                    hf_config: dict, cfg, header) -> dict:
  """The numpy fp32 parameter tree (GGUF: dequantized in place)."""
  from icl_jax.convert.hf_params import check_against_model

  if kind == "gguf":
    writer = streaming.ParamWriter(cfg, str(path))
    stream = streaming.iter_gguf_tensors(path, hf_config, header,
                                         slot=writer.slot)
  else:
    writer, stream = None, streaming.iter_safetensors(files[1:])
  params = streaming.convert_stream(stream, cfg, str(path), writer)
  del stream, writer
  hostmem.release_memory()
  check_against_model(params, cfg)
  return params


def _convert(kind: str, path: Path, files: list[Path],
             cache_to: Path | None = None, meta: dict | None = None):
  """(hf_config, cfg, numpy fp32 params, tokenizer, stop tables); with
  `cache_to`, also writes and publishes the cache folder.

  Order (for the peak memory): metadata, tokenizer, stop tables and the
  cache's non-parameter files first, their transients handed back to the
  OS, then the parameter tree.
  """
  hf_config, cfg, tok, header = _sources(kind, path, files)
  stops = (StopTables.from_tokenizer(tok, cfg.vocab_size, cfg.eos_token_ids)
           if tok is not None else
           StopTables.eos_only(cfg.vocab_size, cfg.eos_token_ids))
  tmp = _begin_cache(cache_to, hf_config, tok, stops) if cache_to else None
  hostmem.release_memory()
  try:
    params = _convert_params(kind, path, files, hf_config, cfg, header)
  except BaseException:
    if tmp is not None:
      shutil.rmtree(tmp, ignore_errors=True)
    raise
  if tmp is not None:
    _end_cache(tmp, cache_to, params, meta or {})
  return hf_config, cfg, params, tok, stops


def load(name_or_path, dtype=None, cache: bool = True,
         cache_dir: str | Path | None = None) -> LanguageModel:
  """Loads and converts a model; see the module docstring.

  Args:
    name_or_path: embedded name, .gguf path, or HF checkpoint directory.
    dtype: None/"float32" or "bfloat16" (parameters and activations; softmax
      and norm statistics stay fp32).
    cache: read/write the cache of converted parameters.
    cache_dir: override the cache root.

  `lm.load_info` records the source ("cache"/"converted"), seconds, the
  cache folder, dtype, the source's content sha256 and the seconds spent
  verifying the cache's digests.
  """
  t0 = time.perf_counter()
  dtype_name = _dtype_name(dtype)
  kind, path, files = resolve_source(name_or_path)
  name = str(name_or_path)
  src_sha = source_digest(kind, path, files)
  key = hashlib.sha256(f"{src_sha}|converter v{CONVERTER_VERSION}|stored "
                       f"{_STORED_DTYPE}".encode()).hexdigest()[:16]
  d = _cache_dir(path.stem if kind == "gguf" else path.name, key,
                 Path(cache_dir) if cache_dir else None)
  cached, verify_s = _try_cache(d, dtype_name) if cache else (None, 0.0)
  if cached is not None:
    hf_config, cfg, params, tok, stops = cached
    source = "cache"
  else:
    hf_config, cfg, params, tok, stops = _convert(
        kind, path, files, d if cache else None, {
            "source": str(path), "kind": kind, "source_sha256": src_sha,
            "converter_version": CONVERTER_VERSION,
            "stored_dtype": _STORED_DTYPE,
            "created": time.strftime("%Y-%m-%d %H:%M:%S")})
    source = "converted"
    params = _cast_tree(params, dtype_name)
  lm = LanguageModel(cfg, params, tok, name=name, hf_config=hf_config,
                     stop_tables=stops)
  lm.load_info = {"source": source, "seconds": time.perf_counter() - t0,
                  "cache_dir": str(d) if cache else None, "dtype": dtype_name,
                  "source_sha256": src_sha,
                  "cache_verify_seconds": round(verify_s, 3)}
  log.info("loaded %s from %s in %.1fs", name, source,
           lm.load_info["seconds"])
  return lm
