"""Han finetuning arms: training data and a smoke run of
experiments/han_finetune.py on the tiny model (bitwise family)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.experiments.test_experiment_scripts import read_rows

ROOT = Path(__file__).resolve().parents[2]


def test_training_example_scores_answer_tokens_only(tiny_model_dir):
  from icl_jax.convert.tokenizers import load_tokenizer
  from icl_jax.studies import han_finetune as hft
  from icl_jax.tasks import han

  tok = load_tokenizer(str(tiny_model_dir))
  (p, a), = han.prompts("bitwise", "and", 1, 3, seed=0, split="train")
  ids, pos, tgt = hft.training_example(tok, "bitwise", p, a, "all_answers")
  scored = tok.decode(tgt.tolist()).replace(" ", "")
  demos = [l.rsplit(" -> ", 1)[1] for l in p.split("\n")[:-1]]
  assert scored == "".join(demos) + a
  np.testing.assert_array_equal(ids[pos + 1], tgt)
  _, _, qt = hft.training_example(tok, "bitwise", p, a, "query")
  assert tok.decode(qt.tolist()).strip() == a


def test_han_finetune_smoke(tiny_model_dir, tmp_path):
  out = tmp_path / "out"
  args = [sys.executable, "experiments/han_finetune.py",
          f"--model={tiny_model_dir}", "--families=bitwise", "--n_train=8",
          "--batch_size=2", "--steps=2", "--n_eval=3", "--layer=0",
          "--rank=2", "--lr=1e-2", "--max_new_tokens=6",
          f"--out_dir={out}"]
  env = dict(os.environ, ICL_JAX_CACHE=str(tmp_path / "cache"))
  p = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env,
                     timeout=900)
  assert p.returncode == 0, p.stderr[-4000:]
  d = out / "han_finetune"
  rows = read_rows(d / "results.jsonl")
  assert len(rows) == 4 * 6
  by = {(r["condition"], r["target_task"]): r for r in rows}
  for r in rows:
    for k in ("experiment", "model", "mode", "source_task", "target_task",
              "layer", "condition", "n", "accuracy", "td", "examples"):
      assert k in r, k
    assert r["n"] == 3 and 0 <= r["td"] <= 1
  # The tiny model has 2 blocks: ft_last trains block 1 only, so TD at
  # layer 0 (block 0's output) is exactly the pretrained model's.
  for t in ("and", "xor"):
    assert by[("ft_last", t)]["td"] == by[("pretrained", t)]["td"]
  s = json.loads((d / "summary.json").read_text())
  assert set(s["results"]["bitwise"]) == {"pretrained", "ft_first",
                                          "ft_last", "prompting"}
  info = s["training"]["bitwise/ft_first"]
  assert info["layers"] == [0] and info["steps"] == 2
  assert (d / "lora_bitwise_ft_last" / "checkpoints").is_dir()
  assert "| ft_first | bitwise |" in (d / "table1.md").read_text()
  assert (d / "table1.png").stat().st_size > 1000
  # Resumable: nothing is recomputed, no training step is taken.
  p2 = subprocess.run(args, capture_output=True, text=True, cwd=ROOT,
                      env=env, timeout=900)
  assert p2.returncode == 0, p2.stderr[-4000:]
  assert len(read_rows(d / "results.jsonl")) == 24
  # A later run adds the POS family (a small fake corpus; arms pretrained
  # and prompting) to the same directory: Table 1 then has both families.
  from tests.tasks.test_han_families import _fake_rows

  penn = tmp_path / "penn-data.json"
  penn.write_text(json.dumps(_fake_rows()))
  env3 = dict(env, ICL_JAX_PENN_JSON=str(penn))
  args3 = [a if not a.startswith("--families=") else "--families=pos"
           for a in args]
  p3 = subprocess.run(args3 + ["--arms=pretrained,prompting"],
                      capture_output=True, text=True, cwd=ROOT, env=env3,
                      timeout=900)
  assert p3.returncode == 0, p3.stderr[-4000:]
  rows3 = read_rows(d / "results.jsonl")
  assert rows3[:24] == rows and len(rows3) == 24 + 2 * 6
  s3 = json.loads((d / "summary.json").read_text())
  assert s3["results"]["bitwise"] == s["results"]["bitwise"]
  assert set(s3["results"]["pos"]) == {"pretrained", "prompting"}
  assert set(s3["training"]) == {"bitwise/ft_first", "bitwise/ft_last"}
  assert "| prompting | pos |" in (d / "table1.md").read_text()
  # A family's TD layer may not change under its rows.
  p4 = subprocess.run([a if a != "--layer=0" else "--layer=1" for a in args],
                      capture_output=True, text=True, cwd=ROOT, env=env,
                      timeout=900)
  assert p4.returncode != 0 and "layers" in p4.stderr
