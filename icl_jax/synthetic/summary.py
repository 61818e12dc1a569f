"""Summaries of a synthetic-emergence run: a table over evaluated steps,
headline numbers, a permutation null band for the kNN TD, and the run's
DESIGN.md result rows (`result_rows`, written by `write_results`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from icl_jax.analysis.results import code_version
from icl_jax.convert.digests import write_atomic
from icl_jax.probes.task_decodability import knn_task_decodability


def summarize_run(log, td_position="y", n_rows=12):
  """A compact table over evaluated steps + headline numbers."""
  ev = sorted(log["eval"], key=lambda e: e["step"])
  nb = log["config"]["task"]["n_bases"]
  idx = np.unique(np.linspace(0, len(ev) - 1, min(n_rows, len(ev))).astype(int))
  rows = []
  for i in idx:
    e = ev[i]
    td = e[f"td_{td_position}"]
    rows.append({
        "step": e["step"],
        "epoch": e["epoch"],
        "mse_per_basis": [round(x, 4) for x in e["mse_per_basis"]],
        "mse": round(e["mse"], 4),
        f"td_{td_position}": [round(x, 3) for x in td],
        "td_max": round(max(td), 3),
        "td_argmax_layer": int(np.argmax(td)),
    })
    per_basis = e.get(f"td_{td_position}_per_basis")
    if per_basis is not None:
      rows[-1]["td_per_basis_at_argmax"] = [
          round(x, 3) for x in per_basis[int(np.argmax(td))]]
  td_all = np.array([e[f"td_{td_position}"] for e in ev])
  first_above = {}
  for layer in range(td_all.shape[1]):
    hit = np.nonzero(td_all[:, layer] >= 0.5)[0]
    first_above[layer] = int(ev[hit[0]]["step"]) if len(hit) else None
  segments = log.get("segments", [])
  return {
      "param_count": log.get("param_count"),
      "chance_td": 1.0 / nb,
      "final": rows[-1] if rows else None,
      "table": rows,
      "first_step_td_ge_0.5_by_layer": first_above,
      "train_seconds_total": sum(s.get("train_s", 0.0) for s in segments),
      "wall_seconds_total": sum(s.get("wall_s", 0.0) for s in segments),
      "steps_done": max((s["end_step"] for s in segments), default=0),
      "segments": segments,
  }


def permutation_null(snaps, td_position, k, n_perm=50, seed=0):
  """95th percentile of TD per layer with shuffled labels, per snapshot.

  The kNN TD of structureless or low-dimensional features scatters widely
  around 1/n_bases (neighbourhoods overlap), so "above chance" is judged
  against this band rather than against 0.25 alone.
  """
  rng = np.random.default_rng(seed)
  out = {}
  for snap in snaps:
    feats = np.asarray(snap[f"feat_{td_position}"])
    labels = np.asarray(snap["labels"])
    null = np.stack([
        np.asarray(knn_task_decodability(feats, rng.permutation(labels), k=k))
        for _ in range(n_perm)
    ])  # [n_perm, L+1]
    out[int(snap["step"])] = np.quantile(
        null.astype(np.float64), 0.95, axis=0).round(3).tolist()
  return out


EXPERIMENT = "synthetic_emergence"


def model_name(config) -> str:
  """The trained model's name in result rows, e.g. 'synthetic-4L4H-d64'."""
  m = config.model
  return f"synthetic-{m.n_layers}L{m.n_heads}H-d{m.d_model}"


def result_rows(log, config, null_q95=None, td_position="y"):
  """DESIGN.md rows of a run: one per (evaluated step, residual layer).

  `layer` 0 is the embedding output, L the last block's; `td` is the mean
  kNN TD of the latent basis at that layer (chance 1/n_bases), `mse` and
  `mse_per_basis` the step's test loss (the same on every layer's row),
  `null_q95` the shuffled-label 95th percentile at that layer where the step
  has a snapshot (`permutation_null`), else None; `active_rank` the
  curriculum stage the step trained on.
  """
  null_q95 = {int(k): v for k, v in (null_q95 or {}).items()}
  nb = config.task.n_bases
  name = model_name(config)
  rows = []
  for e in sorted(log["eval"], key=lambda e: e["step"]):
    step = int(e["step"])
    td = e[f"td_{td_position}"]
    per_basis = e.get(f"td_{td_position}_per_basis")
    null = null_q95.get(step)
    rank = (int(config.active_rank(max(step - 1, 0)))
            if config.uses_curriculum else config.task.basis_rank)
    for layer, value in enumerate(td):
      rows.append({
          "experiment": EXPERIMENT, "model": name, "mode": "aligned",
          "source_task": "sparse_regression",
          "target_task": "sparse_regression", "layer": layer,
          "condition": f"td_{td_position}", "step": step,
          "epoch": e.get("epoch"), "n": nb * config.n_td_per_basis,
          "td": round(float(value), 4),
          "td_per_basis": ([round(float(x), 4) for x in per_basis[layer]]
                           if per_basis is not None else None),
          "null_q95": (None if null is None else float(null[layer])),
          "chance": 1.0 / nb, "mse": round(float(e["mse"]), 4),
          "mse_per_basis": [round(float(x), 4) for x in e["mse_per_basis"]],
          "active_rank": rank, "n_layers": config.model.n_layers,
          "num_steps": config.num_steps,  # planned: a shorter log stopped
      })
  return rows


def write_results(run_dir, log, config, summary: dict, null_q95=None,
                  td_position="y") -> None:
  """Writes `results.jsonl` (`result_rows`, rebuilt from the whole log: a
  resumed run rewrites it, so no row is lost or duplicated) and then
  `summary.json` (which marks the run finished) with the provenance fields
  the report reads: `code` (commit), `seconds`, `finished`."""
  run_dir = Path(run_dir)
  rows = result_rows(log, config, null_q95=null_q95, td_position=td_position)
  write_atomic(run_dir / "results.jsonl",
               "".join(json.dumps(r) + "\n" for r in rows))
  summary = {**summary, "code": code_version(),
             "seconds": summary.get("wall_seconds_total"),
             "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
  write_atomic(run_dir / "summary.json", json.dumps(summary, indent=1))
