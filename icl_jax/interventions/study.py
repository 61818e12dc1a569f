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

import dataclasses
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from icl_jax.analysis.results import RunDir, check_path_part, hold_run_dir


def layer_at_fraction(f: float, n_layers: int) -> int:
  """The study's `clamp(round(f * n_layers))`."""
  return max(0, min(n_layers - 1, round(f * n_layers)))


# The study's layer 8 of Llama-3B's 28 = depth 0.30 (layer_at_fraction(0.30)).
STUDY_FRACTION = 0.30


def parse_layers(spec: str, n_layers: int,
                 study: Callable[[int], Sequence[int]] | None = None):
  """'all' | 'study' | 'frac:F,..' | comma list; raises ValueError naming bad
  layers.

  'study' is the experiment's own layer choice scaled to this model (the
  4-layer grid of exp8 by default).
  """
  spec = (spec or "all").strip()
  if spec == "all":
    return list(range(n_layers))
  if spec == "study":
    if study is not None:
      return sorted({int(l) for l in study(n_layers)})
    return sorted({layer_at_fraction(f, n_layers)
                   for f in (0.30, 0.44, 0.52, 0.59)})
  try:
    if spec.startswith("frac:"):
      # Depth fractions, e.g. frac:0.1,0.25,0.5 -> the layers at those depths.
      fracs = [float(x) for x in spec[5:].split(",") if x.strip()]
      if not fracs or any(not 0.0 <= f < 1.0 for f in fracs):
        raise ValueError(f"--layers {spec!r}: fractions must be in [0, 1)")
      return sorted({layer_at_fraction(f, n_layers) for f in fracs})
    layers = [int(x) for x in spec.split(",") if x.strip()]
  except ValueError as e:
    raise ValueError(f"--layers {spec!r}: not 'all', 'study', 'frac:F,...' "
                     "or integers") from e
  if not layers:
    raise ValueError("--layers is empty")
  bad = [l for l in layers if not 0 <= l < n_layers]
  if bad:
    raise ValueError(f"--layers: {bad} outside the model (0..{n_layers - 1})")
  return sorted(set(layers))


def parse_modes(flag: str) -> list[str]:
  if flag == "both":
    return ["faithful", "aligned"]
  if flag in ("faithful", "aligned"):
    return [flag]
  raise ValueError(f"--mode {flag!r}: use faithful, aligned or both")


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


def _gguf_block_count(path: Path) -> int | None:
  """`<arch>.block_count` from a GGUF header (reads only the metadata keys
  before it; no tensors). None when it cannot be read."""
  import struct

  scalars = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f",
             7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
  with open(path, "rb") as f:
    def read(fmt):
      size = struct.calcsize(fmt)
      data = f.read(size)
      if len(data) != size:
        raise EOFError
      return struct.unpack(fmt, data)[0]

    def string():
      return f.read(read("<Q")).decode("utf-8", "replace")

    def value(t):
      if t in scalars:
        return read(scalars[t])
      if t == 8:
        return string()
      if t == 9:
        et, n = read("<I"), read("<Q")
        if et in scalars:  # skip without decoding
          f.seek(struct.calcsize(scalars[et]) * n, 1)
          return None
        for _ in range(n):
          value(et)
        return None
      raise ValueError(f"GGUF value type {t}")

    if f.read(4) != b"GGUF":
      return None
    version = read("<I")
    if version < 2:
      return None
    read("<Q")  # tensor count
    n_kv = read("<Q")
    arch = None
    for _ in range(min(n_kv, 100000)):
      key = string()
      v = value(read("<I"))
      if key == "general.architecture":
        arch = v
      elif arch and key == f"{arch}.block_count":
        return int(v)
  return None


def model_depth(model) -> int | None:
  """The model's layer count read from its config, without loading weights
  (HF directory: config.json; GGUF / embedded name: the file's header).
  None when that is not possible cheaply; the check after loading remains."""
  import json

  try:
    from icl_jax.convert import embedded

    name = str(model)
    if embedded.is_embedded_name(name):
      path = embedded.embedded_gguf_path(name)
    else:
      path = Path(name).expanduser()
    if path.is_dir():
      cfg = json.loads((path / "config.json").read_text())
      if not isinstance(cfg.get("num_hidden_layers"), int):
        cfg = cfg.get("text_config") or {}
      n = cfg.get("num_hidden_layers")
      return n if isinstance(n, int) and n > 0 else None
    if path.is_file() and path.suffix == ".gguf":
      n = _gguf_block_count(path)
      return n if n and n > 0 else None
  except Exception:  # pylint: disable=broad-except
    return None  # the loader reports the real problem
  return None


def check_layers_early(spec: str, model, study=None) -> None:
  """Validates --layers against the model's depth before the model loads
  (when the depth can be read cheaply; see `model_depth`)."""
  spec = (spec or "all").strip()
  if spec == "all" or (spec == "study" and study is None):
    return
  n = model_depth(model)
  if n is not None:
    parse_layers(spec, n, study)


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


class RunRecord:
  """What every opened run has: `lm`, `model`, `rd` (RunDir) and `t0`.

  Shared by `Study` (plan jobs, `plans.run_jobs`) and `runner.Study`
  (incremental single-task/single-position rows).
  """

  @property
  def n_layers(self) -> int:
    return self.lm.n_layers

  @property
  def path(self) -> Path:
    return self.rd.path

  def rows(self) -> list[dict]:
    return [r for r in self.rd.rows() if r.get("model") == self.model]

  def write_summary(self, info: dict, extra: dict | None = None) -> dict:
    """summary.json: seconds since opening, `info`, then `extra`."""
    s = {"seconds": time.time() - self.t0, **info}
    if extra:
      s.update(extra)
    return self.rd.write_summary(s)


def make_engine(lm, max_new_tokens: int, timing: str = "prefill",
                stop: str = "line"):
  from icl_jax.interventions.engine import Engine

  return Engine(lm, max_new_tokens=max_new_tokens, stop=stop, timing=timing)


@dataclasses.dataclass
class Study(RunRecord):
  """An opened experiment run: model, layers, engine and run directory."""

  experiment: str
  model: str
  lm: object
  layers: list[int]
  modes: list[str]
  rd: RunDir
  engine: object
  key_extra: tuple = ()
  t0: float = dataclasses.field(default_factory=time.time)

  def run(self, jobs, progress: bool = True, row_hook=None) -> list[dict]:
    from icl_jax.interventions.plans import run_jobs

    return run_jobs(self.engine, self.rd, jobs, experiment=self.experiment,
                    model=self.model, key_extra=self.key_extra,
                    progress=progress, row_hook=row_hook)

  def run_baselines(self, tasks: Sequence[str], n: int) -> list[dict]:
    """Clean accuracy of each task's target prompts (condition "baseline"),
    one batched generation (`plans.run_baselines`)."""
    from icl_jax.interventions import plans

    return plans.run_baselines(self.engine, self.rd,
                               [plans.task_setup(t, n) for t in tasks],
                               self.modes, experiment=self.experiment,
                               model=self.model)

  def finish(self, extra: dict | None = None) -> dict:
    return self.write_summary({"n_layers": self.n_layers,
                               "layers": self.layers, "modes": self.modes},
                              extra)


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
  rd = RunDir(out_dir, experiment, cfg, key_extra=key_extra, lm=lm)
  engine = make_engine(lm, max_new_tokens, timing)
  return Study(experiment, model, lm, layer_list, list(modes), rd, engine,
               tuple(key_extra))


def study_fraction_layer(n_layers: int) -> list[int]:
  """`--layers=study` of the single-layer experiments: the original's layer
  8 of 28, layer_at_fraction(STUDY_FRACTION)."""
  return [layer_at_fraction(STUDY_FRACTION, n_layers)]


def quiet_logs() -> None:
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.WARNING)
