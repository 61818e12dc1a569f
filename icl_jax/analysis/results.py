"""Results directories: resumable JSONL rows, config guard, run summary.

Layout (DESIGN.md): `<out_dir>/<experiment>/results.jsonl` (one JSON object
per evaluated cell), `config.json` (the configuration the rows belong to;
a re-run with a different configuration is refused before any compute),
`summary.json` (versions, seeds, timings, device) and plots.

`RunDir` is the one results writer of every script. What it guarantees:

* **One process per run directory.** Opening takes an exclusive
  `fcntl.flock` on `<run dir>/.lock` for the life of the process (or until
  `close()`); a second process is refused at once (`RunDirLockedError`,
  naming the directory and the holder's pid). The lock is held before
  `config.json` is read, so checking and writing it is one step.
* **Nothing is written for a bad configuration.** The experiment name must
  be one plain path component (no `..`, no `/`, not absolute:
  `UnsafePathError`), and counts in the configuration (`n`,
  `max_new_tokens`, ...) must be >= 1, before the directory is created.
* **The full configuration.** `config.json` holds the caller's configuration
  plus `dtype` (the model's parameter dtype), `model_sha256` (the model
  file's content hash, when the loader provides `lm.load_info
  ["source_sha256"]`) and, unguarded, `_provenance` (icl_jax version, git
  commit, when created / last opened). A different dtype or model file is
  refused like any other difference (`ConfigMismatchError`); a different code
  version is recorded, not refused. A configuration that has produced no
  rows (and no other files) binds nothing: a corrected command replaces it.
* **Rows are never lost or merged.** Every append starts on a fresh line and
  is flushed and fsynced row by row. On opening, a corrupt line (cut by a
  killed write, or damaged) is reported (a warning naming the file and line)
  and removed: the file is rewritten atomically without it, the original
  kept as `results.jsonl.corrupt`, and its cell -- no longer in `done()` --
  is recomputed by the resumed run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import re
import time
import warnings
from pathlib import Path
from typing import Iterable

from icl_jax.analysis.run_identity import (  # noqa: F401 (re-exported)
    PROVENANCE_KEY, SOFT_KEYS, ConfigMismatchError, check_config_counts,
    code_version, compare, grow_value, guarded_part, model_identity)
from icl_jax.convert.digests import write_atomic

try:
  import fcntl
except ImportError:  # non-POSIX: no locking
  fcntl = None

log = logging.getLogger(__name__)

KEY_FIELDS = ("model", "mode", "source_task", "target_task", "layer",
              "condition")
LOCK_NAME = ".lock"
# Files in a run directory that do not make it "hold results" (a directory
# holding only these may take a new configuration).
_NOT_RESULTS = re.compile(r"^(config\.json|summary\.json|\.lock|.*\.png|"
                          r".*\.corrupt(\.\d+)?|\..*\.tmp)$")
_NAME_OK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=,@-]*$")


class RunDirLockedError(RuntimeError):
  """Another process has this run directory open."""


class UnsafePathError(ValueError):
  """A name from a flag would leave the output directory."""


class CorruptRowWarning(UserWarning):
  pass


def row_key(row: dict, extra: Iterable[str] = ()) -> tuple:
  return tuple(row.get(f) for f in (*KEY_FIELDS, *extra))


# ---------------------------------------------------------------------------
# Names and paths
# ---------------------------------------------------------------------------

def check_path_part(name, what: str = "--experiment") -> str:
  """A name used as one directory component under --out_dir.

  Refuses absolute paths, separators, '.', '..', empty names and odd
  characters, so `<out_dir>/<name>` always stays inside out_dir.
  """
  if not isinstance(name, str) or not name.strip():
    raise UnsafePathError(f"{what} {name!r}: must be a non-empty name")
  if (os.path.isabs(name) or "/" in name or "\\" in name
      or name in (".", "..") or "\x00" in name):
    raise UnsafePathError(
        f"{what} {name!r}: must be a plain name (no '/', '..' or absolute "
        "path); results always go under --out_dir")
  if not _NAME_OK.match(name):
    raise UnsafePathError(
        f"{what} {name!r}: use letters, digits and _ . - + = , @ only")
  return name


def safe_join(root, *parts: str, what: str = "--experiment") -> Path:
  """root/part/... after `check_path_part` on every part."""
  root = Path(root)
  for p in parts:
    check_path_part(p, what)
  out = root.joinpath(*parts)
  base = os.path.normpath(os.path.abspath(root))
  if os.path.commonpath([base, os.path.normpath(os.path.abspath(out))]) \
      != base:  # belt and braces; check_path_part already excludes this
    raise UnsafePathError(f"{what}: {out} is outside {root}")
  return out


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

def _parse_lines(data: bytes):
  """-> (good [(lineno, raw bytes, row)], bad [(lineno, raw bytes)])."""
  good, bad = [], []
  for i, raw in enumerate(data.split(b"\n"), 1):
    if not raw.strip():
      continue
    try:
      row = json.loads(raw.decode("utf-8"))
      if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    except (UnicodeDecodeError, ValueError):
      bad.append((i, raw))
      continue
    good.append((i, raw, row))
  return good, bad


def _report_bad(path: Path, bad, action: str) -> None:
  where = ", ".join(str(i) for i, _ in bad[:10])
  more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
  msg = (f"{path}: {len(bad)} corrupt line(s) (line {where}{more}; a write "
         f"cut by a crash, or damage): {action}")
  warnings.warn(msg, CorruptRowWarning, stacklevel=3)
  log.warning(msg)


def read_rows(path, report: bool = True) -> list[dict]:
  """The rows of a results.jsonl; corrupt lines are reported (a warning
  naming the file and line numbers) and left out. Missing file -> []."""
  path = Path(path)
  if not path.exists():
    return []
  good, bad = _parse_lines(path.read_bytes())
  if bad and report:
    _report_bad(path, bad, "left out of what is read")
  return [r for _, _, r in good]


# ---------------------------------------------------------------------------
# Writing helpers
# ---------------------------------------------------------------------------

# One atomic writer for the package (unique temp file, fsync, rename).
atomic_write = write_atomic


def _free_name(path: Path) -> Path:
  if not path.exists():
    return path
  i = 1
  while path.with_name(f"{path.name}.{i}").exists():
    i += 1
  return path.with_name(f"{path.name}.{i}")


# ---------------------------------------------------------------------------
# The lock
# ---------------------------------------------------------------------------

_HELD: dict[str, list] = {}  # run dir -> [fd, users] held by this process


def _acquire(path: Path) -> str:
  key = os.path.realpath(path)
  if key in _HELD:
    _HELD[key][1] += 1
    return key
  if fcntl is None:
    _HELD[key] = [None, 1]
    return key
  fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    try:
      holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
      holder = ""
    os.close(fd)
    pid, _, rest = holder.partition(" ")
    raise RunDirLockedError(
        f"{path} is in use by another run (pid {pid or 'unknown'}"
        f"{', ' + rest if rest else ''}): two processes on one run "
        "directory would compute and write the same cells twice. Wait for "
        "it to finish, or use another --out_dir.") from None
  os.ftruncate(fd, 0)
  os.pwrite(fd, f"{os.getpid()} on {platform.node()} since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
  _HELD[key] = [fd, 1]
  return key


def _release(key: str) -> None:
  entry = _HELD.get(key)
  if entry is None:
    return
  entry[1] -= 1
  if entry[1] > 0:
    return
  del _HELD[key]
  fd = entry[0]
  if fd is not None:
    with contextlib.suppress(OSError):
      os.ftruncate(fd, 0)
    with contextlib.suppress(OSError):
      fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def hold_run_dir(out_dir, experiment: str):
  """Takes the run directory's lock now (before a long model load), so a
  second process is refused at once; returns a function that releases this
  hold (a `RunDir` opened meanwhile keeps its own). Creates the directory,
  nothing in it but the lock file."""
  path = safe_join(out_dir, experiment)
  from icl_jax.interventions.distributed import is_primary

  if not is_primary():  # jax.distributed: process 0 holds the lock
    return lambda: None
  path.mkdir(parents=True, exist_ok=True)
  key = _acquire(path)
  done = []

  def release():
    if not done:
      done.append(True)
      _release(key)

  return release


# ---------------------------------------------------------------------------
# RunDir
# ---------------------------------------------------------------------------

class RunDir:
  """One experiment's output directory (see the module docstring).

  Args:
    out_dir: the results root (--out_dir).
    experiment: the subdirectory: one plain name.
    config: everything that changes what a cell computes.
    key_extra: row fields that, with KEY_FIELDS, identify a cell.
    lm: the loaded model (its dtype and file hash join the configuration).
    dtype: without `lm`: the dtype the rows are computed in (flag value).
    growable: configuration keys a later run may extend rather than match
      (`grow_value`): a run of `families=[pos]` adds to a directory of
      `families=[bitwise]`, and its config.json then records both. Only for
      keys whose rows are told apart by their key fields (a family's rows
      by their task), so extending never changes an existing row.
  """

  def __init__(self, out_dir: str | Path, experiment: str, config: dict,
               key_extra: Iterable[str] = (), *, lm=None, dtype=None,
               growable: Iterable[str] = ()):
    self.path = safe_join(out_dir, experiment)
    self.experiment = experiment
    config = json.loads(json.dumps(config, default=str))
    check_config_counts(config)
    ident = model_identity(lm, dtype if dtype is not None
                           else config.get("dtype"))
    config.update(ident)
    self.config = config
    self.key_extra = tuple(key_extra)
    self.growable = tuple(growable)
    self.results = self.path / "results.jsonl"
    self._lock_key = None
    self._shared = None  # jax.distributed, process > 0: rows in memory
    from icl_jax.interventions import distributed as dist

    if dist.process_count() > 1:
      self._open_shared(dist)
    else:
      self._open()
    self.t0 = time.time()
    try:
      prev = json.loads((self.path / "summary.json").read_text())
    except (OSError, ValueError):
      prev = {}
    self._earlier_invocations = _previous_invocations(
        prev if isinstance(prev, dict) else {})

  def _open(self) -> None:
    self.path.mkdir(parents=True, exist_ok=True)
    self._lock_key = _acquire(self.path)
    try:
      self._check_and_write_config()
      self.repaired = self._repair()
    except BaseException:
      self.close()
      raise

  def _open_shared(self, dist) -> None:
    """jax.distributed: process 0 opens the directory; the others get its
    rows (or refusal) and keep them and later rows in memory, unwritten."""
    data = dist.from_primary(
        lambda: self._open() or (self.results.read_bytes()
                                 if self.results.exists() else b""),
        (ConfigMismatchError, RunDirLockedError))
    if not dist.is_primary():
      self.repaired = []
      self._shared = [raw for _, raw, _ in _parse_lines(data)[0]]

  # -- lifecycle -------------------------------------------------------------
  def close(self) -> None:
    """Releases the lock (also released when the process exits)."""
    if self._lock_key is not None:
      _release(self._lock_key)
      self._lock_key = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  # -- configuration -----------------------------------------------------------
  def _holds_results(self) -> bool:
    for p in self.path.iterdir():
      if p.name == "results.jsonl":
        if read_rows(p, report=False):
          return True
      elif not _NOT_RESULTS.match(p.name):
        return True
    return False

  def _check_and_write_config(self) -> None:
    cfg_path = self.path / "config.json"
    prov = {**code_version(), "opened": time.strftime("%Y-%m-%d %H:%M:%S")}
    old = None
    if cfg_path.exists():
      try:
        old = json.loads(cfg_path.read_text())
        if not isinstance(old, dict):
          raise ValueError("not a JSON object")
      except (ValueError, UnicodeDecodeError) as e:
        if self._holds_results():
          raise ConfigMismatchError(
              f"{cfg_path} is unreadable ({e}) but the directory holds "
              "results: restore it, or use another --out_dir") from None
        old = None
    grown = {}
    if old is not None:
      grown, diff, what = compare(old, self.config, self.growable)
      if diff:
        if self._holds_results():
          raise ConfigMismatchError(
              f"{self.path} holds results of a different configuration "
              f"(differs in {diff}: {what}); use another --out_dir or "
              "delete it")
        log.warning("%s: replacing the configuration of a run that wrote "
                    "no results (it differed in %s)", self.path, diff)
        old = None
    if old is not None:
      created = old.get(PROVENANCE_KEY, {}).get("created")
      merged = {**old, **grown}
      for k in SOFT_KEYS:  # learn a hash the directory did not have yet
        if self.config.get(k) and not old.get(k):
          merged[k] = self.config[k]
      if not old.get("dtype"):
        merged["dtype"] = guarded_part(old)["dtype"]
      self.config = {k: v for k, v in merged.items() if k != PROVENANCE_KEY}
    else:
      created = prov["opened"]
    prov["created"] = created
    atomic_write(cfg_path, json.dumps(
        {**self.config, PROVENANCE_KEY: prov}, indent=1))

  # -- rows ------------------------------------------------------------------
  def _repair(self) -> list[int]:
    """Removes corrupt lines (reported); returns their line numbers."""
    if not self.results.exists():
      return []
    data = self.results.read_bytes()
    good, bad = _parse_lines(data)
    if bad:
      backup = _free_name(self.results.with_name(self.results.name +
                                                 ".corrupt"))
      _report_bad(self.results, bad,
                  f"removed (their cells are recomputed); the file as it was "
                  f"is kept as {backup.name}")
      atomic_write(backup, data)
      atomic_write(self.results, b"".join(raw + b"\n" for _, raw, _ in good))
      return [i for i, _ in bad]
    if data and not data.endswith(b"\n"):  # last row complete, newline cut
      with self.results.open("ab") as f:
        f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())
    return []

  def rows(self) -> list[dict]:
    if self._shared is not None:
      return [json.loads(raw) for raw in self._shared]
    return read_rows(self.results)

  def done(self) -> set:
    return {row_key(r, self.key_extra) for r in self.rows()}

  def append(self, rows: Iterable[dict]) -> None:
    """Appends rows, each on a fresh line, flushed and fsynced one by one:
    a finished cell is never lost and a cut write never merges two rows."""
    lines = [json.dumps(r, default=_json_default) + "\n" for r in rows]
    if self._shared is not None:
      self._shared += [line.encode() for line in lines]
      return
    if not lines:
      return
    with self.results.open("a+b") as f:
      if f.seek(0, os.SEEK_END) > 0:
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
          f.write(b"\n")
      for line in lines:
        f.write(line.encode())
        f.flush()
        os.fsync(f.fileno())

  def replace_rows(self, rows: Iterable[dict]) -> None:
    """Rewrites results.jsonl with `rows` at once (atomic)."""
    if self._shared is not None:
      self._shared = []
      return self.append(rows)
    atomic_write(self.results, "".join(
        json.dumps(r, default=_json_default) + "\n" for r in rows))

  def save_npz(self, name: str, **arrays) -> Path:
    """An array file in the run directory, written atomically."""
    import io

    import numpy as np

    check_path_part(name, "file name")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path = self.path / name
    if self._shared is None:
      atomic_write(path, buf.getvalue())
    return path

  # -- summary ---------------------------------------------------------------
  def write_summary(self, extra: dict | None = None) -> dict:
    import jax

    import icl_jax

    try:
      import transformers
      tv = transformers.__version__
    except ImportError:
      tv = None
    code = code_version()
    n_rows = len(self.rows())
    wall = time.time() - self.t0
    finished = time.strftime("%Y-%m-%d %H:%M:%S")
    # The invocations summary.json held when this one opened the directory,
    # then this one (a second summary of this invocation replaces its entry).
    invocations = self._earlier_invocations + [
        {"started": time.strftime("%Y-%m-%d %H:%M:%S",
                                  time.localtime(self.t0)),
         "finished": finished, "seconds": wall, "n_rows": n_rows,
         "git_commit": code.get("git_commit")}]
    s = {
        "experiment": self.experiment, "config": self.config,
        "dtype": self.config.get("dtype"),
        "model_sha256": self.config.get("model_sha256"),
        "code": code,
        "n_rows": n_rows,
        "wall_seconds_this_invocation": wall,
        # A directory filled by several invocations (resumed, or grown by a
        # family or seed): each finished invocation's wall time and rows.
        # An invocation killed before its summary is not in the list.
        "invocations": invocations,
        "wall_seconds_all_invocations": sum(i["seconds"]
                                            for i in invocations),
        "finished": finished,
        "versions": {"icl_jax": icl_jax.__version__, "jax": jax.__version__,
                     "transformers": tv, "python": platform.python_version()},
        "device": [str(d) for d in jax.devices()],
        "platform": platform.platform(),
    }
    if extra:
      s.update(extra)
    if self._shared is None:
      atomic_write(self.path / "summary.json",
                   json.dumps(s, indent=1, default=_json_default))
    return s


def _previous_invocations(summary: dict) -> list[dict]:
  """The invocations recorded by an earlier summary.json: its list, or for a
  summary written before the list existed, its one invocation."""
  inv = summary.get("invocations")
  if isinstance(inv, list):
    return [i for i in inv if isinstance(i, dict)
            and isinstance(i.get("seconds"), (int, float))]
  sec = summary.get("wall_seconds_this_invocation")
  if not isinstance(sec, (int, float)):
    return []
  return [{"started": None, "finished": summary.get("finished"),
           "seconds": float(sec), "n_rows": summary.get("n_rows"),
           "git_commit": (summary.get("code") or {}).get("git_commit")}]


def _json_default(o):
  import numpy as np

  if isinstance(o, (np.integer,)):
    return int(o)
  if isinstance(o, (np.floating,)):
    return float(o)
  if isinstance(o, np.ndarray):
    return o.tolist()
  return str(o)
