r"""exp2 (localization): which (layer, position) encodes the task identity.

    python experiments/localization.py --model=gemma3-270m --n=50 --mode=both

Protocol section 8.2: the 8 core tasks x N prompts (N=50 -> 400), the residual
stream after every block at three positions, a nearest-centroid probe of the
task identity scored on StratifiedShuffleSplit(3, test 20%, seed 42) (mean of
the 3 split accuracies; chance 1/8). A held-out logistic probe (5-fold,
C=1, standardised; L-BFGS capped at --logistic_max_iter iterations, which
separable slices such as the faithful demo positions always reach) is
reported beside it (--probes).

Modes:

* faithful -- the study as run: fixed demos (every prompt of a task has the
  same demo block), the study's positions from ``get_position_index``:
  last_demo_token, separator_after_demo (both the "\n\n" token after the
  last demo, protocol 5.1), first_query_token. The demo positions score a
  trivial 100%: they precede the query, so with causal attention their
  hidden state is the *same vector* for every prompt of a task; the probe
  separates 8 points. The run measures this (``distinct_per_class``,
  ``within_between``) and says so in summary.json.
* aligned -- sampled demos per prompt (seeded), positions from real token
  offsets: last_demo_answer_token (the last demo's final answer token: what
  "last_demo_token" meant), last_demo_separator, first_query_token,
  final_token (the ":" that predicts the answer). Demo-position vectors now
  vary within a task, so the curve is an honest measure.

Outputs: <out_dir>/localization/results.jsonl (one row per mode x probe x
position x layer: accuracy = the study's mean split accuracy, its std,
pooled held-out accuracy with a Wilson CI, n), summary.json (tables, best
cells, the why-trivial diagnosis), probe_accuracy.png, and
features_<mode>.npz (the probe features, reused by benchmarks/probes.py).
"""

from __future__ import annotations

import time

from absl import app, flags

from experiments import common
from icl_jax.studies.layers import parse_layers
from icl_jax.studies.modes import parse_modes

common.define_probe_flags(50, "prompts per task (the study: 50)")
flags.DEFINE_list("probes", ["centroid", "logistic"],
                  "centroid (the study's) and/or logistic (5-fold, C=1)")
flags.DEFINE_integer("logistic_max_iter", 100,
                     "L-BFGS iteration cap of the logistic probe",
                     lower_bound=1)
flags.DEFINE_float("logistic_tol", 1e-3, "gradient-norm tolerance of it")
flags.DEFINE_bool("save_features", True,
                  "write features_<mode>.npz (and reuse it when re-run)")
F = flags.FLAGS

EXPERIMENT = "localization"
FAITHFUL_POSITIONS = ("last_demo_token", "separator_after_demo",
                      "first_query_token")
ALIGNED_POSITIONS = ("last_demo_answer_token", "last_demo_separator",
                     "first_query_token", "final_token")
PROBES = ("centroid", "logistic")
# Protocol 8.2: Llama-3.2-3B first_query_token, layers 0..27
# (results/exp2/probe_accuracy.csv); demo positions 1.000 at every layer.
STUDY_FIRST_QUERY = (.458, .450, .450, .475, .467, .479, .525, .629, .658,
                     .725, .788, .796, .829, .758, .567, .529, .504, .508,
                     .513, .508, .496, .492, .496, .496, .500, .504, .508,
                     .604)
TRIVIAL_TEXT = (
    "faithful demo positions are trivial: with fixed demos every prompt of a "
    "task has the identical demo block, and last_demo_token / "
    "separator_after_demo (both the '\\n\\n' token after the last demo, "
    "protocol 5.1) precede the query, so under causal attention their hidden "
    "state is the same vector for every prompt of the task. The probe sees "
    "one point per task (distinct_per_class = 1, within/between spread ~ 0) "
    "and separates 8 points perfectly at every layer; the score measures "
    "nothing about where the task is encoded.")


def build(task_names, n, k, mode, seed, tokenizer):
  """Prompts, labels and per-position index lists for one mode."""
  from icl_jax import tasks as T
  from icl_jax.probes import features

  specs, labels, queries = [], [], []
  for name in task_names:
    eps = T.make_episodes(T.get_task(name), n, k=k,
                          demo_mode="fixed" if mode == "faithful"
                          else "sampled", seed=seed)
    specs += [e.prompt() for e in eps]
    labels += [name] * len(eps)
    queries += [e.query for e in eps]
  if mode == "faithful":
    ids, sets = features.faithful_index_sets(
        tokenizer, [s.text for s in specs], FAITHFUL_POSITIONS)
  else:
    ids, sets = features.layout_index_sets(tokenizer, specs,
                                           ALIGNED_POSITIONS)
  return specs, labels, queries, ids, sets


def probe_rows(feats, labels, layers, n_layers, *, model, mode, probes,
               n_prompts, logistic_max_iter=100, logistic_tol=1e-3):
  """Probe every (position, layer) slice; one row per probe x slice."""
  import numpy as np

  from icl_jax.probes import diagnostics, dot_icl, logistic

  names = list(feats)
  stack = np.stack([feats[p] for p in names], axis=1)  # [L, P, M, D]
  n_l, n_p = stack.shape[:2]
  flat = stack.reshape(n_l * n_p, *stack.shape[2:])
  spread = diagnostics.class_spread(flat, labels)
  n_classes = len(set(labels))
  results = {}
  timings = {}
  if "centroid" in probes:
    t0 = time.time()
    results["centroid"] = dot_icl.exp2_probe(flat, labels)
    timings["centroid"] = time.time() - t0
  if "logistic" in probes:
    t0 = time.time()
    results["logistic"] = logistic.evaluate_logistic(
        flat, labels, C=1.0, max_iter=logistic_max_iter, tol=logistic_tol)
    timings["logistic"] = time.time() - t0
  rows = []
  for probe, ev in results.items():
    for i in range(n_l):
      for j, pos in enumerate(names):
        g = i * n_p + j
        rows.append({
            "experiment": EXPERIMENT, "model": model, "mode": mode,
            "source_task": "all", "target_task": "all", "layer": layers[i],
            "residual_index": layers[i] + 1,
            "depth_fraction": layers[i] / n_layers, "condition": pos,
            "probe": probe,
            "accuracy": float(ev.mean_split_accuracy[g]),
            "std_split": float(ev.std_split_accuracy[g]),
            "pooled_accuracy": float(ev.accuracy[g]),
            "ci_low": float(ev.ci_low[g]), "ci_high": float(ev.ci_high[g]),
            "n": n_prompts, "n_test_total": int(ev.n_total),
            "n_splits": int(ev.split_accuracy.shape[0]),
            "chance": 1.0 / n_classes,
            "within_between": float(spread["ratio"][g]),
            "distinct_per_class": float(spread["distinct_per_class"][g]),
            "trivial": bool(spread["distinct_per_class"][g] <= 1.0),
        })
  return rows, timings


def summarize(rows, mode, positions, probes, layers):
  """Per-probe tables and best cells (the study's first-max rule)."""
  import numpy as np

  from icl_jax.probes import dot_icl

  out = {}
  for probe in probes:
    sel = {(r["layer"], r["condition"]): r for r in rows
           if r["mode"] == mode and r["probe"] == probe}
    if not sel:
      continue
    table = np.array([[sel[(l, p)]["accuracy"] for p in positions]
                      for l in layers])
    bi = dot_icl.exp2_best_cell(table)
    per_pos = {}
    for j, p in enumerate(positions):
      col = table[:, j]
      per_pos[p] = {"by_layer": [round(float(v), 4) for v in col],
                    "max": float(col.max()),
                    "argmax_layer": int(layers[int(np.argmax(col))]),
                    "distinct_per_class_min": min(
                        sel[(l, p)]["distinct_per_class"] for l in layers),
                    "distinct_per_class_max": max(
                        sel[(l, p)]["distinct_per_class"] for l in layers)}
    out[probe] = {"layers": list(layers), "positions": per_pos,
                  "best_cell": {"layer": int(layers[bi[0]]),
                                "position": positions[bi[1]],
                                "accuracy": float(table[bi])}}
  return out


def plot(rows, path, model, n_layers):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  modes = [m for m in ("faithful", "aligned")
           if any(r["mode"] == m for r in rows)]
  probes = [p for p in PROBES if any(r["probe"] == p for r in rows)]
  fig, axes = plt.subplots(len(probes), len(modes),
                           figsize=(5.2 * len(modes), 3.6 * len(probes)),
                           squeeze=False, sharey=True)
  for i, probe in enumerate(probes):
    for j, mode in enumerate(modes):
      ax = axes[i, j]
      sel = [r for r in rows if r["mode"] == mode and r["probe"] == probe]
      for pos in dict.fromkeys(r["condition"] for r in sel):
        pts = sorted((r["layer"], r["accuracy"]) for r in sel
                     if r["condition"] == pos)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".",
                label=pos)
      if mode == "faithful" and probe == "centroid":
        xs = [l * n_layers / len(STUDY_FIRST_QUERY)
              for l in range(len(STUDY_FIRST_QUERY))]
        ax.plot(xs, STUDY_FIRST_QUERY, color="gray", ls=":",
                label="study first_query (Llama-3B, depth-scaled)")
      ax.axhline(1 / 8, color="k", lw=0.6, ls="--")
      ax.set_title(f"{mode}, {probe} probe", fontsize=9)
      ax.set_xlabel("layer (block output)")
      ax.set_ylim(0, 1.05)
      ax.grid(alpha=0.3)
      ax.legend(fontsize=6, loc="lower right")
    axes[i, 0].set_ylabel("task-identity accuracy")
  fig.suptitle(f"exp2 localization on {model} (chance 1/8 dashed)",
               fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _load_features(path, labels, layers, positions):
  """Features saved by an earlier run of the same configuration, or None."""
  import numpy as np

  if not path.exists():
    return None
  z = np.load(path)
  if (list(z["labels"]) != list(labels) or list(z["layers"]) != list(layers)
      or list(z["positions"]) != list(positions)):
    return None
  return {p: z[f"feat__{p}"] for p in positions}


def run(lm, *, model, mode_list, n, k, layers, seed, probes, out_dir,
        batch_size=16, save_features=True, progress=True,
        logistic_max_iter=100, logistic_tol=1e-3):
  import numpy as np

  from icl_jax.analysis.results import RunDir
  from icl_jax.probes import features
  from icl_jax.tasks import CORE_TASKS

  config = dict(model=model, modes=mode_list, n=n, k=k, layers=layers,
                seed=seed, probes=list(probes), tasks=list(CORE_TASKS),
                logistic_max_iter=logistic_max_iter,
                logistic_tol=logistic_tol)
  rd = RunDir(out_dir, EXPERIMENT, config, key_extra=("probe",), lm=lm)
  done = rd.done()
  timings = {}
  summary = {"why_faithful_demo_positions_are_trivial": TRIVIAL_TEXT}
  for mode in mode_list:
    positions = FAITHFUL_POSITIONS if mode == "faithful" else \
        ALIGNED_POSITIONS
    want = {(model, mode, "all", "all", l, p, pr) for l in layers
            for p in positions for pr in probes}
    if not want <= done:
      t0 = time.time()
      specs, labels, queries, ids, sets = build(
          CORE_TASKS, n, k, mode, seed, lm.tokenizer)
      if progress:
        print(f"[{mode}] {len(ids)} prompts, {len(positions)} positions, "
              f"{len(layers)} layers", flush=True)
      feat_path = rd.path / f"features_{mode}.npz"
      feats = _load_features(feat_path, labels, layers, positions)
      if feats is None:
        feats = features.collect(lm, ids, sets,
                                 residual_indices=[l + 1 for l in layers],
                                 batch_size=batch_size, progress=progress)
      elif progress:
        print(f"[{mode}] reusing {feat_path}", flush=True)
      timings[f"{mode}_features_s"] = time.time() - t0
      if save_features and not feat_path.exists():
        rd.save_npz(feat_path.name,
                 labels=np.asarray(labels), layers=np.asarray(layers),
                    positions=np.asarray(list(positions)),
                    queries=np.asarray(queries),
                    **{f"feat__{p}": feats[p] for p in positions})
      rows, t = probe_rows(feats, labels, layers, lm.n_layers, model=model,
                           mode=mode, probes=probes, n_prompts=len(labels),
                           logistic_max_iter=logistic_max_iter,
                           logistic_tol=logistic_tol)
      timings.update({f"{mode}_{p}_probe_s": v for p, v in t.items()})
      rd.append([r for r in rows if (r["model"], r["mode"], "all", "all",
                                     r["layer"], r["condition"], r["probe"])
                 not in done])
    rows = [r for r in rd.rows() if r["model"] == model]
    summary[mode] = summarize(rows, mode, positions, probes, layers)
  rows = [r for r in rd.rows() if r["model"] == model]
  if "faithful" in mode_list:
    triv = [r for r in rows if r["mode"] == "faithful"
            and r["condition"] != "first_query_token"]
    summary["faithful_demo_positions"] = {
        "all_trivial": all(r["trivial"] for r in triv),
        "accuracy_min": min(r["accuracy"] for r in triv),
        "distinct_per_class_max": max(r["distinct_per_class"] for r in triv),
        "within_between_max": max(r["within_between"] for r in triv),
    }
  summary["study_reference_first_query_token_llama3b"] = list(
      STUDY_FIRST_QUERY)
  plot(rows, rd.path / "probe_accuracy.png", model, lm.n_layers)
  rd.write_summary({"timings_s": timings, "results": summary})
  return rows, summary


def print_tables(summary, mode_list, probes):
  for mode in mode_list:
    for probe in probes:
      s = summary.get(mode, {}).get(probe)
      if not s:
        continue
      names = list(s["positions"])
      print(f"\n{mode} / {probe}: accuracy per layer")
      print("layer " + " ".join(f"{p[:14]:>14s}" for p in names))
      for i, l in enumerate(s["layers"]):
        print(f"{l:5d} " + " ".join(
            f"{s['positions'][p]['by_layer'][i]:14.3f}" for p in names))
      print(f"best cell: {s['best_cell']}")


def main(argv):
  del argv
  from icl_jax.studies.study import quiet_logs

  quiet_logs()
  bad = [p for p in F.probes if p not in PROBES]
  if bad:
    raise ValueError(f"--probes: unknown {bad}; known: {PROBES}")
  lm = common.load_model(EXPERIMENT)
  layers = parse_layers(F.layers, lm.n_layers)
  mode_list = parse_modes(F.mode)
  _, summary = run(lm, model=F.model, mode_list=mode_list, n=F.n, k=F.k,
                   layers=layers, seed=F.seed, probes=F.probes,
                   out_dir=F.out_dir, batch_size=F.batch_size,
                   save_features=F.save_features,
                   logistic_max_iter=F.logistic_max_iter,
                   logistic_tol=F.logistic_tol)
  print_tables(summary, mode_list, F.probes)
  if "faithful" in mode_list:
    print("\n" + TRIVIAL_TEXT)
    print(summary["faithful_demo_positions"])


if __name__ == "__main__":
  app.run(main)
