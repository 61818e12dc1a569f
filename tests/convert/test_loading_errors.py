"""Bad input gets clear errors; the cache round-trips; dtypes."""

from __future__ import annotations

import json

import numpy as np
import pytest

import icl_jax
from icl_jax.convert import hf_params
from icl_jax.convert.loading import CheckpointError
from icl_jax.models.config import UnsupportedConfigError, config_from_hf
from icl_jax.models.lm import ContextLengthError
from tests.conftest import make_tiny_hf_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("tiny") / "ckpt"
  make_tiny_hf_model("llama", num_attention_heads=4,
                     num_key_value_heads=2).save_pretrained(str(d))
  return d


def test_unknown_model_name():
  with pytest.raises(ValueError, match="unknown model 'gemma-9000'.*gemma3-270m"):
    icl_jax.load("gemma-9000")


def test_malformed_gguf(tmp_path):
  f = tmp_path / "broken.gguf"
  f.write_bytes(b"not a gguf file at all")
  with pytest.raises(CheckpointError, match="broken.gguf"):
    icl_jax.load(str(f), cache=False)


def test_directory_without_config(tmp_path):
  with pytest.raises(CheckpointError, match="config.json"):
    icl_jax.load(str(tmp_path))


def test_directory_without_safetensors(tmp_path, tiny_dir):
  (tmp_path / "config.json").write_text((tiny_dir / "config.json").read_text())
  with pytest.raises(CheckpointError, match="safetensors"):
    icl_jax.load(str(tmp_path))


def test_unsupported_config_field_in_checkpoint(tmp_path, tiny_dir):
  import shutil

  d = tmp_path / "ckpt"
  shutil.copytree(tiny_dir, d)
  cfg = json.loads((d / "config.json").read_text())
  cfg["use_fancy_attention"] = True
  (d / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(UnsupportedConfigError, match="use_fancy_attention"):
    icl_jax.load(str(d), cache=False)


def test_missing_and_unused_keys_are_listed(tiny_dir):
  from icl_jax.convert.loading import read_hf_dir

  hf_config, sd = read_hf_dir(tiny_dir)
  cfg = config_from_hf(hf_config)
  broken = dict(sd)
  del broken["model.layers.1.mlp.up_proj.weight"]
  broken["model.layers.0.self_attn.extra.weight"] = np.zeros(3)
  with pytest.raises(hf_params.CheckpointKeyError) as e:
    hf_params.convert_state_dict(broken, cfg)
  msg = str(e.value)
  assert "model.layers.1.mlp.up_proj.weight" in msg
  assert "layers.0.self_attn.extra.weight" in msg


def test_prompt_longer_than_context(tiny_dir, tmp_path):
  lm = icl_jax.load(str(tiny_dir), cache_dir=tmp_path)
  limit = lm.config.max_position_embeddings
  with pytest.raises(ContextLengthError, match=f"{limit + 1} tokens"):
    lm(np.ones((1, limit + 1), np.int32))
  with pytest.raises(ContextLengthError, match="max_new_tokens"):
    lm.generate_ids(np.ones((1, limit - 2), np.int32),
                    np.ones((1, limit - 2), np.int32), max_new_tokens=5)


def test_cache_roundtrip_and_dtypes(tiny_dir, tmp_path):
  first = icl_jax.load(str(tiny_dir), cache_dir=tmp_path)
  second = icl_jax.load(str(tiny_dir), cache_dir=tmp_path)
  assert first.load_info["source"] == "converted"
  assert second.load_info["source"] == "cache"
  ids = np.arange(3, 13)[None]
  np.testing.assert_array_equal(np.asarray(first(ids).logits),
                                np.asarray(second(ids).logits))
  bf = icl_jax.load(str(tiny_dir), dtype="bfloat16", cache_dir=tmp_path)
  assert str(bf.dtype) == "bfloat16"
  lb = np.asarray(bf(ids).logits)
  lf = np.asarray(first(ids).logits)
  assert lb.dtype == np.float32 and np.isfinite(lb).all()
  # bf16 is close but not equal to fp32.
  assert 0 < np.abs(lb - lf).max() < 0.1 * np.abs(lf).max()
  with pytest.raises(ValueError, match="float16"):
    icl_jax.load(str(tiny_dir), dtype="float16")
