"""Summaries of a synthetic-emergence run: a table over evaluated steps,
headline numbers, and a permutation null band for the kNN TD."""

from __future__ import annotations

import numpy as np

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
