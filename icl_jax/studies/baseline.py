"""exp1: baseline k-shot ICL accuracy per task (protocol section 8.1).

For every task: k fixed demos (k=5), the first RNG call's n test inputs, one
greedy generation per prompt, scored twice:

* faithful: D1 extraction (``text.split("\\n")[0].strip()``) + the study's
  scorer (artifacts included) -- comparable with protocol section 9.1;
* strict: exact answer after strip + first line, no fallbacks.

`run` writes ``<out_dir>/baseline/results.jsonl`` (one object per task; a
re-run skips tasks already there), ``summary.json`` and ``baseline.png``.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Sequence

from absl import logging

from icl_jax.analysis import stats
from icl_jax.analysis.results import RunDir, read_rows
from icl_jax.tasks import extract_d1, get_task, make_episodes, scoring

EXPERIMENT = "baseline"
PASS_THRESHOLD = 0.85  # the original's passes_threshold
# A row is one task of one configuration: KEY_FIELDS + these (several n, k
# and demo modes may share the directory).
KEY_EXTRA = ("n", "k", "demo_mode")


def _key(rec: dict) -> tuple:
  """A row's identity: the key fields + (n, k, demo_mode)."""
  return (rec["experiment"], rec["model"], rec["mode"], rec["source_task"],
          rec["target_task"], rec["condition"], rec["n"], rec.get("k", 5),
          rec.get("demo_mode", "fixed"))


def _task_key(model_name, name, mode, n, k, demo_mode) -> tuple:
  """`_key` of one task's row of this configuration."""
  return _key({"experiment": EXPERIMENT, "model": model_name, "mode": mode,
               "source_task": name, "target_task": name,
               "condition": "baseline", "n": n, "k": k,
               "demo_mode": demo_mode})


def read_results(path: Path) -> list[dict]:
  """Rows of a results.jsonl (corrupt lines reported, not read)."""
  return read_rows(path)


def _judge(task, episodes, outputs):
  """Faithful outcome counts, strict count and examples of one task."""
  counts = {scoring.CORRECT: 0, scoring.INCORRECT: 0, scoring.MALFORMED: 0}
  n_strict, examples = 0, []
  for ep, out in zip(episodes, outputs):
    d1 = extract_d1(out)
    try:
      outcome = task.judge(d1, ep.query)
    except Exception:  # pylint: disable=broad-except
      outcome = scoring.INCORRECT
    counts[outcome] += 1
    ok_strict = task.is_correct_strict(out, ep.query)
    n_strict += ok_strict
    examples.append({
        "query": ep.query, "output": out, "output_d1": d1,
        "expected_source": ep.expected, "expected_target": ep.expected,
        "correct_faithful": outcome == scoring.CORRECT,
        "correct_strict": bool(ok_strict),
    })
  return counts, n_strict, examples


def evaluate_task(lm, model_name: str, task_name: str, n: int, k: int,
                  max_new_tokens: int, mode: str, demo_mode: str = "fixed",
                  demo_seed: int = 0) -> dict:
  """Runs one task and returns its results.jsonl record."""
  task = get_task(task_name)  # fresh Random(42): first RNG call
  episodes = make_episodes(task, n, k=k, demo_mode=demo_mode, seed=demo_seed)
  prompts = [e.prompt().text for e in episodes]
  t0 = time.perf_counter()
  outputs = lm.generate(prompts, max_new_tokens=max_new_tokens)
  gen_s = time.perf_counter() - t0
  counts, n_strict, examples = _judge(task, episodes, outputs)
  acc = counts[scoring.CORRECT] / n
  acc_strict = n_strict / n
  return {
      "experiment": EXPERIMENT, "model": model_name, "mode": mode,
      "source_task": task_name, "target_task": task_name, "layer": None,
      "condition": "baseline", "n": n, "k": k, "demo_mode": demo_mode,
      "max_new_tokens": max_new_tokens,
      "accuracy_faithful": acc, "accuracy_strict": acc_strict,
      "ci_faithful_wilson": list(stats.wilson_interval(counts["correct"], n)),
      "ci_strict_wilson": list(stats.wilson_interval(n_strict, n)),
      "correct": counts[scoring.CORRECT],
      "incorrect": counts[scoring.INCORRECT],
      "malformed": counts[scoring.MALFORMED],
      "passes_threshold": acc >= PASS_THRESHOLD,
      "transfer": 0.0, "preserve": acc, "neither": 1.0 - acc,
      "preserve_strict": acc_strict,
      "generate_seconds": gen_s, "examples": examples,
  }


def _versions() -> dict:
  """Python and package versions for summary.json."""
  import importlib.metadata as md

  out = {"python": platform.python_version()}
  for pkg in ("icl_jax", "jax", "jaxlib", "flax", "numpy", "transformers",
              "tokenizers"):
    try:
      out[pkg] = md.version(pkg)
    except md.PackageNotFoundError:
      out[pkg] = None
  return out


def _device() -> str:
  """The JAX devices, as text (summary.json)."""
  try:
    import jax
    return ", ".join(str(d) for d in jax.devices())
  except Exception:  # pylint: disable=broad-except
    return "unknown"


def validate(tasks: Sequence[str], mode: str, demo_mode: str, n: int = 1,
             max_new_tokens: int = 1, k: int = 5) -> None:
  """Raises on unknown task names, counts < 1 or a sampled-demo faithful
  run (before anything is loaded or written)."""
  for what, v, lo in (("--n", n, 1), ("--max_new_tokens", max_new_tokens, 1),
                      ("--k", k, 0)):
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
      raise ValueError(f"{what} must be an integer >= {lo}, got {v!r}")
  if not tasks:
    raise ValueError("--tasks is empty")
  if mode == "faithful" and demo_mode != "fixed":
    raise ValueError("faithful mode uses the study's fixed demos; "
                     "use --mode=aligned for sampled demos")
  for name in tasks:
    get_task(name)  # UnknownTaskError lists the known names


def pending_tasks(model_name: str, tasks: Sequence[str], n: int,
                  out_dir: str, mode: str = "faithful", k: int = 5,
                  demo_mode: str = "fixed") -> list[str]:
  """Tasks of this configuration not yet in results.jsonl."""
  path = Path(out_dir) / EXPERIMENT / "results.jsonl"
  done = {_key(r) for r in read_results(path)}
  return [name for name in tasks
          if _task_key(model_name, name, mode, n, k, demo_mode) not in done]


def run(lm, model_name: str, tasks: Sequence[str], n: int, out_dir: str,
        max_new_tokens: int = 30, mode: str = "faithful", k: int = 5,
        demo_mode: str = "fixed", demo_seed: int = 0,
        load_seconds: float | None = None, dtype: str | None = None
        ) -> list[dict]:
  """Evaluates ``tasks``, skipping finished ones; returns this config's rows.

  Results go through `analysis.results.RunDir` (lock, configuration guard
  with dtype and model hash, repair of cut lines). Rows are keyed by task
  and (n, k, demo_mode); the configuration is the model, the generation
  budget, the demo seed and the dtype.
  """
  validate(tasks, mode, demo_mode, n, max_new_tokens, k)
  config = {"model": model_name, "max_new_tokens": max_new_tokens,
            "demo_seed": demo_seed if demo_mode != "fixed" else None}
  rd = RunDir(out_dir, EXPERIMENT, config, key_extra=KEY_EXTRA, lm=lm,
              dtype=dtype)
  try:
    timings = _evaluate_pending(rd, lm, model_name, tasks, n, max_new_tokens,
                                mode, k, demo_mode, demo_seed)
    rows = _config_rows(rd, model_name, tasks, n, mode, k, demo_mode)
    rd.write_summary(_summary(rows, model_name, tasks, n, max_new_tokens,
                              mode, k, demo_mode, demo_seed, load_seconds,
                              timings))
    if rows:
      from icl_jax.analysis.plots import baseline_bars

      baseline_bars(rows, rd.path / "baseline.png",
                    f"exp1 baseline {model_name} ({mode}, {k}-shot, n={n})",
                    PASS_THRESHOLD)
    return rows
  finally:
    rd.close()


def _evaluate_pending(rd, lm, model_name, tasks, n, max_new_tokens, mode, k,
                      demo_mode, demo_seed) -> dict:
  """Evaluates and appends the tasks not in the results; their timings."""
  done = {_key(r) for r in rd.rows()}
  timings = {}
  for name in tasks:
    if _task_key(model_name, name, mode, n, k, demo_mode) in done:
      logging.info("skip %s (already in %s)", name, rd.results)
      timings[name] = "resumed"
      continue
    if lm is None:
      raise ValueError(f"task {name} is not in {rd.results} and no model "
                       "was loaded")
    t0 = time.perf_counter()
    rec = evaluate_task(lm, model_name, name, n, k, max_new_tokens, mode,
                        demo_mode, demo_seed)
    timings[name] = round(time.perf_counter() - t0, 3)
    rd.append([rec])
    logging.info("%-20s faithful %.2f strict %.2f (%.1fs)", name,
                 rec["accuracy_faithful"], rec["accuracy_strict"],
                 timings[name])
  return timings


def _config_rows(rd, model_name, tasks, n, mode, k, demo_mode) -> list[dict]:
  """The latest row of each task of this configuration, in task order."""
  latest = {}  # key -> last record written for it
  for r in rd.rows():
    latest[_key(r)] = r
  rows = [r for r in latest.values()
          if r["model"] == model_name and r["mode"] == mode and r["n"] == n
          and r.get("k", 5) == k and r.get("demo_mode", "fixed") == demo_mode
          and r["source_task"] in tasks]
  rows.sort(key=lambda r: list(tasks).index(r["source_task"]))
  return rows


def _summary(rows, model_name, tasks, n, max_new_tokens, mode, k, demo_mode,
             demo_seed, load_seconds, timings) -> dict:
  """summary.json of one run: configuration, seeds, versions, timings and
  the accuracy of each task."""
  return {
      "experiment": EXPERIMENT, "model": model_name, "mode": mode,
      "tasks": list(tasks), "n": n, "k": k, "demo_mode": demo_mode,
      "max_new_tokens": max_new_tokens,
      "seeds": {"task_rng": 42, "test_inputs": "first RNG call per task",
                "demo_seed": demo_seed if demo_mode != "fixed" else None},
      "decoding": "greedy; faithful = D1 extraction, strict = strip + first "
                  "line; generation stops at the end of the first line",
      "versions": _versions(), "device": _device(),
      "timings_s": {"load": load_seconds, "per_task": timings},
      "command": " ".join(sys.argv),
      "accuracy": {r["source_task"]: {"faithful": r["accuracy_faithful"],
                                      "strict": r["accuracy_strict"]}
                   for r in rows},
  }


def format_rows(rows) -> str:
  """One line per task: faithful and strict accuracy."""
  return "\n".join(f"{r['source_task']:20s} faithful "
                   f"{r['accuracy_faithful']:.2f}  strict "
                   f"{r['accuracy_strict']:.2f}" for r in rows)
