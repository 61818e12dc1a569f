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

import numpy as np

from icl_jax.interventions.engine import Engine
from icl_jax.interventions.spec import make_cells
from icl_jax import tasks as T
from icl_jax.studies.modes import ALIGNED_SETS, MODES, SINGLE_POSITION
from icl_jax.studies.positions import (faithful_indices, position_sets,
                                      shared_target_indices)
from icl_jax.studies.scoring import TaskScoring, classify, is_malformed
from icl_jax.studies.setups import PairSetup, setup_pairs


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
      idx_sets = [faithful_indices(tok, p, cond, k) for p in src_prompts]
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


def score_rows(setup: PairSetup, texts_per_cell, scorer: str,
               order: str = "source_first", extract=None):
  """Per cell: counts of transfer/preserve/neither/both and examples.

  `extract`: output extraction applied before scoring (default: none, the
  scorers' own strip + first line, i.e. D3's rule; pass `tasks.extract_d1`
  for the study's D1 decoder). Counts also hold "malformed" (a subset of
  neither: both faithful judges say malformed or cannot score; exp3).
  """
  judge = TaskScoring(setup.source_task, setup.target_task).judge
  out = []
  for texts in texts_per_cell:
    counts = {T.TRANSFER: 0, T.PRESERVE: 0, T.NEITHER: 0, T.BOTH: 0,
              "malformed": 0}
    examples = []
    for ep, text in zip(setup.target_episodes, texts):
      shown = text if extract is None else extract(text)
      j = judge(ep, shown)
      label = classify(j, scorer, order)
      counts[label] += 1
      if label == T.NEITHER and all(
          is_malformed(t, shown, ep.query)
          for t in (setup.source_task, setup.target_task)):
        counts["malformed"] += 1
      examples.append({"query": ep.query, "output": T.extract_d3(shown),
                       "raw_output": text, "expected_source": j.expected_source,
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
  prefill decoding in both modes), appended to a `run.Study`.

  Source activations come from `n_source` source prompts (the study: one,
  whose query is the first test input of the task named by
  `shared_queries`); `extra` fields are added to every row.
  """
  extra = dict(extra or {})
  engine = study.engine("prefill", "line")
  for mode in modes:
    setups = setup_pairs(pairs, n, k=k, seed=seed,
                         queries="shared_" + shared_queries,
                         n_source=n_source)
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


def run_pairs(study, *, pairs, layers, modes, n: int, conditions,
              on_mismatch: str = "truncate", seed: int = 0,
              progress: bool = True) -> list[dict]:
  """exp8 and the main job: `run_pair` for every mode and pair into a
  `run.Study` (its engine at the run's timing); finished cells are skipped,
  each pair's new rows are appended as it finishes."""
  engine = study.engine()
  for mode in modes:
    for setup in setup_pairs(pairs, n, seed=seed):
      keys = [study.key(mode=mode, source_task=setup.source_task,
                        target_task=setup.target_task, layer=l, condition=c)
              for c in conditions for l in layers]
      todo_layers = sorted({k[4] for k in study.pending(keys)})
      if not todo_layers:
        continue
      print(f"[{mode}] {setup.source_task} -> {setup.target_task}: "
            f"{len(todo_layers)} layers x {len(conditions)} conditions x "
            f"{n} prompts", flush=True)
      study.add(run_pair(engine, setup, todo_layers, conditions, mode,
                         experiment=study.experiment, model=study.model,
                         on_mismatch=on_mismatch, progress=progress))
  return study.rows()


def run_pair_study(lm, *, experiment: str, model: str, out_dir: str, pairs,
                   layers, modes, n: int, conditions, max_new_tokens: int,
                   on_mismatch: str = "truncate", seed: int = 0,
                   timing: str = "prefill", progress: bool = True):
  """Opens `<out_dir>/<experiment>`, runs `run_pairs`, plots transfer by
  layer and writes summary.json; returns the model's rows."""
  from icl_jax.analysis.plots import transfer_by_layer
  from icl_jax.studies.run import Study

  config = dict(model=model, pairs=[list(p) for p in pairs], layers=layers,
                modes=modes, n=n, conditions=list(conditions),
                max_new_tokens=max_new_tokens, on_mismatch=on_mismatch,
                seed=seed, timing=timing)
  study = Study(lm, experiment=experiment, model=model, config=config,
                out_dir=out_dir, max_new_tokens=max_new_tokens, timing=timing,
                layers=layers, modes=modes, progress=False)
  rows = run_pairs(study, pairs=pairs, layers=layers, modes=modes, n=n,
                   conditions=conditions, on_mismatch=on_mismatch, seed=seed,
                   progress=progress)
  transfer_by_layer(rows, study.path / "transfer_by_layer.png",
                    title=f"{experiment} on {model}")
  study.finish()
  return rows


def mean_by_mode_layer(rows, metric: str = "transfer") -> dict:
  """{"<mode> L<layer>": mean `metric`} over the rows, in row order."""
  from collections import defaultdict

  groups = defaultdict(list)
  for r in rows:
    groups[f"{r['mode']} L{r['layer']}"].append(r[metric])
  return {k: sum(v) / len(v) for k, v in groups.items()}
