"""Smoke run of experiments/han_td.py on the tiny model (both families; POS
on a small fake corpus), and the R^2 helpers of icl_jax.studies.han_td."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from icl_jax.studies import han_td
from tests.experiments.test_experiment_scripts import read_rows
from tests.tasks.test_han_families import _fake_rows

ROOT = Path(__file__).resolve().parents[2]


def _run(args, tmp_path, penn):
  env = dict(os.environ, ICL_JAX_CACHE=str(tmp_path / "cache"),
             ICL_JAX_PENN_JSON=str(penn))
  return subprocess.run([sys.executable, *args], capture_output=True,
                        text=True, cwd=ROOT, env=env, timeout=900)


def test_han_td_smoke(tiny_model_dir, tmp_path):
  penn = tmp_path / "penn-data.json"
  penn.write_text(json.dumps(_fake_rows()))
  out = tmp_path / "out"
  args = ["experiments/han_td.py", f"--model={tiny_model_dir}", "--n=6",
          "--shots=1,2", "--peak_shots=2", "--knn=3", "--null_perms=2",
          "--nologistic", "--max_new_tokens=3", f"--out_dir={out}"]
  # bitwise first; the second run adds POS to the directory (families is
  # growable) and keeps bitwise's rows and its summary entry.
  p = _run(args + ["--families=bitwise"], tmp_path, penn)
  assert p.returncode == 0, p.stderr[-4000:]
  d = out / "han_td"
  bitwise_rows = read_rows(d / "results.jsonl")
  assert {r["family"] for r in bitwise_rows} == {"bitwise"}
  p = _run(args + ["--families=pos"], tmp_path, penn)
  assert p.returncode == 0, p.stderr[-4000:]
  assert json.loads((d / "config.json").read_text())["families"] == [
      "bitwise", "pos"]
  rows = read_rows(d / "results.jsonl")
  assert [r for r in rows if r["family"] == "bitwise"] == bitwise_rows
  n_layers = len({r["layer"] for r in rows if r["metric"] == "td"})
  for fam in ("pos", "bitwise"):
    fr = [r for r in rows if r["family"] == fam]
    td = [r for r in fr if r["metric"] == "td"]
    assert len(td) == 2 * n_layers * 8  # shots x layers x (7 classes+mean)
    assert all(0.0 <= r["td"] <= 1.0 for r in td)
    acc = [r for r in fr if r["metric"] == "accuracy"]
    assert len(acc) == 2 * 6 and all(len(r["examples"]) == 6 for r in acc)
    pair = [r for r in fr if r["metric"] == "td_pairwise"]
    assert len(pair) == 2 * n_layers and len(pair[0]["matrix"]) == 7
    assert len([r for r in fr if r["metric"] == "td_null"]) == 2 * n_layers
  s = json.loads((d / "summary.json").read_text())
  for fam in ("pos", "bitwise"):
    a = s["results"][fam]
    assert set(a["peak_layer"]) == {"1", "2"}
    c = a["correlation"]["td_at_peak_layer"]
    assert c["n_points"] == 12 and c["peak_of_shots"] == 2
    for f in (f"td_by_layer_{fam}.png", f"td_vs_accuracy_{fam}.png",
              f"td_pairwise_{fam}.png",
              f"features_{fam}_1shot.npz"):
      assert (d / f).stat().st_size > 1000
  assert s["han_reference"]["R2"]["Llama-3.1-8B"]["pos"] == 0.781
  assert s["assumptions"]
  n_rows = len(rows)
  p = _run(args + ["--families=bitwise,pos"], tmp_path,
           penn)  # resumed: nothing recomputed
  assert p.returncode == 0, p.stderr[-4000:]
  assert "features of" not in p.stdout
  assert len(read_rows(d / "results.jsonl")) == n_rows


def test_r2_fit_and_task_bootstrap():
  x = np.linspace(0, 1, 18)
  f = han_td.r2_fit(x, 0.5 * x + 0.1)
  assert abs(f["R2"] - 1.0) < 1e-12 and abs(f["slope"] - 0.5) < 1e-12
  assert han_td.r2_fit(x, np.ones(18))["R2"] is None
  rng = np.random.default_rng(0)
  pts = [{"task": t, "shots": k, "td": float(v), "accuracy": float(v + e)}
         for t in range(6) for k, v, e in zip(
             (1, 4, 10), rng.uniform(size=3), rng.normal(0, 0.3, 3))]
  lo, hi = han_td.bootstrap_r2_over_tasks(pts, n_boot=500)
  r2 = han_td.r2_fit([p["td"] for p in pts],
                     [p["accuracy"] for p in pts])["R2"]
  assert 0.0 <= lo <= hi <= 1.0 and lo <= r2 <= hi
