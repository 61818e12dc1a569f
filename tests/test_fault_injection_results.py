"""Fault injection: result files, run configuration and input validation
(issue 16, items 3, 5, 6, 7, 8, 10, 11).

Each test reproduces a case that used to give wrong numbers, lose or
duplicate a row, or fail unclearly, and shows the new behaviour. Tiny models
only; the subprocess cases fail during flag parsing or before the model
loads, so they take seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from icl_jax.analysis import results as R

ROOT = Path(__file__).resolve().parents[1]


def _run(args, tmp_path, timeout=300):
  env = dict(os.environ, ICL_JAX_CACHE=str(tmp_path / "cache"))
  return subprocess.run([sys.executable, *args], capture_output=True,
                        text=True, cwd=ROOT, env=env, timeout=timeout)


class FakeLM:
  """Answers uppercase correctly; records calls (studies/baseline.py)."""

  dtype = "float32"

  def __init__(self, dtype="float32", sha=None):
    self.dtype = dtype
    self.load_info = {"source_sha256": sha} if sha else {}
    self.calls = []

  def generate(self, prompts, max_new_tokens):
    self.calls.append(len(prompts))
    return [" " + p.rsplit("Input: ", 1)[1].split("\n", 1)[0].upper() + "\n"
            for p in prompts]


# ---------------------------------------------------------------------------
# (6) a cut last line: reported, repaired, the cell recomputed
# ---------------------------------------------------------------------------

def test_cut_last_line_is_recomputed_and_the_file_valid(tmp_path):
  from icl_jax.studies import baseline

  tasks = ["uppercase", "first_letter", "sentiment"]
  lm = FakeLM()
  rows = baseline.run(lm, "fake", tasks, 4, str(tmp_path), max_new_tokens=5)
  path = tmp_path / "baseline" / "results.jsonl"
  whole = path.read_bytes()
  # A crash in the middle of writing the last row: no newline, half a row.
  path.write_bytes(whole[:-40])
  with pytest.warns(R.CorruptRowWarning, match=r"results.jsonl.*line 3"):
    again = baseline.run(lm, "fake", tasks, 4, str(tmp_path),
                         max_new_tokens=5)
  assert lm.calls == [4, 4, 4, 4]  # only the cut task was recomputed
  lines = path.read_text().splitlines()
  assert len(lines) == 3 and all(json.loads(l) for l in lines)
  assert path.read_bytes().endswith(b"\n")

  def strip(rs):
    return [{k: v for k, v in r.items() if k != "generate_seconds"}
            for r in rs]

  assert strip(again) == strip(rows)  # the same numbers
  backup = tmp_path / "baseline" / "results.jsonl.corrupt"
  assert backup.read_bytes() == whole[:-40]  # the damaged file is kept


def test_append_after_a_fragment_starts_on_a_fresh_line(tmp_path):
  rd = R.RunDir(tmp_path, "x", {})
  rd.append([{"model": "m", "layer": 0}])
  with rd.results.open("ab") as f:  # a fragment written behind our back
    f.write(b'{"model": "m", "lay')
  rd.append([{"model": "m", "layer": 1}])
  rd.close()
  raw = rd.results.read_text().splitlines()
  assert raw[-1] == '{"model": "m", "layer": 1}'  # not glued on
  with pytest.warns(R.CorruptRowWarning, match="line 2"):
    assert [r["layer"] for r in rd.rows()] == [0, 1]  # reported, not silent


def test_reader_reports_corrupt_lines_with_file_and_line(tmp_path):
  p = tmp_path / "results.jsonl"
  p.write_text('{"a": 1}\nnot json\n[1, 2]\n{"a": 2}\n')
  with pytest.warns(R.CorruptRowWarning) as rec:
    rows = R.read_rows(p)
  assert rows == [{"a": 1}, {"a": 2}]
  msg = str(rec[0].message)
  assert str(p) in msg and "line 2, 3" in msg


def test_repair_on_open_keeps_good_rows_and_a_backup(tmp_path):
  d = tmp_path / "x"
  d.mkdir()
  (d / "results.jsonl").write_bytes(
      b'{"model": "m", "layer": 0}\n\x00\x00garbage\n'
      b'{"model": "m", "layer": 1}\n{"model": "m", "la')
  with pytest.warns(R.CorruptRowWarning, match="line 2, 4"):
    rd = R.RunDir(tmp_path, "x", {})
  assert rd.repaired == [2, 4]
  assert rd.done() == {("m", None, None, None, 0, None),
                       ("m", None, None, None, 1, None)}
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # the repaired file reads cleanly
    assert len(rd.rows()) == 2
  assert (d / "results.jsonl.corrupt").exists()
  rd.close()


def test_last_row_without_newline_is_kept(tmp_path):
  d = tmp_path / "x"
  d.mkdir()
  (d / "results.jsonl").write_text('{"model": "m", "layer": 0}')
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    rd = R.RunDir(tmp_path, "x", {})
  assert rd.results.read_text() == '{"model": "m", "layer": 0}\n'
  rd.close()


# ---------------------------------------------------------------------------
# (7) one process per run directory
# ---------------------------------------------------------------------------

def test_a_held_lock_refuses_a_second_run_at_once(tmp_path):
  import fcntl

  R.RunDir(tmp_path, "x", {}).close()
  fd = os.open(tmp_path / "x" / ".lock", os.O_RDWR)
  fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "another process"
  os.pwrite(fd, b"4242 on elsewhere since 2026-01-01\n", 0)
  try:
    t = time.time()
    with pytest.raises(R.RunDirLockedError,
                       match=r"x is in use by another run \(pid 4242"):
      R.RunDir(tmp_path, "x", {})
    assert time.time() - t < 1.0  # refused, not waiting
  finally:
    os.close(fd)
  R.RunDir(tmp_path, "x", {}).close()  # free again


_WORKER = textwrap.dedent("""
    import os, sys, time
    from icl_jax.analysis.results import RunDir, RunDirLockedError
    out, go = sys.argv[1], sys.argv[2]
    try:
      rd = RunDir(out, "x", {"n": 8})
    except RunDirLockedError as e:
      print("REFUSED", e, flush=True)
      sys.exit(3)
    print("OPENED", flush=True)
    while go != "-" and not os.path.exists(go):  # hold the directory
      time.sleep(0.05)
    done = rd.done()
    for i in range(8):  # compute the cells not yet done
      key = ("m", "faithful", "a", "b", i, "c")
      if key not in done:
        rd.append([dict(zip(["model", "mode", "source_task", "target_task",
                             "layer", "condition"], key))])
    """)


def test_two_processes_on_one_run_dir_give_no_duplicates(tmp_path):
  script = tmp_path / "worker.py"
  script.write_text(_WORKER)
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  go = tmp_path / "go"
  a = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(go)],
                       stdout=subprocess.PIPE, text=True, env=env)
  try:
    assert a.stdout.readline().strip() == "OPENED"
    b = subprocess.run([sys.executable, str(script), str(tmp_path), "-"],
                       capture_output=True, text=True, env=env, timeout=120)
  finally:
    go.touch()
    a.wait(timeout=120)
  assert a.returncode == 0
  assert b.returncode == 3, b.stdout + b.stderr
  assert "REFUSED" in b.stdout and f"pid {a.pid}" in b.stdout
  assert str(tmp_path / "x") in b.stdout
  # After the first has finished, a second run finds every cell done.
  c = subprocess.run([sys.executable, str(script), str(tmp_path), "-"],
                     capture_output=True, text=True, env=env, timeout=120)
  assert c.returncode == 0, c.stderr
  rows = R.read_rows(tmp_path / "x" / "results.jsonl")
  keys = [R.row_key(r) for r in rows]
  assert len(keys) == 8 == len(set(keys))


def test_a_script_is_refused_before_loading_the_model(tiny_model_dir,
                                                     tmp_path):
  import fcntl

  run_dir = tmp_path / "o" / "multi_position"
  run_dir.mkdir(parents=True)
  fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT)
  fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  os.pwrite(fd, b"777 on host since now\n", 0)
  try:
    p = _run(["experiments/multi_position.py", f"--model={tiny_model_dir}",
              "--n=1", "--layers=0", f"--out_dir={tmp_path / 'o'}"],
             tmp_path)
  finally:
    os.close(fd)
  assert p.returncode != 0
  assert f"{run_dir} is in use by another run (pid 777" in p.stderr
  assert not (tmp_path / "cache").exists()  # refused before the load
  assert not (run_dir / "config.json").exists()


def test_one_process_may_reopen_its_own_run_dir(tmp_path):
  a = R.RunDir(tmp_path, "x", {})
  b = R.RunDir(tmp_path, "x", {})  # e.g. a script calling run() twice
  a.close()
  b.append([{"model": "m"}])
  b.close()


# ---------------------------------------------------------------------------
# (5) dtype, model file and code version are part of the configuration
# ---------------------------------------------------------------------------

def test_dtype_change_is_refused(tmp_path):
  R.RunDir(tmp_path, "x", {"n": 2}, lm=FakeLM("float32")).append(
      [{"model": "m"}])
  with pytest.raises(R.ConfigMismatchError,
                     match=r"dtype.*float32.*bfloat16"):
    R.RunDir(tmp_path, "x", {"n": 2}, lm=FakeLM("bfloat16"))
  cfg = json.loads((tmp_path / "x" / "config.json").read_text())
  assert cfg["dtype"] == "float32"
  prov = cfg["_provenance"]
  import icl_jax
  assert prov["icl_jax"] == icl_jax.__version__ and "git_commit" in prov


def test_dtype_change_is_refused_by_a_real_study(tiny_model_dir, tmp_path):
  import icl_jax
  from icl_jax.studies import study

  lm32 = icl_jax.load(str(tiny_model_dir), cache=False)
  st = study.open_study(experiment="x", model="tiny", out_dir=str(tmp_path),
                        config={"n": 1}, layers="0", lm=lm32)
  st.rd.append([{"model": "tiny", "layer": 0}])
  st.finish()
  summary = json.loads((tmp_path / "x" / "summary.json").read_text())
  assert summary["dtype"] == "float32"
  assert summary["code"]["icl_jax"] == icl_jax.__version__
  st.rd.close()
  lm16 = icl_jax.load(str(tiny_model_dir), dtype="bfloat16", cache=False)
  with pytest.raises(R.ConfigMismatchError, match="dtype"):
    study.open_study(experiment="x", model="tiny", out_dir=str(tmp_path),
                     config={"n": 1}, layers="0", lm=lm16)


def test_model_file_change_is_refused(tmp_path):
  R.RunDir(tmp_path, "x", {}, lm=FakeLM(sha="aa" * 32)).append(
      [{"model": "m"}])
  with pytest.raises(R.ConfigMismatchError, match="model_sha256"):
    R.RunDir(tmp_path, "x", {}, lm=FakeLM(sha="bb" * 32))
  # A loader that cannot hash the file is not refused (nothing to compare).
  R.RunDir(tmp_path, "x", {}, lm=FakeLM()).close()


def test_old_directories_without_dtype_resume_as_float32(tmp_path):
  d = tmp_path / "x"
  d.mkdir()
  (d / "config.json").write_text(json.dumps({"n": 2, "dtype": None}))
  (d / "results.jsonl").write_text('{"model": "m"}\n')
  R.RunDir(tmp_path, "x", {"n": 2}, lm=FakeLM("float32")).close()
  cfg = json.loads((d / "config.json").read_text())
  assert cfg["dtype"] == "float32" and "_provenance" in cfg
  with pytest.raises(R.ConfigMismatchError, match="dtype"):
    R.RunDir(tmp_path, "x", {"n": 2}, lm=FakeLM("bfloat16"))


def test_growable_keys_extend_the_directory_and_conflicts_are_refused(
    tmp_path):
  g = ("families", "layers")
  R.RunDir(tmp_path, "x", {"families": ["bitwise"], "layers": {"bitwise": 15},
                           "n": 2}, growable=g).append([{"model": "m"}])
  # A later run adds a family: accepted, and config.json records both.
  R.RunDir(tmp_path, "x", {"families": ["pos"], "layers": {"pos": 9}, "n": 2},
           growable=g).close()
  cfg = json.loads((tmp_path / "x" / "config.json").read_text())
  assert cfg["families"] == ["bitwise", "pos"]
  assert cfg["layers"] == {"bitwise": 15, "pos": 9}
  # Rerunning one family as before still resumes.
  rd = R.RunDir(tmp_path, "x", {"families": ["bitwise"],
                                "layers": {"bitwise": 15}, "n": 2},
                growable=g)
  assert rd.config["families"] == ["bitwise", "pos"]
  rd.close()
  # A family's layer may not change, nor may a key that does not grow.
  with pytest.raises(R.ConfigMismatchError, match="layers"):
    R.RunDir(tmp_path, "x", {"families": ["bitwise"],
                             "layers": {"bitwise": 14}, "n": 2}, growable=g)
  with pytest.raises(R.ConfigMismatchError, match="'n'"):
    R.RunDir(tmp_path, "x", {"families": ["pos"], "layers": {"pos": 9},
                             "n": 3}, growable=g)
  # Without `growable` a different family list is refused as before.
  with pytest.raises(R.ConfigMismatchError, match="families"):
    R.RunDir(tmp_path, "x", {"families": ["pos"], "layers": {"pos": 9},
                             "n": 2})


def test_grow_value():
  assert R.grow_value([1, 2], [2, 3]) == [1, 2, 3]
  assert R.grow_value({"a": 1}, {"b": 2}) == {"a": 1, "b": 2}
  assert R.grow_value({"a": 1}, {"a": 2}) is None
  assert R.grow_value(3, 3) == 3 and R.grow_value(3, 4) is None


def test_code_version_change_is_recorded_not_refused(tmp_path):
  R.RunDir(tmp_path, "x", {}).append([{"model": "m"}])
  cfg_path = tmp_path / "x" / "config.json"
  cfg = json.loads(cfg_path.read_text())
  cfg["_provenance"]["git_commit"] = "0" * 40
  cfg_path.write_text(json.dumps(cfg))
  R.RunDir(tmp_path, "x", {}).close()


# ---------------------------------------------------------------------------
# (8) every flag validated before anything is written
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("script,flag", [
    ("multi_position", "--n=0"), ("multi_position", "--max_new_tokens=0"),
    ("sweep", "--n=0"), ("sweep", "--max_new_tokens=-1"),
    ("baseline", "--n=0"), ("pair_matrix", "--n=0"),
    ("demo_zeroing", "--max_new_tokens=0"), ("localization", "--k=0"),
])
def test_bad_counts_fail_before_config_is_written(tmp_path, script, flag):
  out = tmp_path / "o"
  p = _run([f"experiments/{script}.py", "--model=/nonexistent", flag,
            f"--out_dir={out}"], tmp_path)
  assert p.returncode != 0
  name = flag.split("=")[0]
  assert name in p.stderr, p.stderr[-2000:]
  assert "ZeroDivisionError" not in p.stderr
  assert not out.exists() or not list(out.rglob("config.json"))


def test_baseline_n0_is_a_clear_error(tmp_path):
  from icl_jax.studies import baseline

  with pytest.raises(ValueError, match="--n must be an integer >= 1"):
    baseline.run(FakeLM(), "fake", ["uppercase"], 0, str(tmp_path))
  assert not (tmp_path / "baseline").exists()


def test_counts_in_a_config_are_checked_before_writing(tmp_path):
  for bad in ({"n": 0}, {"max_new_tokens": 0}, {"n_source": -1}):
    with pytest.raises(ValueError, match="must be >= 1"):
      R.RunDir(tmp_path, "x", bad)
  assert not (tmp_path / "x").exists()


def test_a_run_without_rows_does_not_block_its_fix(tmp_path):
  # A run that failed after its configuration was written, before any row.
  R.RunDir(tmp_path, "x", {"n": 5, "pairs": ["a:b"]}).close()
  rd = R.RunDir(tmp_path, "x", {"n": 2, "pairs": ["a:b"]})  # the fix
  assert json.loads(rd.path.joinpath("config.json").read_text())["n"] == 2
  rd.append([{"model": "m"}])
  rd.close()
  with pytest.raises(R.ConfigMismatchError, match="different configuration"):
    R.RunDir(tmp_path, "x", {"n": 5, "pairs": ["a:b"]})


# ---------------------------------------------------------------------------
# (11) names from flags stay inside --out_dir
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../x", "/tmp/abs_escape", "a/../../b",
                                  "..", "sub/dir"])
def test_experiment_names_cannot_leave_out_dir(tmp_path, name):
  with pytest.raises(R.UnsafePathError, match="--experiment"):
    R.RunDir(tmp_path / "o", name, {})
  assert not (tmp_path / "x").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("name", ["../../escaped", "ABS"])
def test_sweep_experiment_flag_is_checked(tmp_path, name):
  out = tmp_path / "a" / "b" / "o"
  target = tmp_path / "abs_target"
  if name == "ABS":
    name = str(target)
  p = _run(["experiments/sweep.py", "--model=/nonexistent",
            f"--experiment={name}", f"--out_dir={out}"], tmp_path)
  assert p.returncode != 0
  assert "--experiment" in p.stderr and "plain name" in p.stderr
  assert not (tmp_path / "a" / "escaped").exists() and not target.exists()


# ---------------------------------------------------------------------------
# (10) clear messages
# ---------------------------------------------------------------------------

def test_prompt_file_wrong_field_type_names_file_and_field(tmp_path):
  from icl_jax.studies import prompt_files as PF

  f = tmp_path / "p.jsonl"
  f.write_text('{"demos": [["a", "A"]], "query": "b", "answer": 5}\n')
  with pytest.raises(PF.PromptFileError) as e:
    PF.load_prompt_file(f)
  msg = str(e.value)
  assert f"{f}:1" in msg and '"answer"' in msg and "int 5" in msg
  for line, field in (('{"demos": "aA", "query": "b"}', "demos"),
                      ('{"demos": [["a"]], "query": "b"}', "demos[0]"),
                      ('{"demos": [["a", "A"]], "query": ["b"]}', "query"),
                      ('{"demos": [["a", "A"]], "query": "b", '
                       '"source_answer": {"x": 1}}', "source_answer")):
    f.write_text(line + "\n")
    with pytest.raises(PF.PromptFileError) as e:
      PF.load_prompt_file(f)
    assert f'{f}:1: field "{field}"' in str(e.value)


def test_binary_prompt_file_names_the_file(tmp_path):
  from icl_jax.studies import prompt_files as PF

  f = tmp_path / "prompts.txt"
  f.write_bytes(bytes(range(256)) * 4)
  with pytest.raises(PF.PromptFileError, match=rf"{f}.*binary"):
    PF.load_prompt_file(f)
  f.write_bytes(b"Input: [[caf\xe9]]\n")  # latin-1, not UTF-8
  with pytest.raises(PF.PromptFileError, match=rf"{f} is not UTF-8.*line 1"):
    PF.load_prompt_file(f)


def test_bad_layers_fail_before_the_model_loads(tiny_model_dir, tmp_path):
  t = time.time()
  p = _run(["experiments/multi_position.py", f"--model={tiny_model_dir}",
            "--layers=99", "--n=1", f"--out_dir={tmp_path / 'o'}"], tmp_path)
  assert p.returncode != 0 and "--layers: [99] outside the model (0..1)" \
      in p.stderr
  assert not (tmp_path / "cache").exists()  # nothing was converted
  assert not (tmp_path / "o").exists()
  assert time.time() - t < 120


def test_model_depth_without_weights(tiny_model_dir, tmp_path):
  from icl_jax.studies import layers

  assert layers.model_depth(str(tiny_model_dir)) == 2
  assert layers.model_depth(str(tmp_path / "nothing")) is None
  with pytest.raises(ValueError, match="outside the model"):
    layers.check_layers_early("0,5", str(tiny_model_dir))
  layers.check_layers_early("0,1", str(tiny_model_dir))
  layers.check_layers_early("study", str(tiny_model_dir))


# ---------------------------------------------------------------------------
# (3) token ids and (10) empty / negative arguments at the API boundary
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
  """Tiny llama, vocab 101, no tokenizer."""
  import icl_jax
  from tests.conftest import make_tiny_hf_model

  d = tmp_path_factory.mktemp("tiny101")
  make_tiny_hf_model("llama", num_attention_heads=4,
                     num_key_value_heads=2).save_pretrained(str(d))
  return icl_jax.load(str(d), cache=False)


def test_token_ids_out_of_range_are_refused(tiny_lm):
  from icl_jax.models.lm import TokenIdError, forward

  ok = np.array([[1, 5, 7, 100]], np.int32)
  out = tiny_lm(ok)
  ref = forward(tiny_lm.config, tiny_lm.params, ok, np.ones_like(ok))
  np.testing.assert_array_equal(np.asarray(out.logits),
                                np.asarray(ref.logits))  # unchanged
  assert np.isfinite(np.asarray(out.logits)).all()
  for bad, bad_id in (([[1, 5, 101]], 101), ([[1, -1, 3]], -1),
                      ([[1, 2, 10**6]], 10**6)):
    with pytest.raises(TokenIdError,
                       match=rf"token id {bad_id} .*vocab_size 101"):
      tiny_lm(np.asarray(bad))
  with pytest.raises(TokenIdError, match="token id 101"):
    tiny_lm.generate_ids(np.array([[1, 101]]), np.ones((1, 2), np.int32), 2)
  with pytest.raises(TokenIdError, match="sequence 1: token id -3"):
    tiny_lm.pad_left([[1, 2], [4, -3]])


def test_empty_and_negative_arguments(tiny_lm, tiny_model_dir):
  import icl_jax

  ids = np.array([[1, 5]], np.int32)
  mask = np.ones_like(ids)
  with pytest.raises(ValueError, match="max_new_tokens must be >= 1, got -1"):
    tiny_lm.generate_ids(ids, mask, max_new_tokens=-1)
  with pytest.raises(ValueError, match="batch is empty"):
    tiny_lm.pad_left([])
  with pytest.raises(ValueError, match="empty prompt"):
    tiny_lm.pad_left([[1], []])
  with pytest.raises(ValueError, match="non-empty"):
    tiny_lm(np.zeros((0, 3), np.int32))
  lm = icl_jax.load(str(tiny_model_dir), cache=False)
  with pytest.raises(ValueError, match="prompts is empty"):
    lm.encode([])
  with pytest.raises(ValueError, match="prompts is empty"):
    lm.generate([])
  with pytest.raises(TypeError, match="got NoneType"):
    lm.generate(None)
  with pytest.raises(TypeError, match=r"prompts\[1\] must be a string"):
    lm.generate(["a", 5])
  with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
    lm.generate(["Input: a\nOutput:"], max_new_tokens=-1)
  with pytest.raises(TypeError, match="max_new_tokens must be an integer"):
    lm.generate(["Input: a\nOutput:"], max_new_tokens=2.5)
