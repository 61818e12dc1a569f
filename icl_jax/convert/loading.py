"""`icl_jax.load`: embedded names, GGUF files and Hugging Face directories.

Sources:
  - an embedded name (`gemma3-270m`, `smollm2-135m`), see `embedded.py`;
  - a `.gguf` file of a supported family (dequantized by transformers'
    GGUF loader, the same tensors transformers' own forward uses);
  - a local HF directory: config.json + model.safetensors or a sharded
    model.safetensors.index.json.

Converted parameters are cached with orbax under
`$ICL_JAX_CACHE/models/<stem>-<key>/` (fp32, with the HF config, the tokenizer
and the generation stop tables), so a second load skips conversion. The key
hashes the source files' paths, sizes and mtimes and the converter version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from icl_jax.convert import embedded
from icl_jax.convert.hf_params import check_against_model, convert_state_dict
from icl_jax.models.config import DecoderConfig, config_from_hf
from icl_jax.models.generation import StopTables
from icl_jax.models.lm import LanguageModel

log = logging.getLogger(__name__)

# Bump when conversion output changes, to invalidate caches.
CONVERTER_VERSION = 1
SUPPORTED_DTYPES = ("float32", "bfloat16")


class CheckpointError(ValueError):
  """A checkpoint that cannot be read or is not a supported model."""


def _dtype_name(dtype) -> str:
  if dtype is None:
    return "float32"
  name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
  if name not in SUPPORTED_DTYPES:
    raise ValueError(
        f"unsupported dtype {name!r}; use one of {SUPPORTED_DTYPES} "
        "(float16 overflows in Gemma 2/3 and Qwen2.5)")
  return name


def _files_key(files: list[Path]) -> str:
  h = hashlib.sha1(f"v{CONVERTER_VERSION}".encode())
  for f in sorted(files):
    st = f.stat()
    h.update(f"{f.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode())
  return h.hexdigest()[:16]


def _resolve(name_or_path: str) -> tuple[str, Path, list[Path]]:
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
      try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"]
                            .values()))
      except (json.JSONDecodeError, KeyError) as e:
        raise CheckpointError(f"{index}: malformed index ({e})") from e
      files = [p / s for s in shards]
      missing = [str(f) for f in files if not f.exists()]
      if missing:
        raise CheckpointError(f"{p}: shards listed in the index are missing: "
                              f"{missing}")
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


def read_hf_dir(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
  """(config dict, state dict as fp32 numpy) from an HF safetensors dir."""
  from safetensors import safe_open

  try:
    hf_config = json.loads((path / "config.json").read_text())
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{path}/config.json: malformed JSON ({e})") from e
  _, _, files = _resolve(str(path))
  sd: dict[str, np.ndarray] = {}
  for f in files[1:]:
    try:
      # framework="pt" reads every dtype (numpy has no bfloat16).
      with safe_open(str(f), framework="pt") as fh:
        for k in fh.keys():
          sd[k] = fh.get_tensor(k).float().numpy()
    except Exception as e:  # safetensors raises its own error types
      raise CheckpointError(f"{f}: cannot read safetensors ({e})") from e
  return hf_config, sd


def read_gguf(path: Path) -> tuple[dict, dict[str, np.ndarray], object]:
  """(config dict, fp32 state dict, transformers model) from a GGUF file."""
  import torch
  from transformers import AutoModelForCausalLM

  try:
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32)
  except Exception as e:
    raise CheckpointError(f"{path}: cannot load GGUF with transformers "
                          f"({type(e).__name__}: {e})") from e
  sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
  return model.config.to_dict(), sd, model


def _cache_dir(stem: str, key: str, cache_dir: Path | None) -> Path:
  root = cache_dir or (embedded.cache_root() / "models")
  return Path(root) / f"{stem}-{key}"


def _save_cache(d: Path, hf_config: dict, params, tokenizer, stops, meta):
  import orbax.checkpoint as ocp

  tmp = d.with_name(d.name + ".tmp")
  shutil.rmtree(tmp, ignore_errors=True)
  tmp.mkdir(parents=True)
  (tmp / "hf_config.json").write_text(json.dumps(hf_config, default=str))
  if tokenizer is not None:
    tokenizer.save_pretrained(str(tmp / "tokenizer"))
  stops.save(tmp / "stop_tables.npz")
  ck = ocp.StandardCheckpointer()
  ck.save((tmp / "params").resolve(), params)
  ck.wait_until_finished()
  (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
  shutil.rmtree(d, ignore_errors=True)
  os.replace(tmp, d)  # atomic: a half-written cache is never used


def _load_cache(d: Path):
  import orbax.checkpoint as ocp
  from transformers import AutoTokenizer

  hf_config = json.loads((d / "hf_config.json").read_text())
  params = ocp.StandardCheckpointer().restore((d / "params").resolve())
  tok = (AutoTokenizer.from_pretrained(str(d / "tokenizer"))
         if (d / "tokenizer").exists() else None)
  stops = StopTables.load(d / "stop_tables.npz")
  return hf_config, params, tok, stops


def _cast_params(params, dtype_name: str):
  import jax
  import jax.numpy as jnp

  dt = jnp.bfloat16 if dtype_name == "bfloat16" else jnp.float32
  return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dt), params)


def load(name_or_path, dtype=None, cache: bool = True,
         cache_dir: str | Path | None = None) -> LanguageModel:
  """Loads and converts a model; see the module docstring.

  Args:
    name_or_path: embedded name, .gguf path, or HF checkpoint directory.
    dtype: None/"float32" or "bfloat16" (parameters and activations; softmax
      and norm statistics stay fp32).
    cache: read/write the orbax cache of converted parameters.
    cache_dir: override the cache root.
  """
  t0 = time.perf_counter()
  dtype_name = _dtype_name(dtype)
  kind, path, files = _resolve(name_or_path)
  name = str(name_or_path)
  d = _cache_dir(path.stem if kind == "gguf" else path.name,
                 _files_key(files), Path(cache_dir) if cache_dir else None)
  if cache and (d / "meta.json").exists():
    hf_config, params, tok, stops = _load_cache(d)
    cfg = config_from_hf(hf_config)
    source = "cache"
  else:
    from icl_jax.convert.tokenizers import load_tokenizer

    if kind == "gguf":
      hf_config, sd, _ = read_gguf(path)
      tok = load_tokenizer(str(path))
    else:
      hf_config, sd = read_hf_dir(path)
      has_tok = any((path / f).exists() for f in (
          "tokenizer.json", "tokenizer_config.json", "tokenizer.model"))
      # Tokenizer-less checkpoints (e.g. tiny test models) still run on ids.
      tok = load_tokenizer(str(path)) if has_tok else None
    cfg = config_from_hf(hf_config)
    params = convert_state_dict(sd, cfg)
    check_against_model(params, cfg)
    del sd
    stops = (StopTables.from_tokenizer(tok, cfg.vocab_size, cfg.eos_token_ids)
             if tok is not None else
             StopTables.eos_only(cfg.vocab_size, cfg.eos_token_ids))
    source = "converted"
    if cache:
      _save_cache(d, hf_config, params, tok, stops, {
          "source": str(path), "kind": kind, "converter_version":
          CONVERTER_VERSION, "created": time.strftime("%Y-%m-%d %H:%M:%S")})
  params = _cast_params(params, dtype_name)
  lm = LanguageModel(cfg, params, tok, name=name, hf_config=hf_config,
                     stop_tables=stops)
  lm.load_info = {"source": source, "seconds": time.perf_counter() - t0,
                  "cache_dir": str(d) if cache else None, "dtype": dtype_name}
  log.info("loaded %s from %s in %.1fs", name, source,
           lm.load_info["seconds"])
  return lm
