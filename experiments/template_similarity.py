r"""exp19: does surface template similarity predict transfer? (8.17)

    python experiments/template_similarity.py --out_dir=runs/gemma3-270m

No model. Per task, 10 surface features of its 5 demo pairs
(`icl_jax/analysis/similarity.py`); pair similarity = cosine of the feature
vectors; Pearson r (two-sided t-test p, bootstrap CI with 10,000 pair
resamples, RandomState(42)) against transfer rates over the ordered pairs:

  * the original's exp29 matrix (Llama-3B, layer 8): reproduces r = -0.0536,
    CI [-0.2635, 0.1537];
  * the original's "activation similarity" (exp6 layer-14 cosine vs exp29),
    which the paper quotes as r = 0.31 but never computed: 0.378;
  * our own exp29 rows found in <out_dir>/pair_matrix/results.jsonl (and
    --transfer_results), per model, mode and layer; and, where
    <out_dir>/ontology/results.jsonl has the same model/mode/layer, our
    activation-similarity correlation.

Writes <out_dir>/template_similarity/: results.jsonl (one row per
correlation), task_features.csv, pair_similarity.csv, summary.json,
similarity_vs_transfer.png. Re-running recomputes everything (cheap).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from absl import app, flags

from icl_jax.analysis.results import read_rows
from icl_jax.tasks import CORE_TASKS

flags.DEFINE_string("out_dir", "runs", "results root (reads pair_matrix/ and "
                    "ontology/ there; writes template_similarity/)")
flags.DEFINE_string("model", None, "only use our results of this model "
                    "(default: every model found)")
flags.DEFINE_enum("mode", "both", ["faithful", "aligned", "both"],
                  "modes of our results to use")
flags.DEFINE_string("pairs", ",".join(
    f"{s}:{t}" for s, t in itertools.permutations(CORE_TASKS, 2)),
                    "ordered pairs to correlate over")
flags.DEFINE_list("transfer_results", [],
                  "extra results.jsonl files with transfer rows")
flags.DEFINE_string("condition", "all_demo", "condition of our transfer rows")
F = flags.FLAGS
EXPERIMENT = "template_similarity"
REFERENCE_MODEL = "llama-3.2-3b (original)"


def load_rows(paths):
  rows = []
  for p in paths:
    rows += read_rows(p)  # corrupt lines are reported and left out
  return rows


def correlations(pairs, features, transfer_rows, ontology_rows, modes,
                 model_filter=None, condition="all_demo"):
  """Every correlation row: the reference ones, then ours."""
  from collections import defaultdict

  import numpy as np

  from icl_jax.analysis import reference as R
  from icl_jax.analysis import similarity as S

  surf = {p: S.feature_similarity(features, *p)[0] for p in pairs}
  out = []
  ref_pairs = [p for p in pairs if p in R.EXP29["transfer"]]
  base = {"experiment": EXPERIMENT, "source_task": "all",
          "target_task": "all", "n": None, "transfer": None,
          "preserve": None, "neither": None, "examples": []}
  if len(ref_pairs) >= 3:
    ys = [R.EXP29["transfer"][p] for p in ref_pairs]
    out.append({**base, "model": REFERENCE_MODEL, "mode": "faithful",
                "layer": R.EXP29_LAYER, "condition": "surface_vs_transfer",
                "transfer_source": "reference exp29",
                **S.correlate([surf[p] for p in ref_pairs], ys)})
    sim = np.array(R.EXP6_SIMILARITY)
    idx = {t: i for i, t in enumerate(R.EXP6_TASKS)}
    act = [sim[idx[s], idx[t]] for s, t in ref_pairs]
    out.append({**base, "model": REFERENCE_MODEL, "mode": "faithful",
                "layer": R.EXP29_LAYER,
                "condition": "activation_vs_transfer",
                "activation_layer": R.EXP6_LAYER,
                "transfer_source": "reference exp29 vs exp6",
                **S.correlate(act, ys)})
  groups = defaultdict(dict)
  for r in transfer_rows:
    if r.get("condition") != condition or r.get("mode") not in modes:
      continue
    if model_filter and r.get("model") != model_filter:
      continue
    groups[(r["model"], r["mode"], r["layer"])][
        (r["source_task"], r["target_task"])] = r
  onto = {(r["model"], r["mode"], r["layer"]): r for r in ontology_rows}
  for (model, mode, layer), by_pair in sorted(groups.items(),
                                              key=lambda kv: str(kv[0])):
    ps = [p for p in pairs if p in by_pair]
    if len(ps) < 3:
      continue
    ys = [by_pair[p]["transfer"] for p in ps]
    n_layers = next(iter(by_pair.values())).get("n_layers")
    common = {**base, "model": model, "mode": mode, "layer": layer,
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


def main(argv):
  del argv
  import csv

  from icl_jax.analysis import figures
  from icl_jax.analysis import reference as R
  from icl_jax.analysis import similarity as S
  from icl_jax.analysis.results import RunDir
  from icl_jax.studies import study, modes

  t0 = time.time()
  pairs = study.parse_pairs(F.pairs)
  modes = modes.parse_modes(F.mode)
  tasks = sorted({t for p in pairs for t in p})
  features = {t: S.task_features(t) for t in tasks}
  out = Path(F.out_dir)
  transfer_rows = load_rows([out / "pair_matrix" / "results.jsonl",
                             *F.transfer_results])
  ontology_rows = load_rows([out / "ontology" / "results.jsonl"])
  rd = RunDir(F.out_dir, EXPERIMENT,
              {"pairs": [list(p) for p in pairs], "condition": F.condition})
  rows, surf = correlations(pairs, features, transfer_rows, ontology_rows,
                            modes, F.model, F.condition)
  rd.replace_rows(rows)
  with open(rd.path / "task_features.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["task", *S.FEATURES])
    for t in tasks:
      w.writerow([t, *(round(features[t][k], 4) for k in S.FEATURES)])
  with open(rd.path / "pair_similarity.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["source", "target", "cosine", "euclidean",
                "reference_transfer"])
    for p in pairs:
      c, e = S.feature_similarity(features, *p)
      w.writerow([*p, round(c, 4), round(e, 4),
                  R.EXP29["transfer"].get(p)])
  series = {"original exp29 (Llama-3B L8)": (
      [surf[p] for p in pairs if p in R.EXP29["transfer"]],
      [R.EXP29["transfer"][p] for p in pairs if p in R.EXP29["transfer"]])}
  for r in rows:
    if r["model"] == REFERENCE_MODEL or r["condition"] != \
        "surface_vs_transfer":
      continue
    from icl_jax.studies.layers import STUDY_FRACTION, layer_at_fraction
    nl = r.get("n_layers")
    if nl and r["layer"] != layer_at_fraction(STUDY_FRACTION, nl):
      continue
    ps = [(t["source_task"], t["target_task"]) for t in transfer_rows
          if t.get("model") == r["model"] and t.get("mode") == r["mode"]
          and t.get("layer") == r["layer"]
          and t.get("condition") == F.condition
          and (t["source_task"], t["target_task"]) in surf]
    ys = {(t["source_task"], t["target_task"]): t["transfer"]
          for t in transfer_rows if t.get("model") == r["model"]
          and t.get("mode") == r["mode"] and t.get("layer") == r["layer"]
          and t.get("condition") == F.condition}
    series[f"{r['model']} {r['mode']} L{r['layer']}"] = (
        [surf[p] for p in ps], [ys[p] for p in ps])
  figures.scatter(series, rd.path / "similarity_vs_transfer.png",
                  "surface template similarity (cosine)", "transfer rate",
                  title="exp19: surface similarity vs transfer")
  rd.write_summary({"seconds": time.time() - t0,
                    "features": features, "correlations": [
                        {k: r.get(k) for k in ("model", "mode", "layer",
                                               "condition", "r", "p", "ci",
                                               "n_pairs")} for r in rows]})
  for r in rows:
    if r.get("r") is None:
      continue
    print(f"{r['model']:26} {r['mode']:9} L{r['layer']!s:<3} "
          f"{r['condition']:23} r = {r['r']:+.4f} (p {r['p']:.4f}, 95% CI "
          f"[{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}], {r['n_pairs']} pairs)")
  print(f"results under {rd.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
