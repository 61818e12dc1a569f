"""Provenance of the report and of every run it reads: the commit the report
was built at, and per run directory the commit recorded by the run
(`RunDir`: config.json `_provenance`, summary.json `code`), the model file
(the embedded GGUF and its quantization, `convert.embedded`), the sha256 of
the weights as loaded, seeds, N, and the run time (summary.json: the sum
over its finished invocations, else the last invocation's seconds; and the
suite's step time from `suite_steps.jsonl` beside the run)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from icl_jax.analysis.report.data import Data
from icl_jax.analysis.report.markdown import md_table, short_model

HEADERS = ("experiment", "model", "model file (quantization)",
           "weights sha256 (as loaded)", "commit (run)", "seed(s)", "N",
           "run time", "finished")


def _json(path: Path) -> dict:
  try:
    d = json.loads(path.read_text())
  except (OSError, ValueError):
    return {}
  return d if isinstance(d, dict) else {}


def repo_commit() -> str:
  """HEAD of the repository holding this package ('unknown' outside git)."""
  root = Path(__file__).resolve().parents[3]
  try:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, timeout=10,
                         capture_output=True, text=True, check=True)
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return out.stdout.strip() or "unknown"


def model_file(model) -> str:
  """The embedded model's GGUF name and quantization; '-' for others (a
  local checkpoint or a test model)."""
  from icl_jax.convert.embedded import EMBEDDED_MODELS

  m = EMBEDDED_MODELS.get(str(model))
  if m is None:
    return "-"
  return f"{m.name}.gguf ({m.quantization}, sha256 {m.sha256[:12]})"


def _commit(cfg: dict, summ: dict) -> str:
  code = summ.get("code") if isinstance(summ.get("code"), dict) else None
  code = code or cfg.get("_provenance") or {}
  c = code.get("git_commit") if isinstance(code, dict) else None
  if not c:
    return "-"
  return str(c)[:10] + (" (uncommitted changes)" if code.get("git_dirty")
                        else "")


def _seeds(cfg: dict) -> str:
  for k in ("seeds", "seed"):
    v = cfg.get(k)
    if isinstance(v, (list, tuple)):
      return ", ".join(str(x) for x in v)
    if v is not None:
      return str(v)
  return "-"


def _n(cfg: dict) -> str:
  bits = [f"{k}={cfg[k]}" for k in ("n", "n_source", "n_train", "n_eval")
          if isinstance(cfg.get(k), int)]
  return ", ".join(bits) or "-"


def _suite_step(d: Path, name: str) -> tuple[str, float] | None:
  """(step, seconds) of the latest suite record of the step that ran this
  directory (named like it, like its experiment, or its prefix: step
  `main` wrote `main_prefill`), from suite_steps.jsonl beside the run."""
  f = d.parent / "suite_steps.jsonl"
  if not f.exists():
    return None
  found = None
  for line in f.read_text().splitlines():
    try:
      r = json.loads(line)
    except ValueError:
      continue
    step, secs = str(r.get("name")), r.get("wall_s")
    if isinstance(secs, (int, float)) and (
        step in (d.name, name) or d.name.startswith(step + "_")):
      found = (step, float(secs))
  return found


def _duration(s: float | None) -> str:
  if s is None:
    return "-"
  return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def run_time(d: Path, name: str, summ: dict) -> str:
  """The run's own seconds: over every finished invocation where the
  summary lists them (`wall_seconds_all_invocations`, with their count),
  else the last invocation's (summary `seconds`, else
  `wall_seconds_this_invocation`); and the suite's step time when there is
  one."""
  inv = summ.get("invocations")
  total = summ.get("wall_seconds_all_invocations")
  if isinstance(inv, list) and len(inv) > 1 and isinstance(
      total, (int, float)):
    text = f"{_duration(float(total))} ({len(inv)} invocations)"
  else:
    own = summ.get("seconds", summ.get("wall_seconds_this_invocation"))
    text = _duration(float(own) if isinstance(own, (int, float)) else None)
  step = _suite_step(d, name)
  if step is not None:
    text += f" (suite step {step[0]}: {_duration(step[1])})"
  return text


def provenance_rows(data: Data) -> list[list]:
  rows = []
  for name in sorted(data.dirs):
    for d in data.dirs[name]:
      cfg = _json(d / "config.json")
      cfg = cfg.get("config", cfg) if isinstance(cfg.get("config"),
                                                 dict) else cfg
      summ = _json(d / "summary.json")
      models = sorted({str(r.get("model")) for r in data.get(name)
                       if r.get("_dir") == str(d)})
      sha = summ.get("model_sha256") or cfg.get("model_sha256")
      rows.append([name, ", ".join(short_model(m) for m in models),
                   "; ".join(model_file(m) for m in models),
                   str(sha)[:12] if sha else "-", _commit(cfg, summ),
                   _seeds(cfg), _n(cfg), run_time(d, name, summ),
                   summ.get("finished", "-")])
  return rows


def provenance(data: Data) -> str:
  """The provenance paragraph and table."""
  return (f"Report built at commit `{repo_commit()}` of the repository it "
          "ran in; each run's own commit (as recorded when it ran), model "
          "file, seeds, N and run time:\n\n" +
          md_table(HEADERS, provenance_rows(data)))
