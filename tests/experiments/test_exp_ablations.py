"""exp3/4/5/9/10/11/12/13/14/15 scripts run end to end on a tiny model.

Each smoke run: N=2 prompts, layers 0,1 of a 2-layer random llama with
SmolLM2's tokenizer; rows must exist, parse, follow DESIGN.md's format and
have rates in [0, 1]. Modes are spread over the scripts (every script runs
both modes in `experiments/`; here each test picks what it checks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  d = tmp_path_factory.mktemp("exp_ablations_cache")
  return dict(os.environ, ICL_JAX_CACHE=str(d / "models"),
              # Compiled programs are shared between the subprocesses.
              JAX_COMPILATION_CACHE_DIR=str(d / "jax"),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")


def run(script, model, out, env, *args, n=2, layers="0,1", timeout=900):
  cmd = [sys.executable, f"experiments/{script}", f"--model={model}",
         f"--n={n}", f"--layers={layers}", f"--out_dir={out}",
         "--max_new_tokens=3", *args]
  return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                        env=env, timeout=timeout)


def rows_of(path):
  rows = [json.loads(l) for l in Path(path).read_text().splitlines()
          if l.strip()]
  assert rows, path
  for r in rows:
    for k in ("experiment", "model", "mode", "source_task", "target_task",
              "layer", "condition", "n", "transfer", "preserve", "neither",
              "examples"):
      assert k in r, (k, r["condition"])
    assert r["mode"] in ("faithful", "aligned")
    for k in ("transfer", "preserve", "neither", "both", "accuracy",
              "baseline_accuracy", "probe_accuracy"):
      if r.get(k) is not None:
        assert 0.0 <= r[k] <= 1.0, (k, r[k])
    total = r["transfer"] + r["preserve"] + r["neither"] + r.get("both", 0)
    assert abs(total - 1.0) < 1e-9
    if not r["condition"].startswith("probe:"):
      assert len(r["examples"]) == r["n"]
  return rows


def ok(p):
  assert p.returncode == 0, p.stderr[-4000:]


def test_transplant_with_controls(tiny_model_dir, tmp_path, env):
  out = tmp_path / "o"
  ok(run("single_position.py", tiny_model_dir, out, env,
         "--experiment=transplant", "--pairs=uppercase:uppercase",
         "--mode=faithful", layers="1"))
  rows = rows_of(out / "transplant" / "results.jsonl")
  pair = [r for r in rows if r["condition"] == "last_demo_token"]
  assert len(pair) == 1 and all(r["timing"] == "first_token" and
                                r["stop"] == "newline" for r in pair)
  conds = sorted(r["condition"] for r in rows if r not in pair)
  assert conds == ["control_baseline", "control_random", "control_zero"]
  rnd = next(r for r in rows if r["condition"] == "control_random")
  assert rnd["random_norm"] > 0 and rnd["max_residual_change"] > 0
  assert (out / "transplant" / "transfer_by_layer.png").stat().st_size > 1000
  summary = json.loads((out / "transplant" / "summary.json").read_text())
  assert summary["mean_task_vector_norm"]["faithful"]


def test_layer_sweep_resumes_and_refuses_other_configs(tiny_model_dir,
                                                       tmp_path, env):
  out = tmp_path / "o"
  args = ("--experiment=layer_sweep", "--pairs=uppercase:sentiment",
          "--mode=aligned")
  ok(run("single_position.py", tiny_model_dir, out, env, *args))
  rows = rows_of(out / "layer_sweep" / "results.jsonl")
  assert len(rows) == 2 and {r["layer"] for r in rows} == {0, 1}
  assert all(r["timing"] == "prefill" and r["scorer"] == "strict"
             for r in rows)
  s = json.loads((out / "layer_sweep" / "summary.json").read_text())
  assert s["localization"][0]["peak_layer"] in (0, 1)
  p = run("single_position.py", tiny_model_dir, out, env, *args)
  ok(p)
  s = json.loads((out / "layer_sweep" / "summary.json").read_text())
  assert s["new_rows"] == 0 and len(rows_of(
      out / "layer_sweep" / "results.jsonl")) == 2
  p = run("single_position.py", tiny_model_dir, out, env, *args, n=3)
  assert p.returncode != 0 and "different configuration" in p.stderr


def test_interpolation(tiny_model_dir, tmp_path, env):
  out = tmp_path / "o"
  ok(run("interpolation.py", tiny_model_dir, out, env,
         "--pairs=uppercase:first_letter",
         "--triples=uppercase:first_letter:repeat_word", "--alphas=0,1",
         "--mode=faithful", layers="1"))
  rows = rows_of(out / "interpolation" / "results.jsonl")
  interp = [r for r in rows if r["condition"].startswith("interp:")]
  assert sorted(r["alpha"] for r in interp) == [0.0, 1.0]
  assert all(r["classification"] == "target_first" and
             r["target_task"] == "uppercase" for r in interp)
  arith = [r for r in rows if r["condition"].startswith("arith:")]
  assert len(arith) == 1 and arith[0]["target_task"] == "repeat_word"
  s = json.loads((out / "interpolation" / "summary.json").read_text())
  assert s["sharpness"][0]["alphas"] == [0.0, 1.0]


def test_query_transplant_both_modes(tiny_model_dir, tmp_path, env):
  out = tmp_path / "o"
  ok(run("query_transplant.py", tiny_model_dir, out, env,
         "--pairs=uppercase:sentiment", "--mode=both"))
  rows = rows_of(out / "query_transplant" / "results.jsonl")
  assert len(rows) == 4
  assert {(r["mode"], r["timing"]) for r in rows} == {
      ("faithful", "first_token"), ("aligned", "prefill")}
  assert all(r["condition"] == "first_query_token" and r["n_positions"] == 1
             for r in rows)


def test_demo_zeroing_and_knockout(tiny_model_dir, tmp_path, env):
  out = tmp_path / "o"
  ok(run("demo_zeroing.py", tiny_model_dir, out, env, "--tasks=uppercase",
         "--mode=both"))
  rows = rows_of(out / "demo_zeroing" / "results.jsonl")
  by = {(r["mode"], r["condition"], r["layer"]): r for r in rows}
  # SmolLM2 has no BOS: no zero_bos control.
  assert {c for _, c, _ in by} == {"zero_demo", "knockout_demo", "baseline"}
  f, a = by[("faithful", "zero_demo", 0)], by[("aligned", "zero_demo", 0)]
  assert f["disruption_kind"] == "absolute" and a["disruption_kind"] == \
      "relative"
  assert f["disruption"] == pytest.approx(f["baseline_accuracy"] -
                                          f["accuracy"])
  assert f["positions"][0] == 0 and a["n_positions"] > 0
  ko = [r for r in rows if r["condition"] == "knockout_demo"]
  assert len(ko) == 4 and all(r["max_first_logit_change"] >= 0 for r in ko)
  assert (out / "demo_zeroing" / "disruption.png").exists()


def test_noise_tracing(tiny_model_dir, tmp_path, env):
  out = tmp_path / "o"
  ok(run("noise_tracing.py", tiny_model_dir, out, env, "--tasks=uppercase",
         "--positions=first_query_token", "--faithful_scales=2",
         "--aligned_scales=3", "--act_prompts=8", "--mode=both"))
  rows = rows_of(out / "noise_tracing" / "results.jsonl")
  noised = [r for r in rows if r["condition"] != "baseline"]
  assert len(noised) == 4 and len(rows) == 6
  f = [r for r in noised if r["mode"] == "faithful"]
  a = [r for r in noised if r["mode"] == "aligned"]
  assert all(r["noise"] == "unit" and r["sigma"] == 2.0 and r["primary"]
             for r in f)
  assert all(r["noise"] == "act_std" and r["sigma"] == pytest.approx(
      3 * r["sigma_act"]) for r in a)
  assert all(r["max_residual_change"] > 0 for r in noised)
  s = json.loads((out / "noise_tracing" / "summary.json").read_text())
  assert set(s["sigma_act"]) == {"0", "1"}


def test_noise_tracing_uses_each_prompts_own_position(tiny_model_dir,
                                                      tmp_path, env):
  """pattern_completion's faithful first_query_token is 73 for letter queries
  but 74 for "9 0 9 0 9" (a space token, then the digit) on SmolLM2's
  tokenizer: each prompt gets its own index, as the study's per-prompt
  get_position_index (a shared index used to stop the run)."""
  out = tmp_path / "o"
  ok(run("noise_tracing.py", tiny_model_dir, out, env,
         "--tasks=pattern_completion", "--positions=first_query_token",
         "--faithful_scales=2", "--mode=faithful", n=4, layers="0"))
  rows = rows_of(out / "noise_tracing" / "results.jsonl")
  noised = [r for r in rows if r["condition"] != "baseline"]
  assert len(noised) == 1 and noised[0]["positions"] == [73, 74]
  # One draw per cell needs one shared index: a clear error, not a guess.
  p = run("noise_tracing.py", tiny_model_dir, tmp_path / "o2", env,
          "--tasks=pattern_completion", "--positions=first_query_token",
          "--faithful_scales=2", "--mode=faithful", "--nonoise_per_prompt",
          n=4, layers="0")
  assert p.returncode != 0 and "disagree on 'first_query_token'" in p.stderr


def test_layer_skip(tiny_model_dir, tmp_path, env):
  out = tmp_path / "o"
  ok(run("layer_skip.py", tiny_model_dir, out, env, "--tasks=uppercase",
         "--group_tasks=uppercase", "--skip_groups=both:0-1",
         "--mode=aligned"))
  rows = rows_of(out / "layer_skip" / "results.jsonl")
  conds = sorted((r["condition"], r["layer"] or 0) for r in rows)
  assert conds == [("baseline", 0), ("skip", 0), ("skip", 1),
                   ("skip_group:both", 0)]
  assert all(r["timing"] == "every_step" for r in rows
             if r["condition"] != "baseline")


def test_instance_analysis(tiny_model_dir, tmp_path, env):
  out = tmp_path / "o"
  ok(run("instance_analysis.py", tiny_model_dir, out, env,
         "--pairs=pattern_completion:repeat_word", "--mode=faithful"))
  rows = rows_of(out / "instance_analysis" / "results.jsonl")
  assert len(rows) == 2
  for r in rows:
    assert r["source_queries"] == ["honey"]  # the target's first input
    assert r["n_positions"] > 0 and 0 <= r["transfer_changed"] <= 1
    assert all("baseline_output" in e for e in r["examples"])


def test_demo_ablation(tiny_model_dir, tmp_path, env):
  out = tmp_path / "o"
  ok(run("demo_ablation.py", tiny_model_dir, out, env, "--ks=1",
         "--tasks=uppercase,sentiment", "--pairs=uppercase:sentiment",
         "--mode=faithful", n=5, layers="1"))
  rows = rows_of(out / "demo_ablation" / "results.jsonl")
  assert sorted((r["part"], r["condition"]) for r in rows) == [
      ("A", "baseline"), ("A", "baseline"), ("B", "last_demo_token")]
  assert all(r["k"] == 1 for r in rows)
  assert all(len(r["examples"][0]["query"]) > 0 for r in rows)
  probe = rows_of(out / "demo_ablation_probe" / "results.jsonl")
  assert len(probe) == 1 and probe[0]["chance"] == 0.5


def test_cross_format(tiny_model_dir, tmp_path, env):
  out = tmp_path / "o"
  ok(run("cross_format.py", tiny_model_dir, out, env,
         "--pairs=repeat_word:repeat_comma",
         "--control_pairs=uppercase:first_letter", "--mode=aligned",
         layers="1"))
  rows = rows_of(out / "cross_format" / "results.jsonl")
  assert sorted(r["part"] for r in rows) == ["A", "B"]
  a = next(r for r in rows if r["part"] == "A")
  # Part A: the target prompts use the source task's test inputs, the one
  # source prompt the first of them.
  assert [e["query"] for e in a["examples"]] == ["honey", "frost"]
  assert a["source_queries"] == ["honey"]
  assert a["scorer"] == "strict"


@pytest.mark.parametrize("script,args,match", [
    ("noise_tracing.py", ["--positions=nowhere"], "nowhere"),
    ("demo_zeroing.py", ["--layers=0,7"], "outside the model"),
    ("interpolation.py", ["--triples=uppercase:bogus_task:length"],
     "bogus_task"),
    ("single_position.py", ["--experiment=sideways"], "sideways"),
    ("layer_skip.py", ["--skip_groups=x:0-9"], "outside the model"),
    ("cross_format.py", ["--pairs=uppercase:no_such_task"], "no_such_task"),
])
def test_bad_input_fails_before_compute(tiny_model_dir, tmp_path, env,
                                        script, args, match):
  out = tmp_path / "o"
  p = subprocess.run(
      [sys.executable, f"experiments/{script}", f"--model={tiny_model_dir}",
       "--n=2", f"--out_dir={out}", *args], capture_output=True, text=True,
      cwd=ROOT, env=env, timeout=600)
  assert p.returncode != 0
  assert match in p.stderr
  assert not list(out.glob("*/results.jsonl"))
