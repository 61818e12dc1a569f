"""LoRA finetuning with Optax: loss on chosen tokens, orbax, resumable.

A batch is arrays (the protocol layer builds them):
    tokens int [B,T], mask int [B,T] (left-padded, 1 = token),
    pos int [B,A] (positions whose next token is scored), tgt int [B,A]
    (those next tokens), w float [B,A] (1 = scored, 0 = padding).
The loss is the mean next-token cross-entropy over the scored tokens
(log-softmax in fp32), i.e. "loss on the answer tokens only" when pos / tgt
mark answers.

Only the adapters are optimizer inputs: the base parameters are a frozen
argument of the step (no gradient is computed for them, which is cheaper
than an optax.set_to_zero over the whole model). Over the adapter tree,
`make_optimizer` is an `optax.multi_transform`: AdamW for the trained
targets, set_to_zero for any target listed in `frozen`.

`train` keeps {adapter, opt_state, step} in an orbax CheckpointManager
(`<run_dir>/checkpoints/<step>`) every `ckpt_every` steps and at the end,
and resumes from the latest checkpoint; batches come from `batch_fn(step)`
(deterministic in the step), so a resumed run sees the same data as an
uninterrupted one. A tqdm bar shows the loss and the ETA.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from icl_jax.finetune.lora import LoraConfig, forward, init_lora

BATCH_KEYS = ("tokens", "mask", "pos", "tgt", "w")


@functools.lru_cache(maxsize=16)
def make_optimizer(lr: float, weight_decay: float = 0.0,
                   frozen: tuple = ()) -> optax.GradientTransformation:
  """AdamW on the adapter leaves of targets not in `frozen` (set_to_zero on
  those), via optax.multi_transform over the adapter tree. Cached: the
  same settings give the same object, so the jitted step is reused."""
  def labels(adapter):
    return {t: jax.tree_util.tree_map(
        lambda _: "frozen" if t in frozen else "train", ab)
        for t, ab in adapter.items()}

  return optax.multi_transform(
      {"train": optax.adamw(lr, weight_decay=weight_decay),
       "frozen": optax.set_to_zero()}, labels)


def answer_loss(adapter, params, batch, key, *, cfg, lcfg: LoraConfig):
  """Mean cross-entropy of the scored tokens (see module doc)."""
  logits = forward(cfg, params, adapter, lcfg, batch["tokens"],
                   batch["mask"], key=key, gather=batch["pos"])  # [B,A,V]
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # fp32
  nll = -jnp.take_along_axis(logp, batch["tgt"][..., None], -1)[..., 0]
  w = batch["w"].astype(jnp.float32)
  return jnp.sum(nll * w) / jnp.maximum(jnp.sum(w), 1.0)


@functools.partial(jax.jit, static_argnames=("cfg", "lcfg", "optimizer"))
def train_step(state, params, batch, *, cfg, lcfg, optimizer):
  """One AdamW step of the adapters: (new state, loss)."""
  key = jax.random.fold_in(jax.random.wrap_key_data(state["key"]),
                           state["step"])
  loss, grads = jax.value_and_grad(answer_loss)(
      state["adapter"], params, batch, key, cfg=cfg, lcfg=lcfg)
  updates, opt_state = optimizer.update(grads, state["opt_state"],
                                        state["adapter"])
  adapter = optax.apply_updates(state["adapter"], updates)
  return {"adapter": adapter, "opt_state": opt_state,
          "step": state["step"] + 1, "key": state["key"]}, loss


@functools.partial(jax.jit, static_argnames=("cfg", "lcfg"))
def eval_loss(adapter, params, batch, *, cfg, lcfg):
  """The loss without dropout."""
  return answer_loss(adapter, params, batch, None, cfg=cfg, lcfg=lcfg)


def initial_state(params, lcfg: LoraConfig, optimizer, seed: int) -> dict:
  adapter = init_lora(params, lcfg, jax.random.PRNGKey(seed))
  return {"adapter": adapter, "opt_state": optimizer.init(adapter),
          "step": jnp.asarray(0, jnp.int32),
          "key": jax.random.key_data(jax.random.PRNGKey(seed + 1))}


def checkpoint_manager(run_dir, max_to_keep: int = 2):
  """Synchronous orbax manager at <run_dir>/checkpoints."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=True,
      enable_async_checkpointing=False)
  return ocp.CheckpointManager((Path(run_dir) / "checkpoints").absolute(),
                               options=options)


def restore(mngr, target: dict):
  """(state, step) from the latest checkpoint, or (target, 0)."""
  step = mngr.latest_step()
  if step is None:
    return target, 0
  state = mngr.restore(step, args=ocp.args.StandardRestore(target))
  return state, int(step)


def save(mngr, state: dict, step: int) -> None:
  if mngr.latest_step() != step:
    mngr.save(step, args=ocp.args.StandardSave(state), force=True)


def _device_batch(batch: dict) -> dict:
  return {k: jnp.asarray(batch[k]) for k in BATCH_KEYS}


def train(cfg, params, lcfg: LoraConfig, batch_fn: Callable[[int], dict], *,
          steps: int, lr: float, run_dir, weight_decay: float = 0.0,
          seed: int = 0, ckpt_every: int = 50, stop_at: int | None = None,
          progress: bool = True, frozen=()) -> dict:
  """Trains the adapters for `steps` steps (resuming from run_dir's latest
  checkpoint); stops early at `stop_at` (for tests of resumption).

  Returns {"adapter", "step", "losses" (this call's [(step, loss)]),
  "seconds", "seconds_per_step", "resumed_from"}; the training log
  (every step's loss, all calls) is <run_dir>/train_log.json.
  """
  run_dir = Path(run_dir)
  run_dir.mkdir(parents=True, exist_ok=True)
  optimizer = make_optimizer(float(lr), float(weight_decay), tuple(frozen))
  mngr = checkpoint_manager(run_dir)
  state, step = restore(mngr, initial_state(params, lcfg, optimizer, seed))
  resumed_from = step or None
  log_path = run_dir / "train_log.json"
  log = json.loads(log_path.read_text()) if log_path.exists() else []
  log = [e for e in log if e["step"] <= step]
  end = steps if stop_at is None else min(stop_at, steps)
  bar = None
  if progress and end > step:
    from tqdm import tqdm

    bar = tqdm(total=end, initial=step, desc="lora", unit="step")
  losses, t0, t_steps = [], time.time(), []
  while step < end:
    t1 = time.time()
    state, loss = train_step(state, params, _device_batch(batch_fn(step)),
                             cfg=cfg, lcfg=lcfg, optimizer=optimizer)
    loss = float(loss)
    t_steps.append(time.time() - t1)
    step += 1
    losses.append((step, loss))
    log.append({"step": step, "loss": loss})
    if bar is not None:
      bar.set_postfix(loss=f"{loss:.4f}")
      bar.update(1)
    if step % ckpt_every == 0 or step == end:
      save(mngr, state, step)
      log_path.write_text(json.dumps(log))
  if bar is not None:
    bar.close()
  mngr.close()
  # The first step of a call includes compilation: report the median.
  per_step = float(np.median(t_steps)) if t_steps else None
  return {"adapter": state["adapter"], "step": step, "losses": losses,
          "seconds": time.time() - t0, "seconds_per_step": per_step,
          "resumed_from": resumed_from}
