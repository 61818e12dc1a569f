"""Plumbing shared by the experiment scripts: validate, load, run, record.

Every script follows the same order so bad input fails before any compute:

  1. flag values that need no model (modes, pairs, task names, counts >= 1,
     the experiment name as a path part under --out_dir), and an explicit
     --layers list against the depth read from the model's config
     (`check_layers_early`, no weights loaded);
  2. the model (cached conversion; seconds) -> layers checked against it;
  3. the run directory (`analysis.results.RunDir`): an exclusive lock (a
     second process is refused, `RunDirLockedError`), then
     `<out_dir>/<experiment>/config.json` must match the configuration,
     dtype and model file hash included (a different one is refused,
     `ConfigMismatchError`); corrupt result lines are reported and removed
     so their cells are recomputed;
  4. the jobs (`plans.run_jobs`): cells already in results.jsonl are
     skipped, new rows are appended as each job finishes;
  5. plots and summary.json.

What is in the configuration guard: everything that changes what a cell
computes (model, n, pairs and their order -- the RNG call order depends on
it --, seed, decode settings, experiment options). Not in it: the layer and
mode selection, since rows are keyed by layer and mode; a later run may add
layers or a mode to the same directory.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from icl_jax.analysis.results import check_path_part, hold_run_dir
from icl_jax.studies.layers import check_layers_early, parse_layers
from icl_jax.studies.run import Study


def parse_pairs(spec: str | Sequence, known: Sequence[str] | None = None):
  """'a:b,c:d' -> [(a, b), (c, d)]; unknown tasks raise naming the task."""
  from icl_jax.tasks import get_task

  items = spec.split(",") if isinstance(spec, str) else list(spec)
  pairs = []
  for item in [p.strip() for p in items if p and p.strip()]:
    if ":" not in item:
      raise ValueError(f"--pairs item {item!r} is not source:target")
    s, t = (x.strip() for x in item.split(":", 1))
    for name in (s, t):
      get_task(name)  # UnknownTaskError names the task
      if known is not None and name not in known:
        raise ValueError(f"task {name!r} is not usable here; use one of "
                         f"{list(known)}")
    pairs.append((s, t))
  if not pairs:
    raise ValueError("--pairs is empty")
  return pairs


def parse_triples(spec: str) -> list[tuple[str, str, str]]:
  """--triples 'A:B:C,...' (or 'none') -> [(A, B, C)]; unknown tasks raise
  naming the task."""
  from icl_jax.tasks import get_task

  if spec.strip().lower() == "none":
    return []
  out = []
  for item in [x for x in spec.split(",") if x.strip()]:
    parts = [p.strip() for p in item.split(":")]
    if len(parts) != 3:
      raise ValueError(f"--triples item {item!r} is not A:B:C")
    for p in parts:
      get_task(p)
    out.append(tuple(parts))
  return out


def parse_demo_counts(ks: Sequence[str]) -> list[int]:
  """--ks: demo counts in 1..5 (the study's fixed demo lists)."""
  try:
    out = [int(k) for k in ks]
  except ValueError as e:
    raise ValueError(f"--ks {ks} are not integers") from e
  if not out or min(out) < 1 or max(out) > 5:
    raise ValueError(f"--ks must be in 1..5 (the fixed demo lists), got {out}")
  return out


def check_probe_split(n: int, n_tasks: int) -> None:
  """An 80/20 split of n x n_tasks prompts must leave at least one test and
  one train prompt per task (exp14 Part C's probe)."""
  import math

  m = n * n_tasks
  if min(math.ceil(0.2 * m), m - math.ceil(0.2 * m)) < n_tasks:
    raise ValueError(
        f"Part C: {m} prompts ({n} x {n_tasks} tasks) leave fewer than "
        f"one test/train prompt per task in an 80/20 split; raise --n or "
        "drop C from --parts")


def _parse_list(spec, cast, what: str, bad: str) -> list:
  """A comma string (or sequence) -> non-empty list of cast values."""
  items = spec.split(",") if isinstance(spec, str) else list(spec)
  try:
    vals = [cast(x) for x in items if str(x).strip()]
  except ValueError:
    raise ValueError(bad) from None
  if not vals:
    raise ValueError(f"{what} is empty")
  return vals


def parse_ints(spec: str, what: str, lo: int | None = None,
               hi: int | None = None) -> list[int]:
  vals = _parse_list(spec, int, what,
                     f"{what} {spec!r}: not a comma list of integers")
  bad = [v for v in vals if (lo is not None and v < lo) or
         (hi is not None and v > hi)]
  if bad:
    raise ValueError(f"{what}: {bad} outside [{lo}, {hi}]")
  return vals


def parse_floats(spec: Sequence[str] | str, what: str) -> list[float]:
  return _parse_list(spec, float, what,
                     f"{what}: {spec!r} is not a list of numbers")


def parse_tasks(spec: Sequence[str] | str) -> list[str]:
  """Task names, each checked against the registry (clear error)."""
  from icl_jax.tasks import get_task

  names = spec.split(",") if isinstance(spec, str) else list(spec)
  names = [x.strip() for x in names if x.strip()]
  if not names:
    raise ValueError("no tasks given")
  for name in names:
    get_task(name)  # raises UnknownTaskError naming the task
  return names


def check_choices(values: Iterable[str], known: Iterable[str], what: str):
  known = list(known)
  bad = [v for v in values if v not in known]
  if bad:
    raise ValueError(f"{what}: unknown value(s) {bad}; known: {known}")
  return list(values)


def check_positive(value: int, what: str) -> int:
  import numbers

  if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
      or value < 1):
    raise ValueError(f"{what} must be an integer >= 1, got {value!r}")
  return value


def open_study(*, experiment: str, model: str, out_dir: str, config: dict,
               layers: str = "all", modes: Sequence[str] = ("faithful",),
               dtype: str | None = None, max_new_tokens: int = 8,
               timing: str = "prefill",
               study_layers: Callable[[int], Sequence[int]] | None = None,
               key_extra: Sequence[str] = (), lm=None,
               check: Callable[[object], None] | None = None) -> Study:
  """Loads the model, validates layers and the run dir; no compute yet.

  `check(lm)` runs extra model-dependent validation (e.g. position set names
  against the tokenizer) before the run directory is touched.
  """
  import icl_jax

  check_positive(max_new_tokens, "--max_new_tokens")
  if isinstance(config.get("n"), int):
    check_positive(config["n"], "--n")
  check_path_part(experiment)
  release = None
  try:
    if lm is None:
      check_layers_early(layers, model, study_layers)
      release = hold_run_dir(out_dir, experiment)  # refuse a 2nd run at once
      lm = icl_jax.load(model, dtype=dtype)
    return _open(experiment, model, out_dir, config, layers, modes, dtype,
                 max_new_tokens, timing, study_layers, key_extra, lm, check)
  finally:
    if release is not None:
      release()


def _open(experiment, model, out_dir, config, layers, modes, dtype,
          max_new_tokens, timing, study_layers, key_extra, lm, check):
  layer_list = parse_layers(layers, lm.n_layers, study_layers)
  if check is not None:
    check(lm)
  cfg = dict(config)
  cfg.update(model=model, max_new_tokens=max_new_tokens, timing=timing,
             dtype=dtype)
  return Study(lm, experiment=experiment, model=model, config=cfg,
               out_dir=out_dir, key_extra=key_extra,
               max_new_tokens=max_new_tokens, timing=timing,
               layers=layer_list, modes=modes)


def quiet_logs() -> None:
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.WARNING)
