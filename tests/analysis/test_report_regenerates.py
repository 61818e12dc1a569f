"""`experiments/report.py` regenerates REPORT.md byte for byte from the same
runs, except its timestamp line: two runs in separate processes with
different hash seeds (so set or dict order cannot leak into the text), and
no absolute path of the machine in the report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.analysis.test_report import synthetic  # noqa: F401 (fixture)
from tests.analysis.test_report_han import han_runs

ROOT = Path(__file__).resolve().parents[2]


def _report(results: Path, out: Path, hash_seed: str) -> str:
  env = {**os.environ, "PYTHONHASHSEED": hash_seed}
  p = subprocess.run([sys.executable, str(ROOT / "experiments" /
                                         "report.py"), f"--results={results}",
                      f"--out={out}"], cwd=out.parent, env=env,
                     capture_output=True, text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  return out.read_text()


def test_report_regenerates_byte_for_byte(synthetic, tmp_path):  # noqa: F811
  han_runs(synthetic)  # Han et al.'s runs beside the study's
  first = _report(synthetic, tmp_path / "REPORT.md", "1")
  second = _report(synthetic, tmp_path / "REPORT.md", "2")
  a, b = first.splitlines(), second.splitlines()
  diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
  assert len(a) == len(b)
  assert all(a[i].startswith("Generated ") for i in diff), [
      (a[i], b[i]) for i in diff]
  stamp = [l for l in a if l.startswith("Generated ")]
  assert len(stamp) == 1  # the one line allowed to differ
  assert str(tmp_path) not in first  # links are relative to the report
  assert "## Han et al." in first and "Report built at commit" in first
