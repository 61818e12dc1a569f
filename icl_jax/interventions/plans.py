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
from typing import Callable, Iterable, Sequence

import numpy as np

from icl_jax import tasks as T
from icl_jax.interventions.spec import EDITS, CellBatch, make_cells
from icl_jax.interventions.transfer import ALIGNED_SETS, MODES, PairSetup

SOURCE_EDITS = ("replace", "add")  # edits whose values come from a source


class PlanError(ValueError):
  """A plan that cannot be built (unknown position set, no positions...)."""


# ---------------------------------------------------------------------------
# Setups: prompts with the study's RNG call order
# ---------------------------------------------------------------------------

def make_setups(pairs: Sequence[tuple[str, str]], n: int, *, k_source: int = 5,
                k_target: int = 5, queries: str = "own",
                demo_mode: str = "fixed", seed: int = 0,
                task_objects: dict | None = None) -> list[PairSetup]:
  """Episodes per pair, replaying the study's call order.

  One Task object per task for the whole list (pass `task_objects` to share
  them across calls); per pair the source task's RNG is called, then the
  target's. `queries`:
    "own"    each side uses its own test inputs (exp8/23/27/29);
    "target" source prompts use the target's test inputs (exp30/31/33B);
    "source" target prompts use the source's test inputs (exp32 variants).
  """
  if queries not in ("own", "target", "source"):
    raise ValueError(f"queries must be own|target|source, got {queries!r}")
  objs = task_objects if task_objects is not None else {}

  def task(name):
    if name not in objs:
      objs[name] = T.get_task(name)
    return objs[name]

  out = []
  for s, t in pairs:
    src_q = task(s).generate_test_inputs(n)
    tgt_q = task(t).generate_test_inputs(n)
    if queries == "target":
      src_q = tgt_q
    elif queries == "source":
      tgt_q = src_q
    out.append(PairSetup(
        s, t,
        T.make_episodes(task(s), n, k=k_source, demo_mode=demo_mode,
                        seed=seed, queries=src_q),
        T.make_episodes(task(t), n, k=k_target, demo_mode=demo_mode,
                        seed=seed + 1, queries=tgt_q)))
  return out


def task_setup(task: str, n: int, k: int = 5, queries=None,
               task_objects: dict | None = None) -> PairSetup:
  """A target-only setup (baselines, source-free edits)."""
  objs = task_objects if task_objects is not None else {}
  obj = objs.setdefault(task, T.get_task(task))
  eps = T.make_episodes(obj, n, k=k, queries=queries)
  return PairSetup(None, task, None, eps)


# ---------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class Judgement:
  src_faithful: bool
  tgt_faithful: bool
  src_strict: bool
  tgt_strict: bool
  expected_source: object
  expected_target: object


class TaskScoring:
  """Scores with the tasks' faithful and strict scorers.

  `source_input(query)` gives the input the source task is scored on (exp33
  Part C scores repeat_word on the word of a repeat_n item); `source_rule`
  replaces the source check entirely: `source_rule(output, query) -> bool`
  (used for both scorers).
  """

  def __init__(self, source_task: str | None, target_task: str,
               source_input: Callable[[str], str] | None = None,
               source_rule: Callable[[str, str], bool] | None = None):
    self.source_task = source_task
    self.target_task = target_task
    self._src = T.get_task(source_task) if source_task else None
    self._tgt = T.get_task(target_task)
    self.source_input = source_input
    self.source_rule = source_rule

  def judge(self, ep, text: str) -> Judgement:
    q = ep.query
    sx = self.source_input(q) if self.source_input else q
    if self.source_rule is not None:
      sf = ss = bool(self.source_rule(text, q))
      exp_src = None
    elif self._src is not None:
      sf = T.is_correct(self._src, text, sx, "faithful")
      ss = T.is_correct(self._src, text, sx, "strict")
      try:
        exp_src = self._src.answer(sx)
      except Exception:  # the source rule may not apply to target inputs
        exp_src = None
    else:
      sf = ss = False
      exp_src = None
    tf = T.is_correct(self._tgt, text, q, "faithful")
    ts = T.is_correct(self._tgt, text, q, "strict")
    return Judgement(sf, tf, ss, ts, exp_src, ep.expected)


class AnswerScoring:
  """Scores prompt-file prompts against the answers given in the file.

  Both scorers are the strict rule: the first line of the stripped output
  must equal one of the expected answers.
  """

  def __init__(self, source_name: str | None, target_name: str):
    self.source_task = source_name
    self.target_task = target_name

  def judge(self, ep, text: str) -> Judgement:
    out = T.extract_d3(text)
    src = tuple(getattr(ep, "expected_source", ()) or ())
    tgt = tuple(getattr(ep, "answers", ()) or ())
    s = out in src
    t = out in tgt
    return Judgement(s, t, s, t, list(src) or None, list(tgt) or None)


def classify(j: Judgement, scorer: str) -> str:
  if scorer == "faithful":
    return (T.TRANSFER if j.src_faithful else
            T.PRESERVE if j.tgt_faithful else T.NEITHER)
  if j.src_strict and j.tgt_strict:
    return T.BOTH
  return (T.TRANSFER if j.src_strict else
          T.PRESERVE if j.tgt_strict else T.NEITHER)


# ---------------------------------------------------------------------------
# Positions
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class PosMap:
  """Source index -> target slot, and the source prompts averaged per slot."""

  src_idx: list[int]
  tgt_idx: list[int]
  have: list[list[int]]  # per position: contributing source prompt indices

  def __len__(self):
    return len(self.tgt_idx)

  def select(self, keep: Iterable[int]) -> "PosMap":
    """The positions whose *source* index is in `keep`."""
    keep = set(int(k) for k in keep)
    j = [i for i, s in enumerate(self.src_idx) if s in keep]
    return PosMap([self.src_idx[i] for i in j], [self.tgt_idx[i] for i in j],
                  [self.have[i] for i in j])

  def union(self, other: "PosMap") -> "PosMap":
    seen = dict(zip(self.tgt_idx, range(len(self.tgt_idx))))
    out = PosMap(list(self.src_idx), list(self.tgt_idx), list(self.have))
    for s, t, h in zip(other.src_idx, other.tgt_idx, other.have):
      if t not in seen:
        out.src_idx.append(s)
        out.tgt_idx.append(t)
        out.have.append(h)
    order = np.argsort(out.tgt_idx, kind="stable")
    return PosMap([out.src_idx[i] for i in order],
                  [out.tgt_idx[i] for i in order],
                  [out.have[i] for i in order])


def aligned_set_name(condition: str) -> str:
  return ALIGNED_SETS.get(condition, condition)


def _split_demo(condition: str):
  """"output_line@2" -> ("output_line", 2)."""
  if "@" in condition:
    name, k = condition.split("@", 1)
    try:
      return name, int(k)
    except ValueError:
      raise PlanError(f"position set {condition!r}: demo after '@' must be "
                      "an integer") from None
  return condition, None


def check_condition(condition: str, mode: str, tok=None, example_text=None,
                    k: int = 5) -> None:
  """Raises PlanError for a position set unknown in `mode`."""
  if mode == "aligned":
    name, _ = _split_demo(condition)
    if aligned_set_name(name) not in T.POSITION_SETS:
      raise PlanError(
          f"unknown aligned position set {condition!r}; known: "
          f"{sorted(set(T.POSITION_SETS) | set(ALIGNED_SETS))} (optionally "
          "'name@k' for demo k only)")
  elif mode == "faithful":
    known = None
    if tok is not None and example_text is not None:
      known = set(T.faithful_positions(tok, example_text, n_demos=k))
    else:
      known = set(T.LINE_CONDITIONS) | set(T.POSITION_TYPES) | {
          "answer_tokens"}
    ok = condition in known or any(
        condition == f"{p}_{i}" for p in ("input_line", "output_line",
                                          "answer_tokens") for i in range(64))
    if not ok:
      raise PlanError(
          f"unknown faithful position set {condition!r}; known: "
          f"{sorted(known)}")
  else:
    raise PlanError(f"unknown mode {mode!r}; known: {MODES}")


def faithful_indices(tok, text: str, condition: str, k: int = 5) -> list[int]:
  pos = T.faithful_positions(tok, text, n_demos=k)
  if condition not in pos:
    raise PlanError(f"unknown faithful position set {condition!r}; known: "
                    f"{sorted(pos)}")
  return list(pos[condition])


def faithful_map(tok, source_texts: Sequence[str], condition: str,
                 n_slots: int, source_lengths: Sequence[int],
                 k: int = 5) -> PosMap:
  """The study's rule: per source prompt its own indices (section 5.2), the
  same absolute indices in the target, indices past the target dropped."""
  sets = [set(faithful_indices(tok, t, condition, k)) for t in source_texts]
  idx = sorted(i for i in set().union(*sets) if 0 <= i < n_slots)
  have = [[b for b, s in enumerate(sets) if i in s and i < source_lengths[b]]
          for i in idx]
  keep = [j for j, h in enumerate(have) if h]
  return PosMap([idx[j] for j in keep], [idx[j] for j in keep],
                [have[j] for j in keep])


def _layout(tok, ep):
  spec = ep.prompt() if hasattr(ep, "prompt") else ep
  return T.token_layout(tok, spec)


def aligned_map(tok, source_eps, target_eps, condition: str,
                on_mismatch: str = "truncate") -> PosMap:
  """(demo, role, token index) matching of source and target tokens.

  Every source prompt must map to the same target slots (shared demo block),
  and every target prompt must have the same slots; otherwise raises.
  """
  name, demo = _split_demo(condition)
  name = aligned_set_name(name)
  tgt_layouts = [_layout(tok, e) for e in target_eps]
  src_layouts = [_layout(tok, e) for e in source_eps]
  maps = []
  for sl in src_layouts:
    s_i, t_i = _map_one(sl, tgt_layouts[0], name, demo, on_mismatch)
    maps.append((tuple(s_i), tuple(t_i)))
  for tl in tgt_layouts[1:]:
    s_i, t_i = _map_one(src_layouts[0], tl, name, demo, on_mismatch)
    if (tuple(s_i), tuple(t_i)) != maps[0]:
      raise PlanError(
          f"position set {condition!r} maps to different token positions in "
          "different target prompts (their demo blocks differ); aligned mode "
          "needs target prompts that share the demo block -- split them into "
          "groups with identical demos")
  ref = maps[0]
  if any(m != ref for m in maps[1:]):
    raise PlanError(
        f"position set {condition!r} selects different tokens in different "
        "source prompts (their demo blocks differ); use source prompts that "
        "share the demo block")
  s_i, t_i = ref
  all_b = list(range(len(source_eps)))
  return PosMap(list(s_i), list(t_i), [all_b for _ in s_i])


def _map_one(src_layout, tgt_layout, name, demo, on_mismatch):
  if demo is None:
    s_i, t_i = T.map_positions(src_layout, tgt_layout, name, on_mismatch)
    return [int(x) for x in s_i], [int(x) for x in t_i]
  s_all, t_all = T.map_positions(src_layout, tgt_layout, name, on_mismatch)
  keep = src_layout.mask(name, demo=demo)
  pairs = [(int(s), int(t)) for s, t in zip(s_all, t_all) if keep[s]]
  return [p[0] for p in pairs], [p[1] for p in pairs]


def target_positions(tok, mode: str, target_eps, condition: str,
                     n_slots: int, k: int = 5) -> list[int]:
  """Positions evaluated on the target prompts (source-free edits)."""
  sets = []
  for e in target_eps:
    if mode == "faithful":
      text = e.prompt().text
      idx = [i for i in faithful_indices(tok, text, condition, k)
             if 0 <= i < n_slots]
    else:
      name, demo = _split_demo(condition)
      lay = _layout(tok, e)
      idx = [int(i) for i in
             np.flatnonzero(lay.mask(aligned_set_name(name), demo=demo))]
    sets.append(tuple(idx))
  if any(s != sets[0] for s in sets[1:]):
    raise PlanError(
        f"position set {condition!r} falls on different slots in different "
        "target prompts (e.g. query positions with queries of different "
        "token lengths); choose demo positions or prompts of equal layout")
  return list(sets[0])


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

def score_texts(setup: PairSetup, scoring, texts: Sequence[str]):
  """Judgements and examples for one cell's outputs."""
  js, examples = [], []
  for ep, text in zip(setup.target_episodes, texts):
    j = scoring.judge(ep, text)
    js.append(j)
    examples.append({"query": ep.query, "output": T.extract_d3(text),
                     "raw_output": text, "expected_source": j.expected_source,
                     "expected_target": j.expected_target})
  return js, examples


def _rates(js, scorer):
  n = len(js)
  c = {T.TRANSFER: 0, T.PRESERVE: 0, T.NEITHER: 0, T.BOTH: 0}
  for j in js:
    c[classify(j, scorer)] += 1
  return {k: v / n for k, v in c.items()}


def _malformed_rate(setup: PairSetup, examples) -> float | None:
  """Share of "neither" outputs both faithful judges call malformed (as
  `transfer.run_pair` reports it); None for prompt-file setups."""
  from icl_jax.interventions import transfer

  fn = getattr(transfer, "_malformed", None)
  tasks = [t for t in (setup.source_task, setup.target_task) if t]
  try:
    for t in tasks:
      T.get_task(t)
  except T.UnknownTaskError:
    return None
  if fn is None or not examples:
    return None
  bad = sum(1 for e in examples if e["label"] == T.NEITHER and all(
      fn(t, e["raw_output"], e["query"]) for t in tasks))
  return bad / len(examples)


def cell_row(setup: PairSetup, scoring, texts, *, mode: str, experiment: str,
             model: str, n_layers: int, layer, condition: str, timing: str,
             positions: Sequence[int], delta: float = 0.0,
             meta: dict | None = None) -> dict:
  """One DESIGN.md row from a cell's generated texts."""
  js, examples = score_texts(setup, scoring, texts)
  primary = "faithful" if mode == "faithful" else "strict"
  other = "strict" if primary == "faithful" else "faithful"
  r = _rates(js, primary)
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
      "malformed": _malformed_rate(setup, examples), "scorer": primary,
      "timing": timing, f"{other}_scorer": _rates(js, other),
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
