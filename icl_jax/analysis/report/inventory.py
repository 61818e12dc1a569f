"""'What was run': one line per experiment found (rows, models, modes,
configuration, directory), the study's experiments not run, and the
provenance table (commit, model file, seeds, N, run time: `provenance`)."""

from __future__ import annotations

import json
from pathlib import Path

from icl_jax.analysis.report.data import Data
from icl_jax.analysis.report.markdown import md_table, short_model
from icl_jax.analysis.report.names import (KNOWN, MAIN_PARTS,
                                           STUDY_EXPERIMENTS, study_id)
from icl_jax.analysis.report.provenance import provenance


def _config_brief(d: Path) -> str:
  """N, layer count and on_mismatch from a run directory's config.json."""
  try:
    cfg = json.loads((Path(d) / "config.json").read_text())
  except (OSError, json.JSONDecodeError):
    return "-"
  if not isinstance(cfg, dict):
    return "-"
  cfg = cfg.get("config", cfg) if isinstance(cfg.get("config"), dict) else cfg
  bits = []
  if cfg.get("n") is not None:
    bits.append(f"N={cfg['n']}")
  layers = cfg.get("layers")
  if isinstance(layers, (list, tuple)):
    bits.append(f"{len(layers)} layers")
  elif layers is not None:
    bits.append(f"layers={layers}")
  if cfg.get("on_mismatch"):
    bits.append(str(cfg["on_mismatch"]))
  return ", ".join(bits) or "-"


def inventory(data: Data) -> str:
  """The 'What was run' table and the list of the study's experiments
  without results."""
  rows = []
  for name, rs in sorted(data.rows.items()):
    models = sorted({short_model(r.get("model")) for r in rs})
    modes = sorted({str(r.get("mode") or "-") for r in rs})
    rows.append([name, len(rs), ", ".join(models), ", ".join(modes),
                 "; ".join(_config_brief(d) for d in data.dirs[name]),
                 ", ".join(data.rel(d) + (" (unfinished)" if d in
                                          data.unfinished else "")
                           for d in data.dirs[name])])
  text = md_table(["experiment", "rows", "models", "modes",
                   "configuration (N prompts, layers, aligned mapping)",
                   "directory"], rows)
  if data.unfinished:
    text += ("\n(unfinished): the directory holds rows but no summary.json, "
             "which every script writes last: the run was interrupted and "
             "its numbers cover only the cells it finished. Re-running the "
             "same command resumes it.\n")
  ran_ids = set()
  known = {k for k, *_ in KNOWN} | set(MAIN_PARTS)
  for name in data.rows:
    for kn, sid, _, _ in KNOWN:
      if name == kn or (kn == "main" and name in MAIN_PARTS):
        ran_ids.add(sid)
    sid, _ = study_id(name) if name not in known else (None, None)
    if sid:
      ran_ids.add(sid)
  if "main" in ran_ids:
    ran_ids.add("exp8")
  missing = [f"{sid} ({what})" for sid, what in STUDY_EXPERIMENTS
             if sid not in ran_ids]
  if missing:
    text += "\nNot run (no results found): " + ", ".join(missing) + ".\n"
  return text + "\n" + provenance(data)
