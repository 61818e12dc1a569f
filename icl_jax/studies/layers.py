"""Layers: `--layers` parsing (the one layer parser), the original's layer
grids per experiment, and the model depth read without loading weights.

"layer L" is a block index everywhere: the output of block L (residual
index L + 1); depth fraction = L / n_layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence


def layer_at_fraction(f: float, n_layers: int) -> int:
  """The study's `clamp(round(f * n_layers))`."""
  return max(0, min(n_layers - 1, round(f * n_layers)))


# The study's layer 8 of Llama-3B's 28 = depth 0.30 (layer_at_fraction(0.30)).
STUDY_FRACTION = 0.30


def parse_layers(spec: str, n_layers: int,
                 study: Callable[[int], Sequence[int]] | str | None = None):
  """--layers: 'all' | 'study' | 'frac:F,..' | comma list of block indices;
  raises ValueError naming bad layers.

  'study' is the experiment's own layer choice scaled to this model:
  `study` is a function of the depth or an experiment name (its grid in
  `study_layers`); by default the 4-layer grid of exp8.
  """
  if isinstance(study, str):
    experiment = study
    study = lambda n: study_layers(experiment, n)  # noqa: E731
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
    return study_fraction_layer(n_layers)
  if experiment not in _STUDY_GRIDS_28:
    raise ValueError(f"no study layer grid for {experiment!r}")
  grid = _STUDY_GRIDS_28[experiment]
  if grid is None:
    return list(range(n_layers))
  return sorted({max(0, min(n_layers - 1, round(l * n_layers / 28)))
                 for l in grid})


def study_fraction_layer(n_layers: int) -> list[int]:
  """`--layers=study` of the single-layer experiments: the original's layer
  8 of 28, layer_at_fraction(STUDY_FRACTION)."""
  return [layer_at_fraction(STUDY_FRACTION, n_layers)]


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


