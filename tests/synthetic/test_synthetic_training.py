"""CI smoke run: loss falls, checkpoints are written, a second call resumes."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from icl_jax import synthetic as syn

# A small version of the task (2 bases of 1 of 2 dims, 8 pairs) so that real
# in-context learning starts within a few hundred steps on CPU; the data
# generator, model and trainer are the same code as the full study.
SMOKE_TASK = syn.TaskConfig(n_dims=2, n_bases=2, basis_rank=1, n_points=8)
SMOKE = syn.TrainConfig(
    model=syn.GPT2RegressorConfig(
        n_dims=2, n_positions=16, n_layers=2, n_heads=2, d_model=32
    ),
    task=SMOKE_TASK,
    batch_size=64,
    num_steps=300,
    learning_rate=3e-3,
    log_every=25,
    eval_every=50,
    ckpt_every=50,
    max_to_keep=2,
    n_test_per_basis=50,
    n_td_per_basis=25,
    snapshot_steps=(0, 300),
    steps_per_call=25,
)


def _ckpt_steps(run_dir):
  return sorted(
      int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()
  )


def test_smoke_run_loss_falls_checkpoints_and_resumes(tmp_path):
  run_dir = tmp_path / "run"
  # First invocation "interrupted" at step 150.
  first = syn.train(SMOKE, run_dir, progress=False, stop_at=150)
  assert first.step == 150 and first.resumed_from is None
  assert _ckpt_steps(run_dir) == [100, 150]  # max_to_keep=2
  assert (run_dir / "config.json").exists()
  logged = json.loads((run_dir / "log.json").read_text())
  assert [e["step"] for e in logged["eval"]] == [0, 50, 100, 150]

  # Second invocation, same run dir: continues from 150, not from 0.
  second = syn.train(SMOKE, run_dir, progress=False)
  assert second.resumed_from == 150 and second.step == 300
  seg = second.log["segments"]
  assert [(s["start_step"], s["end_step"]) for s in seg] == [(0, 150), (150, 300)]
  train_steps = [e["step"] for e in second.log["train"]]
  assert train_steps == list(range(25, 301, 25))  # no restart, no duplicates
  assert all(e["n_steps"] == 25 for e in second.log["train"])
  eval_steps = [e["step"] for e in second.log["eval"]]
  assert eval_steps == list(range(0, 301, 50))
  # Logs finished before the interruption are kept verbatim.
  assert second.log["eval"][:4] == first.log["eval"]
  assert _ckpt_steps(run_dir) == [250, 300]
  assert sorted(p.name for p in (run_dir / "snapshots").iterdir()) == [
      "step_0000000.npz", "step_0000300.npz"
  ]

  # The loss falls: test MSE (fixed test set) and the training loss.
  ev = second.log["eval"]
  assert ev[-1]["mse"] < 0.8 * ev[0]["mse"], [e["mse"] for e in ev]
  tr = [e["loss"] for e in second.log["train"]]
  assert np.mean(tr[-2:]) < np.mean(tr[:2]), tr
  assert len(ev[-1]["td_y"]) == SMOKE.model.n_layers + 1

  # The final checkpoint restores the returned params.
  cfg, params, step, log = syn.restore_checkpoint(run_dir)
  assert step == 300 and cfg == SMOKE and log["eval"] == ev
  for a, b in zip(jax.tree_util.tree_leaves(params),
                  jax.tree_util.tree_leaves(second.params)):
    np.testing.assert_array_equal(a, b)

  # A third call has nothing left to do.
  third = syn.train(SMOKE, run_dir, progress=False)
  assert third.resumed_from == 300 and third.step == 300
  assert [e["step"] for e in third.log["eval"]] == eval_steps


def test_resume_reproduces_uninterrupted_run(tmp_path):
  # Only schedule fields differ from SMOKE, so the jitted functions compiled
  # by the smoke test are reused (TrainConfig.SCHEDULE_FIELDS).
  cfg = dataclasses.replace(
      SMOKE, num_steps=50, eval_every=25, ckpt_every=25, snapshot_steps=(),
  )
  full = syn.train(cfg, tmp_path / "a", progress=False)
  syn.train(cfg, tmp_path / "b", progress=False, stop_at=25)
  resumed = syn.train(cfg, tmp_path / "b", progress=False)
  assert resumed.resumed_from == 25
  for a, b in zip(jax.tree_util.tree_leaves(full.params),
                  jax.tree_util.tree_leaves(resumed.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      [e["loss"] for e in full.log["train"]],
      [e["loss"] for e in resumed.log["train"]], rtol=1e-5)

  # A different (non-schedule) config is refused with a clear error ...
  with pytest.raises(syn.ConfigMismatchError, match="learning_rate"):
    syn.train(dataclasses.replace(cfg, learning_rate=1e-4), tmp_path / "b",
              progress=False)
  with pytest.raises(syn.ConfigMismatchError, match="model.d_model"):
    syn.train(dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, d_model=16)),
        tmp_path / "b", progress=False)
  # ... while extending the schedule is allowed.
  longer = syn.train(dataclasses.replace(cfg, num_steps=75), tmp_path / "b",
                     progress=False)
  assert longer.resumed_from == 50 and longer.step == 75


def test_config_roundtrip():
  cfg = dataclasses.replace(SMOKE, snapshot_steps=(300, 0))
  assert cfg.snapshot_steps == (0, 300)
  assert syn.TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
  with pytest.raises(ValueError):
    syn.TrainConfig(model=syn.GPT2RegressorConfig(n_dims=3))
