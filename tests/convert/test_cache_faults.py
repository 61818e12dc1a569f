"""Fault injection: the converted-model cache, sources and conversion errors.

Each case of the reliability issue (numbers in the test names) is reproduced
on a tiny llama with SmolLM2's tokenizer, and the new behaviour is checked:
a damaged cache is rebuilt (with a warning) and gives identical logits, a
stale source is reconverted, concurrent conversions all succeed, and bad
checkpoints fail with errors that name the file, key or tensor.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import icl_jax
from icl_jax.convert import digests, embedded
from icl_jax.convert.hf_params import CheckpointKeyError
from icl_jax.convert.loading import CacheWarning, CheckpointError
from icl_jax.models.config import UnsupportedConfigError

PROMPT = [[1, 5, 9, 300, 17, 4000, 12]]


def _logits(lm):
  return np.asarray(lm(np.asarray(PROMPT, np.int32)).logits)


@pytest.fixture
def model_dir(tiny_model_dir, tmp_path):
  d = tmp_path / "src"
  shutil.copytree(tiny_model_dir, d)
  return d


@pytest.fixture
def warm(model_dir, tmp_path):
  """(source dir, cache root, reference logits) after a first load."""
  cache = tmp_path / "cache"
  lm = icl_jax.load(str(model_dir), cache_dir=cache)
  assert lm.load_info["source"] == "converted"
  return model_dir, cache, _logits(lm)


def _cache_folder(cache: Path) -> Path:
  (d,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
  return d


def _reload_expect_rebuild(src, cache, ref, why: str):
  with pytest.warns(CacheWarning, match=why):
    lm = icl_jax.load(str(src), cache_dir=cache)
  assert lm.load_info["source"] == "converted"
  np.testing.assert_array_equal(_logits(lm), ref)
  # The rebuilt cache is whole again: the next load uses it silently.
  with warnings.catch_warnings():
    warnings.simplefilter("error", CacheWarning)
    again = icl_jax.load(str(src), cache_dir=cache)
  assert again.load_info["source"] == "cache"
  np.testing.assert_array_equal(_logits(again), ref)


def _largest_param_file(d: Path) -> Path:
  files = [p for p in (d / "params").rglob("*") if p.is_file()]
  return max(files, key=lambda p: p.stat().st_size)


def test_1_warm_load_uses_the_verified_cache(warm):
  src, cache, ref = warm
  lm = icl_jax.load(str(src), cache_dir=cache)
  assert lm.load_info["source"] == "cache"
  assert lm.load_info["cache_verify_seconds"] >= 0
  np.testing.assert_array_equal(_logits(lm), ref)


@pytest.mark.parametrize("check", ["crc32", "sha256"])
def test_1_flipped_bit_in_params_is_rebuilt(warm, check, monkeypatch):
  monkeypatch.setenv("ICL_JAX_CACHE_CHECK", check)
  src, cache, ref = warm
  f = _largest_param_file(_cache_folder(cache))
  data = bytearray(f.read_bytes())
  data[len(data) // 2] ^= 0x01
  f.write_bytes(bytes(data))
  _reload_expect_rebuild(src, cache, ref, f"has {check}")


def test_1_changed_config_value_is_rebuilt(warm):
  src, cache, ref = warm
  f = _cache_folder(cache) / "hf_config.json"
  cfg = json.loads(f.read_text())
  cfg["rms_norm_eps"] = 0.5
  f.write_text(json.dumps(cfg))
  _reload_expect_rebuild(src, cache, ref, "hf_config.json")


@pytest.mark.parametrize("damage", ["delete_params_file", "cut_stop_tables",
                                    "cut_tokenizer", "zero_mib",
                                    "drop_manifest"])
def test_1_other_damage_is_rebuilt(warm, damage):
  src, cache, ref = warm
  d = _cache_folder(cache)
  if damage == "delete_params_file":
    _largest_param_file(d).unlink()
  elif damage == "cut_stop_tables":
    f = d / "stop_tables.npz"
    f.write_bytes(f.read_bytes()[:100])
  elif damage == "cut_tokenizer":
    f = d / "tokenizer" / "tokenizer.json"
    f.write_bytes(f.read_bytes()[:1000])
  elif damage == "zero_mib":
    f = _largest_param_file(d)
    with open(f, "r+b") as fh:
      fh.seek(0)
      fh.write(b"\0" * min(1 << 20, f.stat().st_size))
  else:
    (d / "manifest.json").unlink()
  _reload_expect_rebuild(src, cache, ref, "damaged")


def test_2_replaced_source_of_same_size_is_reconverted(warm):
  src, cache, ref = warm
  f = src / "model.safetensors"
  st = f.stat()
  from safetensors.numpy import load_file, save_file

  tensors = load_file(str(f))
  key = next(k for k in tensors if k.endswith("embed_tokens.weight"))
  tensors[key] = tensors[key] * 0.5
  save_file(tensors, str(f), metadata={"format": "pt"})
  assert f.stat().st_size == st.st_size
  os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # same second
  lm = icl_jax.load(str(src), cache_dir=cache)
  assert lm.load_info["source"] == "converted"
  assert not np.array_equal(_logits(lm), ref)
  fresh = icl_jax.load(str(src), cache=False)
  np.testing.assert_array_equal(_logits(lm), _logits(fresh))


def test_9_concurrent_conversions_all_succeed(model_dir, tmp_path):
  cache = tmp_path / "cache"
  code = ("import sys, numpy as np, icl_jax; "
          "lm = icl_jax.load(sys.argv[1], cache_dir=sys.argv[2]); "
          f"print(float(np.asarray(lm(np.asarray({PROMPT})).logits).sum()))")
  procs = [subprocess.Popen([sys.executable, "-c", code, str(model_dir),
                             str(cache)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for _ in range(3)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]
  sums = {o.strip().splitlines()[-1] for o, _ in outs}
  assert len(sums) == 1
  assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 1
  lm = icl_jax.load(str(model_dir), cache_dir=cache)
  assert lm.load_info["source"] == "cache"


def test_4_nan_weight_names_the_tensor(model_dir):
  from safetensors.numpy import load_file, save_file

  f = model_dir / "model.safetensors"
  tensors = load_file(str(f))
  key = next(k for k in tensors if k.endswith("layers.1.mlp.up_proj.weight"))
  tensors[key][3, 4] = np.nan
  save_file(tensors, str(f), metadata={"format": "pt"})
  with pytest.raises(CheckpointError, match=r"layers\.1\.mlp\.up_proj.*NaN"):
    icl_jax.load(str(model_dir), cache=False)


def test_10_wrong_tensor_shape_names_the_tensor(model_dir):
  from safetensors.numpy import load_file, save_file

  f = model_dir / "model.safetensors"
  tensors = load_file(str(f))
  key = next(k for k in tensors if k.endswith("layers.0.self_attn.o_proj.weight"))
  tensors[key] = np.ascontiguousarray(tensors[key].T[:, :-1])
  save_file(tensors, str(f), metadata={"format": "pt"})
  with pytest.raises(CheckpointKeyError, match=r"o_proj\.weight has shape"):
    icl_jax.load(str(model_dir), cache=False)


def test_10_config_without_hidden_size_names_the_key(model_dir):
  f = model_dir / "config.json"
  cfg = json.loads(f.read_text())
  del cfg["hidden_size"]
  f.write_text(json.dumps(cfg))
  with pytest.raises(UnsupportedConfigError, match="hidden_size"):
    icl_jax.load(str(model_dir), cache=False)


def test_11_shard_outside_the_folder_is_refused(model_dir, tmp_path):
  outside = tmp_path / "elsewhere.safetensors"
  shutil.move(model_dir / "model.safetensors", outside)
  (model_dir / "model.safetensors.index.json").write_text(json.dumps(
      {"weight_map": {"model.embed_tokens.weight": "../elsewhere.safetensors"}}))
  with pytest.raises(CheckpointError, match="outside the checkpoint folder"):
    icl_jax.load(str(model_dir), cache=False)


@pytest.fixture(scope="module")
def smollm_gguf():
  return embedded.embedded_gguf_path("smollm2-135m")


def test_10_gguf_with_overwritten_header(smollm_gguf, tmp_path):
  f = tmp_path / "broken.gguf"
  data = bytearray(smollm_gguf.read_bytes())
  data[:64] = b"\xff" * 64
  f.write_bytes(bytes(data))
  with pytest.raises(CheckpointError, match="broken.gguf.*not a readable GGUF"):
    icl_jax.load(str(f), cache=False)


def test_10_half_gguf_fails_fast_naming_the_tensor(smollm_gguf, tmp_path):
  import time

  f = tmp_path / "half.gguf"
  with open(smollm_gguf, "rb") as src, open(f, "wb") as dst:
    dst.write(src.read(smollm_gguf.stat().st_size // 2))
  t0 = time.perf_counter()
  with pytest.raises(CheckpointError, match="half.gguf: .*truncated"):
    icl_jax.load(str(f), cache=False)
  # Fails on the header, before reading tensor data (was: 17 s of reading).
  assert time.perf_counter() - t0 < 60


# -- embedded part sets -------------------------------------------------------

@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
  """An embedded model made of two data-only fake packages."""
  root = tmp_path / "site"
  chunks = [os.urandom(3000), os.urandom(1234)]
  parts = []
  for i, c in enumerate(chunks, 1):
    pkg = root / f"icljax_fake_part{i}"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('never imported')\n")
    (pkg / "data" / f"part{i}.bin").write_bytes(c)
    import hashlib

    parts.append(embedded.Part(f"icljax_fake_part{i}", f"data/part{i}.bin",
                               len(c), hashlib.sha256(c).hexdigest()))
  import hashlib

  whole = b"".join(chunks)
  info = embedded.EmbeddedModel(
      name="fake-model", description="fake", family="llama", n_layers=1,
      params="0", quantization="none", license="none",
      packages=("icljax-fake-part1==1.0", "icljax-fake-part2==1.0"),
      parts=tuple(parts), size=len(whole),
      sha256=hashlib.sha256(whole).hexdigest())
  monkeypatch.syspath_prepend(str(root))
  monkeypatch.setitem(embedded.EMBEDDED_MODELS, "fake-model", info)
  monkeypatch.setenv("ICL_JAX_CACHE", str(tmp_path / "cache"))
  return root, info, whole


def test_embedded_parts_assemble_once_and_verify(fake_parts):
  root, info, whole = fake_parts
  p = embedded.embedded_gguf_path("fake-model")
  assert p.read_bytes() == whole
  assert "icljax_fake_part1" not in sys.modules  # located, never imported
  # A damaged assembled file is re-assembled from the parts.
  p.write_bytes(b"x" * len(whole))
  os.utime(p, ns=(0, p.stat().st_mtime_ns + 5))
  assert embedded.embedded_gguf_path("fake-model").read_bytes() == whole


def test_corrupted_part_names_the_file_and_the_hash(fake_parts):
  root, info, whole = fake_parts
  f = root / "icljax_fake_part2" / "data" / "part2.bin"
  data = bytearray(f.read_bytes())
  data[10] ^= 0xFF
  f.write_bytes(bytes(data))
  with pytest.raises(embedded.EmbeddedModelError,
                     match=r"part2\.bin has sha256 .*hash mismatch"):
    embedded.embedded_gguf_path("fake-model")


def test_truncated_part_names_the_file(fake_parts):
  root, info, whole = fake_parts
  f = root / "icljax_fake_part1" / "data" / "part1.bin"
  f.write_bytes(f.read_bytes()[:100])
  with pytest.raises(embedded.EmbeddedModelError,
                     match=r"part1\.bin has 100 bytes, expected 3000"):
    embedded.embedded_gguf_path("fake-model")


def test_missing_part_names_the_install_command(fake_parts):
  root, info, whole = fake_parts
  shutil.rmtree(root / "icljax_fake_part2")
  with pytest.raises(embedded.EmbeddedModelError,
                     match=r"not installed.*convert\.embedded install fake-model"):
    embedded.embedded_gguf_path("fake-model")


def test_remembered_digest_follows_the_file(tmp_path, monkeypatch):
  monkeypatch.setenv("ICL_JAX_CACHE", str(tmp_path / "cache"))
  f = tmp_path / "x.bin"
  f.write_bytes(b"a" * 100)
  first = digests.sha256_of(f)
  f.write_bytes(b"b" * 100)  # same size; new mtime_ns
  assert digests.sha256_of(f) != first
  assert digests.sha256_of(f) == digests.sha256_file(f)


def test_1_unreadable_cache_with_a_valid_manifest_is_replaced(warm):
  """A cache that passes its own manifest but cannot be read (e.g. written
  in another format) is discarded, not kept in preference to the rebuild."""
  src, cache, ref = warm
  d = _cache_folder(cache)
  (d / "params" / "index.json").write_text("not json")
  (d / "manifest.json").unlink()
  (d / "manifest.json").write_text(json.dumps(digests.dir_manifest(d)))
  _reload_expect_rebuild(src, cache, ref, "reading it failed")
