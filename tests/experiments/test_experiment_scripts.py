"""Every experiment script runs end to end on a tiny model (N=2, 2 layers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_script(args, cache_dir, timeout=900):
  env = dict(os.environ, ICL_JAX_CACHE=str(cache_dir))
  p = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                     cwd=ROOT, env=env, timeout=timeout)
  return p


def read_rows(path):
  rows = [json.loads(l) for l in Path(path).read_text().splitlines()
          if l.strip()]
  assert rows, path
  return rows


def check_rate_rows(rows):
  for r in rows:
    for k in ("experiment", "model", "mode", "source_task", "target_task",
              "layer", "condition", "n", "transfer", "preserve", "neither",
              "examples"):
      assert k in r, k
    for k in ("transfer", "preserve", "neither"):
      assert 0.0 <= r[k] <= 1.0
    assert abs(r["transfer"] + r["preserve"] + r["neither"] + r.get("both", 0)
               - 1.0) < 1e-9
    assert len(r["examples"]) == r["n"]


def test_main_job_smoke(tiny_model_dir, tmp_path):
  out = tmp_path / "out"
  p = run_script(["-m", "experiments.main", f"--model={tiny_model_dir}",
                  "--n=2", "--layers=0,1",
                  "--pairs=uppercase:repeat_word,sentiment:antonym",
                  f"--out_dir={out}"], tmp_path / "cache")
  assert p.returncode == 0, p.stderr[-4000:]
  assert "Transfer summary" in p.stdout
  rows = read_rows(out / "main_prefill" / "results.jsonl")
  check_rate_rows(rows)
  # 2 pairs x 2 layers x 3 conditions x 2 modes
  assert len(rows) == 24
  assert {r["mode"] for r in rows} == {"faithful", "aligned"}
  d2 = read_rows(out / "main_single_d2" / "results.jsonl")
  assert len(d2) == 4 and all(r["timing"] == "first_token" for r in d2)
  summary = json.loads((out / "main_summary.json").read_text())
  assert summary["n_layers"] == 2 and summary["summary"]
  assert (out / "main_transfer_by_layer.png").stat().st_size > 1000
  # Resumable: a second run skips every finished cell.
  p2 = run_script(["-m", "experiments.main", f"--model={tiny_model_dir}",
                   "--n=2", "--layers=0,1",
                   "--pairs=uppercase:repeat_word,sentiment:antonym",
                   f"--out_dir={out}"], tmp_path / "cache")
  assert p2.returncode == 0, p2.stderr[-4000:]
  assert "prompts" not in p2.stdout  # no pair was re-run
  assert len(read_rows(out / "main_prefill" / "results.jsonl")) == 24
  # A different configuration in the same out_dir is refused.
  p3 = run_script(["-m", "experiments.main", f"--model={tiny_model_dir}",
                   "--n=3", "--layers=0,1",
                   "--pairs=uppercase:repeat_word,sentiment:antonym",
                   f"--out_dir={out}"], tmp_path / "cache")
  assert p3.returncode != 0 and "different configuration" in p3.stderr


@pytest.mark.parametrize("args,match", [
    (["--layers=0,7"], "outside the model"),
    (["--pairs=uppercase:nonsense_task"], "nonsense_task"),
    (["--mode=sideways"], "sideways"),
])
def test_bad_flags_fail_before_compute(tiny_model_dir, tmp_path, args, match):
  p = run_script(["experiments/multi_position.py", f"--model={tiny_model_dir}",
                  "--n=2", f"--out_dir={tmp_path / 'o'}", *args],
                 tmp_path / "cache")
  assert p.returncode != 0
  assert match in p.stderr
  assert not (tmp_path / "o" / "multi_position" / "results.jsonl").exists()


def test_baseline_smoke(tiny_model_dir, tmp_path):
  out = tmp_path / "out"
  p = run_script(["experiments/baseline.py", f"--model={tiny_model_dir}",
                  "--n=2", "--tasks=uppercase,antonym", f"--out_dir={out}",
                  "--max_new_tokens=4"], tmp_path / "cache")
  assert p.returncode == 0, p.stderr[-4000:]
  rows = read_rows(out / "baseline" / "results.jsonl")
  assert {r["source_task"] for r in rows} == {"uppercase", "antonym"}
