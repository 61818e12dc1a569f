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

Single positions (``last_demo_token``, ``separator_after_demo``,
``first_query_token``) are one token per prompt: the source vector is the
mean over the source prompts of the activation at *each source prompt's own*
index, written at *the target's own* index (protocol 8.3/8.9: the study
replaced "the target's activation at its own last_demo_token"). Aligned mode
uses the same rule with the layout's sets (final answer token of the last
demo, the separator after it, the first query-value token).

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
                source_queries: str = "source", *,
                shared_queries: str | None = None,
                source_calls: str = "per_pair", n_source: int | None = None,
                k_source: int | None = None) -> list[PairSetup]:
  """Episodes for each pair, replaying the study's call order.

  One Task object per task for the whole run (as the scripts did); per pair
  the source task's RNG is called, then the target's. `source_queries`:
  "source" (exp8: the source task's own test inputs) or "target" (exp30/31:
  source prompts use the target's test inputs).

  Keyword options (defaults keep the exp8 behaviour):
    shared_queries: "source" or "target": only that task's RNG is called for
      the pair and both prompts use its test inputs (exp15 Part A: target
      prompts get the source's inputs; exp13 / exp15 Part B: the source
      prompt gets the target's).
    source_calls: "per_pair" (above) or "once": every distinct source task's
      RNG is called once, before any pair, in order of first appearance
      (exp3/exp4 computed one task vector per task at start-up), and each
      pair then only calls its target's RNG.
    n_source: number of source episodes (first n_source queries; default
      n). exp13/15 used one source prompt.
    k_source: demos in the source prompts (default k).
  """
  if shared_queries not in (None, "source", "target"):
    raise ValueError(f"shared_queries must be None, 'source' or 'target', "
                     f"got {shared_queries!r}")
  if source_calls not in ("per_pair", "once"):
    raise ValueError(f"source_calls must be 'per_pair' or 'once', got "
                     f"{source_calls!r}")
  if source_queries not in ("source", "target"):
    raise ValueError(f"source_queries must be 'source' or 'target', got "
                     f"{source_queries!r}")
  objs: dict[str, T.Task] = {}

  def task(name):
    if name not in objs:
      objs[name] = T.get_task(name)
    return objs[name]

  n_src = n if n_source is None else int(n_source)
  k_src = k if k_source is None else int(k_source)
  once: dict[str, list[str]] = {}
  if source_calls == "once":
    for s, _ in pairs:
      if s not in once:
        once[s] = task(s).generate_test_inputs(n)
  out = []
  for s, t in pairs:
    if shared_queries == "source":
      src_q = once[s] if s in once else task(s).generate_test_inputs(n)
      tgt_q = src_q
    elif shared_queries == "target":
      tgt_q = task(t).generate_test_inputs(n)
      src_q = tgt_q
    else:
      src_q = once[s] if s in once else task(s).generate_test_inputs(n)
      tgt_q = task(t).generate_test_inputs(n)
      if source_queries == "target":
        src_q = tgt_q
    out.append(PairSetup(
        s, t,
        T.make_episodes(task(s), n_src, k=k_src, demo_mode=demo_mode,
                        seed=seed, queries=list(src_q[:n_src])),
        T.make_episodes(task(t), n, k=k, demo_mode=demo_mode, seed=seed + 1,
                        queries=list(tgt_q))))
  return out


def _faithful_indices(tok, prompt_text: str, condition: str, k: int):
  pos = T.faithful_positions(tok, prompt_text, n_demos=k)
  if condition not in pos:
    raise ValueError(f"unknown faithful condition {condition!r}; known: "
                     f"{sorted(pos)}")
  return pos[condition]


def position_sets(tok, episodes, condition: str, mode: str,
                  k: int = 5) -> list[list[int]]:
  """Per episode, the token indices of `condition` in its own prompt.

  faithful: the study's finders (`faithful_positions`, absolute indices into
  the BOS-prefixed sequence); aligned: the named layout set
  (`ALIGNED_SETS` maps the study's names, e.g. last_demo_token -> the last
  demo's final answer token).
  """
  out = []
  for e in episodes:
    if mode == "faithful":
      out.append(list(_faithful_indices(tok, e.prompt().text, condition, k)))
    elif mode == "aligned":
      lay = T.token_layout(tok, e.prompt())
      name = ALIGNED_SETS.get(condition, condition)
      out.append(lay.indices(lay.mask(name)).tolist())
    else:
      raise ValueError(f"unknown mode {mode!r}; known: {MODES}")
  return out


def shared_target_indices(tok, episodes, condition: str, mode: str,
                          k: int = 5) -> list[int]:
  """The indices of `condition` in the target prompts, which must agree.

  The engine patches one mask per cell over all target prompts; with the
  study's fixed demos every demo/first-query position is the same index in
  every prompt of a task. Prompts that disagree raise (run them as separate
  target sets).
  """
  sets = position_sets(tok, episodes, condition, mode, k)
  first = sets[0]
  for e, s in zip(episodes, sets):
    if s != first:
      raise ValueError(
          f"target prompts disagree on {condition!r} ({mode}): {first} for "
          f"{episodes[0].query!r} but {s} for {e.query!r}")
  return first


def _pair_single(src: list[int], tgt: list[int]):
  """Source/target index pairs of a single-position set (last -> last when
  the two prompts have different token counts there)."""
  if not src or not tgt:
    return []
  if len(src) == len(tgt):
    return list(zip(range(len(src)), tgt))
  return [(len(src) - 1, tgt[-1])]


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


def build_cells(engine: Engine, setup: PairSetup, targets, layers,
                conditions, mode: str, on_mismatch: str = "truncate",
                k: int = 5, capture=None):
  """Replace-cells for every (condition, layer); returns (cells, meta).

  `capture`: optional precomputed `engine.capture` output of the source
  prompts (reused across calls that share them).
  """
  lm = engine.lm
  tok = lm.tokenizer
  src_prompts = [e.prompt().text for e in setup.source_episodes]
  if capture is None:
    capture = engine.capture(prompts=src_prompts)
  resid, lengths = capture  # [L+1,B,T,D]
  Tt = targets.slots
  D = lm.config.d_model
  masks, values, layer_of, meta = [], [], [], []

  def add_cell(cond, layer, v, m, source_positions):
    masks.append(m)
    values.append(v)
    layer_of.append(layer)
    meta.append({"condition": cond, "layer": int(layer),
                 "n_positions": int(m.sum()),
                 "positions": [int(i) for i in np.nonzero(m)[0]],
                 "source_positions": source_positions})

  tgt_layout = src_layout = None
  if mode == "aligned":
    src_layout = T.token_layout(tok, setup.source_episodes[0].prompt())
    tgt_layout = T.token_layout(tok, setup.target_episodes[0].prompt())
  elif mode != "faithful":
    raise ValueError(f"unknown mode {mode!r}; known: {MODES}")
  for cond in conditions:
    if cond in SINGLE_POSITION:
      # Each source prompt's own index -> the targets' own index.
      src_sets = position_sets(tok, setup.source_episodes, cond, mode, k)
      tgt_set = shared_target_indices(tok, setup.target_episodes, cond, mode,
                                      k)
      pairs = _pair_single(src_sets[0], tgt_set)
      vecs = single_position_vectors(resid, lengths, src_sets, layers)
      for li, layer in enumerate(layers):
        v = np.zeros((Tt, D), np.float32)
        m = np.zeros((Tt,), bool)
        for j, ti in pairs:
          if ti < Tt:
            v[ti] = vecs[li, j]
            m[ti] = True
        add_cell(cond, layer, v, m, sorted({int(s[j]) for s in src_sets
                                            for j, _ in pairs}))
      continue
    if mode == "faithful":
      # Per source prompt its own indices; mean per index over the prompts.
      idx_sets = [_faithful_indices(tok, p, cond, k) for p in src_prompts]
      all_idx = sorted(set().union(*map(set, idx_sets)))
      tgt_idx = [i for i in all_idx if i < Tt]
      src_idx = tgt_idx
    else:
      name = ALIGNED_SETS.get(cond, cond)
      s_i, t_i = T.map_positions(src_layout, tgt_layout, name, on_mismatch)
      src_idx, tgt_idx = s_i.tolist(), t_i.tolist()
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
      add_cell(cond, layer, v, m, [int(i) for i in src_idx])
  cells = make_cells("replace", np.asarray(layer_of), np.stack(masks), D,
                     values=np.stack(values))
  return cells, meta


def _malformed(task: str, output: str, x: str) -> bool:
  """Faithful judge says malformed, or cannot score the input at all."""
  from icl_jax.tasks import scoring

  try:
    return T.get_task(task).judge(output, x) == scoring.MALFORMED
  except Exception:  # pylint: disable=broad-except
    return True


def classify_order(output: str, x: str, source_task: str, target_task: str,
                   scorer: str, order: str = "source_first") -> str:
  """`tasks.classify` with a choice of which task is checked first.

  source_first: the study's rule (transfer wins ties). target_first: exp4's
  interpolation reading (P(A correct), then P(B correct | not A)): the target
  task wins ties. Strict scoring reports ties as "both" either way.
  """
  if order == "source_first":
    return T.classify(output, x, source_task, target_task, scorer=scorer)
  if order != "target_first":
    raise ValueError(f"unknown order {order!r}")
  src_ok = T.is_correct(source_task, output, x, scorer)
  tgt_ok = T.is_correct(target_task, output, x, scorer)
  if scorer == "strict" and src_ok and tgt_ok:
    return T.BOTH
  if tgt_ok:
    return T.PRESERVE
  if src_ok:
    return T.TRANSFER
  return T.NEITHER


def score_rows(setup: PairSetup, texts_per_cell, scorer: str,
               order: str = "source_first", extract=None):
  """Per cell: counts of transfer/preserve/neither/both and examples.

  `extract`: output extraction applied before scoring (default: none, the
  scorers' own strip + first line, i.e. D3's rule; pass `tasks.extract_d1`
  for the study's D1 decoder). Counts also hold "malformed" (a subset of
  neither: both faithful judges say malformed or cannot score; exp3).
  """
  src_task = T.get_task(setup.source_task)
  out = []
  for texts in texts_per_cell:
    counts = {T.TRANSFER: 0, T.PRESERVE: 0, T.NEITHER: 0, T.BOTH: 0,
              "malformed": 0}
    examples = []
    for ep, text in zip(setup.target_episodes, texts):
      shown = text if extract is None else extract(text)
      label = classify_order(shown, ep.query, setup.source_task,
                             setup.target_task, scorer, order)
      counts[label] += 1
      if label == T.NEITHER and _malformed(setup.source_task, shown,
                                           ep.query) and _malformed(
                                               setup.target_task, shown,
                                               ep.query):
        counts["malformed"] += 1
      try:
        exp_src = src_task.answer(ep.query)
      except Exception:  # the source rule may not apply to target inputs
        exp_src = None
      examples.append({"query": ep.query, "output": T.extract_d3(shown),
                       "raw_output": text, "expected_source": exp_src,
                       "expected_target": ep.expected, "label": label})
    out.append((counts, examples))
  return out


def rates(counts: dict, n: int) -> dict:
  return {k: counts[k] / n for k in counts}


def prepare_targets(engine: Engine, setup: PairSetup):
  return engine.prepare(
      prompts=[e.prompt().text for e in setup.target_episodes])


def evaluate_cells(engine: Engine, setup: PairSetup, targets, cells, meta,
                   mode: str, *, experiment: str, model: str,
                   progress: bool = False, result=None,
                   order: str = "source_first", extract=None,
                   scorer: str | None = None) -> list[dict]:
  """Runs `cells` on the targets (unless `result` is given) -> rows.

  Each meta dict gives at least condition and layer; its other keys are
  copied into the row (n_positions, positions, alpha, ...).
  """
  res = result if result is not None else engine.run(targets, cells,
                                                     progress=progress)
  primary = scorer or ("faithful" if mode == "faithful" else "strict")
  other = "strict" if primary == "faithful" else "faithful"
  n = targets.n
  scored = {s: score_rows(setup, res.texts, s, order, extract)
            for s in ("faithful", "strict")}
  rows = []
  for i, m in enumerate(meta):
    counts, examples = scored[primary][i]
    row = {
        "experiment": experiment, "model": model, "mode": mode,
        "source_task": setup.source_task, "target_task": setup.target_task,
        "layer": m["layer"], "condition": m["condition"], "n": n,
        "transfer": counts[T.TRANSFER] / n,
        "preserve": counts[T.PRESERVE] / n,
        "neither": counts[T.NEITHER] / n, "both": counts[T.BOTH] / n,
        "malformed": counts["malformed"] / n,
        "scorer": primary, "timing": engine.timing, "stop": engine.stop,
        f"{other}_scorer": rates(scored[other][i][0], n),
        "max_residual_change": float(res.delta[i]),
        "changed": bool(res.changed[i]),
    }
    if order != "source_first":
      row["classification"] = order
    for key, val in m.items():
      if key not in ("condition", "layer"):
        row[key] = val
    row["examples"] = examples
    rows.append(row)
  return rows


def run_pair(engine: Engine, setup: PairSetup, layers, conditions, mode: str,
             *, experiment: str, model: str, on_mismatch: str = "truncate",
             k: int = 5, progress: bool = False) -> list[dict]:
  """Evaluates one pair; returns result rows (one per layer x condition)."""
  targets = prepare_targets(engine, setup)
  cells, meta = build_cells(engine, setup, targets, layers, conditions,
                            mode, on_mismatch, k)
  return evaluate_cells(engine, setup, targets, cells, meta, mode,
                        experiment=experiment, model=model,
                        progress=progress)


def run_instance_pair(engine: Engine, setup: PairSetup, layers, conditions,
                      mode: str, *, experiment: str, model: str,
                      on_mismatch: str = "truncate", k: int = 5,
                      progress: bool = False) -> list[dict]:
  """`run_pair` plus, per target prompt, the clean (unpatched) output.

  exp13/exp15's instance-level reading: every example also records the
  baseline output and how the baseline is classified, and each row counts
  `baseline_transfer` (the source scorer already accepts the *unpatched*
  output: e.g. pattern_completion -> repeat_word, section 11.2) and
  `transfer_changed` (transferred and the output differs from the
  baseline's: transfer the patch caused).
  """
  targets = prepare_targets(engine, setup)
  cells, meta = build_cells(engine, setup, targets, layers, conditions,
                            mode, on_mismatch, k)
  rows = evaluate_cells(engine, setup, targets, cells, meta, mode,
                        experiment=experiment, model=model,
                        progress=progress)
  base = engine.baseline(targets)
  scorer = rows[0]["scorer"] if rows else "faithful"
  base_scored = score_rows(setup, base.texts, scorer)[0]
  base_counts, base_examples = base_scored
  n = targets.n
  for row in rows:
    changed = 0
    for ex, bex in zip(row["examples"], base_examples):
      ex["baseline_output"] = bex["output"]
      ex["baseline_label"] = bex["label"]
      ex["changed"] = ex["output"] != bex["output"]
      changed += ex["label"] == T.TRANSFER and ex["changed"]
    row["baseline_transfer"] = base_counts[T.TRANSFER] / n
    row["baseline_preserve"] = base_counts[T.PRESERVE] / n
    row["transfer_changed"] = changed / n
  return rows



def run_instances(study, *, pairs, layers, modes, n: int,
                  conditions=("answer_tokens",), shared_queries="target",
                  n_source: int = 1, on_mismatch: str = "truncate", k: int = 5,
                  seed: int = 0, extra: dict | None = None):
  """exp13 / exp15: `run_instance_pair` for every pair and mode (D3 /
  prefill decoding in both modes), appended to a `runner.Study`.

  Source activations come from `n_source` source prompts (the study: one,
  whose query is the first test input of the task named by
  `shared_queries`); `extra` fields are added to every row.
  """
  extra = dict(extra or {})
  engine = study.engine("prefill", "line")
  for mode in modes:
    setups = setup_pairs(pairs, n, k=k, seed=seed,
                         shared_queries=shared_queries, n_source=n_source)
    for setup in setups:
      keys = [study.key(mode=mode, source_task=setup.source_task,
                        target_task=setup.target_task, layer=l, condition=c,
                        **extra) for c in conditions for l in layers]
      todo = study.pending(keys)
      if not todo:
        study.tick()
        continue
      todo_layers = sorted({key[4] for key in todo})
      rows = run_instance_pair(engine, setup, todo_layers, conditions, mode,
                               experiment=study.experiment,
                               model=study.model, on_mismatch=on_mismatch,
                               k=k)
      for r in rows:
        r.update(extra)
        r["source_queries"] = [e.query for e in setup.source_episodes]
      study.add(rows)
      study.tick(note=f"{mode} {setup.source_task}->{setup.target_task}")
