"""Intervention plans: any edit, any positions, any scoring -- the one cell
builder, row builder and run loop of "edit the targets at a position set and
score their generations".

  Setup    a source/target pair of prompt lists (task episodes built with the
           study's RNG call order, or prompt-file prompts) plus its scoring;
  PosMap   source token index -> target slot index, with the source prompts
           that contribute to each position (faithful: the study's absolute
           indices, per-index mean over the source prompts that have the
           index; aligned: (demo, role, token index) matching, never into the
           query);
  Plan     one cell: layer, condition name, edit, target slots, values;
           `plans_to_cells` turns plans into engine cells;
  cell_row one DESIGN.md row from a cell's generations;
  Job      the plans of one (mode, setup), described cheaply first (layer,
           condition, extra key fields) so a resumed run skips finished cells
           before any compute;
  run_jobs prepares each job's target prompts once, runs its pending plans as
           one engine sweep and appends DESIGN.md rows to the run directory.

Rows come in two styles (fields beyond DESIGN.md's; the numbers are the same):
  "plan"      `transfer_independent` / `preserve_independent` (source-correct
              and target-correct counted separately, as exp23 does), `n_layers`
              and per-example `source_correct` / `target_correct`;
  "transfer"  the rows of the exp3/4/5/8/9/13/14B/15 studies and the main job:
              the other scorer's rates include its `malformed` share, rows
              classified target-first say so (`classification`), positions
              sorted, and `source_positions` where the plan gives them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from icl_jax import tasks as T
from icl_jax.interventions.spec import EDITS, CellBatch, make_cells
from icl_jax.studies.modes import MODES, SINGLE_POSITION
from icl_jax.studies.positions import (PlanError, PosMap, aligned_map,
                                      faithful_indices, faithful_map,
                                      position_sets, shared_target_indices)
from icl_jax.studies.scoring import (TaskScoring, classify,
                                    malformed_rate, rates, score_texts)
from icl_jax.studies.setups import PairSetup

SOURCE_EDITS = ("replace", "add")  # edits whose values come from a source
ROW_STYLES = ("plan", "transfer")


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
  """The engine cells of `plans` (the one cell builder of the studies)."""
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
# Single positions at each prompt's own index (protocol 8.3/8.9)
# ---------------------------------------------------------------------------

def single_position_vectors(resid, lengths, src_sets, layers):
  """Mean source activation at each prompt's own single position.

  Args:
    resid: [L+1,B,T,D] source residuals (`Engine.capture`).
    lengths: [B] source prompt lengths.
    src_sets: per source prompt its index list (same length for all).
    layers: block indices.
  Returns [len(layers), J, D] (J = indices per prompt).
  """
  J = len(src_sets[0])
  if any(len(s) != J for s in src_sets):
    raise ValueError(f"source prompts have different position counts: "
                     f"{[len(s) for s in src_sets]}")
  out = np.zeros((len(layers), J, resid.shape[-1]), np.float32)
  for li, layer in enumerate(layers):
    r = resid[layer + 1]
    for j in range(J):
      rows = [r[b, s[j]] for b, s in enumerate(src_sets) if s[j] < lengths[b]]
      out[li, j] = np.mean(rows, axis=0)
  return out


@dataclasses.dataclass
class OwnIndexMap:
  """A single-position set at each prompt's own index: source prompt b's
  index list `src_sets[b]`; `pairs` (j, target slot): the source vector of
  list entry j goes to that slot (last -> last when the source and target
  lists have different lengths)."""

  src_sets: list[list[int]]
  pairs: list[tuple[int, int]]

  @property
  def source_positions(self) -> list[int]:
    return sorted({int(s[j]) for s in self.src_sets for j, _ in self.pairs})


def own_index_map(tok, setup: PairSetup, condition: str, mode: str,
                  k: int = 5) -> OwnIndexMap:
  """Each source prompt's own index -> the targets' own (shared) index."""
  src_sets = position_sets(tok, setup.source_episodes, condition, mode, k)
  tgt = shared_target_indices(tok, setup.target_episodes, condition, mode, k)
  src = src_sets[0]
  if not src or not tgt:
    pairs = []
  elif len(src) == len(tgt):
    pairs = list(zip(range(len(src)), tgt))
  else:
    pairs = [(len(src) - 1, tgt[-1])]
  return OwnIndexMap(src_sets, pairs)


def own_index_plan(resid, lengths, layer: int, condition: str,
                   om: OwnIndexMap, n_slots: int, edit: str = "replace",
                   scale: float = 1.0, **meta) -> Plan:
  """The mean source vector at the sources' own index, written at the
  targets' index (target slots past `n_slots` are skipped)."""
  vecs = single_position_vectors(resid, lengths, om.src_sets, [layer])[0]
  keep = [(j, t) for j, t in om.pairs if t < n_slots]
  vals = vecs[[j for j, _ in keep]] * scale  # [len(keep), D]
  return Plan(layer, condition, [t for _, t in keep], edit=edit, values=vals,
              meta=meta)


# ---------------------------------------------------------------------------
# Evaluation -> rows
# ---------------------------------------------------------------------------

def cell_row(setup: PairSetup, scoring, texts, *, mode: str, experiment: str,
             model: str, n_layers: int, layer, condition: str, timing: str,
             positions: Sequence[int], delta: float = 0.0,
             meta: dict | None = None, stop: str | None = None,
             style: str = "plan", order: str = "source_first") -> dict:
  """One DESIGN.md row from a cell's generated texts (the one row builder).

  `style`: "plan" or "transfer" (module docstring); `order`: the
  classification order (`scoring.classify`); `stop`: the engine's stop rule
  (None: not recorded, e.g. clean baselines); `meta`: extra row fields.
  """
  if style not in ROW_STYLES:
    raise ValueError(f"unknown row style {style!r}; known: {ROW_STYLES}")
  js, examples = score_texts(setup, scoring, texts)
  primary = "faithful" if mode == "faithful" else "strict"
  other = "strict" if primary == "faithful" else "faithful"
  n = len(js)
  for j, ex in zip(js, examples):
    ex["label"] = classify(j, primary, order)
  r = rates(js, primary, order)
  row = {
      "experiment": experiment, "model": model, "mode": mode,
      "source_task": setup.source_task, "target_task": setup.target_task,
      "layer": layer, "condition": condition, "n": n,
      "transfer": r[T.TRANSFER], "preserve": r[T.PRESERVE],
      "neither": r[T.NEITHER], "both": r[T.BOTH],
      "malformed": malformed_rate(setup, examples), "scorer": primary,
      "timing": timing,
  }
  if stop is not None:
    row["stop"] = stop
  row[f"{other}_scorer"] = rates(js, other, order)
  if style == "plan":
    src_ok = [j.src_faithful if primary == "faithful" else j.src_strict
              for j in js]
    tgt_ok = [j.tgt_faithful if primary == "faithful" else j.tgt_strict
              for j in js]
    for ex, s, t in zip(examples, src_ok, tgt_ok):
      ex["source_correct"] = bool(s)
      ex["target_correct"] = bool(t)
    row["transfer_independent"] = sum(src_ok) / n
    row["preserve_independent"] = sum(tgt_ok) / n
    row["n_layers"] = n_layers
  else:
    # The other scorer's share of "neither" outputs that are malformed.
    row[f"{other}_scorer"]["malformed"] = malformed_rate(setup, [
        dict(ex, label=classify(j, other, order))
        for j, ex in zip(js, examples)])
    if order != "source_first":
      row["classification"] = order
    positions = sorted({int(i) for i in positions})
  row.update(n_positions=len(positions),
             positions=[int(i) for i in positions],
             max_residual_change=float(delta), changed=bool(delta > 0))
  if meta:
    row.update(meta)
  row["examples"] = examples
  return row


def add_instances(rows: list[dict], setup: PairSetup, scoring,
                  base_texts: Sequence[str]) -> None:
  """exp13/exp15's instance-level reading, in place: every example also
  records the clean (unpatched) output and its label, and each row counts
  `baseline_transfer` (the source scorer already accepts the *unpatched*
  output: e.g. pattern_completion -> repeat_word, section 11.2),
  `baseline_preserve` and `transfer_changed` (transferred and the output
  differs from the clean one: transfer the patch caused)."""
  scorer = rows[0]["scorer"] if rows else "faithful"
  js, base = score_texts(setup, scoring, base_texts)
  labels = [classify(j, scorer) for j in js]
  n = len(js)
  for row in rows:
    changed = 0
    for ex, bex, label in zip(row["examples"], base, labels):
      ex["baseline_output"] = bex["output"]
      ex["baseline_label"] = label
      ex["changed"] = ex["output"] != bex["output"]
      changed += ex["label"] == T.TRANSFER and ex["changed"]
    row["baseline_transfer"] = labels.count(T.TRANSFER) / n
    row["baseline_preserve"] = labels.count(T.PRESERVE) / n
    row["transfer_changed"] = changed / n


def evaluate(engine, targets, setup: PairSetup, scoring, plans: Sequence[Plan],
             *, mode: str, experiment: str, model: str, style: str = "plan",
             order: str = "source_first", instances: bool = False,
             progress: bool = False) -> list[dict]:
  """Runs plans on a prepared target set; one row per plan (`instances`:
  plus the clean outputs, `add_instances`)."""
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
        positions=list(p.tgt_idx), delta=float(res.delta[i]), meta=meta,
        stop=engine.stop, style=style, order=order))
  if instances:
    add_instances(rows, setup, scoring, engine.baseline(targets).texts[0])
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
  return one plan per todo cell, in order. `style`, `order`, `instances`:
  how rows are written (`evaluate`); `decoder`: (timing, stop) of the engine
  the job runs on (None: the run's default engine).
  """

  mode: str
  setup: PairSetup
  scoring: object
  cells: list[dict]
  build: Callable
  label: str = ""
  style: str = "plan"
  order: str = "source_first"
  instances: bool = False
  decoder: tuple[str, str] | None = None


def cell_key(model: str, job: Job, cell: dict, key_extra=()) -> tuple:
  return (model, job.mode, job.setup.source_task, job.setup.target_task,
          cell.get("layer"), cell["condition"],
          *(cell.get(e) for e in key_extra))


def run_job(engine, job: Job, todo: Sequence[dict], *, experiment: str,
            model: str, key_extra=()) -> list[dict]:
  """The rows of `todo` (cells of `job`): prepare, build, run, score."""
  targets = engine.prepare(
      prompts=[e.prompt().text for e in job.setup.target_episodes])
  plans = job.build(engine, targets, todo)
  if len(plans) != len(todo):
    raise RuntimeError(f"{job.label}: {len(plans)} plans for {len(todo)} "
                       "cells")
  rows = evaluate(engine, targets, job.setup, job.scoring, plans,
                  mode=job.mode, experiment=experiment, model=model,
                  style=job.style, order=job.order, instances=job.instances)
  for c, r in zip(todo, rows):
    for e in key_extra:
      r.setdefault(e, c.get(e))
  return rows


def run_jobs(engine, rd, jobs: Sequence[Job], *, experiment: str, model: str,
             key_extra=(), progress: bool = True,
             row_hook: Callable[[dict], dict] | None = None,
             log: Callable[[str], None] = print,
             engine_for: Callable | None = None,
             append: Callable[[list], object] | None = None,
             tick: Callable[[str], None] | None = None) -> list[dict]:
  """Runs every pending cell of every job; appends rows as jobs finish.

  `row_hook(row) -> row` post-processes each new row before it is written
  (e.g. confidence intervals). `engine_for(timing, stop)` gives the engine
  of jobs with a `decoder`; `append(rows)` writes new rows (default: the
  run directory's); `tick(label)` is called once per job, finished or
  skipped (an outer progress bar). Returns every row of this model in the
  run directory (old and new).
  """
  from icl_jax.analysis.results import row_key

  done = set(rd.done())
  append = append or rd.append
  pending = []
  for job in jobs:
    todo = [c for c in job.cells
            if cell_key(model, job, c, key_extra) not in done]
    pending.append((job, todo))
  bar = None
  if progress and any(todo for _, todo in pending):
    from tqdm import tqdm

    bar = tqdm(total=sum(len(t) for _, t in pending), desc=experiment,
               unit="cell", position=0)
  for job, todo in pending:
    label = job.label or (f"{job.setup.source_task} -> "
                          f"{job.setup.target_task}")
    if todo:
      msg = (f"[{job.mode}] {label}: {len(todo)} cells x "
             f"{len(job.setup.target_episodes)} prompts")
      if bar is not None:
        bar.write(msg)
      elif tick is None:
        log(msg)
      eng = engine if job.decoder is None else engine_for(*job.decoder)
      rows = run_job(eng, job, todo, experiment=experiment, model=model,
                     key_extra=key_extra)
      if row_hook is not None:
        rows = [row_hook(r) for r in rows]
      append([r for r in rows if row_key(r, key_extra) not in done])
      done |= {row_key(r, key_extra) for r in rows}
      if bar is not None:
        bar.update(len(todo))
    if tick is not None:
      tick(f"[{job.mode}] {label}")
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


def source_positions(tok, mode: str, source_eps, condition: str,
                     pm: PosMap, n_slots: int, k: int = 5) -> list[int]:
  """The source indices a position set names ("transfer" rows): faithful,
  every prompt's indices below `n_slots` (also those no source prompt
  reaches); aligned, the mapped source indices."""
  if mode != "faithful":
    return [int(i) for i in pm.src_idx]
  sets = [faithful_indices(tok, e.prompt().text, condition, k)
          for e in source_eps]
  return sorted(i for i in set().union(*map(set, sets)) if i < n_slots)


def transfer_job(mode: str, setup: PairSetup, layers: Sequence[int],
                 conditions: Sequence[str], *, k: int = 5,
                 on_mismatch: str = "truncate", scoring=None, edit="replace",
                 scale: float = 1.0, extra: dict | None = None,
                 label: str = "", condition_names: dict | None = None,
                 style: str = "plan", own_index: bool = False,
                 instances: bool = False, decoder=None,
                 capture: Callable | None = None) -> Job:
  """Source activations written at each (condition, layer).

  `condition_names` renames conditions in the rows (the plan still uses the
  position set named by the key); `extra` adds fields to every cell (and
  therefore to the row keys when they are in key_extra). `own_index`:
  single-position conditions (`modes.SINGLE_POSITION`) take the mean source
  vector at each source prompt's own index to the targets' own index
  (protocol 8.3/8.9: exp3/5/8/9 and the main job); otherwise every set goes
  through the position map. `capture(episodes)`: source residuals (default
  `capture_sources`; pass a cache to share captures between jobs).
  `style`, `instances`, `decoder`: see `Job`.
  """
  if mode not in MODES:
    raise ValueError(f"unknown mode {mode!r}; known: {MODES}")
  extra = dict(extra or {})
  names = dict(condition_names or {})
  cells = [{"layer": int(l), "condition": names.get(c, c), "_set": c,
            **extra} for c in conditions for l in layers]
  scoring = scoring or TaskScoring(setup.source_task, setup.target_task)

  def source_map(engine, s, n_slots, lengths):
    tok = engine.lm.tokenizer
    if own_index and s in SINGLE_POSITION:
      m = own_index_map(tok, setup, s, mode, k)
      return m, m.source_positions
    pm = position_map(engine, mode, setup.source_episodes,
                      setup.target_episodes, s, n_slots, lengths, k,
                      on_mismatch)
    return pm, (source_positions(tok, mode, setup.source_episodes, s, pm,
                                 n_slots, k) if style == "transfer" else None)

  def build(engine, targets, todo):
    resid, lengths = (capture(setup.source_episodes) if capture else
                      capture_sources(engine, setup.source_episodes))
    maps = {}
    plans = []
    for c in todo:
      s = c["_set"]
      if s not in maps:
        maps[s] = source_map(engine, s, targets.slots, lengths)
      m, src_pos = maps[s]
      meta = {e: c[e] for e in extra}
      if style == "transfer":
        meta["source_positions"] = src_pos
      if isinstance(m, OwnIndexMap):
        plans.append(own_index_plan(resid, lengths, c["layer"],
                                    c["condition"], m, targets.slots,
                                    edit=edit, scale=scale, **meta))
      else:
        plans.append(replace_plan(resid, c["layer"], c["condition"], m,
                                  edit=edit, scale=scale, **meta))
    return plans

  return Job(mode, setup, scoring, cells, build, label, style=style,
             instances=instances, decoder=decoder)


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
