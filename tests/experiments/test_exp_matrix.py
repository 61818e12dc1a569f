"""The study's remaining experiment scripts, the generic sweep and their
machinery: smoke runs on a tiny model (N=2, 2 layers), the plan and
transfer row styles of the one row builder, reference reproductions (exp6 and
exp19 statistics from the original's stored numbers), prompt files, bad
input, and REPORT.md from the smoke-run directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def run_script(args, cache_dir, timeout=900):
  env = dict(os.environ, ICL_JAX_CACHE=str(cache_dir))
  return subprocess.run([sys.executable, *args], capture_output=True,
                        text=True, cwd=ROOT, env=env, timeout=timeout)


def read_rows(path):
  rows = [json.loads(l) for l in Path(path).read_text().splitlines()
          if l.strip()]
  assert rows, path
  return rows


def check_rows(rows, n=None):
  for r in rows:
    for k in ("experiment", "model", "mode", "source_task", "target_task",
              "layer", "condition", "n", "transfer", "preserve", "neither",
              "examples"):
      assert k in r, k
    assert r["mode"] in ("faithful", "aligned")
    for k in ("transfer", "preserve", "neither", "both"):
      assert 0.0 <= r[k] <= 1.0, (k, r[k])
    assert abs(r["transfer"] + r["preserve"] + r["neither"] + r["both"]
               - 1.0) < 1e-9
    assert len(r["examples"]) == r["n"]
    if n is not None:
      assert r["n"] == n


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
  """One out_dir shared by the smoke runs (the report test reads it)."""
  d = tmp_path_factory.mktemp("exp_matrix")
  return {"out": d / "out", "cache": d / "cache"}


def smoke(script, tiny_model_dir, shared, *extra, layers="0,1", n=2):
  p = run_script([f"experiments/{script}.py", f"--model={tiny_model_dir}",
                  f"--n={n}", f"--layers={layers}",
                  f"--out_dir={shared['out']}", *extra], shared["cache"])
  assert p.returncode == 0, p.stderr[-4000:]
  return p


# ---------------------------------------------------------------------------
# smoke runs
# ---------------------------------------------------------------------------

def test_proper_stats_smoke_resume_and_guard(tiny_model_dir, shared):
  args = ["--pairs=uppercase:repeat_word", "--conditions=all_demo,last_demo"]
  smoke("proper_stats", tiny_model_dir, shared, *args)
  d = shared["out"] / "proper_stats"
  rows = read_rows(d / "results.jsonl")
  check_rows(rows, 2)
  assert len(rows) == 2 * 2 * 2  # modes x layers x conditions
  for r in rows:
    lo, hi = r["transfer_wilson"]
    assert 0 <= lo <= r["transfer_independent"] <= hi <= 1
    assert len(r["transfer_bootstrap"]) == 2
    assert r["n_layers"] == 2
  assert (d / "transfer_with_ci.csv").read_text().count("\n") == 9
  assert (d / "transfer_by_layer.png").stat().st_size > 1000
  summary = json.loads((d / "summary.json").read_text())
  assert summary["pair_means"]
  # Resume: nothing is recomputed, no row duplicated.
  p = smoke("proper_stats", tiny_model_dir, shared, *args)
  assert "cells x" not in p.stdout + p.stderr
  assert len(read_rows(d / "results.jsonl")) == 8
  # Another layer selection extends the same directory (layers are keys).
  # A different configuration is refused before any compute.
  p = run_script(["experiments/proper_stats.py", f"--model={tiny_model_dir}",
                  "--n=3", "--layers=0", f"--out_dir={shared['out']}", *args],
                 shared["cache"])
  assert p.returncode != 0 and "different configuration" in p.stderr


def test_pair_matrix_smoke(tiny_model_dir, shared):
  smoke("pair_matrix", tiny_model_dir, shared,
        "--pairs=uppercase:repeat_word,repeat_word:uppercase", "--mode=both")
  d = shared["out"] / "pair_matrix"
  rows = read_rows(d / "results.jsonl")
  check_rows(rows, 2)
  assert {r["condition"] for r in rows} == {"all_demo"}
  assert len(rows) == 2 * 2 * 2
  for mode in ("faithful", "aligned"):
    assert (d / f"transfer_matrix_{mode}.png").stat().st_size > 1000
    assert (d / f"transfer_matrix_{mode}_by_layer.png").exists()
  s = json.loads((d / "summary.json").read_text())
  assert s["study_layer"] == 1 and s["per_layer"]


def test_source_demo_count_smoke(tiny_model_dir, shared):
  smoke("source_demo_count", tiny_model_dir, shared,
        "--pairs=uppercase:repeat_word", "--source_k=1,5", "--layers=1")
  rows = read_rows(shared["out"] / "source_demo_count" / "results.jsonl")
  check_rows(rows, 2)
  assert sorted({r["source_k"] for r in rows}) == [1, 5]
  for mode in ("faithful", "aligned"):
    npos = {r["source_k"]: r["n_positions"] for r in rows
            if r["mode"] == mode}
    assert 0 < npos[1] < npos[5]  # fewer source demos, fewer positions


def test_controls_smoke(tiny_model_dir, shared):
  smoke("controls", tiny_model_dir, shared, "--pairs=uppercase:repeat_word",
        "--layers=1")
  rows = read_rows(shared["out"] / "controls" / "results.jsonl")
  check_rows(rows, 2)
  assert {r["condition"] for r in rows} == {"true_source", "random_source",
                                            "shuffled", "noise"}
  for mode in ("faithful", "aligned"):
    by = {r["condition"]: r for r in rows if r["mode"] == mode}
    assert by["shuffled"]["positions"] == by["true_source"]["positions"]
    assert by["noise"]["positions"] == by["true_source"]["positions"]
    assert by["random_source"]["random_source_task"] == "pattern_completion"
  # faithful: pattern_completion's own (longer) index set
  f = {r["condition"]: r for r in rows if r["mode"] == "faithful"}
  assert f["random_source"]["n_positions"] > f["true_source"]["n_positions"]


def test_output_positions_smoke(tiny_model_dir, shared):
  smoke("output_positions", tiny_model_dir, shared,
        "--pairs=uppercase:repeat_word", "--sizes=1,3", "--subsets=2",
        "--layers=1")
  rows = read_rows(shared["out"] / "output_positions" / "results.jsonl")
  check_rows(rows, 2)
  for mode in ("faithful", "aligned"):
    rs = [r for r in rows if r["mode"] == mode]
    rand = [r for r in rs if r["condition"] == "random_outputs"]
    assert sorted((r["size"], r["subset"]) for r in rand) == [
        (1, 0), (1, 1), (3, 0), (3, 1)]
    allp = next(r for r in rs if r["condition"] == "all_positions")
    allo = next(r for r in rs if r["condition"] == "all_outputs")
    assert allo["n_positions"] < allp["n_positions"]
    for r in rand:  # a subset + all inputs is inside "all positions"
      assert set(r["positions"]) <= set(allp["positions"])
    assert {"first_per_demo", "last_per_demo", "every_other", "first_demo",
            "last_demo"} <= {r["condition"] for r in rs}
  assert (shared["out"] / "output_positions" /
          "transfer_by_positions.png").exists()


def test_sentiment_variants_smoke(tiny_model_dir, shared):
  smoke("sentiment_variants", tiny_model_dir, shared,
        "--pairs=sentiment:sentiment_goodbad,uppercase:sentiment",
        "--layers=1", "--mode=faithful")
  rows = read_rows(shared["out"] / "sentiment_variants" / "results.jsonl")
  check_rows(rows, 2)
  base = [r for r in rows if r["condition"] == "baseline"]
  assert sorted(r["target_task"] for r in base) == [
      "sentiment", "sentiment_goodbad", "sentiment_symbol"]
  v = next(r for r in rows if r["source_task"] == "sentiment")
  c = next(r for r in rows if r["source_task"] == "uppercase")
  assert v["queries"] == "source" and c["queries"] == "target"


def test_variable_length_smoke(tiny_model_dir, shared):
  smoke("variable_length", tiny_model_dir, shared,
        "--pairs=repeat_word:repeat_n", "--parts=A,C", "--layers=1",
        "--mode=aligned")
  rows = read_rows(shared["out"] / "variable_length" / "results.jsonl")
  check_rows(rows)
  c = [r for r in rows if r["condition"] == "all_demo/by_n"]
  assert len(c) == 1 and c[0]["n"] == 20
  assert {k: v["n"] for k, v in c[0]["by_n"].items()} == {
      "2": 7, "3": 6, "4": 4, "5": 3}
  assert len([r for r in rows if r["condition"] == "baseline"]) == 5


def test_ontology_smoke(tiny_model_dir, shared):
  smoke("ontology", tiny_model_dir, shared,
        "--tasks=uppercase,first_letter,repeat_word,sentiment,antonym",
        "--permutations=20")
  rows = read_rows(shared["out"] / "ontology" / "results.jsonl")
  assert len(rows) == 4  # 2 modes x 2 layers
  for r in rows:
    sim = np.array(r["similarity"])
    assert sim.shape == (5, 5) and np.allclose(np.diag(sim), 1.0, atol=1e-5)
    assert len(r["merges"]) == 4
    assert -1 <= r["silhouette"] <= 1 and 0 <= r["perm_p"] <= 1
  assert (shared["out"] / "ontology" / "silhouette_by_layer.png").exists()


def test_tokenization_and_template_similarity(tiny_model_dir, shared):
  p = run_script(["experiments/tokenization.py", f"--model={tiny_model_dir}",
                  f"--out_dir={shared['out']}",
                  "--layout_tasks=uppercase,repeat_word,linear_2x"],
                 shared["cache"])
  assert p.returncode == 0, p.stderr[-3000:]
  rows = read_rows(shared["out"] / "tokenization" / "results.jsonl")
  lay = [r for r in rows if r["condition"] == "pair_layout"]
  assert len(lay) == 2 * 6
  # SmolLM2's tokenizer: no BOS, "\n\n" = two tokens -> the study's formula
  # has no drift and never reaches into the query of equal-length prompts.
  f = next(r for r in lay if r["mode"] == "faithful" and
           (r["source_task"], r["target_task"]) == ("uppercase",
                                                    "repeat_word"))
  assert f["output_line_drift"] == [0, 0, 0, 0, 0]
  corr = [r for r in rows if r["condition"] == "correlation"]
  assert corr and corr[0]["n_pairs"] == 6
  p = run_script(["experiments/template_similarity.py",
                  f"--out_dir={shared['out']}"], shared["cache"])
  assert p.returncode == 0, p.stderr[-3000:]
  assert "r = -0.0536" in p.stdout and "r = +0.3781" in p.stdout


def test_sweep_tasks_noise_and_prompt_files(tiny_model_dir, shared,
                                            tmp_path):
  tgt = tmp_path / "tgt.txt"
  tgt.write_text(
      "# repeat_word targets\n"
      "Input: {{apple}}\\nOutput: [[apple apple]]\\n\\nInput: {{brain}}\\n"
      "Output: [[brain brain]]\\n\\nInput: <<honey>>\\nOutput:\thoney honey"
      "\tHONEY\n"
      "Input: {{apple}}\\nOutput: [[apple apple]]\\n\\nInput: {{brain}}\\n"
      "Output: [[brain brain]]\\n\\nInput: <<frost>>\\nOutput:\tfrost frost"
      "\tFROST\n")
  src = tmp_path / "src.jsonl"
  src.write_text("".join(json.dumps({"demos": [["apple", "APPLE"],
                                               ["brain", "BRAIN"]],
                                     "query": q}) + "\n"
                         for q in ("cloud", "delta")))
  smoke("sweep", tiny_model_dir, shared, f"--source={src}",
        f"--target={tgt}", "--mode=aligned",
        "--positions=output_only,all_demo", "--experiment=sweep_files",
        layers="1")
  rows = read_rows(shared["out"] / "sweep_files" / "results.jsonl")
  check_rows(rows, 2)
  out_only = [r for r in rows if r["condition"] == "output_only"]
  assert out_only and all(r["n_positions"] == 4 for r in out_only)
  assert rows[0]["examples"][0]["expected_source"] == ["HONEY"]
  smoke("sweep", tiny_model_dir, shared, "--target=uppercase",
        "--edit=noise", "--sigma=3", "--relative_noise",
        "--positions=first_query_token,all_tokens", "--experiment=sweep_noise",
        "--layers=1")
  rows = read_rows(shared["out"] / "sweep_noise" / "results.jsonl")
  check_rows(rows, 2)
  assert all(r["transfer"] == 0 and r["changed"] for r in rows)
  assert {r["n_positions"] for r in rows if
          r["condition"] == "first_query_token"} == {1}
  assert (shared["out"] / "sweep_noise" / "preserve_by_layer.png").exists()


@pytest.mark.parametrize("script,args,match", [
    ("pair_matrix", ["--layers=0,5"], "outside the model"),
    ("controls", ["--pairs=uppercase:nonsense_task"], "nonsense_task"),
    ("output_positions", ["--mode=sideways"], "sideways"),
    ("sweep", ["--edit=bogus"], "bogus"),
    ("sweep", ["--positions=nowhere", "--mode=aligned"], "nowhere"),
    ("source_demo_count", ["--source_k=0,9"], "source_k"),
    ("sweep", ["--target=/nonexistent/prompts.txt"], "does not exist"),
])
def test_bad_input_fails_before_compute(tiny_model_dir, tmp_path, script,
                                        args, match):
  p = run_script([f"experiments/{script}.py", f"--model={tiny_model_dir}",
                  "--n=2", f"--out_dir={tmp_path / 'o'}", *args],
                 tmp_path / "cache")
  assert p.returncode != 0
  assert match in p.stderr
  assert not list((tmp_path / "o").rglob("results.jsonl"))


def test_report_from_smoke_runs(shared, tmp_path):
  """REPORT.md over whatever the smoke runs above produced."""
  if not shared["out"].exists():
    pytest.skip("no smoke-run directory (run the whole module)")
  out = tmp_path / "REPORT.md"
  p = run_script(["experiments/report.py", f"--results={shared['out']}",
                  f"--out={out}"], shared["cache"])
  assert p.returncode == 0, p.stderr[-3000:]
  text = out.read_text()
  for name in ("proper_stats", "pair_matrix", "controls"):
    if (shared["out"] / name).exists():
      assert f"| {name} |" in text
  assert "## 1. Does multi-position transfer exist" in text
  assert "Not run" in text  # e.g. exp1 / main are not in these runs
  assert "Traceback" not in text and "renderer failed" not in text


# ---------------------------------------------------------------------------
# in-process checks (no subprocess)
# ---------------------------------------------------------------------------

def test_transfer_and_plan_row_styles_agree(tiny_model_dir, tmp_path):
  """The one row builder's two styles: same cells, same numbers and
  outputs; they differ only in the documented extra fields."""
  import icl_jax
  from icl_jax.analysis.results import RunDir
  from icl_jax.studies import plans, setups
  from icl_jax.interventions.engine import Engine

  lm = icl_jax.load(str(tiny_model_dir), cache=False)
  engine = Engine(lm, max_new_tokens=4)
  pairs = [("uppercase", "repeat_word")]
  conds = ["all_demo", "output_only"]
  only_plan = {"transfer_independent", "preserve_independent", "n_layers"}
  for mode in ("faithful", "aligned"):
    got = {}
    for style in ("plan", "transfer"):
      setup = setups.setup_pairs(pairs, 2)[0]
      rd = RunDir(tmp_path / mode / style, "x", {})
      got[style] = plans.run_jobs(engine, rd, [plans.transfer_job(
          mode, setup, [0, 1], conds, style=style)], experiment="x",
                                  model="m", progress=False)
    key = lambda r: (r["layer"], r["condition"])
    ref_by = {key(r): r for r in got["transfer"]}
    assert len(got["plan"]) == len(got["transfer"]) == 4
    for r in got["plan"]:
      e = ref_by[key(r)]
      assert set(r) - set(e) == only_plan
      assert set(e) - set(r) == {"source_positions"}
      if mode == "faithful":  # the same absolute indices in the target
        assert set(r["positions"]) <= set(e["source_positions"])
      assert r["positions"] == e["positions"]
      assert [x["raw_output"] for x in r["examples"]] == [
          x["raw_output"] for x in e["examples"]]
      for k in ("transfer", "preserve", "neither", "both", "malformed",
                "max_residual_change", "stop", "timing", "scorer"):
        assert r[k] == e[k], k
      other = "strict_scorer" if mode == "faithful" else "faithful_scorer"
      assert set(e[other]) - set(r[other]) == {"malformed"}
      assert all(e[other][k] == v for k, v in r[other].items())


def test_make_setups_query_sources():
  from icl_jax.studies import setups
  from icl_jax.tasks import get_task

  own, tgt, src = (setups.setup_pairs([("uppercase", "repeat_word")], 3,
                                     queries=q)[0]
                   for q in ("own", "target", "source"))
  first = get_task("uppercase").generate_test_inputs(3)
  assert [e.query for e in own.source_episodes] == first
  assert [e.query for e in own.target_episodes] == first  # same pool/seed
  assert [e.query for e in tgt.source_episodes] == [
      e.query for e in tgt.target_episodes]
  assert [e.query for e in src.target_episodes] == [
      e.query for e in src.source_episodes]
  # Call order: a task used twice advances its RNG.
  a, b = setups.setup_pairs([("uppercase", "length"), ("uppercase", "length")],
                           3)
  t = get_task("uppercase")
  c1, c2 = t.generate_test_inputs(3), t.generate_test_inputs(3)
  assert [e.query for e in a.source_episodes] == c1
  assert [e.query for e in b.source_episodes] == c2
  # k demos for the source only
  s = setups.setup_pairs([("uppercase", "repeat_word")], 2, k_source=2)[0]
  assert len(s.source_episodes[0].demos) == 2
  assert len(s.target_episodes[0].demos) == 5


def test_posmap_select_and_union():
  from icl_jax.studies.plans import PosMap

  a = PosMap([1, 2, 3], [11, 12, 13], [[0], [0, 1], [1]])
  s = a.select([3, 1])
  assert s.src_idx == [1, 3] and s.tgt_idx == [11, 13]
  u = PosMap([5], [10], [[0]]).union(s)
  assert u.tgt_idx == [10, 11, 13] and u.src_idx == [5, 1, 3]


def test_control_values():
  from icl_jax.studies.controls import (norm_matched_noise,
                                              shuffled_values)

  rng = np.random.RandomState(0)
  v = rng.standard_normal((6, 8)).astype(np.float32)
  s, perm = shuffled_values(v, np.random.RandomState(1))
  assert sorted(perm.tolist()) == list(range(6))
  np.testing.assert_array_equal(s, v[perm])
  nz = norm_matched_noise(v, np.random.RandomState(2))
  np.testing.assert_allclose(np.linalg.norm(nz, axis=-1),
                             np.linalg.norm(v, axis=-1), rtol=1e-5)
  assert np.abs((nz * v).sum(-1) / np.linalg.norm(v, axis=-1) ** 2).max() < 1


def test_ontology_statistics_reproduce_the_original():
  """exp6: from the stored similarity matrix, our silhouette, permutation p,
  within/between means and linkage heights equal the original's."""
  from icl_jax.analysis import ontology as O
  from icl_jax.analysis import reference as R

  sim = np.array(R.EXP6_SIMILARITY, float)
  dist = 1 - sim
  np.fill_diagonal(dist, 0)
  labels = [R.REGIMES[t] for t in R.EXP6_TASKS]
  obs, p = O.permutation_test(dist, labels)
  assert abs(obs - R.EXP6["silhouette"]) < 1e-3  # matrix is rounded to 3dp
  assert p == R.EXP6["perm_p"]
  w, b = O.within_between(sim, labels)
  assert (round(w, 3), round(b, 3)) == (R.EXP6["within"], R.EXP6["between"])
  heights = [h for _, h in O.describe_merges(O.average_linkage(dist),
                                              R.EXP6_TASKS)]
  np.testing.assert_allclose(heights, [h for _, h in R.EXP6["merges"]],
                             atol=1e-3)
  from sklearn.metrics import silhouette_score

  assert abs(silhouette_score(dist, labels, metric="precomputed") - obs) < 1e-12


def test_template_similarity_reproduces_the_original():
  """exp19: our features + the stored exp29 rates give r = -0.0536 and the
  bootstrap CI [-0.2635, 0.1537]; exp6 x exp29 gives 0.378."""
  import itertools

  from icl_jax.analysis import reference as R
  from icl_jax.analysis import similarity as S

  feats = {t: S.task_features(t) for t in R.CORE_TASKS}
  ps = list(itertools.permutations(R.CORE_TASKS, 2))
  c = S.correlate([S.feature_similarity(feats, *p)[0] for p in ps],
                  [R.EXP29["transfer"][p] for p in ps])
  assert round(c["r"], 4) == R.EXP19["r"]
  assert abs(c["p"] - R.EXP19["p"]) < 5e-4
  assert abs(c["ci"][0] - R.EXP19["ci"][0]) < 2e-4
  assert abs(c["ci"][1] - R.EXP19["ci"][1]) < 2e-4
  sim = np.array(R.EXP6_SIMILARITY)
  idx = {t: i for i, t in enumerate(R.EXP6_TASKS)}
  a = S.correlate([sim[idx[s], idx[t]] for s, t in ps],
                  [R.EXP29["transfer"][p] for p in ps])
  assert round(a["r"], 3) == R.EXP19["activation_r_recomputed"]


def test_reference_tables_parse():
  from icl_jax.analysis import reference as R

  assert len(R.EXP29["transfer"]) == 56
  assert round(sum(R.EXP29["transfer"].values()) / 56, 3) == 0.123
  assert round(R.exp8_mean_transfer("llama-3.2-3b", 8, "all_demo"), 3) == \
      0.167
  assert R.EXP23[("uppercase", "repeat_word", 8, "all_demo")]["wilson"] == (
      0.865, 0.989)
  assert all(len(v) == 96 for v in R.EXP8.values())
  assert R.EXP11["gemma-2-2b"]["layers"] == tuple(range(26))


def test_prompt_file_marked_format_matches_study_spans(tmp_path):
  from icl_jax.studies import prompt_files as PF
  from icl_jax.tasks import build_prompt

  line = ("Input: {{apple}}\\nOutput: [[APPLE]]\\n\\nInput: {{brain}}\\n"
          "Output: [[BRAIN]]\\n\\nInput: <<honey>>\\nOutput:\tHONEY"
          "\thoney honey || honey  honey")
  spec, ans, src = PF.parse_marked(line)
  ref = build_prompt([("apple", "APPLE"), ("brain", "BRAIN")], "honey")
  assert spec.text == ref.text
  assert spec.demos == ref.demos and spec.query == "honey"
  assert ans == ("HONEY",) and src == ("honey honey", "honey  honey")
  for role in ("input_value", "output_value", "demo_separator"):
    for k in (0, 1):
      assert spec.span(role, k).text == ref.span(role, k).text
  assert spec.span("query_value").text == " honey"
  covered = sum(s.end - s.start for s in spec.spans)
  assert covered == len(spec.text)  # every character has a role
  # free-form prompts without inputs or query markers
  spec2, _, _ = PF.parse_marked("Q: [[a]] [[b]] ->")
  assert spec2.demos == (("", "a"), ("", "b"))
  for bad, msg in (("no answers here", "no demo answer"),
                   ("<<q>> [[a]]", "after the query"),
                   ("{{x}} {{y}} [[a]]", "two")):
    with pytest.raises(PF.PromptFileError, match=msg):
      PF.parse_marked(bad)
  f = tmp_path / "p.jsonl"
  f.write_text('{"demos": [["a", "A"]], "query": "b", "answer": "B"}\n'
               '# comment\n')
  (fp,) = PF.load_prompt_file(f)
  assert fp.prompt().text == build_prompt([("a", "A")], "b").text
  assert fp.answers == ("B",)
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"query": "b"}\n')
  with pytest.raises(PF.PromptFileError, match="demos"):
    PF.load_prompt_file(bad)
