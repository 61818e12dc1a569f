"""Result directories kept in the repository as compressed archives.

REPORT.md is built from run directories under `runs/`, which are not
committed (they are large and this project's machines lose them between
sessions). `pack` stores the files the report reads from one run directory
(rows, summaries, configs, plots) in one deterministic `.tar.xz` under an
archive folder (`report_inputs/` in the repository), and records it in that
folder's MANIFEST.json with its sha256 and the report's `--results` order;
`unpack` restores them, byte for byte, to the paths they came from. Packing
the same files again gives the same bytes (sorted members, zeroed times and
owners), so an unchanged run does not change the repository.

    python experiments/report.py --results=runs/a,runs/b --pack_inputs  # pack
    python experiments/report.py --from_inputs          # unpack, then build
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import tarfile
from pathlib import Path, PurePosixPath

MANIFEST = "MANIFEST.json"
# What the report reads from a run directory; logs and caches stay behind.
KEPT_SUFFIXES = (".jsonl", ".json", ".png", ".txt", ".csv")
SKIPPED_PREFIXES = (".compiles_",)


def archive_name(run_dir: str) -> str:
  """'runs/suite_study/gemma3-270m' -> 'suite_study__gemma3-270m.tar.xz'
  (str arithmetic: Path.with_suffix would cut '...-0.5b' at '.5b')."""
  parts = PurePosixPath(run_dir).parts
  if parts and parts[0] == "runs":
    parts = parts[1:]
  if not parts:
    raise ValueError(f"no run directory in {run_dir!r}")
  return "__".join(parts) + ".tar.xz"


def kept_files(run_dir: Path) -> list[Path]:
  """The files of run_dir that an archive keeps, sorted."""
  if not run_dir.is_dir():
    raise FileNotFoundError(f"run directory {run_dir} does not exist")
  return sorted(p for p in run_dir.rglob("*")
                if p.is_file() and p.suffix in KEPT_SUFFIXES
                and not p.name.startswith(SKIPPED_PREFIXES))


def _tar_bytes(files: list[Path], root: Path) -> bytes:
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
    for f in files:
      data = f.read_bytes()
      info = tarfile.TarInfo(f.relative_to(root).as_posix())
      info.size, info.mtime, info.mode = len(data), 0, 0o644
      info.uid = info.gid = 0
      info.uname = info.gname = ""
      tar.addfile(info, io.BytesIO(data))
  return buf.getvalue()


def sha256_hex(data: bytes) -> str:
  """The archive's sha256 as MANIFEST.json records it."""
  return hashlib.sha256(data).hexdigest()


def read_manifest(archive_dir: Path) -> dict:
  path = Path(archive_dir) / MANIFEST
  if not path.exists():
    return {"results": [], "archives": {}}
  return json.loads(path.read_text())


def pack(run_dirs: list[str], archive_dir: Path, root: Path) -> dict:
  """Archives each run directory (a path relative to `root`) into
  archive_dir; the manifest then lists exactly these directories, in this
  order (the report's --results order), and archives of directories not
  among them are removed. Returns the manifest."""
  archive_dir, root = Path(archive_dir), Path(root)
  archive_dir.mkdir(parents=True, exist_ok=True)
  manifest = {"results": [], "archives": {}}
  for run_dir in run_dirs:
    rel = PurePosixPath(Path(run_dir).as_posix())
    if rel.is_absolute() or ".." in rel.parts:
      raise ValueError(f"{run_dir}: give run directories relative to {root}")
    files = kept_files(root / rel)
    if not files:
      raise ValueError(f"{run_dir}: no result files to archive")
    raw = _tar_bytes(files, root)
    name = archive_name(str(rel))
    if name in manifest["archives"]:
      raise ValueError(f"{run_dir}: listed twice")
    data = lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)
    (archive_dir / name).write_bytes(data)
    manifest["archives"][name] = {"dir": str(rel), "sha256": sha256_hex(data),
                                  "files": len(files), "bytes": len(raw)}
    manifest["results"].append(str(rel))
  for old in archive_dir.glob("*.tar.xz"):
    if old.name not in manifest["archives"]:
      old.unlink()
  (archive_dir / MANIFEST).write_text(json.dumps(manifest, indent=1,
                                                 sort_keys=True) + "\n")
  return manifest


def unpack(archive_dir: Path, dest: Path, overwrite: bool = False) -> list:
  """Restores every archive of the manifest under dest (checking each
  archive's sha256); returns the restored run directories. A file already
  at dest with other content is an error unless overwrite is set."""
  archive_dir, dest = Path(archive_dir), Path(dest)
  manifest = read_manifest(archive_dir)
  if not manifest["archives"]:
    raise FileNotFoundError(f"no {MANIFEST} with archives in {archive_dir}")
  for name, entry in sorted(manifest["archives"].items()):
    data = (archive_dir / name).read_bytes()
    if sha256_hex(data) != entry["sha256"]:
      raise ValueError(f"{name}: sha256 differs from {MANIFEST}")
    with tarfile.open(fileobj=io.BytesIO(lzma.decompress(data))) as tar:
      for member in tar.getmembers():
        path = PurePosixPath(member.name)
        if (not member.isfile() or path.is_absolute() or ".." in path.parts
            or path.parts[:len(PurePosixPath(entry["dir"]).parts)]
            != PurePosixPath(entry["dir"]).parts):
          raise ValueError(f"{name}: unexpected member {member.name!r}")
        body = tar.extractfile(member).read()
        target = dest / path
        if (target.exists() and not overwrite
            and target.read_bytes() != body):
          raise FileExistsError(f"{target} exists with other content "
                                "(pass overwrite to replace it)")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
  return list(manifest["results"])
