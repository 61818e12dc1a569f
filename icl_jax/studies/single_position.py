"""Single-position transplants: exp3, exp4, exp5, exp9, exp14 Part B.

One source vector per (task, layer) -- the mean over N source prompts of the
residual after block L at each prompt's own position -- replaces the target
prompt's residual at the target's own position (protocol 8.3-8.5, 8.9).

faithful: positions from the study's `get_position_index` (last_demo_token
  is really the "\\n\\n" separator, section 5.1), decoder D2 (only the first
  generated token sees the patch; `first_token` timing, rows stop at any
  newline), faithful scorers.
aligned: the layout's positions (last_demo_token -> the final answer token of
  the last demo; first_query_token -> the first query-value token), the
  patched prompt K/V persist for the whole continuation (`prefill`, the
  multi-position experiments' decoder: like-for-like), strict scorers.
"""

from __future__ import annotations

import numpy as np

from icl_jax import tasks as T
from icl_jax.studies import plans, positions, setups
from icl_jax.studies.modes import MODE_SPECS
from icl_jax.studies.run import Study
from icl_jax.studies.scoring import TaskScoring
from icl_jax.studies.accuracy import accuracy_rows
from icl_jax.interventions.spec import make_cells

TIMINGS = ("study", "first_token", "prefill")


def decoder(mode: str, timing: str = "study") -> tuple[str, str]:
  """(timing, stop rule) of single-position edits in `mode`."""
  spec = MODE_SPECS[mode]
  if timing == "study":
    return spec.single_timing, spec.single_stop
  if timing not in TIMINGS:
    raise ValueError(f"unknown timing {timing!r}; known: {TIMINGS}")
  return timing, ("newline" if timing == "first_token" else "line")


class _Captures:
  """Source captures reused across pairs that share their source prompts."""

  def __init__(self, engine):
    self.engine = engine
    self.cache = {}

  def __call__(self, episodes):
    prompts = tuple(e.prompt().text for e in episodes)
    if prompts not in self.cache:
      self.cache[prompts] = self.engine.capture(prompts=list(prompts))
    return self.cache[prompts]


def run_transplant(study: Study, *, pairs, conditions, layers, modes, n: int,
                   k: int = 5, seed: int = 0, source_calls: str = "per_pair",
                   timing: str = "study", extra: dict | None = None):
  """Source -> target single-position transplants (exp3/5/9/14B) -> rows
  (transfer jobs at each prompt's own index, `plans.transfer_job`).

  `extra`: fields added to every row (and used as key fields by the study,
  e.g. exp14's k).
  """
  jobs = []
  for mode in modes:
    dec = decoder(mode, timing)
    cap = _Captures(study.engine(*dec))
    pair_setups = setups.setup_pairs(pairs, n, k=k, seed=seed,
                                     source_calls=source_calls)
    for setup in pair_setups:
      jobs.append(plans.transfer_job(
          mode, setup, layers, conditions, k=k, extra=extra,
          style="transfer", own_index=True, decoder=dec, capture=cap,
          label=f"{mode} {setup.source_task}->{setup.target_task}"))
  study.run(jobs)


def task_vectors(engine, episodes_by_task: dict, condition: str, mode: str,
                 layers, k: int = 5) -> dict:
  """{task: [len(layers), D]}: mean residual at each prompt's own position."""
  tok = engine.lm.tokenizer
  out = {}
  for task, eps in episodes_by_task.items():
    resid, lengths = engine.capture(prompts=[e.prompt().text for e in eps])
    sets = positions.position_sets(tok, eps, condition, mode, k)
    out[task] = plans.single_position_vectors(resid, lengths, sets,
                                              layers)[:, -1]
  return out


def _single_mask(tok, episodes, condition, mode, slots, k=5):
  idx = positions.shared_target_indices(tok, episodes, condition, mode, k)
  m = np.zeros((slots,), bool)
  m[idx[-1]] = True  # one position (the last one if a set has several)
  return m, idx[-1]


def clean_texts(engine, targets, mask) -> list[str]:
  """The targets' clean continuations, run as one cell that adds zeros at
  `mask` [T] after the last block (x + 0 == x exactly in floating point:
  nothing changes, max_residual_change 0).

  `engine.baseline` (an empty mask) computes the same clean continuation,
  but its program differs from a one-cell transplant's in a static argument
  (the prefix phase starts at the prompt's end instead of the edited
  position), so it compiled one more program per target shape; this cell
  has the cell count and position of a one-condition single-position
  transplant, so it runs that program on target prompts of the same shape.
  The two paths may differ in the last bits of the logits (engine.baseline
  re-runs blocks 1.. for the query tokens; this cell starts from the clean
  run's final residual); the texts were identical in every comparison
  (tests/studies/test_single_position_compiles.py).
  """
  D = engine.cfg.d_model
  cells = make_cells("add", [engine.cfg.n_layers - 1], np.asarray(mask)[None],
                     D, values=np.zeros((1, targets.slots, D), np.float32))
  return engine.run(targets, cells).texts[0]


def run_controls(study: Study, *, tasks, layers, modes, n: int,
                 condition: str = "last_demo_token", k: int = 5,
                 seed: int = 0, timing: str = "study") -> dict:
  """exp3's per-task controls at (layer, position): no intervention (the
  study's D1 decoder in faithful mode), a zero vector, and a random Gaussian
  direction rescaled to the mean task-vector norm of that layer (one
  direction for every call, as the original's seeded generator; drawn with
  numpy, so not the original's vector).

  Returns {mode: {layer: mean task-vector norm}} for the summary.
  """
  from icl_jax.tasks import extract_d1

  norms = {}
  D = study.lm.config.d_model
  direction = np.random.default_rng(seed).standard_normal(D)
  direction = (direction / np.linalg.norm(direction)).astype(np.float32)
  tok = study.lm.tokenizer
  for mode in modes:
    spec = MODE_SPECS[mode]
    engine = study.engine(*decoder(mode, timing))
    # No intervention: the same engine with an empty patch (a clean
    # continuation; in faithful mode rows stop at any newline, so the
    # study's D1 extraction -- first line, no leading strip -- applies).
    base_engine = engine
    base_extract = extract_d1 if mode == "faithful" else None
    episodes = {t: T.make_episodes(T.get_task(t), n, k=k) for t in tasks}
    vecs = task_vectors(engine, episodes, condition, mode, layers, k)
    mean_norm = {l: float(np.mean([np.linalg.norm(vecs[t][i])
                                   for t in tasks]))
                 for i, l in enumerate(layers)}
    norms[mode] = mean_norm
    conds = ("control_baseline", "control_zero", "control_random")
    for task in tasks:
      keys = [study.key(mode=mode, source_task=task, target_task=task,
                        layer=None if c == "control_baseline" else l,
                        condition=c) for c in conds for l in layers]
      if not study.pending(keys):
        study.tick()
        continue
      eps = episodes[task]
      prompts = [e.prompt().text for e in eps]
      targets = engine.prepare(prompts=prompts)
      mask, pos = _single_mask(tok, eps, condition, mode, targets.slots, k)
      base_texts = clean_texts(base_engine, targets, mask)
      L = len(layers)
      masks = np.broadcast_to(mask, (2 * L, targets.slots))
      values = np.zeros((2 * L, targets.slots, D), np.float32)
      for i, l in enumerate(layers):
        values[L + i, pos] = direction * mean_norm[l]
      cells = make_cells("replace", list(layers) * 2, masks, D,
                         values=values)
      res = engine.run(targets, cells)
      meta = ([{"condition": "control_zero", "layer": l} for l in layers] +
              [{"condition": "control_random", "layer": l,
                "random_norm": mean_norm[l]} for l in layers])
      for m, d in zip(meta, res.delta):
        m.update(n_positions=1, positions=[int(pos)],
                 max_residual_change=float(d))
      rows = accuracy_rows(res.texts, meta, task=task, episodes=eps,
                           baseline_texts=base_texts,
                           experiment=study.experiment, model=study.model,
                           mode=mode, timing=engine.timing, stop=engine.stop,
                           baseline_extract=base_extract)
      rows += accuracy_rows([base_texts], [{"condition": "control_baseline",
                                            "layer": None}], task=task,
                            episodes=eps, baseline_texts=base_texts,
                            experiment=study.experiment, model=study.model,
                            mode=mode, timing=base_engine.timing,
                            stop=base_engine.stop, extract=base_extract,
                            baseline_extract=base_extract)
      for r in rows:
        r["scorer"] = spec.scorer
      study.add(rows)
      study.tick(note=f"{mode} controls {task}")
  return norms


def run_interpolation(study: Study, *, pairs, triples, alphas, layers, modes,
                      n: int, condition: str = "last_demo_token", k: int = 5,
                      timing: str = "study"):
  """exp4: v(a) = a v_A + (1 - a) v_B injected into task-A prompts; v_C +
  (v_A - v_B) into task-C prompts (protocol 8.4).

  Task vectors come from the first RNG call of each task (exp3's vectors);
  target prompts from the task's next call. Interpolation rows: source_task
  B, target_task A, condition "interp:alpha=...", classified target-first
  (preserve = P(A correct), transfer = P(B correct | not A)). Arithmetic
  rows: source_task A, target_task C, condition "arith:A-B",
  source-first (transfer = P(A correct)).
  """
  jobs = []
  for mode in modes:
    dec = decoder(mode, timing)
    objs = {}
    for t in [t for p in list(pairs) + list(triples) for t in p]:
      if t not in objs:
        objs[t] = T.get_task(t)
    vec_eps = {t: T.make_episodes(obj, n, k=k) for t, obj in objs.items()}
    vecs = task_vectors(study.engine(*dec), vec_eps, condition, mode, layers,
                        k)
    for names in [tuple(p) for p in pairs] + [tuple(t) for t in triples]:
      tgt = names[0] if len(names) == 2 else names[2]
      eps = T.make_episodes(objs[tgt], n, k=k)  # the task's next RNG call
      jobs.append(_vector_job(mode, names, eps, vecs, alphas, layers,
                              condition, k, dec))
  study.run(jobs)


def _vector_job(mode, names, eps, vecs, alphas, layers, condition, k, dec):
  """The plan job of one interpolation pair (a, b) or triple (a, b, c):
  rows in layer-major order, one position (the targets' own)."""
  interp = len(names) == 2
  a, b = names[:2]
  if interp:
    tgt, src = a, b
    conds = [(f"interp:alpha={al:.2f}", al) for al in alphas]
  else:
    tgt, src = names[2], a
    conds = [(f"arith:{a}-{b}", None)]
  cells = [{"layer": l, "condition": cn, "alpha": al} for l in layers
           for cn, al in conds]
  index = {l: i for i, l in enumerate(layers)}

  def build(engine, targets, todo):
    _, pos = _single_mask(engine.lm.tokenizer, eps, condition, mode,
                          targets.slots, k)
    out = []
    for cell in todo:
      i = index[cell["layer"]]
      if interp:
        al = cell["alpha"]
        v = al * vecs[a][i] + (1 - al) * vecs[b][i]
        meta = {"alpha": al, "task_a": a, "task_b": b}
      else:
        v = vecs[names[2]][i] + (vecs[a][i] - vecs[b][i])
        meta = {"task_a": a, "task_b": b, "task_c": names[2]}
      out.append(plans.Plan(cell["layer"], cell["condition"], [pos],
                            values=np.asarray(v, np.float32)[None],
                            meta=meta))
    return out

  return plans.Job(mode, setups.PairSetup(src, tgt, [], eps),
                   TaskScoring(src, tgt), cells, build,
                   f"{mode} {'interp' if interp else 'arith'} "
                   f"{'/'.join(names)}", style="transfer",
                   order="target_first" if interp else "source_first",
                   decoder=dec)


def interpolation_metrics(rows) -> list[dict]:
  """exp4's sharpness metrics per (mode, A, B, layer) from P_A(alpha):
  midpoint slope (finite difference around the middle alpha), transition
  width (alpha span with 0.2 < P_A < 0.8), linear correlation of P_A with
  alpha (0 if P_A is constant)."""
  from collections import defaultdict

  groups = defaultdict(list)
  for r in rows:
    if str(r["condition"]).startswith("interp:"):
      groups[(r["mode"], r["target_task"], r["source_task"], r["layer"])]\
          .append((r["alpha"], r["preserve"]))
  out = []
  for (mode, a, b, layer), pts in sorted(groups.items(),
                                         key=lambda kv: str(kv[0])):
    pts.sort()
    al = np.array([p[0] for p in pts])
    pa = np.array([p[1] for p in pts])
    mid = len(al) // 2
    if 0 < mid < len(al) - 1:
      slope = float((pa[mid + 1] - pa[mid - 1]) / (al[mid + 1] - al[mid - 1]))
    else:
      slope = 0.0
    inside = al[(pa > 0.2) & (pa < 0.8)]
    width = float(inside.max() - inside.min()) if inside.size else 0.0
    corr = (float(np.corrcoef(pa, al)[0, 1]) if pa.std() > 0 and
            al.std() > 0 else 0.0)
    out.append({"mode": mode, "task_a": a, "task_b": b, "layer": layer,
                "midpoint_slope": slope, "transition_width": width,
                "linear_correlation": corr,
                "p_a": [float(x) for x in pa], "alphas": [float(x)
                                                          for x in al]})
  return out


def localization(rows, metric: str = "transfer") -> list[dict]:
  """exp5's localization index (population variance of the per-layer rates)
  and peak layer (first argmax) per (mode, pair, condition)."""
  from collections import defaultdict

  groups = defaultdict(list)
  for r in rows:
    groups[(r["mode"], r["source_task"], r["target_task"],
            r["condition"])].append((r["layer"], r[metric]))
  out = []
  for (mode, s, t, c), pts in sorted(groups.items()):
    pts.sort()
    v = np.array([p[1] for p in pts])
    out.append({"mode": mode, "source_task": s, "target_task": t,
                "condition": c, "localization_index": float(v.var()),
                "peak_layer": pts[int(np.argmax(v))][0],
                "max": float(v.max()), "mean": float(v.mean())})
  return out


def offdiagonal_mean(rows, metric: str = "transfer") -> float | None:
  """Mean `metric` over the rows whose source and target tasks differ
  (None without such rows)."""
  off = [r[metric] for r in rows if r["source_task"] != r["target_task"]]
  return sum(off) / len(off) if off else None


def run_probe(study: Study, *, tasks, layers, mode: str, n: int, k: int,
              engine, condition: str = "first_query_token", n_splits: int = 5,
              test_size: float = 0.2, seed: int = 42,
              captures: dict | None = None):
  """exp14 Part C: nearest-centroid task probe at `condition`, per layer.

  Features: the residual after each block at each prompt's own position
  (N prompts per task, k demos, fresh Task objects); scikit-learn's
  StratifiedShuffleSplit(n_splits, test_size, random_state=seed) splits.
  Rows: condition "probe:<position>", source/target task "+".join(tasks),
  probe_accuracy = mean split accuracy (the study's number), its std,
  pooled accuracy with a Wilson interval; preserve = probe_accuracy.
  captures: a dict the caller keeps across calls (e.g. both modes of one
  k): the residuals of `layers` per task's prompts are captured once and
  reused, as the prompts do not depend on the mode.
  """
  from icl_jax.probes import centroid
  from icl_jax.probes import evaluation
  from icl_jax.probes import splits as splits_lib

  name = "+".join(tasks)
  keys = [study.key(mode=mode, source_task=name, target_task=name, layer=l,
                    condition=f"probe:{condition}", k=k) for l in layers]
  if not study.pending(keys):
    return
  tok = study.lm.tokenizer
  captures = {} if captures is None else captures
  feats, labels = [], []
  for t in tasks:
    eps = T.make_episodes(T.get_task(t), n, k=k)
    texts = [e.prompt().text for e in eps]
    key = (tuple(texts), tuple(layers))
    if key not in captures:
      resid, _ = engine.capture(prompts=texts)
      captures[key] = resid[[l + 1 for l in layers]]  # [G, B, T, D]
    resid = captures[key]
    sets = positions.position_sets(tok, eps, condition, mode, k)
    for b, s in enumerate(sets):
      feats.append(np.stack([resid[g, b, s[-1]]
                             for g in range(len(layers))]))
      labels.append(t)
  x = np.stack(feats, axis=1)  # [G=layers, M, D]
  _, ids = evaluation.encode_labels(labels)
  splits = splits_lib.stratified_shuffle_split(
      ids, n_splits=n_splits, test_size=test_size, seed=seed)
  ev = centroid.evaluate_nearest_centroid(x, labels, splits)
  rows = []
  for g, l in enumerate(layers):
    acc = float(ev.mean_split_accuracy[g])
    rows.append({
        "experiment": study.experiment, "model": study.model, "mode": mode,
        "source_task": name, "target_task": name, "layer": l,
        "condition": f"probe:{condition}", "n": len(labels), "k": k,
        "transfer": 0.0, "preserve": acc, "neither": 1.0 - acc,
        "probe_accuracy": acc,
        "probe_std": float(ev.std_split_accuracy[g]),
        "pooled_accuracy": float(ev.accuracy[g]),
        "pooled_ci": [float(ev.ci_low[g]), float(ev.ci_high[g])],
        "chance": 1.0 / len(tasks), "n_splits": n_splits,
        "test_size": test_size, "examples": []})
  study.add(rows)
