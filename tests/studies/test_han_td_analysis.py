"""icl_jax.studies.han_td.analyse: peaks come from the float64 mean over the
real tasks, and the study's summary and the report name the same layer."""

from __future__ import annotations

import numpy as np

from icl_jax.analysis.report import han as report_han
from icl_jax.studies import han_td
from icl_jax.tasks import han

SHOTS = (1, 4, 10)
LAYERS = list(range(6))


def rows_with_a_float32_tie():
  """Bitwise rows whose stored float32 'mean' rows favour layer 2 over
  layer 3 at every shot count, while the per-task TDs put layer 3 higher
  by 1e-6 (the rounding of a float32 mean can do this to an exact tie)."""
  tasks = [t for t in han.family_tasks("bitwise") if t != "null"]
  base = {"experiment": "han_td", "family": "bitwise"}
  rows = []
  for k in SHOTS:
    for l in LAYERS:
      tds = {t: 0.2 + 0.05 * i for i, t in enumerate(tasks)}
      if l in (2, 3):
        tds = {t: 0.6 + (1e-6 if l == 3 else 0.0) for t in tasks}
      stored_mean = 0.6 + 1e-5 if l == 2 else float(np.mean(list(
          tds.values())))
      for metric in ("td", "td_cosine"):
        for t, v in tds.items():
          rows.append({**base, "shots": k, "metric": metric,
                       "source_task": t, "layer": l, "td": v, "n": 10})
        rows.append({**base, "shots": k, "metric": metric,
                     "source_task": "null", "layer": l, "td": 0.1, "n": 10})
        rows.append({**base, "shots": k, "metric": metric,
                     "source_task": "mean", "layer": l, "td": stored_mean,
                     "n": 70})
      rows.append({**base, "shots": k, "metric": "td_null",
                   "source_task": "mean", "layer": l,
                   "band_5_95": [0.1, 0.2], "n": 70})
    for i, t in enumerate(tasks):
      rows.append({**base, "shots": k, "metric": "accuracy",
                   "source_task": t, "accuracy": 0.1 * i + 0.01 * k})
  return rows, tasks


def test_task_mean_curve_is_a_float64_mean_over_tasks():
  curve = han_td.task_mean_curve([[0.1, 0.2], [0.3, np.float32(0.4)]])
  assert curve == [0.2, (0.2 + float(np.float32(0.4))) / 2]
  assert all(type(v) is float for v in curve)


def test_study_and_report_name_the_same_peak():
  rows, tasks = rows_with_a_float32_tie()
  a = han_td.analyse(rows, "bitwise", list(SHOTS), LAYERS, 4, len(LAYERS))
  assert a["peak_layer"] == {"1": 3, "4": 3, "10": 3}
  assert a["mean_td_at_peak"]["4"] == np.mean([0.6 + 1e-6] * len(tasks))
  assert a["correlation"]["td_at_peak_layer"]["layer"] == 3
  rep = report_han.td_analysis(rows, len(LAYERS))
  assert rep["peak"] == {1: 3, 4: 3, 10: 3}
