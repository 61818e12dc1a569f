"""Streaming conversion: checkpoint tensors -> parameter tree, one at a time.

A checkpoint is read one tensor at a time (GGUF: read at its offset and
dequantized; safetensors: one `get_tensor`), converted to our layout and
written into preallocated fp32 arrays of the final, layer-stacked parameter
tree. Nothing else of model size is held: no transformers model, no full
state dict, no second stacked copy. A GGUF tensor is dequantized block by
block straight into its slot of the tree (`ParamWriter.slot`), so apart from
the tree only a block of rows (and a transformed per-layer tensor, e.g.
Llama's q/k) is in flight (measured in BUILD_NOTES, "Conversion memory").
The GGUF header and metadata are read once, by `gguf_file`, which skips the
tokenizer's arrays.

GGUF tensors go through transformers' own per-architecture processing
(`TENSOR_PROCESSORS`: Llama's q/k reverse permutation, Gemma's norm - 1) and
its GGUF -> HF name map (`get_gguf_hf_weights_map`, given the model's
parameter names; other families: a meta-device model), so the tensors are
exactly those transformers' GGUF loader gives its PyTorch model, the parity
reference.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from icl_jax.convert import gguf_file
from icl_jax.convert.hostmem import aligned_empty
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
  missing and unused keys together. A reader may write a tensor straight
  into the tree: `view = w.slot(key)` (the tensor's place, seen in the HF
  layout), fill it, then `w.add(key, view)` checks it and copies nothing.
  Leaves are 64-byte aligned, so that `jax.device_put` can use them without
  a copy on CPU (`loading._cast_tree`).
  """

  def __init__(self, cfg: DecoderConfig, source: str = "checkpoint"):
    self.cfg = cfg
    self.source = source
    self._lmap = layer_map(cfg)
    # np.empty: pages are only touched when a tensor is written into them.
    self.params = _map_tree(lambda shape: aligned_empty(shape, np.float32),
                            _tree_shapes(cfg, self._lmap))
    self._seen: set[str] = set()
    self._lent: dict[str, np.ndarray] = {}  # slot views handed out
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

  def slot(self, key: str) -> np.ndarray | None:
    """`key`'s place in the tree as a view in the HF layout (for writing the
    tensor in place; see the class docstring), or None: an unknown or
    already seen key, a tied lm_head, or a layout no view can express."""
    nk = normalize_key(key)
    target = self._target(nk) if nk not in self._seen else None
    if target is None:
      return None
    path, layer, name = target
    if name == "lm_head" and self.cfg.tie_embeddings:
      return None  # compared with the embedding, not stored
    dest = _get(self.params, path)
    view = _hf_view(name, dest if layer is None else dest[layer],
                    self._expected(name))
    if view is not None:
      self._lent[nk] = view
    return view

  def add(self, key: str, tensor) -> None:
    """Converts one HF tensor (any float dtype, HF layout) into place."""
    nk = normalize_key(key)
    if nk in self._seen:
      raise CheckpointKeyError(
          f"duplicate key after prefix normalisation: {key}")
    self._seen.add(nk)
    lent = self._lent.pop(nk, None)
    target = self._target(nk)
    if target is None:
      if not is_ignorable(nk):
        self._unused.append(nk)
      return
    path, layer, name = target
    w = np.asarray(tensor)
    in_place = lent is not None and w is lent
    want = self._expected(name)
    if tuple(w.shape) != want:
      raise CheckpointKeyError(
          f"{self.source}: tensor {key} has shape {tuple(w.shape)}, expected "
          f"{want} for this config")
    if not _all_finite(w):
      bad = int(w.size - np.isfinite(w).sum())
      raise CheckpointError(
          f"{self.source}: tensor {key} has {bad} NaN/inf value(s)")
    if in_place:
      return  # written by the reader through `slot`
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


_FINITE_BLOCK_BYTES = 4 << 20


def _all_finite(w: np.ndarray) -> bool:
  """np.isfinite(w).all() without a full-size temporary (blocks of rows:
  no reshape, which would copy a strided view)."""
  if w.ndim < 2:
    return bool(np.isfinite(w).all())
  rows = max(1, _FINITE_BLOCK_BYTES // max(1, w[0].nbytes))
  return all(np.isfinite(w[i:i + rows]).all()
             for i in range(0, w.shape[0], rows))


def _reshaped(a: np.ndarray, shape) -> np.ndarray:
  v = a.view()
  v.shape = shape  # raises AttributeError where only a copy would do
  return v


def _hf_view(name: str, a: np.ndarray, hf_shape) -> np.ndarray | None:
  """`a` (our layout, see `_to_layout`) seen in the HF layout, no copy."""
  try:
    if name == "lm_head":
      v = a.T  # ours [D, V]
    elif len(hf_shape) == 2 and name != "embed":
      v = _reshaped(a, tuple(hf_shape[::-1])).T  # ours: w.T, heads split
    else:
      v = _reshaped(a, tuple(hf_shape))
  except AttributeError:
    return None
  return v if v.shape == tuple(hf_shape) else None


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

def read_gguf_header(path: Path) -> gguf_file.GGUFHeader:
  """The GGUF's metadata and tensor table (`gguf_file.read_header`); a file
  that is not a complete GGUF raises CheckpointError naming it."""
  try:
    return gguf_file.read_header(path)
  except (gguf_file.GGUFFormatError, OSError, UnicodeDecodeError) as e:
    raise CheckpointError(f"{path}: not a readable GGUF file "
                          f"({type(e).__name__}: {e})") from e


def _gguf_config_object(path: Path, header: gguf_file.GGUFHeader):
  from transformers import AutoConfig
  from transformers.models.auto.configuration_auto import CONFIG_MAPPING

  raw = gguf_file.transformers_config_dict(header)
  if raw is None:  # an architecture gguf_file does not map: transformers'
    return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
  # What AutoConfig.from_pretrained(dir, gguf_file=...) does with the dict.
  return CONFIG_MAPPING[raw["model_type"]].from_dict(
      raw, name_or_path=str(path.parent), gguf_file=path.name)


def gguf_config(path: Path, header: gguf_file.GGUFHeader | None = None) -> dict:
  """The HF config dict transformers derives from a GGUF's metadata."""
  header = header if header is not None else read_gguf_header(path)
  try:
    return _gguf_config_object(path, header).to_dict()
  except Exception as e:  # transformers raises many error types
    raise CheckpointError(f"{path}: cannot read the GGUF metadata "
                          f"({type(e).__name__}: {e})") from e


# Dequantize at most this many output bytes at once: gguf's numpy kernels
# make several full-size temporaries (Gemma's 262k x 640 embedding: +1.4 GB
# in one call); rows are independent, so blocks give identical values.
_DEQUANT_BLOCK_BYTES = 8 << 20


def _dequantize_into(fd: int, t: gguf_file.TensorInfo,
                     out: np.ndarray | None) -> np.ndarray:
  """Tensor `t` dequantized to fp32, into `out` (or a new array), reading
  and dequantizing blocks of rows of the leading axis."""
  from gguf import dequantize

  shape = t.shape
  if out is None:
    out = np.empty(shape, np.float32)
  if len(shape) < 2:
    data = gguf_file.read_rows(fd, t, 0, t.np_shape[0] if t.np_shape else 1)
    out[...] = np.reshape(dequantize(data, t.ggml_type), shape)
    return out
  row = 4 * int(np.prod(shape[1:], dtype=np.int64))
  step = max(1, _DEQUANT_BLOCK_BYTES // max(1, row))
  for r in range(0, shape[0], step):
    stop = min(shape[0], r + step)
    out[r:stop] = dequantize(gguf_file.read_rows(fd, t, r, stop), t.ggml_type)
  return out


class _ModuleNames:
  """Stands in for a PyTorch model in transformers'
  `get_gguf_hf_weights_map`, which reads only the config, the state-dict
  names and the child modules: all derived here from the parameter names.
  (Importing a model's modeling code to build it on the meta device keeps
  ~0.13 GB of Python modules resident for the rest of the process.)"""

  def __init__(self, names: list[str], config=None):
    self.config = config
    self._names = names

  def state_dict(self) -> dict:
    return dict.fromkeys(self._names)

  def named_children(self) -> list:
    kids: dict[str, list[str]] = {}
    for n in self._names:
      head, dot, rest = n.partition(".")
      if dot:
        kids.setdefault(head, []).append(rest)
    return [(k, _ModuleNames(v)) for k, v in kids.items()]


def hf_param_names(cfg: DecoderConfig) -> list[str]:
  """The state-dict names of transformers' model for `cfg` (its order)."""
  layer = [f"model.layers.{i}.{s}" for i in range(cfg.n_layers)
           for s in layer_map(cfg)]
  return ["model.embed_tokens.weight", *layer, "model.norm.weight",
          "lm_head.weight"]


def _gguf_key_map(hf_config: dict, processor, meta: bool = False):
  """GGUF tensor name -> HF name (transformers' map). From the parameter
  names for a supported family, else (or with `meta`) from a meta-device
  model (tests check that both agree)."""
  import types

  from transformers.modeling_gguf_pytorch_utils import get_gguf_hf_weights_map

  from icl_jax.models.config import UnsupportedConfigError, config_from_hf

  try:
    cfg = None if meta else config_from_hf(hf_config)
  except (UnsupportedConfigError, KeyError, TypeError, ValueError):
    cfg = None
  if cfg is not None:
    model = _ModuleNames(hf_param_names(cfg), types.SimpleNamespace(
        model_type=hf_config["model_type"],
        num_hidden_layers=hf_config["num_hidden_layers"]))
    return get_gguf_hf_weights_map(model, processor)
  import torch
  from transformers import AutoModelForCausalLM
  from transformers.models.auto.configuration_auto import CONFIG_MAPPING

  config = CONFIG_MAPPING[hf_config["model_type"]].from_dict(hf_config)
  with torch.device("meta"):
    meta_model = AutoModelForCausalLM.from_config(config)
  return get_gguf_hf_weights_map(meta_model, processor)


def iter_gguf_tensors(path: Path, hf_config: dict,
                      header: gguf_file.GGUFHeader | None = None,
                      slot=None) -> Iterator[tuple[str, np.ndarray]]:
  """Yields (HF name, fp32 tensor) for every GGUF tensor transformers maps.

  Tensor bytes are read with `os.pread`, a block of rows at a time (not
  through a memory map, whose touched pages would stay resident). With
  `slot` (`ParamWriter.slot`), a tensor is dequantized straight into its
  place in the tree and that view is yielded; otherwise into a new array.
  """
  from transformers.modeling_gguf_pytorch_utils import (TENSOR_PROCESSORS,
                                                        TensorProcessor)

  header = header if header is not None else read_gguf_header(path)
  processor = TENSOR_PROCESSORS.get(header.architecture, TensorProcessor)(
      config=hf_config)
  key_map = _gguf_key_map(hf_config, processor)
  parsed = {"config": hf_config, "tensors": {}}
  fd = os.open(path, os.O_RDONLY)
  try:
    for t in header.tensors:
      key = key_map.get(t.name)
      out = slot(key) if slot is not None and key is not None else None
      if out is not None and out.shape != t.shape:
        out = None
      try:
        weights = _dequantize_into(fd, t, out)
      except Exception as e:
        raise CheckpointError(f"{path}: cannot dequantize tensor {t.name} "
                              f"({type(e).__name__}: {e})") from e
      res = processor.process(weights=weights, name=t.name,
                              tensor_key_mapping=key_map,
                              parsed_parameters=parsed)
      if res.name not in key_map:
        continue  # transformers skips these too
      w = res.weights
      item = (key_map[res.name],
              w if out is not None and w is out else np.asarray(w, np.float32))
      del res, weights, w, out
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


def convert_stream(stream, cfg: DecoderConfig, source: str,
                   writer: ParamWriter | None = None) -> dict:
  """Drains a (name, tensor) stream into the param tree (`writer`'s, when
  the stream writes through its `slot`)."""
  writer = writer if writer is not None else ParamWriter(cfg, source)
  for key, tensor in stream:
    writer.add(key, tensor)
    del tensor
  return writer.finish()
