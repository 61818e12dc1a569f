"""Results directories: resumable JSONL rows, config guard, run summary.

Layout (DESIGN.md): `<out_dir>/<experiment>/results.jsonl` (one JSON object
per evaluated cell), `config.json` (the configuration the rows belong to;
a re-run with a different configuration is refused before any compute),
`summary.json` (versions, seeds, timings, device) and plots.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Iterable

KEY_FIELDS = ("model", "mode", "source_task", "target_task", "layer",
              "condition")


class ConfigMismatchError(ValueError):
  pass


def row_key(row: dict, extra: Iterable[str] = ()) -> tuple:
  return tuple(row.get(f) for f in (*KEY_FIELDS, *extra))


class RunDir:
  """One experiment's output directory."""

  def __init__(self, out_dir: str | Path, experiment: str, config: dict,
               key_extra: Iterable[str] = ()):
    self.path = Path(out_dir) / experiment
    self.experiment = experiment
    self.config = json.loads(json.dumps(config, default=str))
    self.key_extra = tuple(key_extra)
    self.results = self.path / "results.jsonl"
    self.path.mkdir(parents=True, exist_ok=True)
    cfg_path = self.path / "config.json"
    if cfg_path.exists():
      old = json.loads(cfg_path.read_text())
      if old != self.config:
        diff = sorted(k for k in set(old) | set(self.config)
                      if old.get(k) != self.config.get(k))
        raise ConfigMismatchError(
            f"{self.path} holds results of a different configuration "
            f"(differs in {diff}); use another --out_dir or delete it")
    else:
      cfg_path.write_text(json.dumps(self.config, indent=1))
    self.t0 = time.time()

  def rows(self) -> list[dict]:
    if not self.results.exists():
      return []
    out = []
    for line in self.results.read_text().splitlines():
      line = line.strip()
      if not line:
        continue
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError:
        continue  # a line cut by an interrupted write; it is redone
    return out

  def done(self) -> set:
    return {row_key(r, self.key_extra) for r in self.rows()}

  def append(self, rows: Iterable[dict]) -> None:
    """Appends rows and flushes: finished cells are never lost."""
    with self.results.open("a") as f:
      for r in rows:
        f.write(json.dumps(r, default=_json_default) + "\n")
      f.flush()

  def write_summary(self, extra: dict | None = None) -> dict:
    import jax

    import icl_jax

    try:
      import transformers
      tv = transformers.__version__
    except ImportError:
      tv = None
    s = {
        "experiment": self.experiment, "config": self.config,
        "n_rows": len(self.rows()),
        "wall_seconds_this_invocation": time.time() - self.t0,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "versions": {"icl_jax": icl_jax.__version__, "jax": jax.__version__,
                     "transformers": tv, "python": platform.python_version()},
        "device": [str(d) for d in jax.devices()],
        "platform": platform.platform(),
    }
    if extra:
      s.update(extra)
    (self.path / "summary.json").write_text(
        json.dumps(s, indent=1, default=_json_default))
    return s


def _json_default(o):
  import numpy as np

  if isinstance(o, (np.integer,)):
    return int(o)
  if isinstance(o, (np.floating,)):
    return float(o)
  if isinstance(o, np.ndarray):
    return o.tolist()
  return str(o)
