"""Han task-vector interventions: positions, vectors and a smoke run of
experiments/han_task_vectors.py on the tiny model (bitwise family: no
download needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.experiments.test_experiment_scripts import read_rows

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
  import icl_jax

  return icl_jax.load(str(tiny_model_dir))


def test_pre_answer_positions_are_the_arrows(tiny_lm):
  from icl_jax.studies import han_task_vectors as htv
  from icl_jax.tasks import han

  pairs = han.prompts("bitwise", "xor", 3, 4, seed=0)
  prompts = [p for p, _ in pairs]
  ids = [tiny_lm.tokenizer(p)["input_ids"] for p in prompts]
  for p, i, pos in zip(prompts, ids, htv.demo_pre_answer(tiny_lm, "bitwise",
                                                         prompts)):
    assert len(pos) == 4
    for k in pos:
      assert tiny_lm.tokenizer.decode(i[k]).endswith(">")
      # The next token starts the demo's answer.
      assert tiny_lm.tokenizer.decode(i[k + 1]).strip()[:1] in "01"
    # The query's pre-answer token is the prompt's last token, an arrow too.
    assert tiny_lm.tokenizer.decode(i[-1]).endswith(">")
  with pytest.raises(ValueError):
    htv.parse_arrow_prompt("bitwise", "no arrows here")


def test_task_vector_is_mean_of_captured_positions(tiny_lm):
  import icl_jax
  from icl_jax.studies import han_task_vectors as htv
  from icl_jax.tasks import han

  prompts = [p for p, _ in han.prompts("bitwise", "and", 3, 2, seed=1)]
  v = htv.task_vector(tiny_lm, "bitwise", prompts, layer=0, batch_size=2)
  acts = icl_jax.capture(tiny_lm, prompts, layers=[0])
  pos = htv.demo_pre_answer(tiny_lm, "bitwise", prompts)
  want = np.mean([acts.prompt(i, 0)[p].mean(0) for i, p in enumerate(pos)],
                 axis=0)
  np.testing.assert_allclose(v, want, rtol=1e-6, atol=1e-6)


def test_han_task_vectors_smoke(tiny_model_dir, tmp_path):
  out = tmp_path / "out"
  args = [sys.executable, "experiments/han_task_vectors.py",
          f"--model={tiny_model_dir}", "--families=bitwise", "--n=3",
          "--n_source=2", "--seeds=0,1", "--alphas=1", "--layer=0",
          f"--out_dir={out}", "--max_new_tokens=6"]
  env = dict(os.environ, ICL_JAX_CACHE=str(tmp_path / "cache"))
  # Seed 0 first; a later run grows the directory by seed 1 (seeds are
  # growable): seed 0's rows stay as written and are not redone.
  args0 = [a if a != "--seeds=0,1" else "--seeds=0" for a in args]
  p0 = subprocess.run(args0, capture_output=True, text=True, cwd=ROOT,
                      env=env, timeout=900)
  assert p0.returncode == 0, p0.stderr[-4000:]
  d = out / "han_task_vectors"
  rows0 = read_rows(d / "results.jsonl")
  assert len(rows0) == 6 * 13 and {r["seed"] for r in rows0} == {0}
  p = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env,
                     timeout=900)
  assert p.returncode == 0, p.stderr[-4000:]
  rows = read_rows(d / "results.jsonl")
  assert rows[:len(rows0)] == rows0
  assert json.loads((d / "config.json").read_text())["seeds"] == [0, 1]
  # 6 tasks x 2 seeds x (clean + 3 position sets x 2 vectors x 2 edits).
  assert len(rows) == 6 * 2 * 13
  for r in rows:
    for k in ("experiment", "model", "mode", "source_task", "target_task",
              "layer", "condition", "n", "accuracy", "examples", "family"):
      assert k in r, k
    assert r["n"] == 3 and r["layer"] == 0 and len(r["examples"]) == 3
    assert 0.0 <= r["accuracy"] <= 1.0
  patched = [r for r in rows if r["source_task"] != "none"]
  # Every patch really edits the residual stream.
  assert all(r["max_edit"] > 0 for r in patched)
  assert all(0.0 <= r["changed_vs_clean"] <= 1.0 for r in patched)
  assert {r["positions"] for r in patched} == {"query", "demos", "both"}
  assert {r["source_task"] for r in patched if r["vector"] == "null"} == \
      {"null"}
  s = json.loads((d / "summary.json").read_text())["results"]["bitwise"]
  assert set(s["tasks"]) == {"and", "nand", "or", "nor", "xor", "xnor"}
  lab = "query:task:replace"
  assert s["delta"][lab]["and"]["n_seeds"] == 2
  assert (d / "intervention_bars_bitwise.png").stat().st_size > 1000
  z = np.load(d / "vectors_bitwise_s0.npz")
  assert z["null"].shape == (32,)
  # Resumable: a second run adds nothing.
  p2 = subprocess.run(args, capture_output=True, text=True, cwd=ROOT,
                      env=env, timeout=900)
  assert p2.returncode == 0, p2.stderr[-4000:]
  assert len(read_rows(d / "results.jsonl")) == len(rows)
  # A later run adds the POS family (a small fake corpus) to the directory:
  # the bitwise rows stay as they were and the summary holds both families.
  from tests.tasks.test_han_families import _fake_rows

  penn = tmp_path / "penn-data.json"
  penn.write_text(json.dumps(_fake_rows()))
  args3 = [a if not a.startswith("--families=") else "--families=pos"
           for a in args]
  p3 = subprocess.run(args3, capture_output=True, text=True, cwd=ROOT,
                      env=dict(env, ICL_JAX_PENN_JSON=str(penn)), timeout=900)
  assert p3.returncode == 0, p3.stderr[-4000:]
  rows3 = read_rows(d / "results.jsonl")
  assert rows3[:len(rows)] == rows and len(rows3) == 2 * len(rows)
  cfg = json.loads((d / "config.json").read_text())
  assert cfg["families"] == ["bitwise", "pos"]
  assert cfg["layers"] == {"bitwise": 0, "pos": 0}
  s3 = json.loads((d / "summary.json").read_text())["results"]
  assert set(s3) == {"bitwise", "pos"} and s3["bitwise"] == s
  assert (d / "intervention_bars_pos.png").stat().st_size > 1000
