"""What defines a synthetic training run: :class:`TrainConfig` (defaults =
the paper's protocol, App. D.2), its JSON form in ``run_dir/config.json``
and the check that refuses to resume a run dir made with another config.
See :mod:`icl_jax.synthetic.training` for the training loop itself."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import jax.numpy as jnp

from icl_jax.convert.digests import write_atomic
from icl_jax.synthetic import data as data_lib
from icl_jax.synthetic import model as model_lib


class ConfigMismatchError(ValueError):
  """The run directory was created with a different configuration."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything that defines a run. Defaults = the paper's protocol."""

  model: model_lib.GPT2RegressorConfig = model_lib.GPT2RegressorConfig()
  task: data_lib.TaskConfig = data_lib.TaskConfig()
  batch_size: int = 128
  num_steps: int = 80_000
  learning_rate: float = 1e-4
  b1: float = 0.9
  b2: float = 0.9999
  # Deviations available for reduced runs (defaults = the paper's protocol:
  # constant lr, no warm-up, no curriculum).
  warmup_steps: int = 0  # linear warm-up from 0 to learning_rate
  # Garg et al.-style dimension curriculum (data.curriculum_masks): training
  # batches use only the first `active rank` dims of each basis block (and
  # zero the other input dims); the rank starts at curriculum_start_rank and
  # grows by 1 every curriculum_every steps up to task.basis_rank (the task).
  # 0 = off. Test and TD sets are always the full task.
  curriculum_start_rank: int = 0
  curriculum_every: int = 0
  seed: int = 0
  steps_per_epoch: int = 800  # [ASSUMPTION] 80K steps = 100 epochs
  n_test_per_basis: int = 250  # 1K test sequences (App. D.2), balanced
  n_td_per_basis: int = 100  # TD / projection samples per basis (Fig. 2)
  td_k: int = 10
  # Schedule: may change when resuming.
  log_every: int = 100
  eval_every: int = 800
  ckpt_every: int = 4000
  max_to_keep: int = 2
  snapshot_steps: tuple[int, ...] = ()
  steps_per_call: int = 1  # optimizer steps per jitted lax.scan call

  SCHEDULE_FIELDS: ClassVar[tuple[str, ...]] = (
      "num_steps",
      "log_every",
      "eval_every",
      "ckpt_every",
      "max_to_keep",
      "snapshot_steps",
      "steps_per_call",
  )

  def __post_init__(self):
    if self.model.n_dims != self.task.n_dims:
      raise ValueError(
          f"model.n_dims={self.model.n_dims} != task.n_dims={self.task.n_dims}"
      )
    if self.model.n_positions < self.task.seq_len:
      raise ValueError(
          f"model.n_positions={self.model.n_positions} < sequence length"
          f" {self.task.seq_len}"
      )
    for name in ("log_every", "eval_every", "ckpt_every", "steps_per_call"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1")
    if self.warmup_steps < 0:
      raise ValueError("warmup_steps must be >= 0")
    if self.curriculum_start_rank and (
        not 1 <= self.curriculum_start_rank <= self.task.basis_rank
        or self.curriculum_every < 1):
      raise ValueError(
          "curriculum needs 1 <= curriculum_start_rank <= task.basis_rank and"
          f" curriculum_every >= 1, got {self.curriculum_start_rank},"
          f" {self.curriculum_every}")
    object.__setattr__(
        self, "snapshot_steps", tuple(sorted(int(s) for s in self.snapshot_steps))
    )

  @property
  def uses_curriculum(self) -> bool:
    return self.curriculum_start_rank > 0

  def active_rank(self, step):
    """Curriculum stage at ``step`` (int or traced); the task rank if off."""
    if not self.uses_curriculum:
      return self.task.basis_rank
    stage = self.curriculum_start_rank + step // self.curriculum_every
    if isinstance(stage, int):
      return min(stage, self.task.basis_rank)
    return jnp.minimum(stage, self.task.basis_rank)

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["snapshot_steps"] = list(self.snapshot_steps)
    return d

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
    d = dict(d)
    d["model"] = model_lib.GPT2RegressorConfig(**d["model"])
    d["task"] = data_lib.TaskConfig(**d["task"])
    d["snapshot_steps"] = tuple(d.get("snapshot_steps", ()))
    return cls(**d)

  def identity(self) -> dict[str, Any]:
    """The fields that define the trajectory (compared on resume)."""
    d = self.to_dict()
    for name in self.SCHEDULE_FIELDS:
      d.pop(name)
    return d


@dataclasses.dataclass
class TrainResult:
  config: TrainConfig
  params: Any
  step: int
  log: dict[str, Any]
  run_dir: Path
  resumed_from: int | None  # checkpoint step this call started from


def flatten_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
  """Human-readable differences between two nested config dicts."""
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for key in sorted(set(a) | set(b)):
      out += flatten_diff(a.get(key), b.get(key), f"{prefix}{key}.")
    return out
  if a != b:
    return [f"{prefix[:-1]}: run dir has {a!r}, this call has {b!r}"]
  return []


def write_json(path: Path, obj: Any) -> None:
  """Writes obj as JSON atomically (readers see the old or new file)."""
  write_atomic(path, json.dumps(obj, indent=1))


def check_or_write_config(run_dir: Path, config: TrainConfig) -> None:
  """Refuses a run dir made with another config; writes config.json."""
  path = run_dir / "config.json"
  if path.exists():
    stored = TrainConfig.from_dict(json.loads(path.read_text()))
    diffs = flatten_diff(stored.identity(), config.identity())
    if diffs:
      raise ConfigMismatchError(
          f"{run_dir} was created with a different configuration; refusing to"
          " resume. Use a new run dir or the original settings. Differences:\n  "
          + "\n  ".join(diffs)
      )
  else:
    run_dir.mkdir(parents=True, exist_ok=True)
  # Keep the latest schedule (num_steps etc.) on disk.
  write_json(path, config.to_dict())


def load_config(run_dir: str | os.PathLike) -> TrainConfig:
  return TrainConfig.from_dict(
      json.loads((Path(run_dir) / "config.json").read_text())
  )
