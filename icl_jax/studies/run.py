"""The run object: one experiment's resumable results directory, its
engines, progress bar and summary (the one run object of the studies)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Iterable, Sequence

from icl_jax.analysis.results import RunDir, row_key
from icl_jax.studies.modes import MODE_SPECS


def make_engine(lm, max_new_tokens: int, timing: str = "prefill",
                stop: str = "line"):
  """An engine with the study's decode settings."""
  from icl_jax.interventions.engine import Engine

  return Engine(lm, max_new_tokens=max_new_tokens, stop=stop, timing=timing)


class Study:
  """One experiment's run: results dir, engines, progress bar, summary.

  Rows are keyed by `analysis.results.KEY_FIELDS` + `key_extra`. Two ways to
  fill it: `run(jobs)` (plan jobs, `plans.run_jobs`: pending cells are found
  and run per job) or incremental `pending(keys)` / `add(rows)` (the
  single-task ablation and control studies). Either way an interrupted run
  resumes where it stopped and a finished one recomputes nothing. A results
  directory of a different configuration is refused on construction, before
  any compute.
  """

  def __init__(self, lm, *, experiment: str, model: str, config: dict,
               out_dir: str, key_extra: Sequence[str] = (),
               max_new_tokens: int = 8, timing: str = "prefill",
               layers: Sequence[int] | None = None,
               modes: Sequence[str] | None = None, progress: bool = True,
               growable: Sequence[str] = ()):
    from icl_jax.studies.study import check_positive

    self.lm = lm
    self.experiment = experiment
    self.model = model
    self.key_extra = tuple(key_extra)
    self.max_new_tokens = check_positive(max_new_tokens, "--max_new_tokens")
    self.timing = timing
    self.layers = None if layers is None else list(layers)
    self.modes = None if modes is None else list(modes)
    self.rd = RunDir(out_dir, experiment, config, key_extra=self.key_extra,
                     lm=lm, growable=growable)
    self.done = self.rd.done()
    self._engines = {}
    self.t0 = time.time()
    self.progress = progress
    self._bar = None
    self.n_new = 0

  @property
  def n_layers(self) -> int:
    return self.lm.n_layers

  @property
  def config(self) -> dict:
    """The directory's configuration (growable keys as extended)."""
    return self.rd.config

  @property
  def path(self) -> Path:
    return self.rd.path

  def rows(self) -> list[dict]:
    return [r for r in self.rd.rows() if r.get("model") == self.model]

  # -- engines --------------------------------------------------------------
  def engine(self, timing: str | None = None, stop: str = "line"):
    """The engine of one decoder setting (default: the run's timing)."""
    key = (timing or self.timing, stop)
    if key not in self._engines:
      self._engines[key] = make_engine(self.lm, self.max_new_tokens, *key)
    return self._engines[key]

  # -- plan jobs ------------------------------------------------------------
  def run(self, jobs, progress: bool = True, row_hook=None) -> list[dict]:
    """Runs plan jobs (`plans.run_jobs`), skipping finished cells; new rows
    go through `add`. With the run's own progress bar (`start`), each job
    ticks it; otherwise `progress` shows a bar over cells."""
    from icl_jax.studies.plans import run_jobs

    outer = self._bar is not None
    return run_jobs(self.engine(), self.rd, jobs, experiment=self.experiment,
                    model=self.model, key_extra=self.key_extra,
                    progress=progress and not outer, row_hook=row_hook,
                    engine_for=self.engine, append=self.add,
                    tick=(lambda note: self.tick(note=note)) if outer
                    else None)

  def run_baselines(self, tasks: Sequence[str], n: int) -> list[dict]:
    """Clean accuracy of each task's target prompts (condition "baseline"),
    one batched generation (`plans.run_baselines`)."""
    from icl_jax.studies import plans, setups

    return plans.run_baselines(self.engine(), self.rd,
                               [setups.task_setup(t, n) for t in tasks],
                               self.modes, experiment=self.experiment,
                               model=self.model)

  # -- incremental rows -----------------------------------------------------
  def key(self, **fields) -> tuple:
    fields.setdefault("model", self.model)
    return row_key(fields, self.key_extra)

  def pending(self, keys: Iterable[tuple]) -> list[tuple]:
    return [k for k in keys if k not in self.done]

  def add(self, rows: Sequence[dict]) -> list[dict]:
    """Appends the rows not already in the results file."""
    new = []
    for r in rows:
      k = row_key(r, self.key_extra)
      if k not in self.done:
        self.done.add(k)
        new.append(r)
    self.rd.append(new)
    self.n_new += len(new)
    return new

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

  # -- summary --------------------------------------------------------------
  def write_summary(self, info: dict, extra: dict | None = None) -> dict:
    """summary.json: seconds since opening, `info`, then `extra`."""
    s = {"seconds": time.time() - self.t0, **info}
    if extra:
      s.update(extra)
    return self.rd.write_summary(s)

  def finish(self, extra: dict | None = None) -> list[dict]:
    """Closes the progress bar, writes summary.json; returns the rows."""
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    info = {"n_layers": self.n_layers, "new_rows": self.n_new,
            "mode_specs": {m: dataclasses.asdict(v)
                           for m, v in MODE_SPECS.items()}}
    if self.layers is not None:
      info["layers"] = self.layers
    if self.modes is not None:
      info["modes"] = self.modes
    self.write_summary(info, extra)
    return self.rows()
