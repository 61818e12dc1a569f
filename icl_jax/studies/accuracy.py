"""Rows of single-task interventions (noise, zeroing, knockout, skipping,
demo counts): accuracy under the edit, the clean baseline of the same
prompts, and the disruption (the one accuracy/disruption row builder);
and the studies' deterministic seeds (`stable_seed`, `cell_seed`,
`prompt_seed`).
"""

from __future__ import annotations

from typing import Sequence

from icl_jax import tasks as T
from icl_jax.studies.modes import MODE_SPECS


def _accuracy(task: str, texts: Sequence[str], episodes, scorer: str,
              extract=None) -> list[bool]:
  out = []
  for text, ep in zip(texts, episodes):
    shown = text if extract is None else extract(text)
    out.append(bool(T.is_correct(task, shown, ep.query, scorer)))
  return out


def disruption(base: float, acc: float, kind: str) -> float | None:
  if kind == "absolute":
    return base - acc
  return None if base == 0 else (base - acc) / base


def accuracy_rows(texts_per_cell: Sequence[Sequence[str]], meta: Sequence[dict],
                  *, task: str, episodes, baseline_texts: Sequence[str],
                  experiment: str, model: str, mode: str,
                  extract=None, baseline_extract="same",
                  timing: str = "prefill", stop: str = "line") -> list[dict]:
  """Rows of single-task interventions (one per cell).

  transfer = 0 (no source task); preserve = accuracy under the edit with the
  mode's scorer; neither = 1 - accuracy. Also: accuracy under both scorers,
  the clean baseline of the same prompts, and the disruption: absolute
  (baseline - accuracy; the original's number) and relative (the paper's
  delta); `disruption` is the mode's definition (`MODE_SPECS`).
  """
  spec = MODE_SPECS[mode]
  n = len(episodes)
  bx = extract if baseline_extract == "same" else baseline_extract
  base = {s: _accuracy(task, baseline_texts, episodes, s, bx)
          for s in ("faithful", "strict")}
  rows = []
  for texts, m in zip(texts_per_cell, meta):
    ok = {s: _accuracy(task, texts, episodes, s, extract)
          for s in ("faithful", "strict")}
    acc = sum(ok[spec.scorer]) / n
    b = sum(base[spec.scorer]) / n
    row = {
        "experiment": experiment, "model": model, "mode": mode,
        "source_task": task, "target_task": task, "layer": m.get("layer"),
        "condition": m["condition"], "n": n,
        "transfer": 0.0, "preserve": acc, "neither": 1.0 - acc, "both": 0.0,
        "accuracy": acc, "baseline_accuracy": b,
        "disruption": disruption(b, acc, spec.disruption),
        "disruption_kind": spec.disruption,
        "disruption_absolute": b - acc,
        "disruption_relative": disruption(b, acc, "relative"),
        "accuracy_faithful": sum(ok["faithful"]) / n,
        "accuracy_strict": sum(ok["strict"]) / n,
        "baseline_accuracy_faithful": sum(base["faithful"]) / n,
        "baseline_accuracy_strict": sum(base["strict"]) / n,
        "scorer": spec.scorer, "timing": timing, "stop": stop,
    }
    for key, val in m.items():
      if key not in ("condition", "layer"):
        row[key] = val
    row["examples"] = [
        {"query": ep.query,
         "output": T.extract_d3(t if extract is None else extract(t)),
         "raw_output": t, "baseline_output": T.extract_d3(
             bt if bx is None else bx(bt)),
         "expected_source": ep.expected, "expected_target": ep.expected,
         "correct": ok[spec.scorer][i],
         "baseline_correct": base[spec.scorer][i]}
        for i, (ep, t, bt) in enumerate(zip(episodes, texts,
                                            baseline_texts))]
    rows.append(row)
  return rows


def stable_seed(*parts) -> int:
  """A deterministic 31-bit seed from strings/ints (not Python's hash)."""
  import zlib

  return zlib.crc32("|".join(map(str, parts)).encode()) & 0x7FFFFFFF


def name_seed(name: str) -> int:
  """A small deterministic number of a name (sum of its code points mod
  9973; not Python's hash, which changes between processes)."""
  return sum(ord(ch) for ch in name) % 9973


def cell_seed(seed: int, layer: int, name: str) -> int:
  """The noise seed of one (layer, position set) cell of a sweep."""
  return int(seed * 1000003 + layer * 101 + name_seed(name))


def prompt_seed(cell: int, prompt_index: int) -> int:
  """A cell seed moved to one prompt (independent noise per prompt), 31
  bits."""
  return (cell + 104729 * prompt_index) & 0x7FFFFFFF
