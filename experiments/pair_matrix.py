r"""exp29: the 56-pair transfer matrix (protocol 8.21, reference 9.7).

    python experiments/pair_matrix.py --model=gemma3-270m --layers=study

exp8's protocol with the `all_demo` condition for every ordered pair of the
8 core tasks (itertools.permutations order; each pair advances the source's
and then the target's RNG, as in the original), N=10 target prompts, at
every layer (default) or `--layers=study` = layer_at_fraction(0.30) (the
original's layer 8 of Llama-3B).

Outputs under <out_dir>/pair_matrix/: results.jsonl, summary.json (per mode
and layer: mean transfer over the pairs and the >=0.5 / 0.1-0.49 / <0.1
split), transfer_matrix_<mode>.png (8x8 at the study layer and at the best
layer), transfer_matrix_<mode>_by_layer.png (one 8x8 panel per layer).
"""

from __future__ import annotations

import itertools

from absl import app, flags

from experiments import common
from icl_jax.tasks import CORE_TASKS

ALL_PAIRS = tuple(itertools.permutations(CORE_TASKS, 2))
common.define_common_flags(default_pairs=ALL_PAIRS, default_n=10)
common.define_conditions_flag(["all_demo"])
common.define_on_mismatch_flag()
F = flags.FLAGS
EXPERIMENT = "pair_matrix"


def matrix(rows, tasks, metric="transfer"):
  import numpy as np

  idx = {t: i for i, t in enumerate(tasks)}
  m = np.full((len(tasks), len(tasks)), np.nan)
  for r in rows:
    if r["source_task"] in idx and r["target_task"] in idx:
      m[idx[r["source_task"]], idx[r["target_task"]]] = r[metric]
  return m


def split_counts(vals):
  return {"n_ge_0.5": sum(v >= 0.5 for v in vals),
          "n_0.1_to_0.49": sum(0.1 <= v < 0.5 for v in vals),
          "n_lt_0.1": sum(v < 0.1 for v in vals)}


def summarize(rows, n_layers):
  from collections import defaultdict

  from icl_jax.studies.layers import STUDY_FRACTION, layer_at_fraction

  groups = defaultdict(list)
  for r in rows:
    groups[(r["mode"], r["condition"], r["layer"])].append(r)
  per_layer = []
  for (mode, cond, layer), rs in sorted(groups.items()):
    vals = [r["transfer"] for r in rs]
    strict = [r.get("strict_scorer", {}).get("transfer", r["transfer"])
              for r in rs]
    top = sorted(rs, key=lambda r: -r["transfer"])[:8]
    per_layer.append({
        "mode": mode, "condition": cond, "layer": layer,
        "depth_fraction": layer / n_layers, "pairs": len(rs),
        "mean_transfer": sum(vals) / len(vals),
        "mean_transfer_strict_scorer": sum(strict) / len(strict),
        **split_counts(vals),
        "top_pairs": [(r["source_task"], r["target_task"], r["transfer"])
                      for r in top if r["transfer"] > 0]})
  return {"per_layer": per_layer,
          "study_layer": layer_at_fraction(STUDY_FRACTION, n_layers)}


def plot(rows, path_dir, model, n_layers, summary):
  from icl_jax.analysis import figures

  tasks = [t for t in CORE_TASKS
           if any(r["source_task"] == t or r["target_task"] == t
                  for r in rows)]
  extra = sorted({r[k] for r in rows for k in ("source_task", "target_task")}
                 - set(tasks))
  tasks += extra
  out = []
  for mode in sorted({r["mode"] for r in rows}):
    for cond in sorted({r["condition"] for r in rows}):
      rs = [r for r in rows if r["mode"] == mode and r["condition"] == cond]
      layers = sorted({r["layer"] for r in rs})
      per = [p for p in summary["per_layer"]
             if p["mode"] == mode and p["condition"] == cond]
      best = max(per, key=lambda p: p["mean_transfer"])["layer"]
      shown = [l for l in dict.fromkeys([summary["study_layer"], best])
               if l in layers] or [best]
      suffix = "" if cond == "all_demo" else f"_{cond}"
      mats = {f"layer {l} (depth {l / n_layers:.2f})":
              matrix([r for r in rs if r["layer"] == l], tasks)
              for l in shown}
      out.append(figures.heatmap_grid(
          mats, tasks, tasks,
          path_dir / f"transfer_matrix_{mode}{suffix}.png",
          title=f"exp29 transfer ({mode}, {cond}) on {model}; rows = "
                "source, cols = target", ncol=2))
      if len(layers) > 1:
        out.append(figures.heatmap_grid(
            {f"L{l}": matrix([r for r in rs if r["layer"] == l], tasks)
             for l in layers}, tasks, tasks,
            path_dir / f"transfer_matrix_{mode}{suffix}_by_layer.png",
            title=f"exp29 transfer by layer ({mode}, {cond}) on {model}"))
  return out


def main(argv):
  del argv
  from icl_jax.studies import plans, setups
  from icl_jax.studies.layers import study_fraction_layer

  modes, pairs, n = common.parse_pair_flags()
  common.check_conditions(F.conditions, modes)
  st = common.open_pair_study(EXPERIMENT, modes, pairs, n,
                              dict(conditions=list(F.conditions)),
                              study_layers=study_fraction_layer)
  jobs = [plans.transfer_job(mode, setup, st.layers, F.conditions,
                             on_mismatch=F.on_mismatch)
          for mode in modes for setup in setups.setup_pairs(pairs, n,
                                                           seed=F.seed)]
  rows = st.run(jobs)
  summary = summarize(rows, st.n_layers)
  plot(rows, st.path, F.model, st.n_layers, summary)
  st.finish(summary)
  for p in summary["per_layer"]:
    if p["layer"] in (summary["study_layer"],) or len(st.layers) <= 4:
      print(f"{p['mode']:9} {p['condition']:9} L{p['layer']:<3} mean "
            f"transfer {p['mean_transfer']:.3f} over {p['pairs']} pairs; "
            f">=.5: {p['n_ge_0.5']}, .1-.49: {p['n_0.1_to_0.49']}, <.1: "
            f"{p['n_lt_0.1']}")
  print(f"results under {st.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
