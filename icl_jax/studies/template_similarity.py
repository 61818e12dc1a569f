"""exp19: does surface template similarity predict transfer? (protocol
8.17) (`experiments/template_similarity.py`; no model).

Per task, 10 surface features of its 5 demo pairs (`analysis.similarity`);
pair similarity = cosine of the feature vectors; Pearson r (with p and a
bootstrap CI) against transfer rates over the ordered pairs: the original's
exp29 matrix, its "activation similarity" (exp6 cosine), and our own
pair_matrix rows (and ontology similarities) per model, mode and layer.
"""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from icl_jax.analysis import reference as R
from icl_jax.analysis import similarity as S
from icl_jax.analysis.results import read_rows

EXPERIMENT = "template_similarity"
REFERENCE_MODEL = "llama-3.2-3b (original)"
BASE = {"experiment": EXPERIMENT, "source_task": "all",
        "target_task": "all", "n": None, "transfer": None,
        "preserve": None, "neither": None, "examples": []}


def load_rows(paths) -> list[dict]:
  """The rows of several results.jsonl files (corrupt lines reported and
  left out)."""
  rows = []
  for p in paths:
    rows += read_rows(p)
  return rows


def reference_rows(pairs, surf) -> list[dict]:
  """The original's two correlations: surface similarity vs its exp29
  rates, and its exp6 activation similarity vs the same rates."""
  out = []
  ref_pairs = [p for p in pairs if p in R.EXP29["transfer"]]
  if len(ref_pairs) >= 3:
    ys = [R.EXP29["transfer"][p] for p in ref_pairs]
    out.append({**BASE, "model": REFERENCE_MODEL, "mode": "faithful",
                "layer": R.EXP29_LAYER, "condition": "surface_vs_transfer",
                "transfer_source": "reference exp29",
                **S.correlate([surf[p] for p in ref_pairs], ys)})
    sim = np.array(R.EXP6_SIMILARITY)
    idx = {t: i for i, t in enumerate(R.EXP6_TASKS)}
    act = [sim[idx[s], idx[t]] for s, t in ref_pairs]
    out.append({**BASE, "model": REFERENCE_MODEL, "mode": "faithful",
                "layer": R.EXP29_LAYER,
                "condition": "activation_vs_transfer",
                "activation_layer": R.EXP6_LAYER,
                "transfer_source": "reference exp29 vs exp6",
                **S.correlate(act, ys)})
  return out


def _group_transfer(transfer_rows, modes, model_filter, condition):
  """{(model, mode, layer): {pair: row}} of our transfer rows."""
  groups = defaultdict(dict)
  for r in transfer_rows:
    if r.get("condition") != condition or r.get("mode") not in modes:
      continue
    if model_filter and r.get("model") != model_filter:
      continue
    groups[(r["model"], r["mode"], r["layer"])][
        (r["source_task"], r["target_task"])] = r
  return groups


def correlations(pairs, features, transfer_rows, ontology_rows, modes,
                 model_filter=None, condition="all_demo"):
  """Every correlation row: the reference ones, then ours; and the surface
  similarity of each pair."""
  surf = {p: S.feature_similarity(features, *p)[0] for p in pairs}
  out = reference_rows(pairs, surf)
  groups = _group_transfer(transfer_rows, modes, model_filter, condition)
  onto = {(r["model"], r["mode"], r["layer"]): r for r in ontology_rows}
  for (model, mode, layer), by_pair in sorted(groups.items(),
                                              key=lambda kv: str(kv[0])):
    ps = [p for p in pairs if p in by_pair]
    if len(ps) < 3:
      continue
    ys = [by_pair[p]["transfer"] for p in ps]
    n_layers = next(iter(by_pair.values())).get("n_layers")
    common = {**BASE, "model": model, "mode": mode, "layer": layer,
              "n_layers": n_layers, "transfer_source": "our pair_matrix"}
    out.append({**common, "condition": "surface_vs_transfer",
                **S.correlate([surf[p] for p in ps], ys)})
    o = onto.get((model, mode, layer))
    if o is not None:
      t_idx = {t: i for i, t in enumerate(o["tasks"])}
      ok = [p for p in ps if p[0] in t_idx and p[1] in t_idx]
      if len(ok) >= 3:
        act = [o["similarity"][t_idx[s]][t_idx[t]] for s, t in ok]
        out.append({**common, "condition": "activation_vs_transfer",
                    "activation_layer": layer,
                    **S.correlate(act, [by_pair[p]["transfer"]
                                        for p in ok])})
  return out, surf


def write_tables(path: Path, tasks, pairs, features) -> None:
  """task_features.csv and pair_similarity.csv."""
  with open(path / "task_features.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["task", *S.FEATURES])
    for t in tasks:
      w.writerow([t, *(round(features[t][k], 4) for k in S.FEATURES)])
  with open(path / "pair_similarity.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["source", "target", "cosine", "euclidean",
                "reference_transfer"])
    for p in pairs:
      c, e = S.feature_similarity(features, *p)
      w.writerow([*p, round(c, 4), round(e, 4),
                  R.EXP29["transfer"].get(p)])


def scatter_series(pairs, surf, rows, transfer_rows, condition) -> dict:
  """{label: (surface similarities, transfer rates)}: the original's, and
  ours at each model's study layer."""
  from icl_jax.studies.layers import STUDY_FRACTION, layer_at_fraction

  series = {"original exp29 (Llama-3B L8)": (
      [surf[p] for p in pairs if p in R.EXP29["transfer"]],
      [R.EXP29["transfer"][p] for p in pairs if p in R.EXP29["transfer"]])}
  for r in rows:
    if r["model"] == REFERENCE_MODEL or r["condition"] != \
        "surface_vs_transfer":
      continue
    nl = r.get("n_layers")
    if nl and r["layer"] != layer_at_fraction(STUDY_FRACTION, nl):
      continue
    ps = [(t["source_task"], t["target_task"]) for t in transfer_rows
          if t.get("model") == r["model"] and t.get("mode") == r["mode"]
          and t.get("layer") == r["layer"]
          and t.get("condition") == condition
          and (t["source_task"], t["target_task"]) in surf]
    ys = {(t["source_task"], t["target_task"]): t["transfer"]
          for t in transfer_rows if t.get("model") == r["model"]
          and t.get("mode") == r["mode"] and t.get("layer") == r["layer"]
          and t.get("condition") == condition}
    series[f"{r['model']} {r['mode']} L{r['layer']}"] = (
        [surf[p] for p in ps], [ys[p] for p in ps])
  return series


def run(*, pairs, modes, out_dir, model_filter, condition,
        transfer_results=()):
  """Every correlation row into <out_dir>/template_similarity (recomputed
  each run), the tables, the scatter plot and summary.json. Returns
  (rows, results directory)."""
  from icl_jax.analysis import figures
  from icl_jax.analysis.results import RunDir

  t0 = time.time()
  tasks = sorted({t for p in pairs for t in p})
  features = {t: S.task_features(t) for t in tasks}
  out = Path(out_dir)
  transfer_rows = load_rows([out / "pair_matrix" / "results.jsonl",
                             *transfer_results])
  ontology_rows = load_rows([out / "ontology" / "results.jsonl"])
  rd = RunDir(out_dir, EXPERIMENT,
              {"pairs": [list(p) for p in pairs], "condition": condition})
  rows, surf = correlations(pairs, features, transfer_rows, ontology_rows,
                            modes, model_filter, condition)
  rd.replace_rows(rows)
  write_tables(rd.path, tasks, pairs, features)
  figures.scatter(scatter_series(pairs, surf, rows, transfer_rows,
                                 condition),
                  rd.path / "similarity_vs_transfer.png",
                  "surface template similarity (cosine)", "transfer rate",
                  title="exp19: surface similarity vs transfer")
  rd.write_summary({"seconds": time.time() - t0,
                    "features": features, "correlations": [
                        {k: r.get(k) for k in ("model", "mode", "layer",
                                               "condition", "r", "p", "ci",
                                               "n_pairs")} for r in rows]})
  return rows, rd.path


def format_rows(rows) -> str:
  """One line per correlation with r: model, mode, layer, r, p, CI."""
  return "\n".join(
      f"{r['model']:26} {r['mode']:9} L{r['layer']!s:<3} "
      f"{r['condition']:23} r = {r['r']:+.4f} (p {r['p']:.4f}, 95% CI "
      f"[{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}], {r['n_pairs']} pairs)"
      for r in rows if r.get("r") is not None)
