"""Loading: the rows of every results directory under the roots, by their
`experiment` field (DESIGN.md rows), with summaries and unfinished runs."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from icl_jax.convert.embedded import EMBEDDED_MODELS

# Layer counts of the embedded models (rows of other models fall back to
# their largest layer + 1).
KNOWN_N_LAYERS = {name: m.n_layers for name, m in EMBEDDED_MODELS.items()}
# Fields beyond results.KEY_FIELDS that tell a run's rows apart: every
# script's `key_extra` (a test checks the scripts against this list) plus
# fields that separate rows written by one script under several settings.
# Rows equal in all of these are duplicates (a resumed cell) and collapse.
EXTRA_KEYS = ("timing", "source_k", "size", "subset", "queries", "probe",
              "metric", "noise", "scale", "part", "k", "step")
# Experiments whose rows come from a model trained from scratch (Han et al.'s
# synthetic study), not from a language model: not among `Data.models()`.
SYNTHETIC_EXPERIMENTS = ("synthetic_emergence",)


class Data:
  """Rows of every results directory under the roots, by experiment."""

  def __init__(self, roots: Sequence[str | Path], out_dir: Path):
    self.roots = [Path(r) for r in roots]
    self.out_dir = out_dir
    self.rows: dict[str, list[dict]] = defaultdict(list)
    self.dirs: dict[str, list[Path]] = defaultdict(list)
    self.summaries: dict[str, list[dict]] = defaultdict(list)
    self.main_summaries: list[dict] = []
    self.root_pngs: list[Path] = []
    # Directories with rows but no summary.json: every script writes its
    # summary last, so these runs were interrupted and are partial.
    self.unfinished: set[Path] = set()
    seen = set()
    for root in self.roots:
      if not root.exists():
        raise FileNotFoundError(f"results directory {root} does not exist")
      for path in sorted(root.rglob("results.jsonl")):
        if len(path.relative_to(root).parts) > 4:
          continue
        d = path.parent
        for r in _read_jsonl(path):
          name = r.get("experiment") or d.name
          key = (name, _row_key(r))
          if key in seen:
            continue
          seen.add(key)
          r["_dir"] = str(d)
          self.rows[name].append(r)
          if d not in self.dirs[name]:
            self.dirs[name].append(d)
        s = d / "summary.json"
        if s.exists():
          try:
            self.summaries[d.name].append(json.loads(s.read_text()))
          except json.JSONDecodeError:
            pass
        else:
          self.unfinished.add(d)
      for ms in sorted(root.rglob("main_summary.json")):
        try:
          self.main_summaries.append(json.loads(ms.read_text()))
          self.root_pngs += sorted(ms.parent.glob("main_*.png"))
        except json.JSONDecodeError:
          pass

  def get(self, name: str) -> list[dict]:
    return self.rows.get(name, [])

  def models(self, names: Iterable[str] | None = None) -> list[str]:
    names = list(names) if names else [
        n for n in self.rows if n not in SYNTHETIC_EXPERIMENTS]
    ms = {r.get("model") for n in names for r in self.get(n)}
    return sorted(m for m in ms if m and not m.endswith("(original)"))

  def n_layers(self, model: str) -> int | None:
    for rs in self.rows.values():
      for r in rs:
        if r.get("model") == model and r.get("n_layers"):
          return int(r["n_layers"])
    for s in self.main_summaries:
      if s.get("model") == model and s.get("n_layers"):
        return int(s["n_layers"])
    for key, n in KNOWN_N_LAYERS.items():
      if model == key or str(model).rstrip("/").endswith(key):
        return n
    layers = [r.get("layer") for rs in self.rows.values() for r in rs
              if r.get("model") == model and isinstance(r.get("layer"), int)]
    return max(layers) + 1 if layers else None

  def pngs(self, name: str) -> list[Path]:
    out = []
    for d in self.dirs.get(name, []):
      out += sorted(d.glob("*.png"))
    return out

  def rel(self, p: Path) -> str:
    try:
      return os.path.relpath(p, self.out_dir)
    except ValueError:
      return str(p)


def _read_jsonl(path: Path) -> list[dict]:
  """Rows of a results.jsonl; a corrupt line is reported (a warning naming
  the file and line) and left out (`analysis.results.read_rows`)."""
  from icl_jax.analysis.results import read_rows

  return read_rows(path)


def _row_key(r: dict) -> tuple:
  return tuple(str(r.get(k)) for k in (
      "model", "mode", "source_task", "target_task", "layer", "condition",
      *EXTRA_KEYS))
