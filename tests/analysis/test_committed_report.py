"""The committed REPORT.md is rebuilt from the committed runs: restoring
`report_inputs/` (the archived run directories REPORT.md was built from)
and running `experiments/report.py --from_inputs` gives REPORT.md byte for
byte, apart from the line with its timestamp and the line naming the commit
it was built at."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from icl_jax.analysis import run_archive

ROOT = Path(__file__).resolve().parents[2]
INPUTS = ROOT / "report_inputs"
VOLATILE = ("Generated ", "Report built at commit ")


def test_report_inputs_are_committed():
  manifest = run_archive.read_manifest(INPUTS)
  assert manifest["results"], (
      "REPORT.md's runs are not archived: build it with "
      "`python experiments/report.py --results=... --pack_inputs`")
  assert sorted(manifest["archives"]) == sorted(
      p.name for p in INPUTS.glob("*.tar.xz"))
  head = (ROOT / "REPORT.md").read_text().splitlines()[:4]
  for d in manifest["results"]:  # the report names the runs it read
    assert any(f"`{d}`" in line for line in head), d


@pytest.mark.slow
def test_committed_report_regenerates(tmp_path):
  p = subprocess.run([sys.executable, str(ROOT / "experiments" / "report.py"),
                      "--from_inputs", f"--inputs={INPUTS}",
                      f"--out={tmp_path / 'REPORT.md'}"], cwd=tmp_path,
                     capture_output=True, text=True, timeout=1800)
  assert p.returncode == 0, p.stderr[-3000:]
  ours = (tmp_path / "REPORT.md").read_text().splitlines()
  committed = (ROOT / "REPORT.md").read_text().splitlines()
  assert len(ours) == len(committed)
  differ = [(a, b) for a, b in zip(committed, ours) if a != b]
  assert all(a.startswith(VOLATILE) and b.startswith(VOLATILE)
             for a, b in differ), differ[:3]
