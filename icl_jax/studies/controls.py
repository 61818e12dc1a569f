"""exp27's control interventions as plans (protocol 8.19, reference 9.5).

For one (source, target) pair at one layer, four cells on the same target
prompts, all judged with the *true* source task's scorer:

  true_source    the source's activations at the condition's positions (as
                 exp8);
  random_source  activations of a third task's prompts (pattern_completion in
                 the original) at *its own* positions (faithful: its absolute
                 line-based indices -- 56 on Llama, reaching into the
                 target's query; aligned: its demo tokens mapped onto the
                 target's by (demo, role, index), groups of different length
                 skipped);
  shuffled       the true source's vectors permuted among the true source's
                 positions;
  noise          per position a Gaussian direction rescaled to the L2 norm of
                 the true source vector there.

Randomness is seeded per pair (permutation) and per (pair, layer) (noise)
from `seed`, so a resumed run draws the same values; the original consumed
one global stream (`random.shuffle`, `torch.randn_like`), which cannot be
replayed bit for bit.
"""

from __future__ import annotations

import numpy as np

from icl_jax.studies import plans, positions
from icl_jax.studies.scoring import TaskScoring

CONTROLS = ("true_source", "random_source", "shuffled", "noise")


def shuffled_values(values: np.ndarray, rng: np.random.RandomState):
  """values[perm]: each position gets another position's source vector."""
  perm = rng.permutation(len(values))
  return values[perm], perm


def norm_matched_noise(values: np.ndarray, rng: np.random.RandomState):
  """Gaussian directions with the per-position L2 norms of `values`."""
  g = rng.standard_normal(values.shape).astype(np.float32)
  g /= np.linalg.norm(g, axis=-1, keepdims=True) + 1e-12
  return g * np.linalg.norm(values, axis=-1, keepdims=True)


def controls_job(mode: str, setup, third_episodes, third_task: str,
                 layers, *, condition: str = "all_demo", seed: int = 0,
                 pair_index: int = 0, on_mismatch: str = "truncate",
                 controls=CONTROLS) -> plans.Job:
  """A job with len(controls) x len(layers) cells for one pair."""
  unknown = [c for c in controls if c not in CONTROLS]
  if unknown:
    raise positions.PlanError(f"unknown controls {unknown}; known: {CONTROLS}")
  cells = [{"layer": int(l), "condition": c} for c in controls
           for l in layers]
  scoring = TaskScoring(setup.source_task, setup.target_task)

  def build(engine, targets, todo):
    tok = engine.lm.tokenizer
    resid, lengths = plans.capture_sources(engine, setup.source_episodes)
    pm = plans.position_map(engine, mode, setup.source_episodes,
                            setup.target_episodes, condition, targets.slots,
                            lengths, on_mismatch=on_mismatch)
    third = None
    out = []
    for c in todo:
      layer, name = c["layer"], c["condition"]
      vals = plans.posmap_values(resid[layer + 1], pm)
      meta = {"control": name, "condition_positions": condition}
      if name == "true_source":
        out.append(plans.Plan(layer, name, pm.tgt_idx, values=vals,
                              meta=meta))
      elif name == "shuffled":
        rng = plans.seeded_rng(seed, pair_index, 27)
        v, perm = shuffled_values(vals, rng)
        out.append(plans.Plan(layer, name, pm.tgt_idx, values=v,
                              meta={**meta, "permutation": perm.tolist()}))
      elif name == "noise":
        rng = plans.seeded_rng(seed, pair_index, 2700 + layer)
        out.append(plans.Plan(layer, name, pm.tgt_idx,
                              values=norm_matched_noise(vals, rng),
                              meta=meta))
      else:  # random_source
        if third is None:
          t_resid, t_len = plans.capture_sources(engine, third_episodes)
          if mode == "faithful":
            t_pm = positions.faithful_map(
                tok, [e.prompt().text for e in third_episodes], condition,
                targets.slots, t_len)
          else:
            t_pm = positions.aligned_map(tok, third_episodes,
                                     setup.target_episodes, condition,
                                     on_mismatch)
          third = (t_resid, t_pm)
        t_resid, t_pm = third
        out.append(plans.Plan(
            layer, name, t_pm.tgt_idx,
            values=plans.posmap_values(t_resid[layer + 1], t_pm),
            meta={**meta, "random_source_task": third_task}))
    return out

  return plans.Job(mode, setup, scoring, cells, build,
                   f"{setup.source_task} -> {setup.target_task} (controls)")


def check_controls(controls) -> None:
  """--controls: known control names only."""
  bad = [c for c in controls if c not in CONTROLS]
  if bad:
    raise ValueError(f"--controls: unknown {bad}; known: {list(CONTROLS)}")


def third_task_for(pair, preferred: str) -> str:
  """The random-source task of a pair: `preferred`, or the first core task
  outside the pair when the pair contains it."""
  from icl_jax.tasks import CORE_TASKS

  if preferred not in pair:
    return preferred
  return next(t for t in CORE_TASKS if t not in pair)


def build_jobs(modes, pairs, n, layers, controls, third, condition, seed,
               on_mismatch) -> list[plans.Job]:
  """One controls job per (mode, pair); the third task's prompts come from
  its own Task object (its own RNG stream) per mode."""
  from icl_jax.studies import setups
  from icl_jax.tasks import get_task, make_episodes

  jobs = []
  for mode in modes:
    objs = {}
    for i, setup in enumerate(setups.setup_pairs(pairs, n, seed=seed,
                                                 task_objects=objs)):
      third_task = third_task_for((setup.source_task, setup.target_task),
                                  third)
      key = "__third__" + third_task  # its own Task object and RNG stream
      objs.setdefault(key, get_task(third_task))
      third_eps = make_episodes(objs[key], n)
      jobs.append(controls_job(mode, setup, third_eps, third_task, layers,
                               condition=condition, seed=seed, pair_index=i,
                               on_mismatch=on_mismatch, controls=controls))
  return jobs


def summarize(rows) -> list[dict]:
  """Mean transfer, preserve and neither over the pairs per (mode, layer,
  control)."""
  from collections import defaultdict

  g = defaultdict(list)
  for r in rows:
    g[(r["mode"], r["layer"], r["condition"])].append(r)
  return [{"mode": m, "layer": l, "control": c, "pairs": len(rs),
           "mean_transfer": sum(r["transfer"] for r in rs) / len(rs),
           "mean_preserve": sum(r["preserve"] for r in rs) / len(rs),
           "mean_neither": sum(r["neither"] for r in rs) / len(rs)}
          for (m, l, c), rs in sorted(g.items())]


def format_means(summary, layers, n_layers: int) -> str:
  """The means of the shown layers (all when <= 3 ran, else the study's
  layer), one line each."""
  from icl_jax.studies.layers import study_fraction_layer

  lines = []
  for s in summary:
    if len(layers) <= 3 or s["layer"] in study_fraction_layer(n_layers):
      lines.append(f"{s['mode']:9} L{s['layer']:<3} {s['control']:14} "
                   f"transfer {s['mean_transfer']:.3f} preserve "
                   f"{s['mean_preserve']:.3f} neither "
                   f"{s['mean_neither']:.3f}")
  return "\n".join(lines)
