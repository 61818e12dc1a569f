r"""How well the suite's ETA line predicts, replayed on recorded suites.

    python benchmarks/eta_replay.py \
        --runs=benchmarks/results/suite_session11.json \
        --reference=benchmarks/results/suite.json

For each recorded run (a suite.json) and after each of its finished steps k,
the ETA of the rest of the suite is computed the way `scripts/report_suite.sh`
prints it (`icl_jax.analysis.suite_timing.eta`) in a scratch OUT directory
holding that run's plan and its first k step records, twice: with the cost
model alone, and with --reference's per-step walls (the recorded run the
suite uses by default). The error is |predicted / measured rest - 1| over
the points whose measured rest is at least 5 minutes (and the mean
absolute error in minutes over all), the measured rest being the sum of
the run's later step walls (for a JOBS > 1 run that sum is not its
elapsed time). A run used as its own reference is refused: its error
would be 0 by construction. Prints a table per run and writes --out.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from absl import app, flags

from icl_jax.analysis import suite_timing as st

flags.DEFINE_list("runs", ["benchmarks/results/suite_session11.json",
                           "benchmarks/results/suite_session16_jobs2.json"],
                  "recorded suite.json files to replay")
flags.DEFINE_string("reference", "benchmarks/results/suite.json",
                    "the recorded run whose step walls predict")
flags.DEFINE_string("out", "benchmarks/results/eta_replay.json",
                    "result file")
F = flags.FLAGS


def replay(run: dict, reference: Path) -> list[dict]:
  """[{k, measured_s, cost_model_s, reference_s}] after each step k."""
  steps = run["steps"]
  rows = []
  for k in range(1, len(steps)):
    with tempfile.TemporaryDirectory() as tmp:
      out = Path(tmp)
      for s in steps:
        st.plan(out, s["name"], *(s.get(c, 0) for c in st.COUNT_KEYS))
      with (out / "suite_steps.jsonl").open("w") as f:
        for s in steps[:k]:
          f.write(json.dumps(dict(s, rc=s.get("rc", 0))) + "\n")
      name = steps[k]["name"]
      cost = st.eta(out, name)["rest"]
      kept = st.keep_reference(out, run["model"], run["sizes"], reference)
      pred = st.eta(out, name)["rest"] if kept else None
    rows.append({"k": k, "measured_s": sum(s["wall_s"] for s in steps[k:]),
                 "cost_model_s": round(cost, 1), "reference_s":
                 None if pred is None else round(pred, 1)})
  return rows


MIN_REST_S = 300.0  # relative errors on the last few seconds say nothing


def error(rows: list[dict], key: str) -> dict:
  """Mean / max relative error where the measured rest is >= 5 min, and
  the mean absolute error in minutes over every k."""
  rows = [r for r in rows if r[key] is not None]
  rel = [abs(r[key] / r["measured_s"] - 1) for r in rows
         if r["measured_s"] >= MIN_REST_S]
  absm = [abs(r[key] - r["measured_s"]) / 60 for r in rows]
  return {"mean": round(statistics.mean(rel), 3), "max": round(max(rel), 3),
          "mean_abs_min": round(statistics.mean(absm), 1)} if rel else {}


def main(argv):
  del argv
  ref = Path(F.reference)
  results = []
  for path in F.runs:
    if Path(path).resolve() == ref.resolve():
      raise SystemExit(f"{path} is the reference itself: its error is 0 by "
                       "construction")
    run = json.loads(Path(path).read_text())
    rows = replay(run, ref)
    res = {"run": path, "reference": str(ref), "jobs": run.get("jobs", 1),
           "rows": rows, "error_cost_model": error(rows, "cost_model_s"),
           "error_reference": error(rows, "reference_s")}
    results.append(res)
    print(f"{path} (JOBS={res['jobs']}), reference {ref}")
    for r in rows:
      if r["k"] in (1, 2, 4, 8, 12, 16, 20, 24):
        refm = ("-" if r["reference_s"] is None
                else f"{r['reference_s'] / 60:5.1f}")
        print(f"  after {r['k']:2d} steps: measured rest "
              f"{r['measured_s'] / 60:5.1f} min, cost model "
              f"{r['cost_model_s'] / 60:5.1f}, recorded walls {refm}")
    print(f"  |error| cost model {res['error_cost_model']}, recorded walls "
          f"{res['error_reference']}")
  Path(F.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
  app.run(main)
