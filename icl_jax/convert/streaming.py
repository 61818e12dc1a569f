"""Streaming conversion: checkpoint tensors -> parameter tree, one at a time.

A checkpoint is read one tensor at a time (GGUF: read at its offset and
dequantized; safetensors: one `get_tensor`), converted to our layout and
written into preallocated fp32 arrays of the final, layer-stacked parameter
tree. Nothing else of model size is held: no transformers model, no full
state dict, no second stacked copy. Peak memory is the parameter tree plus
one tensor in flight (measured in BUILD_NOTES, "Conversion memory").

GGUF tensors go through transformers' own per-architecture processing
(`TENSOR_PROCESSORS`: Llama's q/k reverse permutation, Gemma's norm - 1) and
its GGUF -> HF name map (computed on a meta-device model, which allocates
nothing), so the tensors are exactly those transformers' GGUF loader gives
its PyTorch model, the parity reference.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from icl_jax.convert.hf_params import (CheckpointKeyError, is_ignorable,
                                       layer_map, normalize_key)
from icl_jax.models.config import DecoderConfig


class CheckpointError(ValueError):
  """A checkpoint that cannot be read or is not a supported model."""


def _hf_shape(name: str, cfg: DecoderConfig) -> tuple[int, ...]:
  """The HF (PyTorch) shape of a per-layer tensor, by its target name."""
  D, N, K, H, F = (cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim,
                   cfg.d_ff)
  return {
      "q": (N * H, D), "k": (K * H, D), "v": (K * H, D), "o": (D, N * H),
      "gate": (F, D), "up": (F, D), "down": (D, F),
      "q_bias": (N * H,), "k_bias": (K * H,), "v_bias": (K * H,),
  }.get(name, (H,) if name == "scale_head" else (D,))


def _to_layout(name: str, w: np.ndarray, cfg: DecoderConfig) -> np.ndarray:
  """HF [out, in] layouts -> ours (`x @ W`, heads split); see hf_params."""
  D, N, K, H = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
  if name == "q":
    return w.T.reshape(D, N, H)  # [(N H), D] -> [D, N, H]
  if name in ("k", "v"):
    return w.T.reshape(D, K, H)
  if name == "o":
    return w.T.reshape(N, H, D)  # [D, (N H)] -> [N, H, D]
  if name in ("gate", "up", "down"):
    return w.T
  if name == "q_bias":
    return w.reshape(N, H)
  if name in ("k_bias", "v_bias"):
    return w.reshape(K, H)
  return w


class ParamWriter:
  """Collects HF-named tensors into the decoder's stacked fp32 param tree.

      w = ParamWriter(cfg, source="model.gguf")
      for key, tensor in stream: w.add(key, tensor)
      params = w.finish()   # nested dict of np.float32 arrays

  Every tensor is checked as it arrives: a known name, the expected shape
  and only finite values (each error names the tensor); `finish` reports
  missing and unused keys together.
  """

  def __init__(self, cfg: DecoderConfig, source: str = "checkpoint"):
    self.cfg = cfg
    self.source = source
    self._lmap = layer_map(cfg)
    # np.empty: pages are only touched when a tensor is written into them.
    self.params = _map_tree(lambda shape: np.empty(shape, np.float32),
                            _tree_shapes(cfg, self._lmap))
    self._seen: set[str] = set()
    self._unused: list[str] = []
    self._tied_head: np.ndarray | None = None

  def _target(self, key: str):
    """normalized HF key -> (tree path, layer index or None, target name)."""
    if key == "embed_tokens.weight":
      return ("embed",), None, "embed"
    if key == "norm.weight":
      return ("final_norm", "scale"), None, "norm"
    if key == "lm_head.weight":
      return ("lm_head",), None, "lm_head"
    if key.startswith("layers."):
      _, idx, suffix = key.split(".", 2)
      path = self._lmap.get(suffix)
      if path is not None and idx.isdigit() and int(idx) < self.cfg.n_layers:
        name = path[-1] if path[-1] != "scale" or len(path) < 3 else "scale_head"
        return ("layers", "block") + path, int(idx), name
    return None

  def _expected(self, name: str) -> tuple[int, ...]:
    c = self.cfg
    if name in ("embed", "lm_head"):
      return (c.vocab_size, c.d_model)
    return _hf_shape(name, c)

  def add(self, key: str, tensor) -> None:
    """Converts one HF tensor (any float dtype, HF layout) into place."""
    nk = normalize_key(key)
    if nk in self._seen:
      raise CheckpointKeyError(
          f"duplicate key after prefix normalisation: {key}")
    self._seen.add(nk)
    target = self._target(nk)
    if target is None:
      if not is_ignorable(nk):
        self._unused.append(nk)
      return
    path, layer, name = target
    w = np.asarray(tensor)
    want = self._expected(name)
    if tuple(w.shape) != want:
      raise CheckpointKeyError(
          f"{self.source}: tensor {key} has shape {tuple(w.shape)}, expected "
          f"{want} for this config")
    if not _all_finite(w):
      bad = int(w.size - np.isfinite(w).sum())
      raise CheckpointError(
          f"{self.source}: tensor {key} has {bad} NaN/inf value(s)")
    if name == "lm_head" and self.cfg.tie_embeddings:
      self._tied_head = w.astype(np.float32)  # checked against embed later
      return
    if name == "lm_head":
      w = w.T  # [V,D] -> [D,V]
    dest = _get(self.params, path)
    if layer is None:
      dest[...] = w
    else:
      dest[layer] = _to_layout(name, w, self.cfg)

  def _missing(self) -> list[str]:
    out = []
    if "embed_tokens.weight" not in self._seen:
      out.append("model.embed_tokens.weight")
    if "norm.weight" not in self._seen:
      out.append("model.norm.weight")
    if not self.cfg.tie_embeddings and "lm_head.weight" not in self._seen:
      out.append("lm_head.weight")
    for i in range(self.cfg.n_layers):
      for suffix in self._lmap:
        if f"layers.{i}.{suffix}" not in self._seen:
          out.append(f"model.layers.{i}.{suffix}")
    return out

  def finish(self) -> dict:
    """The param tree; raises CheckpointKeyError on missing/unused keys."""
    missing, unused = self._missing(), sorted(self._unused)
    if missing or unused:
      msg = []
      if missing:
        msg.append(f"missing weight keys ({len(missing)}): {missing}")
      if unused:
        msg.append(f"unused weight keys ({len(unused)}): {unused}")
      raise CheckpointKeyError("; ".join(msg))
    if self._tied_head is not None and not np.array_equal(
        self._tied_head, self.params["embed"]):
      raise CheckpointKeyError(
          "tie_word_embeddings=True but lm_head.weight differs from "
          "embed_tokens.weight")
    self._tied_head = None
    return self.params


def _tree_shapes(cfg: DecoderConfig, lmap) -> dict:
  """Shapes of the decoder's param tree (the module's own shapes are
  checked against the result by `hf_params.check_against_model`)."""
  L, D, V = cfg.n_layers, cfg.d_model, cfg.vocab_size
  block: dict = {}
  for suffix, path in lmap.items():
    name = path[-1] if path[-1] != "scale" or len(path) < 3 else "scale_head"
    hf = _hf_shape(name, cfg)
    shape = np.shape(_to_layout(name, np.empty(hf[::-1] if len(hf) == 2
                                                else hf).T, cfg))
    node = block
    for p in path[:-1]:
      node = node.setdefault(p, {})
    node[path[-1]] = (L,) + tuple(shape)
  tree = {"embed": (V, D), "final_norm": {"scale": (D,)},
          "layers": {"block": block}}
  if not cfg.tie_embeddings:
    tree["lm_head"] = (D, V)
  return tree


def _all_finite(w: np.ndarray, block: int = 1 << 22) -> bool:
  """np.isfinite(w).all() without a full-size boolean temporary."""
  flat = w.reshape(-1)
  return all(np.isfinite(flat[i:i + block]).all()
             for i in range(0, flat.size, block))


def _map_tree(fn, tree):
  if isinstance(tree, dict):
    return {k: _map_tree(fn, v) for k, v in tree.items()}
  return fn(tree)  # a leaf: a shape tuple


def _get(tree: dict, path: tuple[str, ...]):
  for p in path:
    tree = tree[p]
  return tree


# --------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------

def gguf_config(path: Path) -> dict:
  """The HF config dict transformers derives from a GGUF's metadata."""
  from transformers import AutoConfig

  _gguf_reader(path)  # a readable, complete file, before anything else
  try:
    return AutoConfig.from_pretrained(str(path.parent),
                                      gguf_file=path.name).to_dict()
  except Exception as e:  # transformers/gguf raise many error types
    raise CheckpointError(f"{path}: cannot read the GGUF metadata "
                          f"({type(e).__name__}: {e})") from e


def _gguf_reader(path: Path):
  from gguf import GGUFReader

  try:
    reader = GGUFReader(str(path))
  except Exception as e:
    # The reader maps every tensor up front; a cut file fails there.
    hint = (" -- truncated: a tensor's data runs past the end of the file"
            if "reshape" in str(e) or "offset" in str(e) else "")
    raise CheckpointError(f"{path}: not a readable GGUF file{hint} "
                          f"({type(e).__name__}: {e})") from e
  size = path.stat().st_size
  for t in reader.tensors:
    end = int(t.data_offset) + int(t.data.nbytes)
    if end > size:
      raise CheckpointError(
          f"{path}: truncated GGUF: tensor {t.name} ends at byte {end} but "
          f"the file has {size} bytes")
  return reader


# Dequantize at most this many output bytes at once: gguf's numpy kernels
# make several full-size temporaries (Gemma's 262k x 640 embedding: +1.4 GB
# in one call); rows are independent, so blocks give identical values.
_DEQUANT_BLOCK_BYTES = 32 << 20


def _dequantize_in_blocks(dequantize, data: np.ndarray, qtype) -> np.ndarray:
  """dequantize(data, qtype), computed over blocks of the leading axis."""
  if data.ndim < 2 or data.shape[0] < 2:
    return np.asarray(dequantize(data, qtype), np.float32)
  first = np.asarray(dequantize(data[:1], qtype), np.float32)
  out = np.empty((data.shape[0],) + first.shape[1:], np.float32)
  step = max(1, _DEQUANT_BLOCK_BYTES // max(1, first.nbytes))
  for r in range(0, data.shape[0], step):
    out[r:r + step] = dequantize(data[r:r + step], qtype)
  return out


def iter_gguf_tensors(path: Path, hf_config: dict) -> Iterator[tuple[str, np.ndarray]]:
  """Yields (HF name, fp32 tensor) for every GGUF tensor transformers maps.

  Tensor bytes are read with `os.pread` at their offsets (not through the
  reader's memory map, whose touched pages would stay resident).
  """
  import torch
  from gguf import dequantize
  from transformers import AutoConfig, AutoModelForCausalLM
  from transformers.modeling_gguf_pytorch_utils import (
      TENSOR_PROCESSORS, TensorProcessor, get_gguf_hf_weights_map, read_field)

  reader = _gguf_reader(path)
  arch = read_field(reader, "general.architecture")[0]
  processor = TENSOR_PROCESSORS.get(arch, TensorProcessor)(config=hf_config)
  config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
  with torch.device("meta"):
    meta_model = AutoModelForCausalLM.from_config(config)
  key_map = get_gguf_hf_weights_map(meta_model, processor)
  del meta_model
  parsed = {"config": hf_config, "tensors": {}}
  fd = os.open(path, os.O_RDONLY)
  try:
    for t in reader.tensors:
      raw = os.pread(fd, int(t.data.nbytes), int(t.data_offset))
      if len(raw) != t.data.nbytes:
        raise CheckpointError(f"{path}: short read of tensor {t.name}")
      data = np.frombuffer(raw, dtype=t.data.dtype).reshape(t.data.shape)
      del raw
      try:
        weights = _dequantize_in_blocks(dequantize, data, t.tensor_type)
      except Exception as e:
        raise CheckpointError(f"{path}: cannot dequantize tensor {t.name} "
                              f"({type(e).__name__}: {e})") from e
      res = processor.process(weights=weights, name=t.name,
                              tensor_key_mapping=key_map,
                              parsed_parameters=parsed)
      if res.name not in key_map:
        continue  # transformers skips these too
      item = (key_map[res.name], np.asarray(res.weights, np.float32))
      del res, weights, data
      yield item
      del item  # freed before the next tensor is read (one in flight)
  finally:
    os.close(fd)


def iter_safetensors(files: list[Path]) -> Iterator[tuple[str, np.ndarray]]:
  """Yields (name, fp32 tensor) from safetensors files, one at a time."""
  from safetensors import safe_open

  for f in files:
    try:
      # framework="pt" reads every dtype (numpy has no bfloat16).
      with safe_open(str(f), framework="pt") as fh:
        for k in fh.keys():
          yield k, fh.get_tensor(k).float().numpy()
    except (CheckpointError, CheckpointKeyError):
      raise
    except Exception as e:  # safetensors raises its own error types
      raise CheckpointError(f"{f}: cannot read safetensors ({e})") from e


def convert_stream(stream, cfg: DecoderConfig, source: str) -> dict:
  """Drains a (name, tensor) stream into the param tree."""
  writer = ParamWriter(cfg, source)
  for key, tensor in stream:
    writer.add(key, tensor)
    del tensor
  return writer.finish()
