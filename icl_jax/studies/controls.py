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
