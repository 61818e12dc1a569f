"""Training for the synthetic emergence study: Optax Adam, orbax, resumable.

Protocol (App. D.2): MSE on the predictions y-hat_i only, averaged over the
sequence and batch; Adam, lr 1e-4, betas (0.9, 0.9999), no weight decay, no
warm-up, constant schedule (the last three are not reported; assumed);
batch 128; 80K steps. Fresh batches are sampled on device each step from
``fold_in(data_key, step)``, so a run is a deterministic function of
``(config, seed)`` and resuming reproduces the uninterrupted trajectory.

"Epoch" (never defined in the paper) is logged as ``step / steps_per_epoch``
with ``steps_per_epoch = 800`` (assumption: 80K steps = 100 epochs, matching
"convergence ~ epoch 100" in Figs 10-11).

Run directory layout::

    run_dir/config.json          the TrainConfig (checked on resume)
    run_dir/checkpoints/<step>/  orbax: state (params, opt_state, step, rng,
                                 train-metric accumulators) + log (JSON)
    run_dir/log.json             copy of the log, rewritten at every eval/ckpt
    run_dir/snapshots/step_XXXXXXX.npz   TD-set residuals at chosen steps

A second call of :func:`train` with the same ``run_dir`` resumes from the
latest checkpoint (its log included). A ``run_dir`` created with a different
config is refused with :class:`ConfigMismatchError`; only the fields in
``TrainConfig.SCHEDULE_FIELDS`` (length of the run and how often to log,
evaluate, checkpoint and snapshot) may change between invocations.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from icl_jax.synthetic import data as data_lib
from icl_jax.synthetic import evaluation
from icl_jax.synthetic import model as model_lib
from icl_jax.synthetic.run_config import (ConfigMismatchError, TrainConfig,
                                          TrainResult, check_or_write_config,
                                          flatten_diff, load_config,
                                          write_json)

__all__ = [
    "ConfigMismatchError", "LOG_VERSION", "TrainConfig", "TrainResult",
    "eval_sets", "learning_rate_schedule", "load_config", "make_optimizer",
    "measure_step_time", "restore_checkpoint", "train",
]

LOG_VERSION = 1


# ------------------------------------------------------------------ helpers


def _keys(seed: int):
  root = jax.random.key(seed)
  init_key, data_key, test_key, td_key = jax.random.split(root, 4)
  return init_key, data_key, test_key, td_key


def _checkpoint_manager(run_dir: Path, config: TrainConfig, read_only=False):
  options = ocp.CheckpointManagerOptions(
      max_to_keep=config.max_to_keep,
      create=not read_only,
      read_only=read_only,
      # Synchronous saves: small states, and a checkpoint on disk really
      # exists when train() reports it (simple interruption semantics).
      enable_async_checkpointing=False,
  )
  return ocp.CheckpointManager(
      (run_dir / "checkpoints").absolute(),
      options=options,
      item_names=("state", "log"),
  )


def _initial_state(config: TrainConfig, optimizer) -> dict[str, Any]:
  init_key, *_ = _keys(config.seed)
  params = model_lib.init_params(init_key, config.model)
  nb = config.task.n_bases
  return {
      "params": params,
      "opt_state": optimizer.init(params),
      "step": jnp.asarray(0, jnp.int32),
      "rng": jax.random.key_data(jax.random.key(config.seed)),
      # Train-metric accumulators for the current log interval.
      "acc_loss": jnp.zeros((), jnp.float32),
      "acc_basis_sum": jnp.zeros((nb,), jnp.float32),
      "acc_basis_count": jnp.zeros((nb,), jnp.float32),
      "acc_n": jnp.zeros((), jnp.int32),
  }


def learning_rate_schedule(config: TrainConfig):
  """Constant ``learning_rate``, after an optional linear warm-up."""
  if config.warmup_steps <= 0:
    return config.learning_rate
  return optax.join_schedules(
      [optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps),
       optax.constant_schedule(config.learning_rate)],
      [config.warmup_steps],
  )


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
  return optax.adam(learning_rate_schedule(config), b1=config.b1, b2=config.b2)


def restore_checkpoint(
    run_dir: str | os.PathLike, step: int | None = None
) -> tuple[TrainConfig, Any, int, dict[str, Any]]:
  """``(config, params, step, log)`` from a run dir (latest step by default)."""
  run_dir = Path(run_dir)
  config = load_config(run_dir)
  mngr = _checkpoint_manager(run_dir, config, read_only=True)
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint under {run_dir}/checkpoints")
  target = _initial_state(config, make_optimizer(config))
  restored = mngr.restore(
      step,
      args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), log=ocp.args.JsonRestore()
      ),
  )
  mngr.close()
  return config, restored["state"]["params"], step, restored["log"]


# --------------------------------------------------------------- the trainer


def eval_sets(
    config: TrainConfig,
) -> tuple[data_lib.SparseRegressionBatch, data_lib.SparseRegressionBatch]:
  """The fixed (test set, TD set) of a run: balanced over bases, by seed."""
  _, _, test_key, td_key = _keys(config.seed)
  test = data_lib.sample_balanced(test_key, config.task, config.n_test_per_basis)
  td_set = data_lib.sample_balanced(td_key, config.task, config.n_td_per_basis)
  return test, td_set


def _schedule_free(config: TrainConfig) -> TrainConfig:
  """``config`` with the schedule fields at their defaults (a cache key)."""
  defaults = TrainConfig()
  return dataclasses.replace(
      config, **{k: getattr(defaults, k) for k in TrainConfig.SCHEDULE_FIELDS}
  )


@functools.lru_cache(maxsize=4)
def _cached_fns(key_config: TrainConfig):
  """Jitted step/eval functions, reused by train() calls in one process."""
  return _make_fns(key_config, make_optimizer(key_config))


def _make_fns(config: TrainConfig, optimizer):
  task, mcfg = config.task, config.model
  nb = task.n_bases
  _, data_key, test_key, td_key = _keys(config.seed)

  def loss_fn(params, batch):
    out = model_lib.apply_model(params, batch.tokens, mcfg)
    sq = (out.predictions - batch.ys) ** 2  # [B, K]
    return sq.mean(), sq.mean(axis=1)

  def one_step(carry, step):
    params, opt_state = carry
    batch = data_lib.sample_batch(
        jax.random.fold_in(data_key, step), task, config.batch_size,
        config.active_rank(step) if config.uses_curriculum else None,
    )
    (loss, per_seq), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch
    )
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    onehot = jax.nn.one_hot(batch.basis, nb)
    return (params, opt_state), (loss, onehot.T @ per_seq, onehot.sum(0))

  def run_chunk(state, n):
    start = state["step"]
    (params, opt_state), (loss, bsum, bcount) = jax.lax.scan(
        one_step, (state["params"], state["opt_state"]), start + jnp.arange(n)
    )
    return {
        **state,
        "params": params,
        "opt_state": opt_state,
        "step": start + n,
        "acc_loss": state["acc_loss"] + loss.sum(),
        "acc_basis_sum": state["acc_basis_sum"] + bsum.sum(0),
        "acc_basis_count": state["acc_basis_count"] + bcount.sum(0),
        "acc_n": state["acc_n"] + n,
    }

  test, td_set = eval_sets(config)

  def eval_features(params):
    out = model_lib.apply_model(params, test.tokens, mcfg)
    mse_b, by_index = evaluation.per_basis_mse(
        out.predictions, test.ys, test.basis, nb
    )
    res = model_lib.apply_model(
        params, td_set.tokens, mcfg, return_residuals=True
    ).residuals
    return {
        "mse_per_basis": mse_b,
        "mse_by_index": by_index,
        "feat_y": evaluation.td_features(res, "y"),
        "feat_x": evaluation.td_features(res, "x"),
    }

  return jax.jit(run_chunk, static_argnums=(1,)), jax.jit(eval_features), test, td_set


def _evaluate(config, eval_fn, td_set, params, step):
  out = eval_fn(params)
  labels = np.asarray(td_set.basis)
  nb = config.task.n_bases
  # [L+1, n_bases]; the mean over bases is the paper's (mean) TD.
  td_y_b = np.asarray(evaluation.per_class_task_decodability(
      out["feat_y"], labels, k=config.td_k, num_classes=nb), np.float64)
  td_x_b = np.asarray(evaluation.per_class_task_decodability(
      out["feat_x"], labels, k=config.td_k, num_classes=nb), np.float64)
  td_y, td_x = td_y_b.mean(axis=1), td_x_b.mean(axis=1)
  entry = {
      "step": int(step),
      "epoch": step / config.steps_per_epoch,
      "mse": float(jnp.mean(out["mse_per_basis"])),
      "mse_per_basis": np.asarray(out["mse_per_basis"]).tolist(),
      "mse_by_index": np.asarray(out["mse_by_index"]).tolist(),
      "td_y": np.round(td_y, 4).tolist(),
      "td_x": np.round(td_x, 4).tolist(),
      "td_y_per_basis": np.round(td_y_b, 4).tolist(),
      "td_x_per_basis": np.round(td_x_b, 4).tolist(),
  }
  return entry, out


def _next_event(step: int, end: int, config: TrainConfig) -> int:
  cands = [end]
  for every in (config.log_every, config.eval_every, config.ckpt_every):
    cands.append((step // every + 1) * every)
  cands += [s for s in config.snapshot_steps if s > step]
  return min(c for c in cands if c > step)


def _new_log(config: TrainConfig, state) -> dict[str, Any]:
  return {
      "version": LOG_VERSION,
      "config": config.to_dict(),
      "param_count": model_lib.count_params(state["params"]),
      "train": [],
      "eval": [],
      "segments": [],
      "snapshots": [],
  }


def _restore(mngr, state, config: TrainConfig, run_dir: Path):
  """(state, log, resumed_from) from the latest checkpoint, or a new log."""
  latest = mngr.latest_step()
  if latest is None:
    return state, _new_log(config, state), None
  restored = mngr.restore(
      latest,
      args=ocp.args.Composite(
          state=ocp.args.StandardRestore(state), log=ocp.args.JsonRestore()
      ),
  )
  state, log = restored["state"], restored["log"]
  diffs = flatten_diff(
      TrainConfig.from_dict(log["config"]).identity(), config.identity()
  )
  if diffs:  # config.json edited or replaced by hand
    raise ConfigMismatchError(
        f"checkpoint {latest} in {run_dir} was written with a different"
        " configuration:\n  " + "\n  ".join(diffs)
    )
  # Entries past the checkpoint (none by construction) would be redone.
  log["train"] = [e for e in log["train"] if e["step"] <= latest]
  log["eval"] = [e for e in log["eval"] if e["step"] <= latest]
  return state, log, int(latest)


def _zero_accumulators(state):
  return {
      **state,
      "acc_loss": jnp.zeros_like(state["acc_loss"]),
      "acc_basis_sum": jnp.zeros_like(state["acc_basis_sum"]),
      "acc_basis_count": jnp.zeros_like(state["acc_basis_count"]),
      "acc_n": jnp.zeros_like(state["acc_n"]),
  }


def _train_entry(config: TrainConfig, state, step: int) -> dict[str, Any]:
  """The log entry of the train metrics accumulated up to `step`."""
  acc_n = int(state["acc_n"])
  bsum = np.asarray(state["acc_basis_sum"])
  bcount = np.maximum(np.asarray(state["acc_basis_count"]), 1.0)
  entry = {
      "step": step,
      "epoch": step / config.steps_per_epoch,
      "loss": float(state["acc_loss"]) / max(acc_n, 1),
      "loss_per_basis": (bsum / bcount).tolist(),
      "n_steps": acc_n,
  }
  if config.uses_curriculum:  # stage of the last step in the interval
    entry["active_rank"] = int(config.active_rank(step - 1))
  return entry


class _Run:
  """One train() invocation: state, log, checkpoints, evals, snapshots."""

  def __init__(self, config: TrainConfig, run_dir: Path, stop_at):
    self.config, self.run_dir = config, run_dir
    optimizer = make_optimizer(config)
    self.run_chunk, self.eval_fn, _, self.td_set = _cached_fns(
        _schedule_free(config))
    self.mngr = _checkpoint_manager(run_dir, config)
    self.state, self.log, self.resumed_from = _restore(
        self.mngr, _initial_state(config, optimizer), config, run_dir)
    self.log["config"] = config.to_dict()  # latest schedule
    self.step = int(self.state["step"])
    self.end = (config.num_steps if stop_at is None
                else min(stop_at, config.num_steps))
    self.segment = {
        "start_step": self.step,
        "end_step": self.step,
        "resumed_from": self.resumed_from,
        "wall_s": 0.0,
        "train_s": 0.0,
        "device": str(jax.devices()[0]),
        "backend": jax.default_backend(),
    }
    self.log["segments"].append(self.segment)
    self.t_start = time.perf_counter()
    self.snap_dir = run_dir / "snapshots"

  def write_log(self):
    self.segment["wall_s"] = time.perf_counter() - self.t_start
    self.segment["end_step"] = self.step
    write_json(self.run_dir / "log.json", self.log)

  def save_ckpt(self):
    self.write_log()
    if self.mngr.latest_step() == self.step:
      return
    self.mngr.save(
        self.step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(self.state),
            log=ocp.args.JsonSave(self.log)
        ),
        force=True,
    )

  def eval_and_snapshot(self):
    config, step = self.config, self.step
    need_eval = step % config.eval_every == 0 or step == config.num_steps
    need_snap = step in config.snapshot_steps and not (
        self.snap_dir / f"step_{step:07d}.npz"
    ).exists()
    logged = any(e["step"] == step for e in self.log["eval"])
    if not ((need_eval and not logged) or need_snap):
      return
    entry, out = _evaluate(config, self.eval_fn, self.td_set,
                           self.state["params"], step)
    if need_eval and not logged:
      self.log["eval"].append(entry)
    if need_snap:
      self.snap_dir.mkdir(exist_ok=True)
      np.savez_compressed(
          self.snap_dir / f"step_{step:07d}.npz",
          step=step,
          labels=np.asarray(self.td_set.basis),
          feat_y=np.asarray(out["feat_y"]),
          feat_x=np.asarray(out["feat_x"]),
          td_y=np.asarray(entry["td_y"]),
          td_x=np.asarray(entry["td_x"]),
      )
      self.log["snapshots"].append(step)
    self.write_log()

  def advance(self, bar):
    """One jitted chunk of steps, then its logging, evals and checkpoint."""
    config = self.config
    n = min(config.steps_per_call,
            _next_event(self.step, self.end, config) - self.step)
    t0 = time.perf_counter()
    new_state = self.run_chunk(self.state, n)
    jax.block_until_ready(new_state["acc_loss"])
    self.segment["train_s"] += time.perf_counter() - t0
    self.state, self.step = new_state, self.step + n
    bar.update(n)
    if self.step % config.log_every == 0 or self.step == self.end:
      entry = _train_entry(config, self.state, self.step)
      self.log["train"].append(entry)
      bar.set_postfix(loss=f"{entry['loss']:.4f}")
      self.state = _zero_accumulators(self.state)
    self.eval_and_snapshot()
    if self.step % config.ckpt_every == 0:
      self.save_ckpt()


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    progress: bool = True,
    stop_at: int | None = None,
    max_seconds: float | None = None,
) -> TrainResult:
  """Trains (or resumes) ``config`` in ``run_dir``; returns the final state.

  stop_at: stop (with a checkpoint) once this many steps are done, as if
    interrupted there; a later call continues to ``config.num_steps``.
  max_seconds: stop (with a checkpoint) after about this much wall time, for
    time-limited machines; a later call continues.
  Ctrl-C also saves a checkpoint at the last completed step before raising.
  """
  run_dir = Path(run_dir).absolute()
  check_or_write_config(run_dir, config)
  run = _Run(config, run_dir, stop_at)
  bar = tqdm(
      total=run.end, initial=run.step, disable=not progress, desc="train",
      unit="step"
  )
  try:
    run.eval_and_snapshot()  # step 0 (or a resumed step whose eval is missing)
    while run.step < run.end:
      run.advance(bar)
      if (max_seconds is not None
          and time.perf_counter() - run.t_start > max_seconds):
        break
    run.save_ckpt()
  except KeyboardInterrupt:
    run.save_ckpt()  # `state` always holds a completed step.
    raise
  finally:
    bar.close()
    run.mngr.close()
  return TrainResult(
      config=config,
      params=run.state["params"],
      step=run.step,
      log=run.log,
      run_dir=run_dir,
      resumed_from=run.resumed_from,
  )


def measure_step_time(
    config: TrainConfig, n_steps: int = 5, n_warmup: int = 1
) -> dict[str, float]:
  """Seconds per optimizer step of ``config`` on the default device."""
  optimizer = make_optimizer(config)
  run_chunk, _, _, _ = _make_fns(config, optimizer)
  state = _initial_state(config, optimizer)
  t0 = time.perf_counter()
  for _ in range(n_warmup):  # compile + first step
    state = run_chunk(state, 1)
  jax.block_until_ready(state["params"])
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(n_steps):
    t0 = time.perf_counter()
    state = run_chunk(state, 1)
    jax.block_until_ready(state["params"])
    times.append(time.perf_counter() - t0)
  per_step = float(np.median(times))
  return {
      "sec_per_step_median": per_step,
      "sec_per_step_min": float(np.min(times)),
      "compile_and_first_s": compile_s,
      "n_steps": n_steps,
      "extrapolated_hours_for_num_steps": per_step * config.num_steps / 3600,
      "param_count": model_lib.count_params(state["params"]),
      "device": str(jax.devices()[0]),
  }
