"""Warm-up schedule and the (optional) dimension curriculum."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icl_jax import synthetic as syn
from icl_jax.synthetic import data as data_lib
from icl_jax.synthetic import training

TASK = syn.TaskConfig()  # 4 bases x 4 of 16 dims


def test_curriculum_masks_keep_first_dims_of_each_block():
  masks, x_mask = data_lib.curriculum_masks(TASK, 1)
  masks, x_mask = np.asarray(masks), np.asarray(x_mask)
  for k in range(4):
    np.testing.assert_array_equal(np.nonzero(masks[k])[0], [4 * k])
  np.testing.assert_array_equal(np.nonzero(x_mask)[0], [0, 4, 8, 12])
  masks, x_mask = data_lib.curriculum_masks(TASK, 2)
  np.testing.assert_array_equal(np.nonzero(np.asarray(masks)[3])[0], [12, 13])
  assert np.asarray(x_mask).sum() == 8
  full, x_full = data_lib.curriculum_masks(TASK, 4)
  np.testing.assert_array_equal(full, syn.basis_masks(TASK))
  assert np.all(np.asarray(x_full) == 1)


def test_sample_batch_curriculum_stage():
  key = jax.random.key(3)
  b = jax.jit(syn.sample_batch, static_argnums=(1, 2))(
      key, TASK, 256, jnp.int32(2))
  w, xs = np.asarray(b.w), np.asarray(b.xs)
  masks, x_mask = data_lib.curriculum_masks(TASK, 2)
  np.testing.assert_array_equal(w != 0, np.asarray(masks)[np.asarray(b.basis)] > 0)
  assert np.all(xs[..., np.asarray(x_mask) == 0] == 0)
  assert np.all(xs[..., np.asarray(x_mask) == 1] != 0)
  resid = np.asarray(b.ys) - np.einsum("bkd,bd->bk", xs, w)
  assert abs(resid.var() - 0.01) < 0.003
  # The last stage is the task itself, draw for draw.
  full = syn.sample_batch(key, TASK, 256)
  last = syn.sample_batch(key, TASK, 256, 4)
  np.testing.assert_array_equal(full.tokens, last.tokens)


def test_active_rank_schedule_and_validation():
  cfg = syn.TrainConfig(curriculum_start_rank=2, curriculum_every=500)
  assert [cfg.active_rank(s) for s in (0, 499, 500, 999, 1000, 10**6)] == [
      2, 2, 3, 3, 4, 4]
  assert int(cfg.active_rank(jnp.int32(700))) == 3
  assert syn.TrainConfig().active_rank(0) == 4  # off: the task rank
  assert not syn.TrainConfig().uses_curriculum
  with pytest.raises(ValueError):
    syn.TrainConfig(curriculum_start_rank=5, curriculum_every=10)
  with pytest.raises(ValueError):
    syn.TrainConfig(curriculum_start_rank=1, curriculum_every=0)
  with pytest.raises(ValueError):
    syn.TrainConfig(warmup_steps=-1)


def test_warmup_schedule():
  assert training.learning_rate_schedule(syn.TrainConfig()) == 1e-4
  sched = training.learning_rate_schedule(
      syn.TrainConfig(learning_rate=1e-3, warmup_steps=100))
  np.testing.assert_allclose(
      [sched(0), sched(50), sched(100), sched(5000)], [0, 5e-4, 1e-3, 1e-3],
      rtol=1e-6, atol=1e-9)


def test_old_config_dicts_load_with_paper_defaults():
  d = syn.TrainConfig().to_dict()
  for k in ("warmup_steps", "curriculum_start_rank", "curriculum_every"):
    d.pop(k)
  cfg = syn.TrainConfig.from_dict(d)
  assert cfg == syn.TrainConfig()


def test_curriculum_run_logs_stage(tmp_path):
  task = syn.TaskConfig(n_dims=4, n_bases=2, basis_rank=2, n_points=6)
  cfg = syn.TrainConfig(
      model=syn.GPT2RegressorConfig(n_dims=4, n_positions=12, n_layers=1,
                                    n_heads=1, d_model=16),
      task=task, batch_size=16, num_steps=40, learning_rate=1e-3,
      warmup_steps=10, curriculum_start_rank=1, curriculum_every=20,
      log_every=10, eval_every=20, ckpt_every=40, n_test_per_basis=8,
      n_td_per_basis=12, steps_per_call=10,
  )
  res = syn.train(cfg, tmp_path / "run", progress=False)
  assert [e["active_rank"] for e in res.log["train"]] == [1, 1, 2, 2]
  assert [e["step"] for e in res.log["eval"]] == [0, 20, 40]
  # Changing the curriculum is a different run.
  with pytest.raises(syn.ConfigMismatchError, match="curriculum_every"):
    syn.train(dataclasses.replace(cfg, curriculum_every=30), tmp_path / "run",
              progress=False)
