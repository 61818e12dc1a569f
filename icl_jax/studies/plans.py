"""Generic intervention plans: any edit, any positions, any scoring.

`transfer.run_pair` is one fixed recipe (replace source activations at named
conditions). The experiment scripts and `experiments/sweep.py` need more
(controls, random position subsets, fewer source demos, source-free edits,
user prompt files), so they build the same engine cells from *plans*:

  Setup    a source/target pair of prompt lists (task episodes built with the
           study's RNG call order, or prompt-file prompts) plus its scoring;
  PosMap   source token index -> target slot index, with the source prompts
           that contribute to each position (faithful: the study's absolute
           indices, per-index mean over the source prompts that have the
           index; aligned: (demo, role, token index) matching, never into the
           query);
  Plan     one cell: layer, condition name, edit, target slots, values;
  Job      the plans of one (mode, setup), described cheaply first (layer,
           condition, extra key fields) so a resumed run skips finished cells
           before any compute;
  run_jobs prepares each job's target prompts once, runs its pending plans as
           one engine sweep and appends DESIGN.md rows to the run directory.

Rows have the fields of `transfer.run_pair` rows plus `n_layers`,
`transfer_independent` / `preserve_independent` (source-correct and
target-correct counted separately, as exp23 does) and the plan's extra
fields.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import numpy as np

from icl_jax import tasks as T
from icl_jax.interventions.spec import EDITS, CellBatch, make_cells
from icl_jax.studies.positions import (PlanError, PosMap, aligned_map,
                                      faithful_map)
from icl_jax.studies.scoring import (TaskScoring, classify,
                                    malformed_rate, rates, score_texts)
from icl_jax.studies.setups import PairSetup

SOURCE_EDITS = ("replace", "add")  # edits whose values come from a source


# ---------------------------------------------------------------------------
# Plans -> cells
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class Plan:
  """One engine cell and the row fields it reports."""

  layer: int  # block whose output is edited (-1: embeddings)
  condition: str
  tgt_idx: Sequence[int]
  edit: str = "replace"
  values: np.ndarray | None = None  # [len(tgt_idx), D] or [D]
  sigma: float = 0.0
  relative: bool = False
  seed: int = 0
  decode_values: np.ndarray | None = None  # [D] (every_step timing)
  meta: dict = dataclasses.field(default_factory=dict)  # extra row fields


def plans_to_cells(plans: Sequence[Plan], n_slots: int,
                   d_model: int) -> CellBatch:
  batches = []
  for p in plans:
    if p.edit not in EDITS:
      raise PlanError(f"unknown edit {p.edit!r}; known: {EDITS}")
    mask = np.zeros((1, n_slots), bool)
    idx = np.asarray(list(p.tgt_idx), np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n_slots):
      raise PlanError(f"plan {p.condition!r}: target slot out of range")
    mask[0, idx] = True
    vals = None
    if p.values is not None:
      v = np.asarray(p.values, np.float32)
      if v.ndim == 1:
        vals = np.broadcast_to(v, (1, n_slots, d_model))
      else:
        full = np.zeros((1, n_slots, d_model), np.float32)
        full[0, idx] = v
        vals = full
    elif p.edit in ("replace", "add", "mean_ablate"):
      raise PlanError(f"plan {p.condition!r}: edit {p.edit!r} needs values")
    batches.append(make_cells(
        p.edit, [p.layer], mask, d_model, values=vals, sigma=p.sigma,
        relative=p.relative, seed=p.seed,
        decode_values=(None if p.decode_values is None
                       else np.asarray(p.decode_values)[None])))
  return CellBatch.concat(batches)


def posmap_values(resid_layer: np.ndarray, pm: PosMap) -> np.ndarray:
  """[len(pm), D]: per target slot, the mean over its source prompts."""
  D = resid_layer.shape[-1]
  out = np.zeros((len(pm), D), np.float32)
  for j, (s, h) in enumerate(zip(pm.src_idx, pm.have)):
    out[j] = resid_layer[h, s].mean(0)
  return out


def replace_plan(resid, layer: int, condition: str, pm: PosMap,
                 edit: str = "replace", scale: float = 1.0, **meta) -> Plan:
  """A plan writing (or adding) source activations at pm's target slots."""
  vals = posmap_values(resid[layer + 1], pm) * scale
  return Plan(layer, condition, list(pm.tgt_idx), edit=edit, values=vals,
              meta=meta)


# ---------------------------------------------------------------------------
# Evaluation -> rows
# ---------------------------------------------------------------------------

def cell_row(setup: PairSetup, scoring, texts, *, mode: str, experiment: str,
             model: str, n_layers: int, layer, condition: str, timing: str,
             positions: Sequence[int], delta: float = 0.0,
             meta: dict | None = None) -> dict:
  """One DESIGN.md row from a cell's generated texts."""
  js, examples = score_texts(setup, scoring, texts)
  primary = "faithful" if mode == "faithful" else "strict"
  other = "strict" if primary == "faithful" else "faithful"
  r = rates(js, primary)
  n = len(js)
  src_ok = [j.src_faithful if primary == "faithful" else j.src_strict
            for j in js]
  tgt_ok = [j.tgt_faithful if primary == "faithful" else j.tgt_strict
            for j in js]
  for j, ex, s, t in zip(js, examples, src_ok, tgt_ok):
    ex["label"] = classify(j, primary)
    ex["source_correct"] = bool(s)
    ex["target_correct"] = bool(t)
  row = {
      "experiment": experiment, "model": model, "mode": mode,
      "source_task": setup.source_task, "target_task": setup.target_task,
      "layer": layer, "condition": condition, "n": n,
      "transfer": r[T.TRANSFER], "preserve": r[T.PRESERVE],
      "neither": r[T.NEITHER], "both": r[T.BOTH],
      "malformed": malformed_rate(setup, examples), "scorer": primary,
      "timing": timing, f"{other}_scorer": rates(js, other),
      "transfer_independent": sum(src_ok) / n,
      "preserve_independent": sum(tgt_ok) / n,
      "n_positions": len(positions), "positions": [int(i) for i in positions],
      "max_residual_change": float(delta), "changed": bool(delta > 0),
      "n_layers": n_layers,
      "examples": examples,
  }
  if meta:
    row.update(meta)
  return row


def evaluate(engine, targets, setup: PairSetup, scoring, plans: Sequence[Plan],
             *, mode: str, experiment: str, model: str,
             progress: bool = False) -> list[dict]:
  """Runs plans on a prepared target set; one row per plan."""
  cells = plans_to_cells(plans, targets.slots, engine.cfg.d_model)
  res = engine.run(targets, cells, progress=progress)
  rows = []
  for i, p in enumerate(plans):
    meta = dict(p.meta)
    layer = meta.pop("layer", p.layer)
    rows.append(cell_row(
        setup, scoring, res.texts[i], mode=mode, experiment=experiment,
        model=model, n_layers=engine.cfg.n_layers, layer=layer,
        condition=p.condition, timing=engine.timing,
        positions=list(p.tgt_idx), delta=float(res.delta[i]), meta=meta))
    rows[-1]["stop"] = engine.stop
  return rows


def baseline_plan(condition: str = "baseline", **meta) -> Plan:
  """A no-op cell (empty mask): the clean continuation, row layer None."""
  meta = {"layer": None, **meta}
  return Plan(0, condition, [], edit="zero", meta=meta)


# ---------------------------------------------------------------------------
# Jobs: resumable runs
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class Job:
  """The cells of one (mode, setup) and how to build their plans.

  `cells`: cheap descriptions, each a dict with "layer" and "condition" and
  any key_extra fields; `build(engine, targets, todo_cells) -> [Plan]` must
  return one plan per todo cell, in order.
  """

  mode: str
  setup: PairSetup
  scoring: object
  cells: list[dict]
  build: Callable
  label: str = ""


def cell_key(model: str, job: Job, cell: dict, key_extra=()) -> tuple:
  return (model, job.mode, job.setup.source_task, job.setup.target_task,
          cell.get("layer"), cell["condition"],
          *(cell.get(e) for e in key_extra))


def run_jobs(engine, rd, jobs: Sequence[Job], *, experiment: str, model: str,
             key_extra=(), progress: bool = True,
             row_hook: Callable[[dict], dict] | None = None,
             log: Callable[[str], None] = print) -> list[dict]:
  """Runs every pending cell of every job; appends rows as jobs finish.

  `row_hook(row) -> row` post-processes each new row before it is written
  (e.g. confidence intervals). Returns every row of this model in the run
  directory (old and new).
  """
  from icl_jax.analysis.results import row_key

  done = {k for k in rd.done()}
  pending = []
  for job in jobs:
    todo = [c for c in job.cells
            if cell_key(model, job, c, key_extra) not in done]
    if todo:
      pending.append((job, todo))
  bar = None
  if progress and pending:
    from tqdm import tqdm

    bar = tqdm(total=sum(len(t) for _, t in pending), desc=experiment,
               unit="cell", position=0)
  t0 = time.time()
  for job, todo in pending:
    label = job.label or (f"{job.setup.source_task} -> "
                          f"{job.setup.target_task}")
    msg = (f"[{job.mode}] {label}: {len(todo)} cells x "
           f"{len(job.setup.target_episodes)} prompts")
    if bar is not None:
      bar.write(msg)
    else:
      log(msg)
    targets = engine.prepare(
        prompts=[e.prompt().text for e in job.setup.target_episodes])
    plans = job.build(engine, targets, todo)
    if len(plans) != len(todo):
      raise RuntimeError(f"{label}: {len(plans)} plans for {len(todo)} cells")
    rows = evaluate(engine, targets, job.setup, job.scoring, plans,
                    mode=job.mode, experiment=experiment, model=model)
    for c, r in zip(todo, rows):
      for e in key_extra:
        r.setdefault(e, c.get(e))
    if row_hook is not None:
      rows = [row_hook(r) for r in rows]
    rd.append([r for r in rows if row_key(r, key_extra) not in done])
    done |= {row_key(r, key_extra) for r in rows}
    if bar is not None:
      bar.update(len(todo))
  if bar is not None:
    bar.close()
  return [r for r in rd.rows() if r.get("model") == model]


# ---------------------------------------------------------------------------
# Source capture and the standard transfer job
# ---------------------------------------------------------------------------

def capture_sources(engine, episodes):
  """Residuals [L+1,B,T,D] (absolute positions) and lengths of prompts."""
  return engine.capture(prompts=[e.prompt().text for e in episodes])


def position_map(engine, mode: str, source_eps, target_eps, condition: str,
                 n_slots: int, source_lengths, k: int = 5,
                 on_mismatch: str = "truncate") -> PosMap:
  tok = engine.lm.tokenizer
  if mode == "faithful":
    return faithful_map(tok, [e.prompt().text for e in source_eps], condition,
                        n_slots, source_lengths, k)
  return aligned_map(tok, source_eps, target_eps, condition, on_mismatch)


def transfer_job(mode: str, setup: PairSetup, layers: Sequence[int],
                 conditions: Sequence[str], *, k: int = 5,
                 on_mismatch: str = "truncate", scoring=None, edit="replace",
                 scale: float = 1.0, extra: dict | None = None,
                 label: str = "", condition_names: dict | None = None) -> Job:
  """Source activations written at each (condition, layer).

  `condition_names` renames conditions in the rows (the plan still uses the
  position set named by the key); `extra` adds fields to every cell (and
  therefore to the row keys when they are in key_extra).
  """
  extra = dict(extra or {})
  names = dict(condition_names or {})
  cells = [{"layer": int(l), "condition": names.get(c, c), "_set": c,
            **extra} for c in conditions for l in layers]
  scoring = scoring or TaskScoring(setup.source_task, setup.target_task)

  def build(engine, targets, todo):
    resid, lengths = capture_sources(engine, setup.source_episodes)
    maps = {}
    plans = []
    for c in todo:
      s = c["_set"]
      if s not in maps:
        maps[s] = position_map(engine, mode, setup.source_episodes,
                               setup.target_episodes, s, targets.slots,
                               lengths, k, on_mismatch)
      meta = {e: c[e] for e in extra}
      plans.append(replace_plan(resid, c["layer"], c["condition"], maps[s],
                                edit=edit, scale=scale, **meta))
    return plans

  return Job(mode, setup, scoring, cells, build, label)


def baseline_job(mode: str, setup: PairSetup, scoring=None,
                 label: str = "") -> Job:
  """The clean accuracy of the target prompts (one no-op cell)."""
  scoring = scoring or TaskScoring(None, setup.target_task)
  cells = [{"layer": None, "condition": "baseline"}]

  def build(engine, targets, todo):
    return [baseline_plan() for _ in todo]

  return Job(mode, setup, scoring, cells, build,
             label or f"baseline {setup.target_task}")


def run_baselines(engine, rd, setups: Sequence[PairSetup], modes, *,
                  experiment: str, model: str,
                  log: Callable[[str], None] = print) -> list[dict]:
  """Clean accuracy of several target sets in one batched generation.

  The no-op cell of `baseline_job` gives the same greedy continuations, but
  each target set is its own engine program; `lm.generate` batches every
  prompt of every set into one call (one compile). Rows: condition
  "baseline", layer None, source None, transfer 0, preserve = accuracy
  (faithful scorer in faithful mode, strict in aligned mode).
  """
  from icl_jax.analysis.results import row_key

  done = rd.done()
  todo = [(m, s) for m in modes for s in setups
          if (model, m, None, s.target_task, None, "baseline") not in done]
  if not todo:
    return []
  uniq = []
  for _, s in todo:
    if all(s is not u for u in uniq):
      uniq.append(s)
  prompts = [e.prompt().text for s in uniq for e in s.target_episodes]
  log(f"baselines: {len(uniq)} tasks x {len(uniq[0].target_episodes)} "
      "prompts (one batched generation)")
  texts = engine.lm.generate(prompts, max_new_tokens=engine.max_new_tokens)
  by_setup, i = {}, 0
  for s in uniq:
    by_setup[id(s)] = texts[i:i + len(s.target_episodes)]
    i += len(s.target_episodes)
  rows = [cell_row(s, TaskScoring(None, s.target_task), by_setup[id(s)],
                   mode=m, experiment=experiment, model=model,
                   n_layers=engine.cfg.n_layers, layer=None,
                   condition="baseline", timing="clean", positions=[])
          for m, s in todo]
  rd.append([r for r in rows if row_key(r) not in done])
  return rows


def seeded_rng(*parts: int) -> np.random.RandomState:
  """A RandomState determined by integers (resume-safe per cell/pair)."""
  return np.random.RandomState([int(p) % (2 ** 32) for p in parts])
