"""The GGUF path: one metadata parse that skips the tokenizer's arrays,
tensors dequantized straight into the parameter tree (no full-size
temporary), and the cast to JAX without a second copy; each checked against
transformers' own GGUF loading on tiny quantized files."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from icl_jax.convert import gguf_file, hostmem, loading, streaming
from icl_jax.models.config import config_from_hf

ARCHS = ("llama", "qwen2", "gemma3")


def _layer_tensors(arch: str, d: int, f: int, heads: int, kv: int, hd: int):
  """(GGUF name suffix, HF-order shape, quantized?) of one block."""
  out = [("attn_norm", (d,), False), ("attn_q", (heads * hd, d), True),
         ("attn_k", (kv * hd, d), True), ("attn_v", (kv * hd, d), True),
         ("attn_output", (d, heads * hd), True), ("ffn_norm", (d,), False),
         ("ffn_gate", (f, d), True), ("ffn_up", (f, d), True),
         ("ffn_down", (d, f), True)]
  if arch == "qwen2":
    out += [("attn_q.bias", (heads * hd,), False),
            ("attn_k.bias", (kv * hd,), False),
            ("attn_v.bias", (kv * hd,), False)]
  if arch == "gemma3":
    out += [("attn_q_norm", (hd,), False), ("attn_k_norm", (hd,), False),
            ("post_attention_norm", (d,), False),
            ("post_ffw_norm", (d,), False)]
  return out


def write_tiny_gguf(path, arch: str, vocab: int = 2000, d: int = 64,
                    f: int = 128, layers: int = 2, heads: int = 4, kv: int = 2,
                    tied: bool = True, seed: int = 0):
  """A small GGUF as llama.cpp writes them: Q8_0 matrices, F32 norms."""
  import gguf

  hd, rng = d // heads, np.random.default_rng(seed)
  w = gguf.GGUFWriter(str(path), arch)
  w.add_name(f"tiny {arch}")
  w.add_context_length(256)
  w.add_embedding_length(d)
  w.add_block_count(layers)
  w.add_feed_forward_length(f)
  w.add_head_count(heads)
  w.add_head_count_kv(kv)
  w.add_layer_norm_rms_eps(1e-6)
  w.add_rope_freq_base(10000.0)
  if arch == "llama":
    w.add_rope_dimension_count(hd)
    w.add_vocab_size(vocab)  # qwen2 and gemma3: from the token count
  if arch == "gemma3":
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_sliding_window(16)
  w.add_tokenizer_model("gpt2")
  w.add_token_list([f"tok{i}" for i in range(vocab)])
  w.add_token_types([1] * vocab)
  w.add_token_merges([f"t o{i}" for i in range(vocab // 2)])
  w.add_bos_token_id(1)
  w.add_eos_token_id(2)
  tensors = [("token_embd.weight", (vocab, d), True),
             ("output_norm.weight", (d,), False)]
  if not tied:
    tensors.append(("output.weight", (vocab, d), True))
  for i in range(layers):
    for name, shape, q in _layer_tensors(arch, d, f, heads, kv, hd):
      full = name if name.endswith(".bias") else name + ".weight"
      tensors.append((f"blk.{i}.{full}", shape, q))
  for name, shape, q in tensors:
    x = rng.standard_normal(shape).astype(np.float32) * 0.5 + (
        0.0 if q else 1.0)
    if q:
      q8 = gguf.GGMLQuantizationType.Q8_0
      w.add_tensor(name, gguf.quants.quantize(x, q8), raw_dtype=q8)
    else:
      w.add_tensor(name, x)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return path


@pytest.fixture(scope="module", params=ARCHS)
def tiny_gguf(request, tmp_path_factory):
  tied = request.param != "qwen2"
  return write_tiny_gguf(tmp_path_factory.mktemp(request.param) / "m.gguf",
                         request.param, tied=tied)


def _reference_params(path, hf_config: dict, cfg):
  """transformers' own GGUF tensors (the parity reference), converted."""
  import torch
  from transformers import AutoConfig, AutoModelForCausalLM
  from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

  from icl_jax.convert.hf_params import convert_state_dict

  config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
  with torch.device("meta"):
    meta = AutoModelForCausalLM.from_config(config)
  sd = load_gguf_checkpoint(str(path), return_tensors=True,
                            model_to_load=meta)["tensors"]
  return convert_state_dict({k: v.numpy() for k, v in sd.items()}, cfg)


def _leaves(tree, prefix=""):
  if isinstance(tree, dict):
    for k in sorted(tree):
      yield from _leaves(tree[k], f"{prefix}/{k}")
  else:
    yield prefix, tree


def test_config_and_key_map_equal_transformers(tiny_gguf):
  from transformers import AutoConfig
  from transformers.modeling_gguf_pytorch_utils import (TENSOR_PROCESSORS,
                                                        TensorProcessor)

  ours = streaming.gguf_config(tiny_gguf)
  theirs = AutoConfig.from_pretrained(
      str(tiny_gguf.parent), gguf_file=tiny_gguf.name).to_dict()
  assert ours == theirs
  arch = gguf_file.read_header(tiny_gguf).architecture
  proc = TENSOR_PROCESSORS.get(arch, TensorProcessor)(config=ours)
  assert (streaming._gguf_key_map(ours, proc)
          == streaming._gguf_key_map(ours, proc, meta=True))


def test_params_equal_transformers_bit_for_bit(tiny_gguf):
  hf_config = streaming.gguf_config(tiny_gguf)
  cfg = config_from_hf(hf_config)
  writer = streaming.ParamWriter(cfg, "tiny")
  stream = streaming.iter_gguf_tensors(tiny_gguf, hf_config,
                                       slot=writer.slot)
  ours = dict(_leaves(streaming.convert_stream(stream, cfg, "tiny", writer)))
  ref = dict(_leaves(_reference_params(tiny_gguf, hf_config, cfg)))
  assert ours.keys() == ref.keys()
  for k in ref:
    assert ours[k].dtype == np.float32 and np.array_equal(ours[k], ref[k]), k
    assert ours[k].ctypes.data % hostmem.ALIGN == 0, k  # for device_put


def test_header_skips_the_vocabulary(tmp_path):
  path = write_tiny_gguf(tmp_path / "v.gguf", "qwen2", vocab=100_000, d=32,
                         f=32, layers=1, heads=2, kv=1)
  tracemalloc.start()
  try:
    header = gguf_file.read_header(path)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  toks = header.metadata["tokenizer.ggml.tokens"]
  assert toks == gguf_file.SkippedArray(8, 100_000)
  # The 100k tokens as Python strings alone would be ~6 MB (plus the merges).
  assert peak < (2 << 20), peak
  assert gguf_file.transformers_config_dict(header)["vocab_size"] == 100_000


def test_gguf_conversion_holds_one_copy(tmp_path, monkeypatch):
  """Peak = the tree + a block of rows, not + a dequantized embedding."""
  path = write_tiny_gguf(tmp_path / "e.gguf", "llama", vocab=20_000, d=64,
                         f=128, layers=2)
  # Blocks small beside the 5 MB embedding, as 8 MB are beside Gemma's 0.7 GB.
  monkeypatch.setattr(streaming, "_DEQUANT_BLOCK_BYTES", 64 << 10)
  monkeypatch.setattr(streaming, "_FINITE_BLOCK_BYTES", 64 << 10)
  header = streaming.read_gguf_header(path)
  hf_config = streaming.gguf_config(path, header)
  cfg = config_from_hf(hf_config)
  tracemalloc.start()
  try:
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    writer = streaming.ParamWriter(cfg, "tiny")
    stream = streaming.iter_gguf_tensors(path, hf_config, header,
                                         slot=writer.slot)
    params = streaming.convert_stream(stream, cfg, "tiny", writer)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  total = sum(a.nbytes for _, a in _leaves(params))
  embed = params["embed"].nbytes
  assert embed > 0.8 * total  # the case that matters: Gemma 3, 64%
  used = peak - base
  assert used >= total * 0.95, (used, total)
  # The old path held the dequantized embedding beside its slot (+1 embed).
  assert used <= total + 0.25 * embed, ((used - total) / embed)


def test_cast_tree_aliases_fp32_and_casts_bf16_in_place():
  import jax
  import jax.numpy as jnp

  if jax.default_backend() != "cpu":
    pytest.skip("host buffers are only aliased on CPU")
  rng = np.random.default_rng(1)
  tree = {"a": hostmem.aligned_empty((300, 257), np.float32),
          "b": {"c": hostmem.aligned_empty((1000, 64), np.float32)}}
  for _, x in _leaves(tree):
    x[...] = rng.standard_normal(x.shape).astype(np.float32) * 1e-3
  copy = {k: x.copy() for k, x in _leaves(tree)}
  ptrs = {k: x.ctypes.data for k, x in _leaves(tree)}
  bf = loading._cast_tree({"a": tree["a"], "b": dict(tree["b"])}, "bfloat16")
  for k, x in _leaves(bf):
    want = np.asarray(jnp.asarray(copy[k], jnp.bfloat16))
    assert x.dtype == jnp.bfloat16
    assert np.array_equal(np.asarray(x).view(np.uint16), want.view(np.uint16))
    assert x.unsafe_buffer_pointer() == ptrs[k]  # no second buffer
  tree32 = {k.strip("/"): v.copy() for k, v in copy.items()}
  aligned = {k: hostmem.aligned_empty(v.shape, np.float32)
             for k, v in tree32.items()}
  for k in aligned:
    aligned[k][...] = tree32[k]
  ptrs = {k: v.ctypes.data for k, v in aligned.items()}
  f32 = loading._cast_tree(aligned, "float32")
  for k, x in f32.items():
    assert x.unsafe_buffer_pointer() == ptrs[k]
    assert np.array_equal(np.asarray(x), tree32[k])
