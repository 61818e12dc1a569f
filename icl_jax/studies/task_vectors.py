"""Task vectors (Han et al., App. C): extraction and injection at the query
(`experiments/task_vectors.py`).

Extraction: per task, the mean residual after block l at the token before
each demo answer of N sampled-demo source prompts (and of their random-label
twins). Injection: target prompts of the same task, the vector written at
the query's final token after block l (`probes.injection`), scored strictly
(and faithfully). Conditions per (task, layer): none (clean), task, and the
nulls null_mean (mean of all tasks' vectors) and null_shuffled (the task's
random-label vector). `run` writes results.jsonl, summary.json,
task_vectors.png and vectors.npz.
"""

from __future__ import annotations

import random
import time

import numpy as np

EXPERIMENT = "task_vectors"
NULLS = ("null_mean", "null_shuffled")
# --layers=mid: the layers at these depth fractions.
MID_LAYERS = "frac:0.2,0.35,0.5,0.65"


def check_nulls(nulls) -> None:
  """--nulls: known null conditions only."""
  bad = [c for c in nulls if c not in NULLS]
  if bad:
    raise ValueError(f"--nulls: unknown {bad}; known: {NULLS}")


def derangement(items, rng):
  """A permutation of ``items`` with no element left in place (if n > 1)."""
  n = len(items)
  if n < 2:
    return list(items)
  while True:
    perm = list(range(n))
    rng.shuffle(perm)
    if all(p != i for i, p in enumerate(perm)):
      return [items[p] for p in perm]


def build_sources(task, n_source, k, exclude, seed):
  """Source specs (true labels) and their random-label twins."""
  from icl_jax import tasks as T

  rng = random.Random(seed)
  specs, shuffled = [], []
  for _ in range(n_source):
    pairs = task.sample_demos(k + 1, rng, exclude=exclude)
    demos, query = pairs[:k], pairs[k][0]
    specs.append(T.build_prompt(demos, query))
    outs = derangement([y for _, y in demos], rng)
    shuffled.append(T.build_prompt(
        [(x, y) for (x, _), y in zip(demos, outs)], query))
  return specs, shuffled


def build_targets(task, n, k, seed):
  """Target episodes: k demos shared by the task's prompts (0: zero-shot)."""
  from icl_jax import tasks as T

  return T.make_episodes(task, n, k=k,
                         demo_mode="sampled_shared" if k else "fixed",
                         seed=seed + 7)


def task_vectors(lm, source_specs, layers, batch_size, progress):
  """``{name: [Lsel, D]}`` mean residual at the pre-answer tokens."""
  from icl_jax.probes import features

  out = {}
  for name, specs in source_specs.items():
    ids, sets = features.layout_index_sets(lm.tokenizer, specs,
                                           ["pre_answer_tokens"])
    feats = features.collect(lm, ids, sets,
                             residual_indices=[l + 1 for l in layers],
                             batch_size=batch_size)["pre_answer_tokens"]
    out[name] = feats.mean(axis=1)  # [Lsel, D]; equal demos per prompt
    if progress:
      print(f"  vector {name}: {len(specs)} prompts", flush=True)
  return out


def load_or_extract(lm, rd, task_names, targets, *, n_source, source_shots,
                    layers, seed, batch_size, progress):
  """(task vectors, random-label vectors) by task: from vectors.npz, or
  extracted and saved there."""
  from icl_jax import tasks as T

  sources, shuffled = {}, {}
  for t in task_names:
    sources[t], shuffled[t] = build_sources(
        T.get_task(t), n_source, source_shots,
        exclude=[e.query for e in targets[t]], seed=seed)
  vec_path = rd.path / "vectors.npz"
  if vec_path.exists():
    z = np.load(vec_path)
    return ({t: z[f"task__{t}"] for t in task_names},
            {t: z[f"shuffled__{t}"] for t in task_names})
  if progress:
    print(f"extracting vectors ({len(task_names)} tasks x {n_source} "
          f"prompts, true and random labels)", flush=True)
  vecs = task_vectors(lm, sources, layers, batch_size, progress)
  nullv = task_vectors(lm, shuffled, layers, batch_size, progress)
  rd.save_npz(vec_path.name, layers=np.asarray(layers),
              **{f"task__{t}": v for t, v in vecs.items()},
              **{f"shuffled__{t}": v for t, v in nullv.items()})
  return vecs, nullv


def _score(t, eps, outs):
  """Strict and faithful correctness of task t's outputs."""
  from icl_jax import tasks as T

  s = [T.is_correct(t, o, e.query, "strict") for o, e in zip(outs, eps)]
  f = [T.is_correct(t, o, e.query, "faithful") for o, e in zip(outs, eps)]
  return s, f


def task_rows(t, eps, res, conditions, layers, fields) -> list[dict]:
  """The none row and one row per (condition, layer) of one task's
  injection result `res` (`probes.injection.inject_final_token`)."""
  from icl_jax.analysis import stats

  n = len(eps)
  base_s, base_f = _score(t, eps, res.baseline)
  base_acc = sum(base_s) / n
  rows = [{**fields, "layer": None, "condition": "none",
           "accuracy": base_acc, "accuracy_faithful": sum(base_f) / n,
           "ci": list(stats.wilson_interval(sum(base_s), n)),
           "examples": [{"query": e.query, "output": o,
                         "expected_target": e.expected}
                        for e, o in zip(eps, res.baseline)]}]
  for v, c in enumerate(conditions):
    for li, layer in enumerate(layers):
      outs = res.texts[v][li]
      s, f = _score(t, eps, outs)
      acc = sum(s) / n
      rows.append({
          **fields, "layer": layer, "condition": c,
          "accuracy": acc, "accuracy_faithful": sum(f) / n,
          "ci": list(stats.wilson_interval(sum(s), n)),
          "delta_vs_none": acc - base_acc,
          "changed_outputs": float(np.mean(
              [o != b for o, b in zip(outs, res.baseline)])),
          "residual_changed": bool(res.changed[v, li]),
          "examples": [{"query": e.query, "output": o,
                        "expected_target": e.expected}
                       for e, o in zip(eps, outs)]})
  return rows


def summarize(rows, task_names, layers, conditions, nulls, *, edit, alpha,
              target_shots, source_shots, n_source, n) -> dict:
  """Mean accuracy per condition and layer, deltas, the best layer and the
  per-task accuracies there."""
  by = {(r["target_task"], r["condition"], r["layer"]): r["accuracy"]
        for r in rows}
  mean_acc = {c: {str(l): float(np.mean([by[(t, c, l)] for t in task_names]))
                  for l in layers} for c in conditions}
  none = float(np.mean([by[(t, "none", None)] for t in task_names]))
  best = max(layers, key=lambda l: mean_acc["task"][str(l)])
  return {
      "layers": layers, "edit": edit, "alpha": alpha,
      "target_shots": target_shots, "source_shots": source_shots,
      "n_source": n_source, "n": n,
      "mean_accuracy_none": none, "mean_accuracy": mean_acc,
      "delta_task_vs_none": {str(l): mean_acc["task"][str(l)] - none
                             for l in layers},
      **{f"delta_task_vs_{c}": {
          str(l): mean_acc["task"][str(l)] - mean_acc[c][str(l)]
          for l in layers} for c in nulls},
      "best_layer": best,
      "per_task_at_best_layer": {
          t: {c: by[(t, c, best if c != "none" else None)]
              for c in ["none"] + conditions} for t in task_names},
      "vectors": "mean residual after block l at each demo's ':' before "
                 "the answer, over n_source prompts x source_shots demos",
  }


def _inject_tasks(lm, rd, todo, targets, vecs, nullv, task_names, *, model,
                  conditions, layers, edit, alpha, target_shots,
                  max_new_tokens, progress):
  """Injects every condition's vector into each pending task's prompts."""
  from icl_jax.interventions.engine import Engine
  from icl_jax.probes import injection

  mean_vec = np.mean([vecs[t] for t in task_names], axis=0)
  engine = Engine(lm, max_new_tokens=max_new_tokens, stop="line")
  for t in todo:
    eps = targets[t]
    prompts = [e.prompt().text for e in eps]
    cand = {"task": vecs[t], "null_mean": mean_vec,
            "null_shuffled": nullv[t]}
    stack = np.stack([cand[c] for c in conditions])  # [V, Lsel, D]
    if progress:
      print(f"[{t}] {len(prompts)} prompts x {len(layers)} layers x "
            f"{len(conditions)} vectors", flush=True)
    res = injection.inject_final_token(engine, prompts, stack, layers,
                                       mode=edit, alpha=alpha)
    fields = {"experiment": EXPERIMENT, "model": model, "mode": "aligned",
              "source_task": t, "target_task": t, "edit": edit,
              "alpha": alpha, "target_shots": target_shots, "n": len(eps)}
    rd.append(task_rows(t, eps, res, conditions, layers, fields))


def run(lm, *, model, task_names, n, n_source, source_shots, target_shots,
        layers, edit, alpha, nulls, seed, out_dir, max_new_tokens=8,
        batch_size=16, progress=True):
  """Extracts the vectors, injects them for the pending tasks, writes the
  summary and plot. Returns (rows of `model`, summary)."""
  from icl_jax import tasks as T
  from icl_jax.analysis.probe_figures import task_vector_accuracy
  from icl_jax.analysis.results import RunDir

  config = dict(model=model, tasks=list(task_names), n=n, n_source=n_source,
                source_shots=source_shots, target_shots=target_shots,
                layers=layers, edit=edit, alpha=alpha, nulls=list(nulls),
                seed=seed, max_new_tokens=max_new_tokens)
  rd = RunDir(out_dir, EXPERIMENT, config, lm=lm)
  conditions = ["task"] + list(nulls)
  t0 = time.time()
  done_tasks = {r["target_task"] for r in rd.rows() if r["model"] == model}
  todo = [t for t in task_names if t not in done_tasks]
  if todo:
    targets = {t: build_targets(T.get_task(t), n, target_shots, seed)
               for t in task_names}
    vecs, nullv = load_or_extract(
        lm, rd, task_names, targets, n_source=n_source,
        source_shots=source_shots, layers=layers, seed=seed,
        batch_size=batch_size, progress=progress)
    _inject_tasks(lm, rd, todo, targets, vecs, nullv, task_names,
                  model=model, conditions=conditions, layers=layers,
                  edit=edit, alpha=alpha, target_shots=target_shots,
                  max_new_tokens=max_new_tokens, progress=progress)
  rows = [r for r in rd.rows() if r["model"] == model]
  summary = summarize(rows, task_names, layers, conditions, nulls, edit=edit,
                      alpha=alpha, target_shots=target_shots,
                      source_shots=source_shots, n_source=n_source, n=n)
  task_vector_accuracy(summary, rd.path / "task_vectors.png", model,
                       conditions)
  rd.write_summary({"seconds": time.time() - t0, "results": summary})
  return rows, summary


def format_summary(s) -> str:
  """Mean accuracy without injection, per layer and condition, and per task
  at the best layer."""
  lines = [f"\nmean strict accuracy, no injection: "
           f"{s['mean_accuracy_none']:.3f}",
           "layer " + " ".join(f"{c:>14s}" for c in s["mean_accuracy"])]
  for l in s["layers"]:
    lines.append(f"{l:5d} " + " ".join(
        f"{s['mean_accuracy'][c][str(l)]:14.3f}" for c in s["mean_accuracy"]))
  lines.append(f"best layer {s['best_layer']}: per task "
               f"{s['per_task_at_best_layer']}")
  return "\n".join(lines)
