"""Reference numbers of the original study (protocol sections 8-9, 11).

Every number is copied from `reference/dot_icl_protocol.md`, which copies
them from the original repository's result files (`bryanc5864/DOT-ICL`,
`results/...`); values marked *derived* there were computed by the
protocol's author from those files. The report (`icl_jax.analysis.report`)
prints them beside our own measurements.

Models of the original (fp16 except Qwen, fp32): Llama-3.2-3B-Instruct (28
layers), Llama-3.2-1B-Instruct (16), Qwen2.5-1.5B-Instruct (28),
Gemma-2-2B-it (26). "Layer L" = output of block L (0-based) everywhere.

The numbers live in ONE data table, `report/reference_numbers.json` (one
entry per name below); this module loads it into module attributes
(`R.EXP8`, `R.BASELINE`, ...). JSON encoding: arrays are tuples; a dict
whose keys are not all strings (pairs, layers, demo counts) is stored as
`{"__items__": [[key, value], ...]}` in its original order.
"""

from __future__ import annotations

import json
from pathlib import Path

TABLE = Path(__file__).resolve().parent / "report" / "reference_numbers.json"


def _decode(v):
  """JSON value -> the Python value: arrays -> tuples, `__items__` ->
  dicts with tuple/int keys."""
  if isinstance(v, list):
    return tuple(_decode(x) for x in v)
  if isinstance(v, dict):
    if set(v) == {"__items__"}:
      return {_decode(k): _decode(x) for k, x in v["__items__"]}
    return {k: _decode(x) for k, x in v.items()}
  return v


def load_table(path: Path = TABLE) -> dict:
  """{name: value} of every reference number."""
  return {k: _decode(v) for k, v in json.loads(path.read_text()).items()}


_TABLE = load_table()
globals().update(_TABLE)
# Named here as well: the functions below read them.
CORE_TASKS = _TABLE["CORE_TASKS"]
EXP8 = _TABLE["EXP8"]


def pair_name(source: str, target: str) -> str:
  """The original's pair label, e.g. "uppercase_repeat_word"."""
  return f"{source}_{target}"


def split_pair_name(name: str) -> tuple[str, str]:
  """Inverse of `pair_name` for the core tasks."""
  for s in sorted(CORE_TASKS, key=len, reverse=True):
    if name.startswith(s + "_") and name[len(s) + 1:] in CORE_TASKS:
      return s, name[len(s) + 1:]
  raise ValueError(f"not a core-task pair name: {name!r}")


def exp8_mean_transfer(model: str, layer: int, condition: str) -> float:
  """Mean transfer over the six exp8 pairs at one cell (derived)."""
  vals = [v[0] for (s, t, l, c), v in EXP8[model].items()
          if l == layer and c == condition]
  return sum(vals) / len(vals)
