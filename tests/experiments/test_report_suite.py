"""scripts/report_suite.sh: size sets (DRY_RUN), a quick run, suite.json."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from icl_jax.analysis import suite_timing

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "scripts" / "report_suite.sh"


def dry_run(sizes, model="gemma3-270m", only=None):
  """{step: [script args]} the suite would run."""
  env = dict(os.environ, DRY_RUN="1", PY=sys.executable)
  if only:
    env["ONLY"] = only
  p = subprocess.run(["bash", str(SUITE), model, "/nonexistent/out",
                      f"--sizes={sizes}"], capture_output=True, text=True,
                     cwd=ROOT, env=env, timeout=120)
  assert p.returncode == 0, p.stderr
  steps = {}
  for line in p.stdout.splitlines():
    if line.startswith("=== "):
      name, cmd = line[4:].split(": ", 1)
      steps[name.split(" [")[0]] = shlex.split(cmd)
  return steps


def flag(args, name):
  vals = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
  return vals[-1] if vals else None


def test_study_sizes_match_the_protocol():
  steps = dry_run("study")
  # Protocol 8.8 (exp8): N=10, the 6 pairs, 4 conditions, the 4-layer
  # layer_at_fraction grid (= --layers=study); pairs are the script default.
  main = steps["main"]
  assert flag(main, "n") == "10" and flag(main, "layers") == "study"
  assert flag(main, "pairs") is None
  from experiments.common import EXP8_PAIRS
  assert len(EXP8_PAIRS) == 6
  # Protocol 8.3 (exp3): N=10, all 64 ordered pairs (the transplant default)
  # at layer 14 of 28 (= --layers=study).
  sp = steps["single_position"]
  assert flag(sp, "n") == "10" and flag(sp, "layers") == "study"
  assert flag(sp, "pairs") is None and flag(sp, "experiment") is None
  # Protocol 8.5 (exp5): every layer; 8.18 (exp23): N=50, 6 pairs; 8.11
  # (exp11, Llama-3B run): N=15, scales 0.5/1/2/5; 8.12 (exp12): N=15,
  # every second layer; 8.21 (exp29): N=10, 56 pairs; 8.7 (exp7): N=20.
  assert flag(steps["layer_sweep"], "layers") == "all"
  assert flag(steps["proper_stats"], "n") == "50"
  assert flag(steps["proper_stats"], "pairs") is None
  nt = steps["noise_tracing"]
  assert flag(nt, "n") == "15" and flag(nt, "faithful_scales") == "0.5,1,2,5"
  assert flag(steps["layer_skip"], "n") == "15"
  assert flag(steps["layer_skip"], "layers") == "study"
  assert flag(steps["pair_matrix"], "n") == "10"
  assert flag(steps["pair_matrix"], "pairs") is None
  assert flag(steps["trajectory"], "n") == "20"
  assert flag(steps["output_positions"], "subsets") is None  # default 10


def test_report_sizes_are_the_default_and_unchanged():
  report = dry_run("report")
  env = dict(os.environ, DRY_RUN="1", PY=sys.executable, ONLY="main")
  p = subprocess.run(["bash", str(SUITE), "gemma3-270m", "/nonexistent/out"],
                     capture_output=True, text=True, cwd=ROOT, env=env,
                     timeout=120)
  default = p.stdout.split(": ", 1)[1].split()
  assert default == report["main"]
  assert flag(report["main"], "n") == "20" and not flag(report["main"],
                                                         "layers")
  assert flag(report["single_position"], "layers") == "all"
  assert len(report) == 28  # 27 steps + head_map (issue 19)
  assert flag(report["head_map"], "n") == "10"


@pytest.mark.parametrize("bad", ["--sizes=huge", "--oops"])
def test_bad_arguments_are_refused(bad):
  p = subprocess.run(["bash", str(SUITE), "m", "/nonexistent", bad],
                     capture_output=True, text=True, cwd=ROOT, timeout=60,
                     env=dict(os.environ, DRY_RUN="1", PY=sys.executable))
  assert p.returncode == 2 and "usage" in p.stderr


def test_eta_and_table(tmp_path):
  """The cost model: plan -> ETA lines; records -> suite.json."""
  suite_timing.plan(tmp_path, "a", 2000, 0, 0)
  suite_timing.plan(tmp_path, "b", 0, 100, 10)
  line = suite_timing.eta_line(tmp_path, "a")
  assert line.startswith("[1/2] a: 2000 gens") and "ETA step 2m10s" in line
  comp = tmp_path / "c.json"
  comp.write_text(json.dumps({"compiles": 4, "compile_s": 25.0}))
  suite_timing.record(tmp_path, "a", 240.0, 0, str(comp))
  steps = [json.loads((tmp_path / "suite_steps.jsonl").read_text())]
  # a: 2000 gens predicted at 100 s of work; measured 240 - 15 load - 25
  # compile = 200 s: the work rate is rescaled by 2, overhead = 15 + 25.
  assert suite_timing.calibration(steps) == 2.0
  assert suite_timing.overhead_s(steps) == 40.0
  # b: 40 s overhead + 2 x (100 fwd / 20 + 10 fits x 1 s) = 70 s.
  assert "ETA step 1m10s" in suite_timing.eta_line(tmp_path, "b")
  doc = suite_timing.table(tmp_path, "quick", "m")
  assert [r["name"] for r in doc["steps"]] == ["a"]
  assert doc["steps"][0]["generations_per_s"] == pytest.approx(8.33, 0.01)
  assert doc["steps"][0]["compiles"] == 4
  assert len(doc["steps"][0]["load_avg"]) == 3


def _recorded(path, steps, model="m", sizes="study", jobs=1):
  path.write_text(json.dumps({"model": model, "sizes": sizes, "jobs": jobs,
                              "steps": steps}))
  return path


def test_eta_from_a_recorded_run(tmp_path):
  """Steps with the recorded run's counts are predicted from its walls,
  rescaled by this run's speed; the others by the cost model."""
  out = tmp_path / "out"
  out.mkdir()
  suite_timing.plan(out, "a", 100, 0, 0)
  suite_timing.plan(out, "b", 200, 0, 0)
  suite_timing.plan(out, "c", 0, 40, 0)  # recorded with other counts
  rec = _recorded(tmp_path / "suite.json", [
      {"name": "a", "generations": 100, "forwards": 0, "probe_fits": 0,
       "wall_s": 50.0, "rc": 0},
      {"name": "b", "generations": 200, "forwards": 0, "probe_fits": 0,
       "wall_s": 300.0, "rc": 0},
      {"name": "c", "generations": 0, "forwards": 80, "probe_fits": 0,
       "wall_s": 999.0, "rc": 0}])
  assert suite_timing.keep_reference(out, "m", "study", rec) == 3
  e = suite_timing.eta(out, "a")
  # Before any step: speed 1; c: 30 s prior overhead + 40 fwd / 20 per s.
  assert (e["step"], e["rest"], e["n_ref"]) == (50.0, 50 + 300 + 32, 2)
  assert "2 of 3 steps from the recorded run x1.00" in \
      suite_timing.eta_line(out, "a")
  suite_timing.record(out, "a", 100.0, 0)  # twice the recorded wall
  e = suite_timing.eta(out, "b")
  assert e["speed"] == 2.0 and e["step"] == 600.0
  # c stays on the cost model: no compile records, so overhead is 30 s and
  # a has too little predicted work (5 s) to rescale the rates.
  assert e["rest"] == 600.0 + 32.0


@pytest.mark.parametrize("model,sizes,jobs", [("other", "study", 1),
                                              ("m", "quick", 1),
                                              ("m", "study", 2)])
def test_recorded_run_must_match(tmp_path, model, sizes, jobs):
  """Another model's or size set's walls, or a JOBS > 1 run's (overlapping
  steps), are not a reference; an old reference file goes."""
  out = tmp_path / "out"
  out.mkdir()
  (out / "suite_reference.json").write_text("{}")
  rec = _recorded(tmp_path / "suite.json", [
      {"name": "a", "generations": 1, "wall_s": 5.0, "rc": 0}],
      model, sizes, jobs)
  assert suite_timing.keep_reference(out, "m", "study", rec) == 0
  assert not (out / "suite_reference.json").exists()
  assert suite_timing.keep_reference(out, "m", "study",
                                     tmp_path / "missing.json") == 0


def test_table_ratio_to_headline(tmp_path):
  """With a sweep.py result, each step's gen/s is divided by its rate."""
  suite_timing.plan(tmp_path, "a", 1000, 0, 0)
  suite_timing.plan(tmp_path, "b", 0, 10, 0)
  suite_timing.record(tmp_path, "a", 50.0, 0)
  suite_timing.record(tmp_path, "b", 5.0, 0)
  sweep = tmp_path / "sweep.json"
  sweep.write_text(json.dumps({"generations_per_s": {"engine": 40.0}}))
  rate = suite_timing.headline_rate(sweep)
  doc = suite_timing.table(tmp_path, "study", "m", rate)
  steps = {r["name"]: r for r in doc["steps"]}
  assert steps["a"]["ratio_to_headline"] == 0.5  # 20 gen/s of 40
  assert "ratio_to_headline" not in steps["b"]  # no generations
  assert doc["headline_generations_per_s"] == 40.0
  assert "headline 40.0 gen/s" in suite_timing.format_table(doc)


def test_table_splits_the_wall_by_measured_work(tmp_path):
  """A record's measured work (icl_jax.models.work_meter totals): the
  engine's rate inside its calls, its ratio to the headline, the wall
  split."""
  suite_timing.plan(tmp_path, "a", 1000, 10, 0)
  comp = tmp_path / "c.json"
  comp.write_text(json.dumps({"compiles": 3, "compile_s": 20.0, "work": {
      "engine": {"count": 900, "seconds": 30.0, "compile_s": 12.0,
                 "batches": {"16-31": {"calls": 20, "rows": 400,
                                       "seconds": 20.0, "compile_s": 5.0},
                             "64-127": {"calls": 5, "rows": 500,
                                        "seconds": 8.0, "compile_s": 0.0}}},
      "generate": {"count": 100, "seconds": 5.0, "compile_s": 4.0},
      "forward": {"count": 10, "seconds": 1.5, "compile_s": 1.0}}}))
  suite_timing.record(tmp_path, "a", 100.0, 0, str(comp))
  doc = suite_timing.table(tmp_path, "study", "m", 60.0)
  r = doc["steps"][0]
  assert r["engine_generations_per_s"] == 30.0  # 900 / 30 s
  assert r["engine_ratio_to_headline"] == 0.5
  assert r["ratio_to_headline"] == round(10.0 / 60.0, 3)  # 1000 / 100 s
  assert r["wall_split_s"] == {"compile": 20.0, "engine": 30.0,
                               "generate": 5.0, "forward": 1.5,
                               "other": 43.5}
  assert r["engine_rows_per_batch"] == 36.0  # 900 rows / 25 batches
  assert r["engine_batch_generations_per_s"] == {"16-31": 20.0,
                                                 "64-127": 62.5}
  assert "20/30/5/2/44" in suite_timing.format_table(doc)
  assert "  36.0 " in suite_timing.format_table(doc)


def test_quick_suite_on_tiny_model(tiny_model_dir, tmp_path):
  out = tmp_path / "out"
  # A recorded run of this model and size set (SUITE_REFERENCE): the ETA
  # lines predict from its walls.
  rec = _recorded(tmp_path / "recorded.json", [
      {"name": "baseline", "generations": 20, "forwards": 0,
       "probe_fits": 0, "wall_s": 1000.0, "rc": 0},
      {"name": "tokenization", "generations": 0, "forwards": 0,
       "probe_fits": 0, "wall_s": 200.0, "rc": 0}],
      model=str(tiny_model_dir), sizes="quick")
  env = dict(os.environ, PY=sys.executable, ONLY="tokenization,baseline",
             ICL_JAX_CACHE=str(tmp_path / "cache"), SUITE_REFERENCE=str(rec))
  p = subprocess.run(["bash", str(SUITE), str(tiny_model_dir), str(out),
                      "--sizes=quick"], capture_output=True, text=True,
                     cwd=ROOT, env=env, timeout=900)
  assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
  assert "[1/2] baseline" in p.stdout and "ETA step 16m40s" in p.stdout
  assert "2 of 2 steps from the recorded run x1.00" in p.stdout
  doc = json.loads((out / "suite.json").read_text())
  assert doc["sizes"] == "quick"
  steps = {r["name"]: r for r in doc["steps"]}
  assert set(steps) == {"baseline", "tokenization"}
  for r in steps.values():
    assert r["rc"] == 0 and r["wall_s"] >= 0
    for k in ("generations", "forwards", "probe_fits", "generations_per_s",
              "compiles", "compile_s", "work", "wall_split_s"):
      assert k in r, k
  # baseline's 20 clean generations were metered inside the model's calls
  assert steps["baseline"]["work"]["generate"]["count"] == 20
  assert steps["baseline"]["generations"] == 20  # 10 tasks x N=2
  assert steps["baseline"]["compiles"] > 0
  rows = (out / "baseline" / "results.jsonl").read_text().splitlines()
  assert len(rows) == 10
  assert "TOTAL" in p.stdout


FAKE_PY = """#!/usr/bin/env bash
# Stands in for python: a step (suite_process OUT --step NAME -- SCRIPT ...)
# runs FAKE_STEP instead of its script, through the real step runner; the
# rest goes to the real python.
if [[ $1 == -m && $2 == experiments.suite_process && $4 == --step ]]; then
  exec REAL_PY -m experiments.suite_process "$3" --step "$5" -- FAKE_STEP "$5"
fi
exec REAL_PY "$@"
"""

# A step: logs its start and end and sleeps; tokenization fails; ontology
# kills its runner (as an out-of-memory kill would).
FAKE_STEP = """import os, signal, sys, time
name = sys.argv[1]
def note(kind):
  with open(os.environ["STEP_LOG"], "a") as f:
    f.write(f"{kind} {name} {time.time()}\\n")
note("start")
time.sleep(0.4)
note("end")
if name == "ontology":
  os.kill(os.getpid(), signal.SIGKILL)
sys.exit(3 if name == "tokenization" else 0)
"""


def test_two_steps_at_a_time(tmp_path):
  """JOBS=2: never more than two steps at once, two do overlap, the step
  that reads other steps' rows (template_similarity) starts after all of
  them ended, a failed step and a killed runner fail the suite without
  stopping the others, and suite.json has the elapsed time beside the sum
  of the step walls."""
  step = tmp_path / "fake_step.py"
  step.write_text(FAKE_STEP)
  fake = tmp_path / "python"
  fake.write_text(FAKE_PY.replace("REAL_PY", sys.executable)
                  .replace("FAKE_STEP", str(step)))
  fake.chmod(0o755)
  log = tmp_path / "steps.log"
  out = tmp_path / "out"
  env = dict(os.environ, PY=str(fake), JOBS="2", STEP_LOG=str(log))
  p = subprocess.run(["bash", str(SUITE), "gemma3-270m", str(out),
                      "--sizes=quick"], capture_output=True, text=True,
                     cwd=ROOT, env=env, timeout=600)
  assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
  assert "tokenization FAILED (rc=3" in p.stdout
  assert "ontology FAILED (its runner exited rc=137" in p.stdout
  assert sorted((out / ".suite_failed").read_text().split()) == [
      "ontology", "tokenization"]
  events = sorted((float(t), kind, name) for kind, name, t in
                  (l.split() for l in log.read_text().splitlines()))
  running, peak, ended = set(), 0, {}
  for t, kind, name in events:
    if kind == "start":
      running.add(name)
      peak = max(peak, len(running))
      if name == "template_similarity":
        assert running == {name} and len(ended) == 27, (running, ended)
    else:
      running.discard(name)
      ended[name] = t
  assert peak == 2
  assert len(ended) == 28
  doc = json.loads((out / "suite.json").read_text())
  assert doc["jobs"] == 2 and len(doc["steps"]) == 28
  steps = {r["name"]: r for r in doc["steps"]}
  assert steps["ontology"]["rc"] == 137  # recorded by the suite script
  assert steps["tokenization"]["rc"] == 3  # by the step runner
  assert all("compiles" in r for n, r in steps.items() if n != "ontology")
  assert 0 < doc["elapsed_s"] < doc["total"]["wall_s"] + 60
  assert "2 step(s) at a time" in p.stdout


def test_jobs_must_be_a_positive_integer(tmp_path):
  p = subprocess.run(["bash", str(SUITE), "m", str(tmp_path / "o")],
                     capture_output=True, text=True, cwd=ROOT, timeout=60,
                     env=dict(os.environ, JOBS="two", PY=sys.executable))
  assert p.returncode == 2 and "JOBS" in p.stderr


def test_two_steps_at_a_time_and_one_process_give_the_same_rows(
    tiny_model_dir, tmp_path):
  """The rows of a JOBS=2 suite and of a ONE_PROCESS=1 suite equal those
  of a JOBS=1 suite, field for field. JOBS=2: each step is its own process
  with the same inputs. ONE_PROCESS=1: the steps share a process, a loaded
  model and compiled programs; baseline's flags (--max_new_tokens 30,
  --mode faithful) differ from main's, so a flag left over from one step
  would change the next one's rows."""
  rows = {}
  for name, extra in (("1", {}), ("2", {"JOBS": "2"}),
                      ("one", {"ONE_PROCESS": "1"})):
    out = tmp_path / f"out{name}"
    env = dict(os.environ, PY=sys.executable,
               ONLY="baseline,main,tokenization",
               ICL_JAX_CACHE=str(tmp_path / "cache"), **extra)
    p = subprocess.run(["bash", str(SUITE), str(tiny_model_dir), str(out),
                        "--sizes=quick"], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rows[name] = {
        f.relative_to(out).as_posix(): [
            {k: v for k, v in json.loads(l).items() if "second" not in k}
            for l in f.read_text().splitlines()]
        for f in sorted(out.rglob("results.jsonl"))}
  assert len(rows["1"]) >= 3 and rows["1"] == rows["2"] == rows["one"]
  doc = json.loads((tmp_path / "outone" / "suite.json").read_text())
  assert doc["one_process"] is True and len(doc["steps"]) == 3
  assert all(r["rc"] == 0 and "compiles" in r for r in doc["steps"])
  log = (tmp_path / "outone" / "main.log").read_text()
  assert "[compile_count]" in log


def test_one_process_records_a_failed_step_and_goes_on(tiny_model_dir,
                                                       tmp_path):
  """A step that fails (here: a flag value its script refuses) is recorded
  as failed in one-process mode; the next step still runs."""
  from experiments import suite_process

  out = tmp_path / "out"
  out.mkdir()
  queue = out / "q.jsonl"
  queue.write_text("\n".join(json.dumps(s) for s in (
      {"name": "bad", "argv": ["experiments/tokenization.py", "--nope=1"]},
      {"name": "tokenization", "argv": ["experiments/tokenization.py",
                                        f"--model={tiny_model_dir}",
                                        f"--out_dir={out}"]})))
  for s in ("bad", "tokenization"):
    suite_timing.plan(out, s, 0, 0, 0)
  cwd = os.getcwd()
  os.chdir(ROOT)
  try:
    assert suite_process.run_steps(out, queue) == 1
  finally:
    os.chdir(cwd)
  steps = {r["name"]: r for r in map(json.loads, (
      out / "suite_steps.jsonl").read_text().splitlines())}
  assert steps["bad"]["rc"] != 0 and steps["tokenization"]["rc"] == 0
  assert (out / ".suite_failed").read_text().split() == ["bad"]
  assert "nope" in (out / "bad.log").read_text()
  assert (out / "tokenization" / "results.jsonl").exists()


def test_one_process_is_not_for_two_jobs(tmp_path):
  p = subprocess.run(["bash", str(SUITE), "m", str(tmp_path / "o")],
                     capture_output=True, text=True, cwd=ROOT, timeout=60,
                     env=dict(os.environ, JOBS="2", ONE_PROCESS="1",
                              PY=sys.executable))
  assert p.returncode == 2 and "ONE_PROCESS" in p.stderr


@pytest.mark.parametrize("argv", [[], ["out"], ["out", "--step", "a"],
                                  ["out", "--step", "a", "x.py"],
                                  ["out", "--queue"]])
def test_step_runner_refuses_bad_arguments(argv, capsys):
  from experiments import suite_process

  assert suite_process.main(argv) == 2
  assert "usage" in capsys.readouterr().err
