"""icl_jax.studies.baseline (behind experiments/baseline.py) with a scripted
fake model (no weights needed)."""

import json

import pytest

from icl_jax.studies import baseline
from icl_jax.tasks import get_task
from icl_jax.tasks import make_episodes


class FakeLM:
  """Answers uppercase correctly, echoes the query otherwise; counts calls."""

  def __init__(self):
    self.calls = []

  def generate(self, prompts, max_new_tokens):
    self.calls.append((len(prompts), max_new_tokens))
    outs = []
    for p in prompts:
      query = p.rsplit("Input: ", 1)[1].split("\n", 1)[0]
      if "Output: APPLE" in p:
        outs.append(f" {query.upper()}\n\nInput:")
      elif "Output: a\n" in p:  # first_letter: upper-case letter
        outs.append(f" {query[0].upper()}\n")
      else:
        outs.append(f"\n{query}\n")  # leading newline: D1 gives ""
    return outs


def test_records_resume_and_files(tmp_path):
  lm = FakeLM()
  tasks = ["uppercase", "first_letter", "sentiment"]
  rows = baseline.run(lm, "fake", tasks, n=6, out_dir=str(tmp_path),
                      max_new_tokens=7)
  assert [r["source_task"] for r in rows] == tasks
  up, fl, se = rows
  assert up["accuracy_faithful"] == up["accuracy_strict"] == 1.0
  assert up["layer"] is None and up["condition"] == "baseline"
  assert up["transfer"] == 0.0 and up["preserve"] == 1.0
  assert up["neither"] == 0.0 and up["n"] == 6 and up["mode"] == "faithful"
  # first_letter: "H" is accepted by the faithful scorer only.
  assert fl["accuracy_faithful"] == 1.0 and fl["accuracy_strict"] == 0.0
  # sentiment: "\nword" -> D1 "" (malformed) but strict sees "word" (wrong).
  assert se["accuracy_faithful"] == 0.0 and se["malformed"] == 6
  queries = get_task("uppercase").generate_test_inputs(6)
  ex = up["examples"]
  assert [e["query"] for e in ex] == queries
  assert ex[0] == {
      "query": "honey", "output": " HONEY\n\nInput:", "output_d1": "HONEY",
      "expected_source": "HONEY", "expected_target": "HONEY",
      "correct_faithful": True, "correct_strict": True}
  assert lm.calls == [(6, 7)] * 3
  out = tmp_path / "baseline"
  assert (out / "baseline.png").stat().st_size > 1000
  summary = json.loads((out / "summary.json").read_text())
  assert summary["seeds"]["task_rng"] == 42
  assert summary["accuracy"]["first_letter"] == {"faithful": 1.0,
                                                 "strict": 0.0}
  # Resume: a second run evaluates only the new task.
  rows = baseline.run(lm, "fake", tasks + ["length"], n=6,
                      out_dir=str(tmp_path), max_new_tokens=7)
  assert lm.calls == [(6, 7)] * 4
  assert len(rows) == 4
  lines = (out / "results.jsonl").read_text().splitlines()
  assert [json.loads(l)["source_task"] for l in lines] == tasks + ["length"]
  summary = json.loads((out / "summary.json").read_text())
  assert summary["timings_s"]["per_task"]["uppercase"] == "resumed"


def test_bad_arguments(tmp_path):
  with pytest.raises(KeyError, match="unknown task"):
    baseline.run(FakeLM(), "fake", ["upper"], 2, str(tmp_path))
  with pytest.raises(ValueError, match="fixed demos"):
    baseline.run(FakeLM(), "fake", ["uppercase"], 2, str(tmp_path),
                 demo_mode="sampled")


def test_aligned_mode_with_sampled_demos(tmp_path):
  lm = FakeLM()
  rows = baseline.run(lm, "fake", ["uppercase"], 4, str(tmp_path),
                      mode="aligned", demo_mode="sampled", demo_seed=3)
  assert rows[0]["mode"] == "aligned" and rows[0]["demo_mode"] == "sampled"
  # The fake model answers only when apple->APPLE is among the demos.
  eps = make_episodes("uppercase", 4, k=5, demo_mode="sampled", seed=3)
  with_apple = [("apple", "APPLE") in e.demos for e in eps]
  assert 0 < sum(with_apple) < 4
  assert rows[0]["accuracy_faithful"] == sum(with_apple) / 4
  assert [e["correct_strict"] for e in rows[0]["examples"]] == with_apple
