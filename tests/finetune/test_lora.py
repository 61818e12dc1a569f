"""LoRA adapters on a tiny decoder: exactness, locality, training, resume."""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from icl_jax.finetune import lora, train
from icl_jax.models.config import config_from_hf
from icl_jax.models.decoder import init_params
from icl_jax.models.lm import forward as lm_forward

V, T, B = 41, 12, 4


@pytest.fixture(scope="module")
def tiny():
  cfg = config_from_hf(dict(
      model_type="gemma3_text", vocab_size=V, hidden_size=32,
      intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
      num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=8,
      sliding_window=5, max_position_embeddings=64,
      layer_types=["sliding_attention", "full_attention"] * 2,
      eos_token_id=1, pad_token_id=0))
  params = init_params(cfg, jax.random.PRNGKey(0))
  params = jax.tree_util.tree_map(lambda x: x * 3.0, params)
  return cfg, params


def toy_batch(seed=0):
  """Left-padded rows; the last 3 tokens of each row are 'answers'."""
  rs = np.random.RandomState(seed)
  tokens = rs.randint(2, V, (B, T)).astype(np.int32)
  mask = np.ones((B, T), np.int32)
  mask[1, :3] = 0
  tokens[1, :3] = 0
  pos = np.tile(np.arange(T - 4, T - 1), (B, 1)).astype(np.int32)
  return {"tokens": tokens, "mask": mask, "pos": pos,
          "tgt": np.take_along_axis(tokens, pos + 1, 1),
          "w": np.ones(pos.shape, np.float32)}


def residuals(cfg, params, batch):
  out = lm_forward(cfg, params, jnp.asarray(batch["tokens"]),
                   jnp.asarray(batch["mask"]), return_residuals=True)
  return np.asarray(out.residuals), np.asarray(out.logits)


def random_adapter(params, lcfg, seed=3):
  ad = lora.init_lora(params, lcfg, jax.random.PRNGKey(seed))
  return jax.tree_util.tree_map(
      lambda a: a + 0.3 * jax.random.normal(jax.random.PRNGKey(seed + 1),
                                            a.shape), ad)


def test_zero_b_equals_base_model_exactly(tiny):
  cfg, params = tiny
  lcfg = lora.LoraConfig(layers=(0, 2), rank=4, alpha=8.0, dropout=0.0)
  ad = lora.init_lora(params, lcfg, jax.random.PRNGKey(1))
  batch = toy_batch()
  base = np.asarray(lm_forward(cfg, params, jnp.asarray(batch["tokens"]),
                               jnp.asarray(batch["mask"])).logits)
  merged = lora.merge(params, ad, lcfg)
  _, logits = residuals(cfg, merged, batch)
  np.testing.assert_array_equal(logits, base)  # the evaluated model
  # The training forward (blocks run in segments, the adapted ones with
  # their own merged weights) is another XLA program: equal up to fp32
  # reassociation.
  got = np.asarray(lora.forward(cfg, params, ad, lcfg, batch["tokens"],
                                batch["mask"]))
  np.testing.assert_allclose(got, base, rtol=0, atol=1e-6)


def test_forward_without_dropout_equals_merged_model(tiny):
  cfg, params = tiny
  lcfg = lora.LoraConfig(layers=(2, 3), rank=4, alpha=4.0, dropout=0.1)
  ad = random_adapter(params, lcfg)  # blocks 2, 3: one adapted segment
  batch = toy_batch(1)
  got = np.asarray(lora.forward(cfg, params, ad, lcfg, batch["tokens"],
                                batch["mask"]))
  _, want = residuals(cfg, lora.merge(params, ad, lcfg), batch)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  base = np.asarray(lm_forward(cfg, params, jnp.asarray(batch["tokens"]),
                               jnp.asarray(batch["mask"])).logits)
  assert np.abs(got - base).max() > 1e-3  # the adapter does something


@pytest.mark.parametrize("arm", ["first", "last"])
def test_training_changes_only_chosen_layers(tiny, arm, tmp_path):
  cfg, params = tiny
  layers = lora.layer_thirds(cfg.n_layers)[arm]
  lcfg = lora.LoraConfig(layers=layers, rank=4, alpha=4.0, dropout=0.1)
  batch = toy_batch(2)
  out = train.train(cfg, params, lcfg, lambda s: toy_batch(s), steps=3,
                    lr=1e-2, run_dir=tmp_path, progress=False)
  merged = lora.merge(params, out["adapter"], lcfg)
  r0, _ = residuals(cfg, params, batch)
  r1, _ = residuals(cfg, merged, batch)
  first = layers[0]
  # Residual index l+1 = output of block l: everything up to the input of
  # the first trained block (index first) is bit-identical.
  np.testing.assert_array_equal(r1[:first + 1], r0[:first + 1])
  assert np.abs(r1[first + 1] - r0[first + 1]).max() > 0
  # Non-adapted weights are untouched, adapted ones moved.
  blk0, blk1 = params["layers"]["block"], merged["layers"]["block"]
  for l in range(cfg.n_layers):
    same = np.array_equal(np.asarray(blk0["mlp"]["up"][l]),
                          np.asarray(blk1["mlp"]["up"][l]))
    assert same == (l not in layers)
  np.testing.assert_array_equal(np.asarray(blk0["attn_norm"]["scale"]),
                                np.asarray(blk1["attn_norm"]["scale"]))


LCFG = lora.LoraConfig(layers=(1, 2), rank=4, alpha=4.0, dropout=0.1)


def test_step_lowers_loss_on_toy_batch(tiny):
  """AdamW steps lower the answer loss; a target in `frozen` (q) stays."""
  cfg, params = tiny
  batch = {k: jnp.asarray(v) for k, v in toy_batch(4).items()}
  opt = train.make_optimizer(1e-2, frozen=("q",))
  state = train.initial_state(params, LCFG, opt, 0)
  loss = lambda st: float(train.eval_loss(st["adapter"], params, batch,
                                          cfg=cfg, lcfg=LCFG))
  before, new = loss(state), state
  for _ in range(5):
    new, _ = train.train_step(new, params, batch, cfg=cfg, lcfg=LCFG,
                              optimizer=opt)
  after = loss(new)
  assert after < before - 1e-3, (before, after)
  for k in ("a", "b"):
    np.testing.assert_array_equal(np.asarray(new["adapter"]["q"][k]),
                                  np.asarray(state["adapter"]["q"][k]))
  assert not np.array_equal(np.asarray(new["adapter"]["up"]["b"]),
                            np.asarray(state["adapter"]["up"]["b"]))


def test_checkpoint_resume_gives_identical_params(tiny, tmp_path):
  cfg, params = tiny
  lcfg = LCFG
  kw = dict(steps=4, lr=1e-2, progress=False, ckpt_every=2)
  full = train.train(cfg, params, lcfg, toy_batch, run_dir=tmp_path / "a",
                     **kw)
  part = train.train(cfg, params, lcfg, toy_batch, run_dir=tmp_path / "b",
                     stop_at=2, **kw)
  assert part["step"] == 2
  rest = train.train(cfg, params, lcfg, toy_batch, run_dir=tmp_path / "b",
                     **kw)
  assert rest["resumed_from"] == 2 and rest["step"] == 4
  for x, y in zip(jax.tree_util.tree_leaves(full["adapter"]),
                  jax.tree_util.tree_leaves(rest["adapter"])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  again = train.train(cfg, params, lcfg, toy_batch, run_dir=tmp_path / "b",
                      **kw)
  assert again["losses"] == [] and again["step"] == 4


def test_config_checks():
  with pytest.raises(ValueError):
    lora.LoraConfig(layers=(2, 1))
  with pytest.raises(ValueError):
    lora.LoraConfig(layers=(0,), targets=("nope",))
  assert lora.layer_thirds(32) == {"first": tuple(range(10)),
                                   "last": tuple(range(22, 32))}
  assert lora.layer_thirds(18)["last"] == tuple(range(12, 18))
