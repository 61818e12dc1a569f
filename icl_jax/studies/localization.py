"""exp2 (localization): which (layer, position) encodes the task identity.

Protocol section 8.2: the core tasks x N prompts, the residual stream after
every block at three positions (faithful: the study's indices; aligned: real
token offsets, sampled demos), a nearest-centroid probe of the task identity
(the study's; mean of 3 StratifiedShuffleSplit accuracies) and a held-out
logistic probe beside it. `run` writes results.jsonl (one row per mode x
probe x position x layer), summary.json (tables, best cells, the diagnosis
of why the faithful demo positions are trivial), probe_accuracy.png and the
features (features_<mode>.npz, reused when re-run).
"""

from __future__ import annotations

import time

import numpy as np

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


def check_probes(probes) -> None:
  """--probes: known probe names only."""
  bad = [p for p in probes if p not in PROBES]
  if bad:
    raise ValueError(f"--probes: unknown {bad}; known: {PROBES}")


def positions_of(mode: str) -> tuple[str, ...]:
  """The probed positions of a mode."""
  return FAITHFUL_POSITIONS if mode == "faithful" else ALIGNED_POSITIONS


def build(task_names, n, k, mode, seed, tokenizer):
  """Prompts, labels, queries and per-position index lists for one mode."""
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


def _fit_probes(flat, labels, probes, logistic_max_iter, logistic_tol):
  """{probe: evaluation} and {probe: seconds} over the flat slices."""
  from icl_jax.probes import dot_icl, logistic

  results, timings = {}, {}
  if "centroid" in probes:
    t0 = time.time()
    results["centroid"] = dot_icl.exp2_probe(flat, labels)
    timings["centroid"] = time.time() - t0
  if "logistic" in probes:
    t0 = time.time()
    results["logistic"] = logistic.evaluate_logistic(
        flat, labels, C=1.0, max_iter=logistic_max_iter, tol=logistic_tol)
    timings["logistic"] = time.time() - t0
  return results, timings


def probe_rows(feats, labels, layers, n_layers, *, model, mode, probes,
               n_prompts, logistic_max_iter=100, logistic_tol=1e-3):
  """Probe every (position, layer) slice; one row per probe x slice."""
  from icl_jax.probes import diagnostics

  names = list(feats)
  stack = np.stack([feats[p] for p in names], axis=1)  # [L, P, M, D]
  n_l, n_p = stack.shape[:2]
  flat = stack.reshape(n_l * n_p, *stack.shape[2:])
  spread = diagnostics.class_spread(flat, labels)
  n_classes = len(set(labels))
  results, timings = _fit_probes(flat, labels, probes, logistic_max_iter,
                                 logistic_tol)
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


def load_features(path, labels, layers, positions):
  """Features saved by an earlier run of the same configuration, or None."""
  if not path.exists():
    return None
  z = np.load(path)
  if (list(z["labels"]) != list(labels) or list(z["layers"]) != list(layers)
      or list(z["positions"]) != list(positions)):
    return None
  return {p: z[f"feat__{p}"] for p in positions}


def _mode_features(lm, rd, mode, n, k, layers, seed, batch_size,
                   save_features, progress):
  """(features by position, labels) of one mode, computed or reused."""
  from icl_jax.probes import features
  from icl_jax.tasks import CORE_TASKS

  positions = positions_of(mode)
  specs, labels, queries, ids, sets = build(CORE_TASKS, n, k, mode, seed,
                                            lm.tokenizer)
  if progress:
    print(f"[{mode}] {len(ids)} prompts, {len(positions)} positions, "
          f"{len(layers)} layers", flush=True)
  feat_path = rd.path / f"features_{mode}.npz"
  feats = load_features(feat_path, labels, layers, positions)
  if feats is None:
    feats = features.collect(lm, ids, sets,
                             residual_indices=[l + 1 for l in layers],
                             batch_size=batch_size, progress=progress)
  elif progress:
    print(f"[{mode}] reusing {feat_path}", flush=True)
  if save_features and not feat_path.exists():
    rd.save_npz(feat_path.name,
                labels=np.asarray(labels), layers=np.asarray(layers),
                positions=np.asarray(list(positions)),
                queries=np.asarray(queries),
                **{f"feat__{p}": feats[p] for p in positions})
  return feats, labels


def _trivial_summary(rows) -> dict:
  """How trivial the faithful demo positions are (min accuracy, spread)."""
  triv = [r for r in rows if r["mode"] == "faithful"
          and r["condition"] != "first_query_token"]
  return {
      "all_trivial": all(r["trivial"] for r in triv),
      "accuracy_min": min(r["accuracy"] for r in triv),
      "distinct_per_class_max": max(r["distinct_per_class"] for r in triv),
      "within_between_max": max(r["within_between"] for r in triv),
  }


def run(lm, *, model, mode_list, n, k, layers, seed, probes, out_dir,
        batch_size=16, save_features=True, progress=True,
        logistic_max_iter=100, logistic_tol=1e-3):
  """Runs the missing (mode, probe, position, layer) cells; writes the
  summary and plot. Returns (rows of `model`, summary)."""
  from icl_jax.analysis.probe_figures import localization_curves
  from icl_jax.analysis.results import RunDir
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
    positions = positions_of(mode)
    want = {(model, mode, "all", "all", l, p, pr) for l in layers
            for p in positions for pr in probes}
    if not want <= done:
      t0 = time.time()
      feats, labels = _mode_features(lm, rd, mode, n, k, layers, seed,
                                     batch_size, save_features, progress)
      timings[f"{mode}_features_s"] = time.time() - t0
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
    summary["faithful_demo_positions"] = _trivial_summary(rows)
  summary["study_reference_first_query_token_llama3b"] = list(
      STUDY_FIRST_QUERY)
  localization_curves(rows, rd.path / "probe_accuracy.png", model,
                      lm.n_layers, PROBES, STUDY_FIRST_QUERY)
  rd.write_summary({"timings_s": timings, "results": summary})
  return rows, summary


def format_tables(summary, mode_list, probes) -> str:
  """Accuracy per layer and position, and the best cell, per mode x probe
  (and the faithful diagnosis when faithful mode ran)."""
  lines = []
  for mode in mode_list:
    for probe in probes:
      s = summary.get(mode, {}).get(probe)
      if not s:
        continue
      names = list(s["positions"])
      lines.append(f"\n{mode} / {probe}: accuracy per layer")
      lines.append("layer " + " ".join(f"{p[:14]:>14s}" for p in names))
      for i, l in enumerate(s["layers"]):
        lines.append(f"{l:5d} " + " ".join(
            f"{s['positions'][p]['by_layer'][i]:14.3f}" for p in names))
      lines.append(f"best cell: {s['best_cell']}")
  if "faithful" in mode_list:
    lines.append("\n" + TRIVIAL_TEXT)
    lines.append(str(summary["faithful_demo_positions"]))
  return "\n".join(lines)
