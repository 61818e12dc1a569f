"""A run directory's configuration: what identifies its rows (the caller's
configuration, dtype, model file hash; the code version recorded, never
compared), and how a new run's configuration is checked against the
directory's (`compare`), including keys a later run may extend
(`grow_value`). Used by `analysis.results.RunDir`."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

PROVENANCE_KEY = "_provenance"
# Compared only when both the directory's and the new configuration have it
# (older directories, or loaders that cannot hash the model file).
SOFT_KEYS = ("model_sha256",)
# Configuration counts that must be >= 1 (checked before anything is written).
POSITIVE_KEYS = ("n", "max_new_tokens", "n_source", "batch_size")


class ConfigMismatchError(ValueError):
  pass


def check_config_counts(config: dict) -> None:
  """Counts (n, max_new_tokens, ...) of a configuration must be >= 1."""
  for k in POSITIVE_KEYS:
    v = config.get(k)
    if v is None or isinstance(v, bool):
      continue
    if isinstance(v, (int, float)) and v < 1:
      flag = f"--{k}"
      raise ValueError(f"{flag} must be >= 1, got {v} (nothing was written)")


_GIT = None


def code_version() -> dict:
  """icl_jax.__version__ and, when this is a git checkout, the commit and
  whether the tree has uncommitted changes (recorded, never compared)."""
  global _GIT
  import icl_jax

  if _GIT is None:
    root = Path(icl_jax.__file__).resolve().parents[1]
    _GIT = {"git_commit": None, "git_dirty": None}
    try:
      head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                            capture_output=True, text=True, timeout=10)
      if head.returncode == 0:
        _GIT["git_commit"] = head.stdout.strip()
        st = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                             "--untracked-files=no"], capture_output=True,
                            text=True, timeout=10)
        if st.returncode == 0:
          _GIT["git_dirty"] = bool(st.stdout.strip())
    except (OSError, subprocess.SubprocessError):
      pass
  return {"icl_jax": icl_jax.__version__, **_GIT}


def dtype_name(dtype) -> str | None:
  if dtype is None:
    return None
  name = getattr(dtype, "name", None)
  if name is None:
    try:
      import numpy as np

      name = np.dtype(dtype).name
    except TypeError:
      name = str(dtype)
  return str(name)


def model_identity(lm=None, dtype=None) -> dict:
  """{"dtype": ..., "model_sha256": ... (when known)} of a loaded model.

  dtype: the parameters' dtype (`lm.dtype`); without a model, `dtype` (a
  flag value; None = the loader's default, float32).
  """
  out = {}
  d = None
  if lm is not None:
    with contextlib.suppress(Exception):
      d = dtype_name(lm.dtype)
  if d is None and dtype is not None:
    d = dtype_name(dtype)
  out["dtype"] = d
  info = getattr(lm, "load_info", None) or {}
  sha = info.get("source_sha256") if isinstance(info, dict) else None
  if sha:
    out["model_sha256"] = str(sha)
  return out


def grow_value(old, new):
  """A growable configuration value extended by a later run's, or None when
  they conflict: lists unite (the directory's order first), dicts unite when
  their shared keys agree, anything else must be equal."""
  if isinstance(old, list) and isinstance(new, list):
    return old + [x for x in new if x not in old]
  if isinstance(old, dict) and isinstance(new, dict):
    if any(old[k] != new[k] for k in old.keys() & new.keys()):
      return None
    return {**old, **new}
  return old if old == new else None


def guarded_part(cfg: dict) -> dict:
  """The guarded part of a configuration, for comparison."""
  out = {k: v for k, v in cfg.items()
         if k != PROVENANCE_KEY and k not in SOFT_KEYS}
  # Older directories recorded the --dtype flag (None = the float32 default)
  # or no dtype at all.
  out["dtype"] = out.get("dtype") or "float32"
  return out


def _short(v, n: int = 60) -> str:
  s = json.dumps(v, default=str)
  return s if len(s) <= n else s[:n - 3] + "..."


def compare(old: dict, new: dict, growable=()) -> tuple[dict, list[str], str]:
  """A directory's configuration `old` against a run's `new`.

  Returns (grown, diff, what): the growable keys' extended values, the keys
  that differ (a growable key differs only when `grow_value` refuses it;
  a soft key only when both sides have it), and a readable account of the
  first differences.
  """
  a, b = guarded_part(old), guarded_part(new)
  grown = {}
  for k in growable:
    if k in a and k in b:
      g = grow_value(a[k], b[k])
      if g is not None:
        grown[k] = a[k] = b[k] = g
  diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
  diff += [k for k in SOFT_KEYS if old.get(k) and new.get(k)
           and old[k] != new[k]]
  what = "; ".join(f"{k}: {_short(old.get(k))} in the directory, "
                   f"{_short(new.get(k))} now" for k in diff[:6])
  return grown, diff, what
