"""The generic sweep of `experiments/sweep.py`: any edit at any position set
and layer, on task pairs or user prompt files.

  check_options / resolve_sides / check_sides   flag validation (before any
                                                model is loaded)
  position_check     the faithful position names against the tokenizer
  make_jobs          one plan job per (mode, side pair)
  best_rows          the best layer of each (mode, pair, position set)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from icl_jax.studies import plans, positions, prompt_files, setups
from icl_jax.studies.accuracy import cell_seed
from icl_jax.studies.plans import SOURCE_EDITS
from icl_jax.studies.scoring import MixedScoring

ALL_TOKENS = "all_tokens"  # every prompt token (source-free edits)


def prompt_format(name: str):
  """--prompt_format: the tasks' prompt format of that name."""
  from icl_jax.tasks import ARROW_FORMAT, STUDY_FORMAT

  return ARROW_FORMAT if name == "arrow" else STUDY_FORMAT


def metric_of(edit: str) -> str:
  """transfer for edits with a source, preserve for source-free ones."""
  return "transfer" if edit in SOURCE_EDITS else "preserve"


def check_options(modes: Sequence[str], edit: str, timing: str,
                  position_sets: Sequence[str]) -> None:
  """Edit, timing and position set names (no model needed)."""
  if timing == "every_step" and edit not in ("add", "noise"):
    raise ValueError("--timing=every_step needs --edit=add or noise")
  if not position_sets:
    raise ValueError("--positions is empty")
  for p in position_sets:
    for m in modes:
      if p != ALL_TOKENS:
        positions.check_condition(p, m)
  if position_sets and ALL_TOKENS in position_sets and edit in SOURCE_EDITS:
    raise ValueError("position set 'all_tokens' is for source-free edits")


def resolve_sides(pairs, source: str | None, target: str | None, n: int,
                  fmt) -> list:
  """[(source side, target side)]; a side is (name, is_task, prompts).

  --source / --target (a task or a prompt file; --source optional) win over
  --pairs.
  """
  from icl_jax.studies.study import parse_pairs

  if target or source:
    if not target:
      raise ValueError("--source needs --target")
    tgt = prompt_files.resolve_side(target, n, fmt)
    src = (prompt_files.resolve_side(source, n, fmt) if source
           else (None, False, None))
    return [(src, tgt)]
  return [((s, True, None), (t, True, None)) for s, t in parse_pairs(pairs)]


def check_sides(sides, edit: str, fmt, modes: Sequence[str]) -> None:
  """A source where the edit needs one; faithful mode only with the study's
  prompt format."""
  for (s, _, _), _t in sides:
    if edit in SOURCE_EDITS and s is None:
      raise ValueError(f"--edit={edit} needs a source (--source or "
                       "--pairs)")
  if fmt.name != "study" and "faithful" in modes:
    raise ValueError("faithful mode's index formula assumes the study's "
                     "prompt format; use --mode=aligned with "
                     "--prompt_format=arrow")


def position_check(modes: Sequence[str], position_sets: Sequence[str],
                   k: int):
  """`check(lm)` for `study.open_study`: faithful position names against
  the tokenizer's own position table."""

  def check(lm):
    """Raises on a faithful position name the tokenizer cannot place."""
    from icl_jax.tasks import build_prompt, get_task

    if "faithful" in modes:
      example = build_prompt(get_task("uppercase").generate_demos(k),
                             "honey").text
      for p in position_sets:
        if p != ALL_TOKENS:
          positions.check_condition(p, "faithful", lm.tokenizer, example, k)

  return check


def side_setup(src_side, tgt_side, n: int, k: int, source_queries: str,
               seed: int, objs: dict):
  """The PairSetup of one (source, target) side pair (task objects shared
  through `objs`, as the study's RNG call order needs)."""
  from icl_jax.tasks import get_task, make_episodes

  (src, src_task, src_prompts), (tgt, tgt_task, tgt_prompts) = (src_side,
                                                                 tgt_side)
  if src_task and tgt_task and src is not None:
    return setups.setup_pairs([(src, tgt)], n, k_source=k, k=k,
                              queries=source_queries, seed=seed,
                              task_objects=objs)[0]
  if tgt_task:
    tgt_eps = make_episodes(objs.setdefault(tgt, get_task(tgt)), n, k=k)
  else:
    tgt_eps = tgt_prompts
  src_eps = None
  if src is not None:
    src_eps = (make_episodes(objs.setdefault(src, get_task(src)), n, k=k)
               if src_task else src_prompts)
  return setups.PairSetup(src, tgt, src_eps, tgt_eps)


def make_jobs(st, modes, sides, position_sets, n, edit, sigma, relative,
              scale, k, source_queries, on_mismatch, seed, fmt) -> list:
  """One plan job per (mode, side pair): every layer x position set."""
  jobs = []
  for mode in modes:
    objs = {}
    for src_side, tgt_side in sides:
      setup = side_setup(src_side, tgt_side, n, k, source_queries, seed,
                         objs)
      if fmt.name != "study":
        setup = prompt_files.reformat_setup(setup, fmt)
      scoring = MixedScoring(src_side[0], tgt_side[0], src_side[1],
                             tgt_side[1])
      jobs.append(sweep_job(mode, setup, scoring, st.layers, position_sets,
                            edit, sigma, relative, scale, on_mismatch, k,
                            seed))
  return jobs


def _source_plan(engine, mode, setup, targets, cache, layer, pos, edit,
                 scale, k, on_mismatch):
  """A replace/add plan with source values (the source capture and the
  position maps are cached in `cache` across the job's cells)."""
  if "source" not in cache:
    cache["source"] = plans.capture_sources(engine, setup.source_episodes)
  resid, lengths = cache["source"]
  maps = cache.setdefault("maps", {})
  if pos not in maps:
    maps[pos] = plans.position_map(engine, mode, setup.source_episodes,
                                   setup.target_episodes, pos, targets.slots,
                                   lengths, k, on_mismatch)
  p = plans.replace_plan(resid, layer, pos, maps[pos], edit=edit,
                         scale=scale)
  p.meta.update({"edit": edit})
  if engine.timing == "every_step" and len(p.tgt_idx):
    p.decode_values = np.asarray(p.values).mean(0)
  return p


def _free_plan(engine, mode, setup, targets, cache, layer, pos, edit, sigma,
               relative, k, seed):
  """A source-free plan: noise, zero, mean_ablate or skip (the position
  maps are cached in `cache` across the job's cells)."""
  maps = cache.setdefault("maps", {})
  if pos not in maps:
    if pos == ALL_TOKENS:
      maps[pos] = list(range(targets.slots))
    else:
      maps[pos] = positions.target_positions(
          engine.lm.tokenizer, mode, setup.target_episodes, pos,
          targets.slots, k)
  values = None
  if edit == "mean_ablate":
    r = targets.residual(layer + 1)  # [N,T,D]
    valid = np.arange(targets.slots)[None] < targets.lengths[:, None]
    values = r[valid].mean(0)
  return plans.Plan(layer, pos, maps[pos], edit=edit, values=values,
                    sigma=sigma if edit == "noise" else 0.0,
                    relative=relative, seed=cell_seed(seed, layer, pos),
                    meta={"edit": edit})


def sweep_job(mode, setup, scoring, layers, position_sets, edit, sigma,
              relative, scale, on_mismatch, k, seed) -> plans.Job:
  """The cells of one (mode, setup): every layer x position set."""
  cells = [{"layer": int(l), "condition": p} for p in position_sets
           for l in layers]

  def build(engine, targets, todo):
    """The plans of the pending cells."""
    cache = {}
    out = []
    for c in todo:
      layer, pos = c["layer"], c["condition"]
      if edit in SOURCE_EDITS:
        out.append(_source_plan(engine, mode, setup, targets, cache, layer,
                                pos, edit, scale, k, on_mismatch))
      else:
        out.append(_free_plan(engine, mode, setup, targets, cache, layer,
                              pos, edit, sigma, relative, k, seed))
    return out

  label = f"{setup.source_task or '-'} -> {setup.target_task} ({edit})"
  return plans.Job(mode, setup, scoring, cells, build, label)


def best_rows(rows, metric: str) -> list[dict]:
  """The row of the best layer by `metric` per (mode, source, target,
  condition) (the first one on ties), sorted by that key."""
  by = {}
  for r in rows:
    key = (r["mode"], r["source_task"], r["target_task"], r["condition"])
    if key not in by or r[metric] > by[key][metric]:
      by[key] = r
  return [r for _, r in sorted(by.items(), key=str)]


def format_best(rows, metric: str) -> str:
  """One line per `best_rows` row: best layer and its rates."""
  lines = []
  for r in best_rows(rows, metric):
    lines.append(
        f"{r['mode']:9} {r['source_task'] or '-'} -> {r['target_task']} "
        f"{r['condition']:14} best layer {r['layer']:>3}: transfer "
        f"{r['transfer']:.2f} preserve {r['preserve']:.2f} neither "
        f"{r['neither']:.2f} (n={r['n']})")
  return "\n".join(lines)
