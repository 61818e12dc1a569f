r"""Soak check: a small sweep killed with SIGKILL at random moments, resumed
each time, must end with exactly the rows of an uninterrupted run.

    python benchmarks/soak_resume.py --kills=20 --seed=0

What it does (not part of the pytest suite; minutes on a laptop CPU):

  1. makes a tiny random llama (2 layers, d=32, SmolLM2's tokenizer) as an
     HF directory (the tests' `tiny_model_dir`), unless --model is given;
  2. runs `experiments/sweep.py` once, uninterrupted, into <work>/reference
     (--pairs x both modes x --layers x --positions cells; one job per
     (mode, pair), rows appended as each job finishes);
  3. runs the same command into <work>/soak, killing it with SIGKILL at
     --kills random moments: a share (--startup_prob) at a uniform time
     during start-up (imports, lock, config.json, model load, compilation),
     the others once the run has written 1-4 more rows (about one job),
     plus a random delay of up to four rows' compute (so kills land in
     compute, in row writes and in the summary, spread over the sweep).
     With --cut_prob, a kill is also followed by cutting the file's last
     line at a random byte (what a kill in the middle of a write leaves
     behind), so the repair path is exercised too;
  4. after each kill, the next run resumes; after the last kill one run
     finishes;
  5. compares: the same set of row keys, no duplicates, every line valid
     JSON, and every row equal to the reference's (all fields except the
     per-invocation timing fields listed in VOLATILE).

Prints a JSON report and exits 1 if anything differs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VOLATILE = ("seconds", "wall_s", "elapsed_s", "time_s")


def make_tiny_model(d: Path) -> Path:
  from tests.conftest import save_tiny_model_with_tokenizer

  if (d / "config.json").exists():
    return d
  return save_tiny_model_with_tokenizer(d)


def sweep_cmd(model, out_dir, args) -> list[str]:
  return [sys.executable, "experiments/sweep.py", f"--model={model}",
          f"--out_dir={out_dir}", f"--n={args.n}", f"--layers={args.layers}",
          f"--pairs={args.pairs}", f"--positions={args.positions}",
          "--mode=both", "--max_new_tokens=4", "--experiment=soak"]


def rows_of(path: Path):
  lines = path.read_text().splitlines() if path.exists() else []
  rows, bad = [], 0
  for l in lines:
    if not l.strip():
      continue
    try:
      rows.append(json.loads(l))
    except json.JSONDecodeError:
      bad += 1
  return rows, bad


def key(r):
  return (r["model"], r["mode"], r["source_task"], r["target_task"],
          r["layer"], r["condition"])


def strip(r):
  return {k: v for k, v in r.items() if k not in VOLATILE}


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--kills", type=int, default=20)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--model", default=None, help="default: a tiny random "
                  "llama made in the work folder")
  ap.add_argument("--work", default=None, help="work folder (default: a "
                  "private temporary folder)")
  ap.add_argument("--n", type=int, default=2)
  ap.add_argument("--layers", default="0,1")
  ap.add_argument("--pairs", default="uppercase:repeat_word,"
                  "sentiment:antonym,first_letter:length,"
                  "repeat_word:uppercase,antonym:sentiment,"
                  "length:first_letter,uppercase:first_letter,"
                  "linear_2x:length")
  ap.add_argument("--positions", default="all_demo,output_only")
  ap.add_argument("--startup_prob", type=float, default=0.3,
                  help="share of the kills aimed at the start-up phase")
  ap.add_argument("--cut_prob", type=float, default=0.3,
                  help="after a kill, probability of also cutting the last "
                  "line of results.jsonl at a random byte")
  ap.add_argument("--out", default=None, help="also write the report here")
  args = ap.parse_args()
  rng = random.Random(args.seed)
  work = Path(args.work or tempfile.mkdtemp(prefix="icl_jax_soak-"))
  work.mkdir(parents=True, exist_ok=True)
  env = dict(os.environ, ICL_JAX_CACHE=str(work / "cache"),
             JAX_COMPILATION_CACHE_DIR=str(work / "jax_cache"))
  model = args.model or str(make_tiny_model(work / "tiny-llama"))

  # The reference (it also warms the converted-model and compile caches);
  # the time to its first row = start-up (imports, load, compile).
  res_ref = work / "reference" / "soak" / "results.jsonl"
  t0 = time.time()
  proc = subprocess.Popen(sweep_cmd(model, work / "reference", args),
                          cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  first_row = None
  while proc.poll() is None:
    if first_row is None and res_ref.exists() and res_ref.stat().st_size:
      first_row = time.time() - t0
    time.sleep(0.01)
  err = proc.stderr.read()
  if proc.returncode != 0:
    sys.exit(f"reference run failed:\n{err[-3000:]}")
  ref_wall = time.time() - t0
  ref_rows, _ = rows_of(res_ref)
  total = len(ref_rows)
  first_row = first_row or ref_wall
  per_row = (ref_wall - first_row) / max(1, total)
  print(f"reference: {total} rows in {ref_wall:.1f}s (first row after "
        f"{first_row:.1f}s)", flush=True)

  # Kill moments: some during start-up (a uniform time before the first row
  # is due: imports, the lock, config.json, model load, compilation), the
  # others at a random point of the remaining sweep (once the file holds a
  # random number of rows, then a random extra delay of up to a few rows'
  # compute), so the kills spread over the whole sweep.
  soak_dir = work / "soak"
  res = soak_dir / "soak" / "results.jsonl"
  events = []
  runs = 0
  n_start = round(args.kills * args.startup_prob)
  plan = ["start-up"] * n_start + ["mid-sweep"] * (args.kills - n_start)
  rng.shuffle(plan)
  while sum(e["killed"] for e in events) < args.kills and runs < 3 * args.kills:
    runs += 1
    before, _ = rows_of(res)
    startup = (plan[min(len(plan) - 1, sum(e["killed"] for e in events))]
               == "start-up" or len(before) >= total)
    # mid-sweep: once this run has written 1-4 more rows (about one job)
    target = (None if startup else
              min(total, len(before) + rng.randint(1, 4)))
    delay = (rng.uniform(0.0, 1.2 * first_row) if startup else
             rng.uniform(0.0, 4 * per_row))
    proc = subprocess.Popen(sweep_cmd(model, soak_dir, args), cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    t = time.time()
    finished = None
    armed = t if startup else None  # when the delay starts
    while True:
      if proc.poll() is not None:
        finished = proc.returncode
        break
      if armed is None and len(rows_of(res)[0]) >= target:
        armed = time.time()
      if armed is not None and time.time() - armed >= delay:
        break
      time.sleep(0.005)
    if finished is None:
      proc.send_signal(signal.SIGKILL)
      proc.wait()
    killed_at = time.time() - t
    err = proc.stderr.read()
    proc.stderr.close()
    cut = None
    if finished is None and res.exists() and rng.random() < args.cut_prob:
      data = res.read_bytes()
      last = data.rstrip(b"\n").rfind(b"\n") + 1  # start of the last line
      if len(data) - last > 2:
        cut = rng.randrange(last + 1, len(data) - 1)
        res.write_bytes(data[:cut])
    after, bad = rows_of(res)
    ev = {"run": runs, "phase": "start-up" if startup else
          f"mid-sweep (after row {target})", "killed_after_s": round(killed_at, 2),
          "killed": finished is None, "exit_code": finished,
          "rows_before": len(before), "rows_after": len(after),
          "cut_at_byte": cut, "corrupt_lines_left": bad}
    if finished not in (None, 0):
      ev["stderr_tail"] = err[-800:]
    if "corrupt line" in err:
      ev["repair_reported"] = True
    events.append(ev)
    print(json.dumps(ev), flush=True)

  # The final, uninterrupted resume.
  p = subprocess.run(sweep_cmd(model, soak_dir, args), cwd=ROOT, env=env,
                     capture_output=True, text=True)
  final_rc = p.returncode
  repairs_reported = ("corrupt line" in p.stderr) + sum(
      bool(e.get("repair_reported")) for e in events)
  got, bad = rows_of(soak_dir / "soak" / "results.jsonl")
  ref_by = {key(r): strip(r) for r in ref_rows}
  got_by = {key(r): strip(r) for r in got}
  got_keys = [key(r) for r in got]
  dups = len(got_keys) - len(set(got_keys))
  diff = [k for k in ref_by if k in got_by and got_by[k] != ref_by[k]]
  report = {
      "model": model, "work": str(work), "seed": args.seed,
      "reference_rows": len(ref_rows), "reference_wall_s": round(ref_wall, 1),
      "reference_first_row_s": round(first_row, 1),
      "runs": len(events) + 1,
      "kills_in_start_up": sum(e["killed"] and e["phase"] == "start-up"
                               for e in events),
      "kills_mid_sweep": sum(e["killed"] and e["phase"] != "start-up"
                             for e in events),
      "kills": sum(e["killed"] for e in events),
      "runs_that_finished_before_their_kill": sum(
          not e["killed"] for e in events),
      "kills_with_rows_written_during_the_run": sum(
          e["killed"] and e["rows_after"] > e["rows_before"]
          for e in events),
      "lines_cut_after_a_kill": sum(e["cut_at_byte"] is not None
                                    for e in events),
      "repair_warnings_seen": repairs_reported,
      "final_exit_code": final_rc,
      "final_rows": len(got), "corrupt_lines": bad, "duplicate_keys": dups,
      "missing_keys": len(set(ref_by) - set(got_keys)),
      "extra_keys": len(set(got_keys) - set(ref_by)),
      "rows_differing_from_reference": len(diff),
      "corrupt_backups": sorted(x.name for x in (soak_dir / "soak").glob(
          "results.jsonl.corrupt*")),
      "events": events,
  }
  report["ok"] = (final_rc == 0 and bad == 0 and dups == 0 and not diff
                  and report["missing_keys"] == 0
                  and report["extra_keys"] == 0)
  text = json.dumps(report, indent=1)
  print(text)
  if args.out:
    Path(args.out).write_text(text + "\n")
  sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
  main()
