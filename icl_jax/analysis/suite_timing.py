"""The report suite's cost model, ETA lines and timing table (stdlib only).

`scripts/report_suite.sh` declares, per step, its work as estimated counts
of generations (patched + clean), forward passes (source / feature captures)
and probe fits, from the step's sizes (a cost model: the scripts do not
report their counts). A step's predicted time is

    overhead + generations / gen_rate + forwards / fwd_rate + fits * fit_s

with priors below until steps of this run have finished; then the overhead
becomes the model-load prior plus the finished steps' mean compile seconds
(measured by icl_jax.analysis.compile_count), and one factor (measured /
predicted work seconds, over finished steps with >= 30 s of predicted work)
rescales the work part.

A recorded run (a suite.json of the same model, sizes and one step at a
time; the suite passes benchmarks/results/suite.json) predicts better: a
step with the same counts in it is predicted as its recorded wall time times
this run's speed (the finished steps' measured walls over their recorded
ones; 1 before any). Replayed on recorded study-size runs of other days
(benchmarks/eta_replay.py) its mean error on the rest of the suite is 0.10-
0.17 of it, against 0.38-0.54 for the cost model (BUILD_NOTES section 7).
Files under OUT:

  suite_plan.jsonl   one line per step of this invocation (name, counts)
  suite_reference.json  the recorded run's walls and counts per step
                     (written by `reference`; absent without a match)
  suite_steps.jsonl  one line per finished step (counts, wall_s, rc,
                     compiles); a resumed suite appends; the table uses each
                     step's latest line
  suite.json         the table: per step counts, wall_s, generations_per_s,
                     compiles, compile_s, the measured work (`work`:
                     icl_jax.models.work_meter totals) with the engine's
                     in-call engine_generations_per_s and wall_split_s;
                     totals

CLI (used by the suite; `python -m icl_jax.analysis.suite_timing CMD ...`):
  plan OUT NAME GENS FWDS FITS    add a step to the plan
  reference OUT MODEL SIZES SUITE_JSON
                                  keep a recorded run's per-step walls for
                                  the ETA (when its model and sizes match)
  record OUT NAME WALL_S RC [COMPILE_JSON]
                                  (a step's runner that died; a step's own
                                  ETA line and record are printed by
                                  experiments/suite_process.py)
  table OUT SIZES MODEL [SWEEP_JSON [JOBS [ONE_PROCESS]]]
                                  write suite.json, print the table (with
                                  SWEEP_JSON, a benchmarks/sweep.py output
                                  of the same day: gen/s as a ratio to it;
                                  JOBS: steps run at a time)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# Priors (gemma3-270m, 2-core CPU): the engine's sweep rate ~40 gen/s
# unloaded (benchmarks/results/sweep.json), halved for the experiments'
# smaller batches; a batched forward ~20 prompts/s; an unscaled exp7
# L-BFGS fit of one layer runs 1000 iterations (~1 s per fit per layer);
# ~30 s per step of model load + compiles, of which ~15 s load.
PRIOR = {"gen_rate": 20.0, "fwd_rate": 20.0, "fit_s": 1.0, "overhead_s": 30.0,
         "load_s": 15.0}
MIN_WORK_S = 30.0  # steps with less predicted work do not calibrate rates


def _lines(path: Path) -> list[dict]:
  if not path.exists():
    return []
  return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def _append(path: Path, row: dict) -> None:
  with path.open("a", encoding="utf-8") as f:
    f.write(json.dumps(row) + "\n")


def work_s(counts: dict) -> float:
  """Predicted work seconds (priors) of a step with these counts."""
  return (counts.get("generations", 0) / PRIOR["gen_rate"]
          + counts.get("forwards", 0) / PRIOR["fwd_rate"]
          + counts.get("probe_fits", 0) * PRIOR["fit_s"])


def predicted_s(counts: dict, factor: float = 1.0,
                overhead: float = PRIOR["overhead_s"]) -> float:
  """Predicted wall seconds of a step with these counts."""
  return overhead + factor * work_s(counts)


def overhead_s(steps: list[dict]) -> float:
  """Per-step overhead: load prior + mean measured compile seconds."""
  comp = [s["compile_s"] for s in steps if "compile_s" in s
          and s.get("rc") == 0]
  return PRIOR["load_s"] + sum(comp) / len(comp) if comp else \
      PRIOR["overhead_s"]


def calibration(steps: list[dict]) -> float:
  """Measured / predicted work seconds over the finished steps with enough
  predicted work (1.0 without any)."""
  ok = [s for s in steps if s.get("rc") == 0 and work_s(s) >= MIN_WORK_S]
  pred = sum(work_s(s) for s in ok)
  meas = sum(max(0.0, s["wall_s"] - PRIOR["load_s"] - s.get("compile_s", 0))
             for s in ok)
  return meas / pred if pred > 0 and meas > 0 else 1.0


COUNT_KEYS = ("generations", "forwards", "probe_fits")


def keep_reference(out: Path, model: str, sizes: str,
                   suite_json: str | Path) -> int:
  """Writes OUT/suite_reference.json from a recorded suite.json when it ran
  the same model and sizes one step at a time (a JOBS > 1 run's walls
  overlap); keeps its finished steps' walls and counts. Returns the number
  of steps kept (0: no usable reference; any old file is removed)."""
  dest = out / "suite_reference.json"
  dest.unlink(missing_ok=True)
  path = Path(suite_json)
  if not path.exists():
    return 0
  doc = json.loads(path.read_text())
  if (doc.get("model"), doc.get("sizes"), doc.get("jobs", 1)) != (
      model, sizes, 1):
    return 0
  steps = {s["name"]: {"wall_s": s["wall_s"],
                       **{k: s.get(k, 0) for k in COUNT_KEYS}}
           for s in doc.get("steps", []) if s.get("rc") == 0}
  if steps:
    dest.write_text(json.dumps({"source": str(path), "steps": steps},
                               indent=1))
  return len(steps)


def _reference(out: Path, plan_rows: dict) -> dict:
  """{name: recorded wall_s} for planned steps whose counts equal the
  recorded run's."""
  path = out / "suite_reference.json"
  if not path.exists():
    return {}
  ref = json.loads(path.read_text())["steps"]
  return {n: ref[n]["wall_s"] for n, c in plan_rows.items() if n in ref
          and all(ref[n][k] == c.get(k, 0) for k in COUNT_KEYS)}


def reference_speed(steps: list[dict], ref: dict) -> float:
  """This run's measured walls over the recorded ones, over the finished
  steps that the reference has (1.0 without any)."""
  ok = [s for s in steps if s.get("rc") == 0 and s["name"] in ref]
  rec = sum(ref[s["name"]] for s in ok)
  return sum(s["wall_s"] for s in ok) / rec if rec > 0 else 1.0


def plan(out: Path, name: str, gens: int, fwds: int, fits: int) -> None:
  _append(out / "suite_plan.jsonl", {"name": name, "generations": gens,
                                     "forwards": fwds, "probe_fits": fits})


def _latest(rows: list[dict]) -> dict:
  out = {}
  for r in rows:
    out[r["name"]] = r
  return out


def eta(out: Path, name: str) -> dict:
  """Predicted seconds of step `name` ("step") and of the suite from it on
  ("rest"), from OUT's plan, finished steps and recorded run; with its
  planned "counts", the factors used ("factor", "overhead", "speed") and
  "n_ref" (steps from `name` on predicted from the recorded run)."""
  plan_rows = _latest(_lines(out / "suite_plan.jsonl"))
  started = float((out / ".suite_start").read_text()) if (
      out / ".suite_start").exists() else None
  steps = [s for s in _lines(out / "suite_steps.jsonl")
           if started is None or s.get("finished", 0) >= started]
  factor, over = calibration(steps), overhead_s(steps)
  ref = _reference(out, plan_rows)
  speed = reference_speed(steps, ref)

  def pred(counts, n):
    return ref[n] * speed if n in ref else predicted_s(counts, factor, over)

  names = list(plan_rows)
  i = names.index(name) if name in names else len(names)
  return {"index": i, "n_steps": len(names),
          "counts": plan_rows.get(name, {}),
          "step": pred(plan_rows.get(name, {}), name),
          "rest": sum(pred(plan_rows[n], n) for n in names[i:]),
          "n_ref": sum(n in ref for n in names[i:]), "n_rest":
          len(names) - i, "factor": factor, "overhead": over, "speed": speed}


def eta_line(out: Path, name: str) -> str:
  """'[i/n] name: work; ETA this step ...; ETA suite ...'."""
  e = eta(out, name)
  counts = e["counts"]
  how = (f"{e['n_ref']} of {e['n_rest']} steps from the recorded run x"
         f"{e['speed']:.2f}; " if e["n_ref"] else "")
  return (f"[{e['index'] + 1}/{e['n_steps']}] {name}: "
          f"{counts.get('generations', 0)} gens, "
          f"{counts.get('forwards', 0)} fwd, "
          f"{counts.get('probe_fits', 0)} fits (estimated); ETA step "
          f"{_hms(e['step'])}, suite {_hms(e['rest'])} ({how}overhead "
          f"{e['overhead']:.0f} s/step, work x{e['factor']:.2f} of the "
          f"priors)")


def _hms(s: float) -> str:
  s = int(round(s))
  return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else \
      f"{s // 60}m{s % 60:02d}s"


def record(out: Path, name: str, wall_s: float, rc: int,
           compile_json: str | None = None) -> str:
  """Appends a finished step; returns its 'done' line."""
  import time

  counts = _latest(_lines(out / "suite_plan.jsonl")).get(name, {})
  row = {"name": name, **{k: counts.get(k, 0) for k in COUNT_KEYS},
         "wall_s": round(wall_s, 1), "rc": rc, "finished": time.time(),
         # 1/5/15-minute load at the step's end. The 5-minute figure is the
         # load the step ran under when it lasted >= 5 min; a shorter step's
         # also carries the steps before it (a suite alone: ~1.5-2 on 2 cores).
         "load_avg": [round(x, 2) for x in os.getloadavg()]}
  if compile_json and Path(compile_json).exists():
    row.update(json.loads(Path(compile_json).read_text()))
  pred = predicted_s(counts)
  _append(out / "suite_steps.jsonl", row)
  rate = (f", {row['generations'] / wall_s:.1f} gen/s"
          if row["generations"] and wall_s > 0 else "")
  comp = f", {row['compiles']} compiles" if "compiles" in row else ""
  if row.get("cache_hits"):
    comp += f" ({row['cache_hits']} from the persistent cache)"
  status = "ok" if rc == 0 else f"FAILED rc={rc}"
  return (f"{name} {status} {wall_s:.0f}s (prior estimate "
          f"{pred:.0f}s{rate}{comp})")


def headline_rate(sweep_json: str | Path) -> float:
  """The engine's generations/s from a `benchmarks/sweep.py` JSON (the
  full file, or `--method=engine`'s one-method output)."""
  doc = json.loads(Path(sweep_json).read_text())
  gps = doc["generations_per_s"]
  return float(gps["engine"] if isinstance(gps, dict) else gps)


def work_split(row: dict, headline_gen_s: float | None = None) -> dict:
  """From a step record's measured work (`icl_jax.models.work_meter`
  totals under "work"): the engine's generations/s inside its own calls
  (net of compiling; the rate the headline measures), its ratio to the
  headline, and the step's wall split into compiling, engine, clean
  generation, forward passes and the rest (model load, probe fits,
  Python). With the engine's device batches recorded, the mean rows per
  batch and the generations/s per batch-size bucket. {} for a record
  without it."""
  work = row.get("work")
  if not isinstance(work, dict):
    return {}
  out = {}
  eng = work.get("engine") or {}
  if eng.get("count") and eng.get("seconds", 0) > 0:
    out["engine_generations_per_s"] = round(eng["count"] / eng["seconds"], 2)
    if headline_gen_s:
      out["engine_ratio_to_headline"] = round(
          out["engine_generations_per_s"] / headline_gen_s, 3)
  batches = eng.get("batches") or {}
  calls = sum(b["calls"] for b in batches.values())
  if calls:  # the device programs inside the engine's calls
    out["engine_rows_per_batch"] = round(
        sum(b["rows"] for b in batches.values()) / calls, 1)
    out["engine_batch_generations_per_s"] = {
        k: round(b["rows"] / b["seconds"], 2)
        for k, b in batches.items() if b["seconds"] > 0}
  split = {"compile": round(row.get("compile_s", 0.0), 1)}
  for kind in ("engine", "generate", "forward"):
    split[kind] = round((work.get(kind) or {}).get("seconds", 0.0), 1)
  split["other"] = round(row["wall_s"] - sum(split.values()), 1)
  out["wall_split_s"] = split
  return out


def table(out: Path, sizes: str, model: str,
          headline_gen_s: float | None = None, jobs: int = 1,
          one_process: bool = False) -> dict:
  """Writes OUT/suite.json from the latest record of every planned step;
  with `headline_gen_s` (the engine's rate measured the same day), each
  step's generations/s is also given as a ratio to it. `elapsed_s` is the
  wall clock of this invocation (from OUT/.suite_start); with jobs > 1 the
  steps overlap, so it is less than the sum of their wall times.
  `one_process`: the steps ran in one Python process (ONE_PROCESS=1)."""
  import time

  plan_rows = _latest(_lines(out / "suite_plan.jsonl"))
  done = _latest(_lines(out / "suite_steps.jsonl"))
  rows = []
  for name in plan_rows:
    if name not in done:
      continue
    r = dict(done[name])
    r.pop("finished", None)
    r["generations_per_s"] = (round(r["generations"] / r["wall_s"], 2)
                              if r["generations"] and r["wall_s"] else None)
    if headline_gen_s and r["generations_per_s"] is not None:
      r["ratio_to_headline"] = round(r["generations_per_s"] / headline_gen_s,
                                     3)
    r.update(work_split(r, headline_gen_s))
    rows.append(r)
  total = {k: sum(r.get(k, 0) or 0 for r in rows) for k in
           ("generations", "forwards", "probe_fits", "wall_s", "compiles")}
  doc = {"model": model, "sizes": sizes, "counts": "cost-model estimates "
         "(scripts/report_suite.sh); wall_s measured", "load_avg":
         list(os.getloadavg()), "cpus": os.cpu_count(), "steps": rows,
         "total": total, "jobs": jobs, "one_process": one_process}
  start = out / ".suite_start"
  if start.exists():
    doc["elapsed_s"] = round(time.time() - float(start.read_text()), 1)
  if headline_gen_s:
    doc["headline_generations_per_s"] = headline_gen_s
  (out / "suite.json").write_text(json.dumps(doc, indent=1))
  return doc


def format_table(doc: dict) -> str:
  head = (f"{'step':22s} {'gens':>7s} {'fwd':>6s} {'fits':>5s} "
          f"{'wall_s':>8s} {'gen/s':>6s} {'ratio':>6s} {'eng/s':>6s} "
          f"{'eratio':>6s} {'rows/b':>6s} {'compiles':>8s} {'load5':>6s}  "
          "wall split s: "
          "compile/engine/generate/forward/other")
  lines = [head]

  def cell(v):
    return v if v is not None else "-"

  for r in doc["steps"] + [dict(doc["total"], name="TOTAL")]:
    load = r.get("load_avg")
    split = r.get("wall_split_s")
    lines.append(
        f"{r['name']:22s} {r.get('generations', 0):7d} "
        f"{r.get('forwards', 0):6d} {r.get('probe_fits', 0):5d} "
        f"{r.get('wall_s', 0):8.0f} {cell(r.get('generations_per_s')):>6} "
        f"{cell(r.get('ratio_to_headline')):>6} "
        f"{cell(r.get('engine_generations_per_s')):>6} "
        f"{cell(r.get('engine_ratio_to_headline')):>6} "
        f"{cell(r.get('engine_rows_per_batch')):>6} "
        f"{r.get('compiles', '-'):>8} "
        f"{load[1] if load else '-':>6}"
        + ("  " + "/".join(f"{v:.0f}" for v in split.values())
           if split else ""))
  if "elapsed_s" in doc:
    lines.append(f"elapsed {doc['elapsed_s']:.0f} s = "
                 f"{doc['elapsed_s'] / 60:.1f} min with {doc.get('jobs', 1)} "
                 f"step(s) at a time"
                 f"{', in one process' if doc.get('one_process') else ''} "
                 f"(sum of step walls {doc['total']['wall_s']:.0f} s)")
  if doc.get("headline_generations_per_s"):
    lines.append(f"ratio = gen/s / the engine's headline "
                 f"{doc['headline_generations_per_s']:.1f} gen/s "
                 "(benchmarks/sweep.py, same day)")
  lines.append("gen/s: the step's generations (estimated) over its wall; "
               "eng/s: the engine's generations over the seconds inside "
               "its calls, net of compiling (icl_jax.models.work_meter); "
               "eratio: eng/s over the headline; rows/b: mean (cell, "
               "target) rows per device batch inside the engine (the "
               "headline's: 80)")
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  cmd, out = argv[0], Path(argv[1])
  if cmd == "plan":
    plan(out, argv[2], *(int(a) for a in argv[3:6]))
  elif cmd == "reference":
    kept = keep_reference(out, argv[2], argv[3], argv[4])
    print(f"ETA: {kept} steps' walls from {argv[4]}" if kept else
          f"ETA: cost model only (no recorded {argv[3]} run of {argv[2]} "
          f"in {argv[4]})", flush=True)
  elif cmd == "record":
    print(record(out, argv[2], float(argv[3]), int(argv[4]),
                 argv[5] if len(argv) > 5 else None), flush=True)
  elif cmd == "table":
    head = headline_rate(argv[4]) if len(argv) > 4 and argv[4] else None
    jobs = int(argv[5]) if len(argv) > 5 else 1
    one = len(argv) > 6 and argv[6] not in ("", "0")
    print(format_table(table(out, argv[2], argv[3], head, jobs, one)),
          flush=True)
  else:
    raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
  main(sys.argv[1:])
