"""Flags and validation shared by the experiment scripts.

Common flags: --model, --mode (faithful|aligned|both), --out_dir, --n,
--layers (default: every layer), --pairs, --seed. Bad values fail with a
clear message before any compute starts.
"""

from __future__ import annotations

from absl import flags

EXP8_PAIRS = (("uppercase", "first_letter"), ("uppercase", "repeat_word"),
              ("first_letter", "repeat_word"), ("uppercase", "sentiment"),
              ("linear_2x", "length"), ("sentiment", "antonym"))
EXP8_CONDITIONS = ("all_demo", "output_only", "input_only", "last_demo")


def define_common_flags(default_pairs=EXP8_PAIRS, default_n=10):
  flags.DEFINE_string("model", "gemma3-270m",
                      "embedded name, .gguf file or HF checkpoint directory")
  flags.DEFINE_enum("mode", "both", ["faithful", "aligned", "both"],
                    "position mode(s) to run")
  flags.DEFINE_string("out_dir", "runs", "results root directory")
  flags.DEFINE_integer("n", default_n, "target prompts per pair")
  flags.DEFINE_string("layers", "all",
                      "'all' (every layer), 'study' (the original's 4-layer "
                      "grid, layer_at_fraction of .30/.44/.52/.59), "
                      "'frac:0.1,0.25' (layers at those depth fractions) or a "
                      "comma list of block indices")
  flags.DEFINE_string("pairs", ",".join(f"{s}:{t}" for s, t in default_pairs),
                      "comma list of source:target task pairs")
  flags.DEFINE_integer("seed", 0, "seed of sampled demos / noise")
  flags.DEFINE_integer("max_new_tokens", 8,
                       "generated tokens per row (answers are <= 5 tokens; "
                       "rows stop at the end of the first line)")
  flags.DEFINE_string("dtype", None, "float32 (default) or bfloat16")


def parse_pairs(spec: str):
  from icl_jax.tasks import get_task

  pairs = []
  for item in [p for p in spec.split(",") if p.strip()]:
    if ":" not in item:
      raise ValueError(f"--pairs item {item!r} is not source:target")
    s, t = (x.strip() for x in item.split(":", 1))
    get_task(s), get_task(t)  # raises UnknownTaskError naming the task
    pairs.append((s, t))
  if not pairs:
    raise ValueError("--pairs is empty")
  return pairs


def layer_at_fraction(f: float, n_layers: int) -> int:
  """The study's `clamp(round(f * n_layers))`."""
  from icl_jax.interventions.study import layer_at_fraction as _at

  return _at(f, n_layers)


def parse_layers(spec: str, n_layers: int):
  """'all' | 'study' | 'frac:F,..' | comma list (see study.parse_layers)."""
  from icl_jax.interventions.study import parse_layers as _parse

  return _parse(spec, n_layers)


def modes(flag: str):
  return ["faithful", "aligned"] if flag == "both" else [flag]
