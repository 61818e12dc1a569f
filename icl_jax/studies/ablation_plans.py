"""The plans of the single-task ablation experiments (`ablation`'s
`plan(mode, task_prompts)` callables): exp10 demo zeroing and attention
knockout, exp11 noise tracing, exp12 layer skipping; and exp11's noise
unit prompts.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from icl_jax.interventions.spec import make_cells
from icl_jax.studies import ablation
from icl_jax.studies.accuracy import prompt_seed, stable_seed

NOISE_POSITIONS = ("last_demo_token", "first_query_token",
                   "separator_after_demo")
NOISE_UNITS = ("unit", "act_std", "rms")
ZEROING_CONDITIONS = ("zero_demo", "knockout_demo", "zero_bos")


def act_std_prompts(n: int) -> list[str]:
  """n prompts of the core tasks, interleaved (task i % 8, its prompt
  i // 8): the sample sigma_act is estimated on."""
  from icl_jax import tasks as T

  core = [T.make_episodes(T.get_task(t), -(-n // 8)) for t in T.CORE_TASKS]
  return [core[i % 8][i // 8].prompt().text for i in range(n)]


def noise_plan(tok, *, layers, positions: Sequence[str], noise: dict,
               primary_scale, sigma_act, seed: int, per_prompt: bool,
               d_model: int):
  """exp11's plan: Gaussian noise at each position x layer x scale.

  noise: {mode: (unit, scales)}; unit "act_std" multiplies the scale by
  sigma_act of the layer, "rms" makes it relative to the residual's RMS.
  per_prompt: every prompt its own index and noise draw (seeded from
  `seed`, the task, position, layer and scale); else one draw per cell.
  """

  def plan(mode, tp):
    """One EngineGroup: every position x layer x scale of the mode."""
    kind, scales = noise[mode]
    primary = primary_scale if primary_scale is not None else max(scales)
    meta, specs = [], []
    for pos_name in positions:
      # Per prompt its own index (as the study's get_position_index); one
      # draw per cell needs one index shared by every prompt.
      pos = (ablation.single_positions(tok, tp, pos_name, mode)
             if per_prompt else
             [ablation.single_position(tok, tp, pos_name, mode)] *
             len(tp.episodes))
      for l in layers:
        for s in scales:
          sigma = s * sigma_act[l] if kind == "act_std" else s
          meta.append({"condition": pos_name, "layer": l, "noise": kind,
                       "scale": s, "sigma": float(sigma),
                       "primary": s == primary, "n_positions": 1,
                       "positions": sorted({int(p) for p in pos}),
                       "sigma_act": None if sigma_act is None
                       else sigma_act[l]})
          specs.append((pos, l, sigma, stable_seed(
              seed, tp.task, pos_name, l, s)))

    # Per prompt (per_prompt) or one shared: masks [C,N,T], seeds [C,N];
    # prompt i of cell c draws from prompt_seed(cell seed, i).
    N = len(tp.episodes)
    masks = np.zeros((len(specs), N, tp.slots), bool)
    for c, (pos, _, _, _) in enumerate(specs):
      masks[c, np.arange(N), pos] = True
    seeds = [[prompt_seed(sp[3], i) for i in range(N)] for sp in specs]
    if not per_prompt:
      masks, seeds = masks[:, 0], [row[0] for row in seeds]
    return [ablation.EngineGroup(make_cells(
        "noise", [sp[1] for sp in specs], masks, d_model,
        sigma=[sp[2] for sp in specs], relative=kind == "rms", seed=seeds),
        meta)]

  return plan


def zeroing_plan(tok, *, layers, conditions: Sequence[str], d_model: int,
                 n_layers: int, knockout_window: int,
                 knockout_generated: bool):
  """exp10's plan: zero the demo region (or BOS) after block L, and/or a
  true attention knockout of the demo positions at blocks [L, L + window).
  """
  from icl_jax.interventions.blockwise import BlockwiseEdit

  def plan(mode, tp):
    """Zeroing cells and knockout edits of one (mode, task)."""
    region, split = ablation.demo_region(tok, tp, mode)
    sets = {"zero_demo": region, "zero_bos": ablation.bos_positions(tok, tp)}
    groups = []
    for cond in ("zero_demo", "zero_bos"):
      if cond not in conditions or not sets[cond]:
        continue
      masks = np.zeros((len(layers), tp.slots), bool)
      masks[:, sets[cond]] = True
      meta = [{"condition": cond, "layer": l, "n_positions": len(sets[cond]),
               "positions": sets[cond]} for l in layers]
      groups.append(ablation.EngineGroup(
          make_cells("zero", layers, masks, d_model), meta))
    if "knockout_demo" in conditions:
      keys = np.zeros(split, bool)
      keys[region] = True
      hi = {l: min(l + knockout_window, n_layers) for l in layers}
      groups.append(ablation.BlockwiseGroup(
          split, [BlockwiseEdit(l, hi[l], keys) for l in layers],
          [{"condition": "knockout_demo", "layer": l,
            "knocked_blocks": list(range(l, hi[l])),
            "n_positions": len(region), "positions": region,
            "query_from": split} for l in layers],
          knock_generated=knockout_generated))
    return groups

  return plan


def skip_plan(*, layers, tasks: Sequence[str], group_tasks: Sequence[str],
              groups: dict, n_layers: int, d_model: int):
  """exp12's plan: skip one block L (vectorized engine) for `tasks`, a group
  of blocks (`interventions.blockwise`) for `group_tasks`. faithful: the
  prompt forward only; aligned: the whole generation."""
  from icl_jax.interventions.blockwise import BlockwiseEdit
  from icl_jax.interventions.engine import common_prefix_len

  def plan(mode, tp):
    """One-block skips and group skips of one (mode, task)."""
    whole_generation = mode == "aligned"
    out = []
    if tp.task in tasks:
      out.append(ablation.EngineGroup(
          make_cells("skip", layers, np.ones((len(layers), tp.slots), bool),
                     d_model),
          [{"condition": "skip", "layer": l, "blocks": [l]} for l in layers],
          timing="every_step" if whole_generation else "prefill"))
    if tp.task in group_tasks and groups:
      split = common_prefix_len(tp.token_ids)
      out.append(ablation.BlockwiseGroup(
          split, [BlockwiseEdit(skip=np.isin(np.arange(n_layers), b))
                  for b in groups.values()],
          [{"condition": f"skip_group:{name}", "layer": b[0], "blocks": b}
           for name, b in groups.items()], skip_decode=whole_generation))
    return out

  return plan
