r"""Task vectors (Han et al., App. C): extraction and injection at the query.

    python experiments/task_vectors.py --model=gemma3-270m --n=30 \
        --layers=4,6,9,12 --edit=replace --target_shots=0

Extraction: for every core task, ``--n_source`` prompts with
``--source_shots`` demos sampled per prompt (disjoint from the target
queries); the task vector at layer l is the mean residual after block l over
the token before each demo answer (each demo's ":" after "Output") of every
prompt -- "mean over demos, then over prompts".

Injection: target prompts of the same task (the first RNG call's queries,
with ``--target_shots`` demos: 0 = Hendel-style zero-shot "Input: q\nOutput:",
> 0 = one sampled demo block shared by the task's prompts, as in Han et
al.'s few-shot patching), the vector written at the query's final token
(the ":" before the answer) after block l, through the intervention engine
(``--edit=replace``: h <- v; ``add``: h <- h + alpha v), prefill only.

Conditions per (task, layer):
  none           no injection (the clean prompt)
  task           the task's own vector (Han's positive intervention)
  null_mean      the mean of all tasks' vectors (a task-agnostic vector of
                 the same kind and scale)
  null_shuffled  the vector of the task's random-label prompts: the same
                 demo inputs with the demo outputs permuted among the demos
                 (a derangement), i.e. the task's output format without its
                 input-output rule (the analogue of Han's Null class, "inputs
                 paired with random outputs")

Accuracy: greedy, strict scorer (the faithful scorer is recorded too).
Outputs: <out_dir>/task_vectors/results.jsonl (row per task x layer x
condition with accuracy, Wilson CI, n, delta vs none, fraction of outputs
changed, examples), summary.json, task_vectors.png, vectors.npz.
"""

from __future__ import annotations

import random
import time

from absl import app, flags

from experiments import common
from icl_jax.studies.layers import parse_layers

common.define_task_flags(
    30, "target prompts per task", layers="mid",
    layers_help="'mid' (depth fractions .2/.35/.5/.65), 'all' or a comma "
                "list of block indices")
flags.DEFINE_integer("n_source", 20, "source prompts per task (vectors)",
                     lower_bound=1)
flags.DEFINE_integer("source_shots", 5, "demos per source prompt",
                     lower_bound=1)
flags.DEFINE_integer("target_shots", 0, "demos per target prompt",
                     lower_bound=0)
flags.DEFINE_enum("edit", "replace", ["replace", "add"], "injection mode")
flags.DEFINE_float("alpha", 1.0, "scale of --edit=add")
flags.DEFINE_list("nulls", ["null_mean", "null_shuffled"],
                  "null conditions (null_mean, null_shuffled)")
flags.DEFINE_integer("batch_size", 16, "source prompts per forward",
                     lower_bound=1)
F = flags.FLAGS

EXPERIMENT = "task_vectors"
NULLS = ("null_mean", "null_shuffled")
# --layers=mid: the layers at these depth fractions.
MID_LAYERS = "frac:0.2,0.35,0.5,0.65"


def _derangement(items, rng):
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
    outs = _derangement([y for _, y in demos], rng)
    shuffled.append(T.build_prompt(
        [(x, y) for (x, _), y in zip(demos, outs)], query))
  return specs, shuffled


def build_targets(task, n, k, seed):
  from icl_jax import tasks as T

  eps = T.make_episodes(task, n, k=k,
                        demo_mode="sampled_shared" if k else "fixed",
                        seed=seed + 7)
  return eps


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


def plot(summary, path, model, conditions):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  layers = summary["layers"]
  fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
  for c in conditions:
    ys = [summary["mean_accuracy"][c][str(l)] for l in layers]
    a1.plot(layers, ys, marker="o", label=c)
  a1.axhline(summary["mean_accuracy_none"], color="k", ls="--",
             label="none (no injection)")
  a1.set_xlabel("layer (block output) of the injection")
  a1.set_ylabel("mean strict accuracy over tasks")
  a1.set_ylim(-0.02, 1.02)
  a1.grid(alpha=0.3)
  a1.legend(fontsize=7)
  best = summary["best_layer"]
  tasks = list(summary["per_task_at_best_layer"])
  width = 0.8 / (len(conditions) + 1)
  for j, c in enumerate(["none"] + list(conditions)):
    a2.bar([i + j * width for i in range(len(tasks))],
           [summary["per_task_at_best_layer"][t][c] for t in tasks], width,
           label=c)
  a2.set_xticks([i + 0.4 for i in range(len(tasks))], tasks, rotation=45,
                ha="right", fontsize=7)
  a2.set_ylim(0, 1.02)
  a2.set_title(f"per task at layer {best}", fontsize=9)
  a2.legend(fontsize=7)
  fig.suptitle(f"task-vector injection on {model} ({summary['edit']}, "
               f"{summary['target_shots']}-shot targets)", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def run(lm, *, model, task_names, n, n_source, source_shots, target_shots,
        layers, edit, alpha, nulls, seed, out_dir, max_new_tokens=8,
        batch_size=16, progress=True):
  import numpy as np

  from icl_jax import tasks as T
  from icl_jax.analysis import stats
  from icl_jax.analysis.results import RunDir
  from icl_jax.interventions.engine import Engine
  from icl_jax.probes import injection

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
    sources, shuffled = {}, {}
    for t in task_names:
      sources[t], shuffled[t] = build_sources(
          T.get_task(t), n_source, source_shots,
          exclude=[e.query for e in targets[t]], seed=seed)
    vec_path = rd.path / "vectors.npz"
    if vec_path.exists():
      z = np.load(vec_path)
      vecs = {t: z[f"task__{t}"] for t in task_names}
      nullv = {t: z[f"shuffled__{t}"] for t in task_names}
    else:
      if progress:
        print(f"extracting vectors ({len(task_names)} tasks x {n_source} "
              f"prompts, true and random labels)", flush=True)
      vecs = task_vectors(lm, sources, layers, batch_size, progress)
      nullv = task_vectors(lm, shuffled, layers, batch_size, progress)
      rd.save_npz(vec_path.name, layers=np.asarray(layers),
                  **{f"task__{t}": v for t, v in vecs.items()},
                  **{f"shuffled__{t}": v for t, v in nullv.items()})
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

      def score(outs):
        s = [T.is_correct(t, o, e.query, "strict")
             for o, e in zip(outs, eps)]
        f = [T.is_correct(t, o, e.query, "faithful")
             for o, e in zip(outs, eps)]
        return s, f

      base_s, base_f = score(res.baseline)
      base_acc = sum(base_s) / len(eps)
      common_fields = {"experiment": EXPERIMENT, "model": model,
                       "mode": "aligned", "source_task": t,
                       "target_task": t, "edit": edit, "alpha": alpha,
                       "target_shots": target_shots, "n": len(eps)}
      rows = [{**common_fields, "layer": None, "condition": "none",
               "accuracy": base_acc, "accuracy_faithful": sum(base_f) /
               len(eps), "ci": list(stats.wilson_interval(sum(base_s),
                                                          len(eps))),
               "examples": [{"query": e.query, "output": o,
                             "expected_target": e.expected}
                            for e, o in zip(eps, res.baseline)]}]
      for v, c in enumerate(conditions):
        for li, layer in enumerate(layers):
          outs = res.texts[v][li]
          s, f = score(outs)
          acc = sum(s) / len(eps)
          rows.append({
              **common_fields, "layer": layer, "condition": c,
              "accuracy": acc, "accuracy_faithful": sum(f) / len(eps),
              "ci": list(stats.wilson_interval(sum(s), len(eps))),
              "delta_vs_none": acc - base_acc,
              "changed_outputs": float(np.mean(
                  [o != b for o, b in zip(outs, res.baseline)])),
              "residual_changed": bool(res.changed[v, li]),
              "examples": [{"query": e.query, "output": o,
                            "expected_target": e.expected}
                           for e, o in zip(eps, outs)]})
      rd.append(rows)
  rows = [r for r in rd.rows() if r["model"] == model]
  by = {(r["target_task"], r["condition"], r["layer"]): r["accuracy"]
        for r in rows}
  mean_acc = {c: {str(l): float(np.mean([by[(t, c, l)] for t in task_names]))
                  for l in layers} for c in conditions}
  none = float(np.mean([by[(t, "none", None)] for t in task_names]))
  best = max(layers, key=lambda l: mean_acc["task"][str(l)])
  summary = {
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
  plot(summary, rd.path / "task_vectors.png", model, conditions)
  rd.write_summary({"seconds": time.time() - t0, "results": summary})
  return rows, summary


def main(argv):
  del argv
  from icl_jax.studies.study import quiet_logs

  quiet_logs()
  task_names = common.task_names()
  bad = [c for c in F.nulls if c not in NULLS]
  if bad:
    raise ValueError(f"--nulls: unknown {bad}; known: {NULLS}")
  if F.layers == "mid":
    F.layers = MID_LAYERS
  lm = common.load_model(EXPERIMENT)
  layers = parse_layers(F.layers, lm.n_layers)
  _, s = run(lm, model=F.model, task_names=task_names, n=F.n,
             n_source=F.n_source, source_shots=F.source_shots,
             target_shots=F.target_shots, layers=layers, edit=F.edit,
             alpha=F.alpha, nulls=F.nulls, seed=F.seed, out_dir=F.out_dir,
             max_new_tokens=F.max_new_tokens, batch_size=F.batch_size)
  print(f"\nmean strict accuracy, no injection: {s['mean_accuracy_none']:.3f}")
  print("layer " + " ".join(f"{c:>14s}" for c in s["mean_accuracy"]))
  for l in s["layers"]:
    print(f"{l:5d} " + " ".join(f"{s['mean_accuracy'][c][str(l)]:14.3f}"
                                for c in s["mean_accuracy"]))
  print(f"best layer {s['best_layer']}: per task "
        f"{s['per_task_at_best_layer']}")


if __name__ == "__main__":
  app.run(main)
