"""Run directories archived in the repository and restored byte for byte
(`icl_jax.analysis.run_archive`)."""

from __future__ import annotations

import io
import json
import lzma
import tarfile

import pytest

from icl_jax.analysis import run_archive


def _run(root, rel="runs/suite/qwen2.5-0.5b"):
  d = root / rel
  (d / "main").mkdir(parents=True)
  (d / "main" / "results.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
  (d / "main" / "summary.json").write_text('{"n": 2}')
  (d / "main" / "main_by_layer.png").write_bytes(b"\x89PNG fake")
  (d / "main.log").write_text("a long log")  # not kept
  (d / ".compiles_main.json").write_text("{}")  # not kept
  return rel


def test_archive_name_keeps_dotted_model_names():
  assert (run_archive.archive_name("runs/qwen2.5-0.5b")
          == "qwen2.5-0.5b.tar.xz")
  assert (run_archive.archive_name("runs/suite_study/gemma3-270m_best_layer")
          == "suite_study__gemma3-270m_best_layer.tar.xz")
  with pytest.raises(ValueError):
    run_archive.archive_name("runs")


def test_pack_unpack_round_trip_and_determinism(tmp_path):
  src = tmp_path / "src"
  rel = _run(src)
  rel2 = _run(src, "runs/other")
  m = run_archive.pack([rel2, rel], tmp_path / "inputs", src)
  assert m["results"] == [rel2, rel]  # the order given: --results order
  entry = m["archives"]["suite__qwen2.5-0.5b.tar.xz"]
  assert entry["files"] == 3 and entry["dir"] == rel
  first = (tmp_path / "inputs" / "suite__qwen2.5-0.5b.tar.xz").read_bytes()
  run_archive.pack([rel2, rel], tmp_path / "inputs", src)
  again = (tmp_path / "inputs" / "suite__qwen2.5-0.5b.tar.xz").read_bytes()
  assert first == again  # no times or owners in the archive

  dest = tmp_path / "dest"
  assert run_archive.unpack(tmp_path / "inputs", dest) == [rel2, rel]
  for name in ("main/results.jsonl", "main/summary.json",
               "main/main_by_layer.png"):
    assert (dest / rel / name).read_bytes() == (src / rel / name).read_bytes()
  assert not (dest / rel / "main.log").exists()
  assert not (dest / rel / ".compiles_main.json").exists()
  # Restoring again over identical files is fine.
  run_archive.unpack(tmp_path / "inputs", dest)


def test_pack_lists_exactly_the_given_runs(tmp_path):
  src = tmp_path / "src"
  rel, rel2 = _run(src), _run(src, "runs/other")
  run_archive.pack([rel, rel2], tmp_path / "inputs", src)
  m = run_archive.pack([rel2], tmp_path / "inputs", src)
  assert m["results"] == [rel2]
  assert sorted(p.name for p in (tmp_path / "inputs").glob("*.tar.xz")) == [
      "other.tar.xz"]
  with pytest.raises(ValueError, match="twice"):
    run_archive.pack([rel2, rel2], tmp_path / "inputs", src)
  with pytest.raises(FileNotFoundError):
    run_archive.pack(["runs/missing"], tmp_path / "inputs", src)


def test_unpack_refuses_tampered_archives_and_overwrites(tmp_path):
  src = tmp_path / "src"
  rel = _run(src)
  inputs = tmp_path / "inputs"
  run_archive.pack([rel], inputs, src)
  dest = tmp_path / "dest"
  (dest / rel / "main").mkdir(parents=True)
  (dest / rel / "main" / "results.jsonl").write_text("other rows\n")
  with pytest.raises(FileExistsError):
    run_archive.unpack(inputs, dest)
  run_archive.unpack(inputs, dest, overwrite=True)
  assert (dest / rel / "main" / "results.jsonl").read_text().count("\n") == 2

  name = "suite__qwen2.5-0.5b.tar.xz"
  data = bytearray((inputs / name).read_bytes())
  data[-20] ^= 1
  (inputs / name).write_bytes(bytes(data))
  with pytest.raises(ValueError, match="sha256"):
    run_archive.unpack(inputs, dest)


def test_unpack_refuses_members_outside_the_run(tmp_path):
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode="w") as tar:
    info = tarfile.TarInfo("runs/x/../../escape.txt")
    info.size = 1
    tar.addfile(info, io.BytesIO(b"!"))
  data = lzma.compress(buf.getvalue())
  inputs = tmp_path / "inputs"
  inputs.mkdir()
  (inputs / "x.tar.xz").write_bytes(data)
  (inputs / run_archive.MANIFEST).write_text(json.dumps({
      "results": ["runs/x"], "archives": {"x.tar.xz": {
          "dir": "runs/x", "sha256": run_archive.sha256_hex(data),
          "files": 1, "bytes": 1}}}))
  with pytest.raises(ValueError, match="unexpected member"):
    run_archive.unpack(inputs, tmp_path / "dest")
  assert not (tmp_path / "escape.txt").exists()
  with pytest.raises(FileNotFoundError):
    run_archive.unpack(tmp_path / "empty", tmp_path / "dest")
