"""Source -> target activation transfer sweeps (the study's core protocol).

One call evaluates a (source task, target task) pair over every requested
layer and position condition as one engine run:

  faithful: the study as it ran (protocol 8.8). N source prompts (source
    demos + source test inputs), positions from the line-based index formula
    (5.2; or `get_position_index` 5.1 / answer tokens 5.3), per-index mean of
    the source activations over the source prompts, written at the same
    *absolute* indices of the target prompts (indices past a target's length
    are skipped), D3 decoding (patched K/V persist) or D2 (`first_token`) for
    single positions; faithful scorers, source-first classification.
  aligned: positions from real token offsets; source token (demo k, role, j)
    goes to target token (demo k, role, j), never into the query; strict
    scorers ("both" reported separately).

Rows follow DESIGN.md's results format.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from icl_jax.interventions.engine import Engine
from icl_jax.interventions.spec import CellBatch, make_cells
from icl_jax import tasks as T

MODES = ("faithful", "aligned")
# Study condition names -> aligned layout set names.
ALIGNED_SETS = {
    "all_demo": "all_demo", "output_only": "output_only",
    "input_only": "input_only", "last_demo": "last_demo",
    "last_demo_token": "last_demo_answer_token",
    "separator_after_demo": "last_demo_separator",
    "first_query_token": "first_query_token",
    "answer_tokens": "answer_tokens",
}
SINGLE_POSITION = ("last_demo_token", "separator_after_demo",
                   "first_query_token")


@dataclasses.dataclass
class PairSetup:
  """Prompts of one (source, target) pair, built with the study's RNG order."""

  source_task: str
  target_task: str
  source_episodes: list
  target_episodes: list


def setup_pairs(pairs: Sequence[tuple[str, str]], n: int, k: int = 5,
                demo_mode: str = "fixed", seed: int = 0,
                source_queries: str = "source") -> list[PairSetup]:
  """Episodes for each pair, replaying the study's call order.

  One Task object per task for the whole run (as the scripts did); per pair
  the source task's RNG is called, then the target's. `source_queries`:
  "source" (exp8: the source task's own test inputs) or "target" (exp30/31:
  source prompts use the target's test inputs).
  """
  objs: dict[str, T.Task] = {}

  def task(name):
    if name not in objs:
      objs[name] = T.get_task(name)
    return objs[name]

  out = []
  for s, t in pairs:
    src_q = task(s).generate_test_inputs(n)
    tgt_q = task(t).generate_test_inputs(n)
    if source_queries == "target":
      src_q = tgt_q
    out.append(PairSetup(
        s, t,
        T.make_episodes(task(s), n, k=k, demo_mode=demo_mode, seed=seed,
                        queries=src_q),
        T.make_episodes(task(t), n, k=k, demo_mode=demo_mode, seed=seed + 1,
                        queries=tgt_q)))
  return out


def _faithful_indices(tok, prompt_text: str, condition: str, k: int):
  pos = T.faithful_positions(tok, prompt_text, n_demos=k)
  if condition not in pos:
    raise ValueError(f"unknown faithful condition {condition!r}; known: "
                     f"{sorted(pos)}")
  return pos[condition]


def build_cells(engine: Engine, setup: PairSetup, targets, layers,
                conditions, mode: str, on_mismatch: str = "skip",
                k: int = 5):
  """Replace-cells for every (condition, layer); returns (cells, meta)."""
  lm = engine.lm
  tok = lm.tokenizer
  src_prompts = [e.prompt().text for e in setup.source_episodes]
  resid, lengths = engine.capture(prompts=src_prompts)  # [L+1,B,T,D]
  Tt = targets.slots
  D = lm.config.d_model
  masks, values, layer_of, meta = [], [], [], []
  tgt_layout = src_layout = None
  if mode == "aligned":
    src_layout = T.token_layout(tok, setup.source_episodes[0].prompt())
    tgt_layout = T.token_layout(tok, setup.target_episodes[0].prompt())
  for cond in conditions:
    if mode == "faithful":
      # Per source prompt its own indices; mean per index over the prompts.
      idx_sets = [_faithful_indices(tok, p, cond, k) for p in src_prompts]
      all_idx = sorted(set().union(*map(set, idx_sets)))
      tgt_idx = [i for i in all_idx if i < Tt]
      src_idx = tgt_idx
    elif mode == "aligned":
      name = ALIGNED_SETS.get(cond, cond)
      s_i, t_i = T.map_positions(src_layout, tgt_layout, name, on_mismatch)
      src_idx, tgt_idx = s_i.tolist(), t_i.tolist()
    else:
      raise ValueError(f"unknown mode {mode!r}; known: {MODES}")
    for layer in layers:
      r = resid[layer + 1]  # [B,T,D]
      v = np.zeros((Tt, D), np.float32)
      m = np.zeros((Tt,), bool)
      for si, ti in zip(src_idx, tgt_idx):
        if mode == "faithful":
          have = [b for b in range(r.shape[0])
                  if si in idx_sets[b] and si < lengths[b]]
        else:
          have = list(range(r.shape[0]))
        if not have:
          continue
        v[ti] = r[have, si].mean(0)
        m[ti] = True
      masks.append(m)
      values.append(v)
      layer_of.append(layer)
      meta.append({"condition": cond, "layer": int(layer),
                   "n_positions": int(m.sum()),
                   "positions": [int(i) for i in np.nonzero(m)[0]]})
  cells = make_cells("replace", np.asarray(layer_of), np.stack(masks), D,
                     values=np.stack(values))
  return cells, meta


def score_rows(setup: PairSetup, texts_per_cell, scorer: str):
  """Per cell: counts of transfer/preserve/neither/both and examples."""
  out = []
  for texts in texts_per_cell:
    counts = {T.TRANSFER: 0, T.PRESERVE: 0, T.NEITHER: 0, T.BOTH: 0}
    examples = []
    for ep, text, src_ep in zip(setup.target_episodes, texts,
                                setup.source_episodes):
      label = T.classify(text, ep.query, setup.source_task,
                         setup.target_task, scorer=scorer)
      counts[label] += 1
      src_task = T.get_task(setup.source_task)
      try:
        exp_src = src_task.answer(ep.query)
      except Exception:  # the source rule may not apply to target inputs
        exp_src = None
      examples.append({"query": ep.query, "output": T.extract_d3(text),
                       "raw_output": text, "expected_source": exp_src,
                       "expected_target": ep.expected, "label": label})
    out.append((counts, examples))
  return out


def rates(counts: dict, n: int) -> dict:
  return {k: counts[k] / n for k in counts}


def run_pair(engine: Engine, setup: PairSetup, layers, conditions, mode: str,
             *, experiment: str, model: str, on_mismatch: str = "skip",
             k: int = 5, progress: bool = False) -> list[dict]:
  """Evaluates one pair; returns result rows (one per layer x condition)."""
  targets = engine.prepare(
      prompts=[e.prompt().text for e in setup.target_episodes])
  cells, meta = build_cells(engine, setup, targets, layers, conditions,
                            mode, on_mismatch, k)
  res = engine.run(targets, cells, progress=progress)
  primary = "faithful" if mode == "faithful" else "strict"
  n = targets.n
  scored = {s: score_rows(setup, res.texts, s) for s in ("faithful", "strict")}
  rows = []
  for i, m in enumerate(meta):
    counts, examples = scored[primary][i]
    other = "strict" if primary == "faithful" else "faithful"
    row = {
        "experiment": experiment, "model": model, "mode": mode,
        "source_task": setup.source_task, "target_task": setup.target_task,
        "layer": m["layer"], "condition": m["condition"], "n": n,
        "transfer": counts[T.TRANSFER] / n,
        "preserve": counts[T.PRESERVE] / n,
        "neither": counts[T.NEITHER] / n, "both": counts[T.BOTH] / n,
        "scorer": primary, "timing": engine.timing,
        f"{other}_scorer": rates(scored[other][i][0], n),
        "n_positions": m["n_positions"], "positions": m["positions"],
        "max_residual_change": float(res.delta[i]),
        "changed": bool(res.changed[i]),
        "examples": examples,
    }
    rows.append(row)
  return rows
