"""Flags and validation shared by the experiment scripts.

Common flags: --model, --mode (faithful|aligned|both), --out_dir, --n,
--layers (default: every layer), --pairs, --seed. Bad values fail with a
clear message before any compute starts.

The flag groups (`define_model_flags`, `define_common_flags`,
`define_probe_flags`, ...) and the openers (`open_pair_study` for the plan
experiments of `studies.study`, `open_run` for the `run.Study`
ones) keep every script a thin configuration.
"""

from __future__ import annotations

from absl import flags

F = flags.FLAGS
# One-process suite (experiments/suite_process.py): later steps reuse the
# model an earlier step loaded, keyed by (--model, --dtype).
REUSE_MODELS = False
_LOADED: dict = {}

EXP8_PAIRS = (("uppercase", "first_letter"), ("uppercase", "repeat_word"),
              ("first_letter", "repeat_word"), ("uppercase", "sentiment"),
              ("linear_2x", "length"), ("sentiment", "antonym"))
EXP8_CONDITIONS = ("all_demo", "output_only", "input_only", "last_demo")

LAYERS_HELP = ("'all' (every layer), 'study' (the original's 4-layer "
               "grid, layer_at_fraction of .30/.44/.52/.59), "
               "'frac:0.1,0.25' (layers at those depth fractions) or a "
               "comma list of block indices")
LIST_LAYERS_HELP = "'all' or a comma list of block indices"
ON_MISMATCH_HELP = "aligned mode: demo token groups whose lengths differ"
ANSWER_MISMATCH_HELP = ("aligned mode: demo answers whose token counts differ "
                        "between source and target (truncate: map the first "
                        "min(n_src, n_tgt) tokens of each answer; skip: drop "
                        "the answer; refuse: error)")


# ---------------------------------------------------------------------------
# Flag groups
# ---------------------------------------------------------------------------

def define_model_flags(n: int, n_help: str, *, mode: bool = True,
                       layers: str = "all", layers_help: str = LAYERS_HELP,
                       seed_help: str = "seed of sampled demos / noise"):
  """--model, --mode (unless mode=False), --out_dir, --n, --layers, --seed,
  --dtype."""
  from icl_jax.convert.embedded import MODEL_FLAG_HELP

  flags.DEFINE_string("model", "gemma3-270m", MODEL_FLAG_HELP)
  if mode:
    flags.DEFINE_enum("mode", "both", ["faithful", "aligned", "both"],
                      "position mode(s) to run")
  flags.DEFINE_string("out_dir", "runs", "results root directory")
  flags.DEFINE_integer("n", n, n_help, lower_bound=1)
  flags.DEFINE_string("layers", layers, layers_help)
  flags.DEFINE_integer("seed", 0, seed_help)
  flags.DEFINE_string("dtype", None, "float32 (default) or bfloat16")


def define_common_flags(default_pairs=EXP8_PAIRS, default_n=10):
  """The model flags + --pairs and --max_new_tokens (transfer studies)."""
  define_model_flags(default_n, "target prompts per pair")
  flags.DEFINE_string("pairs", ",".join(f"{s}:{t}" for s, t in default_pairs),
                      "comma list of source:target task pairs")
  flags.DEFINE_integer("max_new_tokens", 8,
                       "generated tokens per row (answers are <= 5 tokens; "
                       "rows stop at the end of the first line)",
                       lower_bound=1)


def define_probe_flags(n: int, n_help: str):
  """The model flags of the forward-only probe studies + --k, --batch_size."""
  define_model_flags(n, n_help, layers_help=LIST_LAYERS_HELP,
                     seed_help="seed of the sampled demos (aligned mode)")
  flags.DEFINE_integer("k", 5, "demos per prompt", lower_bound=1)
  flags.DEFINE_integer("batch_size", 16, "prompts per forward", lower_bound=1)


def define_td_flags():
  """The task-decodability flags shared by task_decodability and han_td:
  --knn, --logistic, --logistic_max_iter, --batch_size."""
  flags.DEFINE_integer("knn", 10, "neighbours of the kNN vote (Han: 10)",
                       lower_bound=1)
  flags.DEFINE_bool("logistic", True,
                    "also a held-out logistic probe per layer (5-fold, C=1)")
  flags.DEFINE_integer("logistic_max_iter", 100,
                       "L-BFGS iteration cap of the logistic probe",
                       lower_bound=1)
  flags.DEFINE_integer("batch_size", 16, "prompts per forward",
                       lower_bound=1)


def check_han_families(families) -> list:
  """--families of the Han et al. scripts (a clear error otherwise)."""
  from icl_jax.studies.study import check_choices
  from icl_jax.tasks import han

  return check_choices(families, han.FAMILIES, "--families")


def define_task_flags(n: int, n_help: str, *, layers: str = "all",
                      layers_help: str = LIST_LAYERS_HELP):
  """Per-task studies without modes: model flags, --tasks (default: the 8
  core tasks), --max_new_tokens."""
  define_model_flags(n, n_help, mode=False, layers=layers,
                     layers_help=layers_help,
                     seed_help="seed of the sampled demos")
  flags.DEFINE_list("tasks", None, "tasks (default: the 8 core tasks)")
  flags.DEFINE_integer("max_new_tokens", 8, "generated tokens per prompt",
                       lower_bound=1)


def define_on_mismatch_flag(help_text: str = ON_MISMATCH_HELP):
  flags.DEFINE_enum("on_mismatch", "truncate", ["skip", "truncate", "refuse"],
                    help_text)


def define_timing_flag(
    help_text: str = "decoder: study = D2 in faithful, prefill in aligned "
                     "mode"):
  """--timing of the single-position decoders (modes.MODE_SPECS)."""
  flags.DEFINE_enum("timing", "study", ["study", "first_token", "prefill"],
                    help_text)


def define_conditions_flag(default, help_text: str = "position conditions"):
  flags.DEFINE_list("conditions", list(default), help_text)


# ---------------------------------------------------------------------------
# Validation (delegates to icl_jax.studies)
# ---------------------------------------------------------------------------

def task_names():
  """--tasks (empty: the 8 core tasks), each checked against the registry."""
  from icl_jax import tasks as T
  from icl_jax.studies.study import parse_tasks

  return parse_tasks(F.tasks or list(T.CORE_TASKS))


def parse_task_flags():
  """Quiets logs; (tasks, modes) from --tasks and --mode."""
  from icl_jax.studies import study, modes

  study.quiet_logs()
  return study.parse_tasks(F.tasks), modes.parse_modes(F.mode)


def check_conditions(conditions, modes_):
  from icl_jax.studies import positions

  for c in conditions:
    for m in modes_:
      positions.check_condition(c, m)


# ---------------------------------------------------------------------------
# Openers
# ---------------------------------------------------------------------------

def parse_pairs_and_modes():
  """Quiets logs; (pairs, modes) from --pairs and --mode."""
  from icl_jax.studies import study, modes

  study.quiet_logs()
  return study.parse_pairs(F.pairs), modes.parse_modes(F.mode)


def parse_pair_flags():
  """Quiets logs; (modes, pairs, n) from the common flags."""
  from icl_jax.studies import study

  pairs, modes_ = parse_pairs_and_modes()
  return modes_, pairs, study.check_positive(F.n, "--n")


def open_pair_study(experiment: str, modes_, pairs, n, options: dict,
                    **kwargs):
  """`study.open_study` on the common flags.

  The configuration is pairs, n, `options`, on_mismatch and seed; kwargs
  (study_layers, key_extra, ...) go to `open_study`.
  """
  from icl_jax.studies import study

  config = dict(pairs=[list(p) for p in pairs], n=n, **options,
                on_mismatch=F.on_mismatch, seed=F.seed)
  return study.open_study(experiment=experiment, model=F.model,
                          out_dir=F.out_dir, config=config, layers=F.layers,
                          modes=modes_, dtype=F.dtype,
                          max_new_tokens=F.max_new_tokens, **kwargs)


def load_model(*experiments: str):
  """--model (and --dtype); an explicit --layers list is checked against the
  model's depth first, read from its config, so a bad layer fails before the
  seconds-long load ('study' grids are clamped to the model: checked after).

  experiments: run directories under --out_dir this process will write:
  their locks are taken before the load (held until the process exits), so
  a second process on one of them is refused at once, not after the load.
  """
  import icl_jax
  from icl_jax.analysis.results import check_path_part, hold_run_dir
  from icl_jax.studies import layers

  for e in experiments:
    check_path_part(e)
  if "layers" in F:
    layers.check_layers_early(F.layers, F.model)
  for e in experiments:
    hold_run_dir(F.out_dir, e)
  return load(F.model, F.dtype)


def forget_models() -> None:
  """Drops the models kept for reuse (REUSE_MODELS)."""
  _LOADED.clear()


def load(model: str, dtype=None):
  """`icl_jax.load`, or in a one-process suite (REUSE_MODELS) the model an
  earlier step loaded with the same --model and --dtype."""
  import icl_jax

  if not REUSE_MODELS:
    return icl_jax.load(model, dtype=dtype)
  key = (model, dtype)
  if key not in _LOADED:
    _LOADED.clear()  # one model at a time
    _LOADED[key] = icl_jax.load(model, dtype=dtype)
  return _LOADED[key]


def load_model_and_layers(experiment: str):
  """The --model and its --layers ('study' = runner's grid of experiment)."""
  from icl_jax.studies import layers

  lm = load_model(experiment)
  return lm, layers.parse_layers(F.layers, lm.n_layers, experiment)


def open_run(lm, experiment: str, config: dict, **kwargs):
  """`run.Study` on --model, --out_dir and --max_new_tokens."""
  from icl_jax.studies.run import Study

  return Study(lm, experiment=experiment, model=F.model, config=config,
               out_dir=F.out_dir, max_new_tokens=F.max_new_tokens, **kwargs)
