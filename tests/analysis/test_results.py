"""RunDir's summary.json: the invocation log that gives a directory's run
time over resumed and grown runs."""

from __future__ import annotations

import json
import time

from icl_jax.analysis import results as R
from icl_jax.analysis.report.provenance import run_time


def _summary(path):
  return json.loads((path / "x" / "summary.json").read_text())


def test_invocations_accumulate_over_runs(tmp_path):
  rd = R.RunDir(tmp_path, "x", {"a": 1})
  rd.append([{"k": 1}])
  time.sleep(0.05)
  s1 = rd.write_summary()
  assert len(s1["invocations"]) == 1
  assert s1["wall_seconds_all_invocations"] == s1["invocations"][0]["seconds"]
  assert s1["invocations"][0]["n_rows"] == 1
  # A second summary in the same invocation replaces its entry.
  s1b = rd.write_summary()
  assert len(s1b["invocations"]) == 1
  assert s1b["invocations"][0]["seconds"] >= s1["invocations"][0]["seconds"]
  rd.close()
  # A later invocation (a resume) appends its own entry; the total is the sum.
  rd2 = R.RunDir(tmp_path, "x", {"a": 1})
  rd2.append([{"k": 2}])
  s2 = rd2.write_summary()
  inv = s2["invocations"]
  assert len(inv) == 2 and inv[0] == json.loads(
      json.dumps(s1b["invocations"][0]))
  assert inv[1]["n_rows"] == 2
  assert abs(s2["wall_seconds_all_invocations"]
             - (inv[0]["seconds"] + inv[1]["seconds"])) < 1e-9
  assert _summary(tmp_path)["invocations"] == inv
  assert run_time(tmp_path / "x", "x", s2).endswith("(2 invocations)")
  assert "invocations" not in run_time(tmp_path / "x", "x", s1b)


def test_summary_written_before_the_log_counts_as_one_invocation(tmp_path):
  R.RunDir(tmp_path, "x", {"a": 1}).close()
  # An archived summary.json from before the invocation log existed.
  old = {"experiment": "x", "n_rows": 3, "finished": "2026-12-01 00:00:00",
         "wall_seconds_this_invocation": 100.0,
         "code": {"git_commit": "abc"}}
  (tmp_path / "x" / "summary.json").write_text(json.dumps(old))
  assert run_time(tmp_path / "x", "x", old) == "100 s"
  rd = R.RunDir(tmp_path, "x", {"a": 1})
  s = rd.write_summary()
  assert s["invocations"][0] == {"started": None,
                                 "finished": "2026-12-01 00:00:00",
                                 "seconds": 100.0, "n_rows": 3,
                                 "git_commit": "abc"}
  assert len(s["invocations"]) == 2
  assert s["wall_seconds_all_invocations"] >= 100.0
