"""Shared machinery of the study's experiment scripts (exp3-exp15).

Every script in `experiments/` is a thin configuration of these pieces:

  * `MODE_SPECS`: what faithful and aligned mode mean for every experiment
    (scorer, decoder of single-position edits, disruption definition);
  * `study_layers` / `parse_layers`: `--layers` ("all" = every layer,
    "study" = the original's grid for that experiment, scaled to the model's
    depth, or a comma list), validated against the model;
  * `Study`: one experiment's resumable results directory (DESIGN.md format,
    `analysis.results.RunDir`), engines per decoder setting, a progress bar,
    and the summary (the run record it shares with `study.Study` is
    `study.RunRecord`; flag validation lives in `study`);
  * `accuracy_rows`: result rows of single-task interventions (noise,
    zeroing, knockout, skipping, demo counts): accuracy under the edit, the
    clean baseline of the same prompts, and the disruption.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Iterable, Sequence

from icl_jax import tasks as T
from icl_jax.interventions import study
from icl_jax.interventions.study import (  # noqa: F401 (re-exported)
    check_choices, parse_floats, parse_tasks)

MODES = ("faithful", "aligned")


@dataclasses.dataclass(frozen=True)
class ModeSpec:
  """What a mode means.

  scorer: "faithful" (the study's scorers, artifacts included) or "strict".
  single_timing / single_stop: decoder of single-position transplants:
    faithful = the study's D2 (only the first generated token sees the patch;
    a row stops at any newline, as D2 did); aligned = like-for-like with the
    multi-position experiments (patched prompt K/V persist, D3's stop rule).
  disruption: "absolute" (baseline acc - intervened acc, the original's
    number) or "relative" ((baseline - intervened) / baseline, the paper's
    definition).
  """

  mode: str
  scorer: str
  single_timing: str
  single_stop: str
  disruption: str


MODE_SPECS = {
    "faithful": ModeSpec("faithful", "faithful", "first_token", "newline",
                         "absolute"),
    "aligned": ModeSpec("aligned", "strict", "prefill", "line", "relative"),
}

# The original's layer grids (for Llama-3.2-3B, 28 layers), per experiment.
# `study_layers` scales them to another depth with round(l * n / 28); exp11's
# and exp12's grids were formulas of the depth and are evaluated as such.
_STUDY_GRIDS_28 = {
    "transplant": [14],  # exp3/exp4: the hand-edited exp2 optimum
    "interpolation": [14],
    "layer_sweep": None,  # exp5: every layer
    "query_transplant": [0, 4, 8, 10, 11, 12, 13, 14, 16, 20, 24, 27],
    "demo_zeroing": [4, 8, 12, 16, 20],
    "instance_analysis": None,  # layer_at_fraction(0.30)
    "demo_ablation": [14],  # Part B; Part C probes at 12
    "demo_ablation_probe": [12],
    "cross_format": [8],
}


def study_layers(experiment: str, n_layers: int) -> list[int]:
  """The original's layer grid of `experiment`, for an n-layer model."""
  if experiment == "noise_tracing":  # range(0, n, max(1, n // 14))
    return list(range(0, n_layers, max(1, n_layers // 14)))
  if experiment == "layer_skip":  # Part A: every second layer
    return list(range(0, n_layers, 2))
  if experiment == "instance_analysis":
    return study.study_fraction_layer(n_layers)
  if experiment not in _STUDY_GRIDS_28:
    raise ValueError(f"no study layer grid for {experiment!r}")
  grid = _STUDY_GRIDS_28[experiment]
  if grid is None:
    return list(range(n_layers))
  return sorted({max(0, min(n_layers - 1, round(l * n_layers / 28)))
                 for l in grid})


def parse_layers(spec: str, n_layers: int, experiment: str) -> list[int]:
  """--layers: "all", "study" (the experiment's grid), "frac:F,.." or a list."""
  return study.parse_layers(spec, n_layers,
                            lambda n: study_layers(experiment, n))


class Study(study.RunRecord):
  """One experiment's run: results dir, engines, progress bar, summary.

  Rows are keyed by `analysis.results.KEY_FIELDS` + `key_extra`; `pending`
  tells which planned rows are missing, `add` appends only new rows (so an
  interrupted run resumes where it stopped, and a finished one recomputes
  nothing). A results directory of a different configuration is refused on
  construction, before any compute.
  """

  def __init__(self, lm, *, experiment: str, model: str, config: dict,
               out_dir: str, key_extra: Sequence[str] = (),
               max_new_tokens: int = 8, progress: bool = True):
    from icl_jax.analysis.results import RunDir

    self.lm = lm
    self.experiment = experiment
    self.model = model
    self.key_extra = tuple(key_extra)
    self.max_new_tokens = study.check_positive(max_new_tokens,
                                               "--max_new_tokens")
    self.rd = RunDir(out_dir, experiment, config, key_extra=self.key_extra,
                     lm=lm)
    self.done = self.rd.done()
    self._engines = {}
    self.t0 = time.time()
    self.progress = progress
    self._bar = None
    self.n_new = 0

  # -- resumability ---------------------------------------------------------
  def key(self, **fields) -> tuple:
    from icl_jax.analysis.results import row_key

    fields.setdefault("model", self.model)
    return row_key(fields, self.key_extra)

  def pending(self, keys: Iterable[tuple]) -> list[tuple]:
    return [k for k in keys if k not in self.done]

  def add(self, rows: Sequence[dict]) -> list[dict]:
    from icl_jax.analysis.results import row_key

    new = []
    for r in rows:
      k = row_key(r, self.key_extra)
      if k not in self.done:
        self.done.add(k)
        new.append(r)
    self.rd.append(new)
    self.n_new += len(new)
    return new

  # -- engines --------------------------------------------------------------
  def engine(self, timing: str = "prefill", stop: str = "line"):
    key = (timing, stop)
    if key not in self._engines:
      self._engines[key] = study.make_engine(self.lm, self.max_new_tokens,
                                             timing, stop)
    return self._engines[key]

  # -- progress -------------------------------------------------------------
  def start(self, total: int, unit: str = "unit"):
    if not self.progress:
      return
    from tqdm import tqdm

    self._bar = tqdm(total=total, desc=self.experiment, unit=unit)

  def tick(self, n: int = 1, note: str | None = None):
    if self._bar is not None:
      if note:
        self._bar.set_postfix_str(note, refresh=False)
      self._bar.update(n)

  def finish(self, extra: dict | None = None) -> list[dict]:
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    self.write_summary(
        {"new_rows": self.n_new,
         "modes": {m: dataclasses.asdict(v) for m, v in MODE_SPECS.items()}},
        extra)
    return self.rows()


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
