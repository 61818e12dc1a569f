"""exp33: variable-length tasks (protocol 8.25)
(`experiments/variable_length.py`): Part B all_demo transfer between
variable- and fixed-length tasks; Part C repeat_word -> repeat_n over every
item, "transfer" <=> the output is the item's word twice, with a per-N
breakdown (`add_by_n`).
"""

from __future__ import annotations

STUDY_LAYERS_28 = (4, 6, 8, 10, 12, 15)
PART_C = "all_demo/by_n"


def parse_parts(parts) -> list[str]:
  """--parts: a non-empty subset of A, B, C (upper-cased)."""
  out = [p.strip().upper() for p in parts]
  bad = [p for p in out if p not in ("A", "B", "C")]
  if bad or not out:
    raise ValueError(f"--parts {parts}: use a subset of A,B,C")
  return out


def study_layers(n_layers):
  """The original's layers 4/6/8/10/12/15 of 28, scaled to the model."""
  from icl_jax.studies.layers import layer_at_fraction

  return [layer_at_fraction(l / 28, n_layers) for l in STUDY_LAYERS_28]


def word_of(item: str) -> str:
  """The word of a repeat_n item "w N"."""
  return item.rsplit(" ", 1)[0]


def twice_rule(output: str, query: str) -> bool:
  """Part C's transfer: the output is the item's word twice."""
  from icl_jax.tasks import extract_d3

  w = word_of(query)
  return extract_d3(output) == f"{w} {w}"


def add_by_n(row: dict) -> dict:
  """Per repeat count N: prompts, transfer ("w w") and target-correct."""
  if row["condition"] != PART_C:
    return row
  by = {}
  for e in row["examples"]:
    k = e["query"].rsplit(" ", 1)[1]
    d = by.setdefault(k, {"n": 0, "transfer": 0, "target_correct": 0})
    d["n"] += 1
    d["transfer"] += bool(e.get("source_correct"))
    d["target_correct"] += bool(e.get("target_correct"))
  row["by_n"] = {k: by[k] for k in sorted(by, key=int)}
  return row


def part_c_setup():
  """repeat_word's own test inputs -> every repeat_n item."""
  from icl_jax.studies import setups
  from icl_jax.tasks import get_task, make_episodes

  n_items = len(get_task("repeat_n").pool)
  src = get_task("repeat_word")
  tgt = get_task("repeat_n")
  return setups.PairSetup(
      "repeat_word", "repeat_n",
      make_episodes(src, n_items, queries=src.generate_test_inputs(n_items)),
      make_episodes(tgt, n_items, queries=tgt.generate_test_inputs(n_items)))


def build_jobs(modes, parts, pairs, n, layers, seed, on_mismatch) -> list:
  """Part B's transfer jobs (the target's inputs) and Part C's job."""
  from icl_jax.studies import plans, setups
  from icl_jax.studies.scoring import TaskScoring

  jobs = []
  for mode in modes:
    if "B" in parts:
      for setup in setups.setup_pairs(pairs, n, queries="target", seed=seed):
        jobs.append(plans.transfer_job(mode, setup, layers, ["all_demo"],
                                       on_mismatch=on_mismatch))
    if "C" in parts:
      scoring = TaskScoring("repeat_word", "repeat_n",
                            source_rule=twice_rule)
      jobs.append(plans.transfer_job(
          mode, part_c_setup(), layers, ["all_demo"],
          on_mismatch=on_mismatch, scoring=scoring,
          condition_names={"all_demo": PART_C},
          label="Part C: repeat_word -> repeat_n by N"))
  return jobs


def summarize(rows) -> dict:
  """Baselines by mode/task and Part C's per-N breakdowns."""
  base = {f"{r['mode']}/{r['target_task']}": r["preserve"] for r in rows
          if r["condition"] == "baseline"}
  part_c = [{"mode": r["mode"], "layer": r["layer"], "by_n": r["by_n"]}
            for r in rows if r["condition"] == PART_C]
  return {"baselines": base, "part_c": part_c}


def format_summary(summary) -> str:
  """Baselines and Part C per (mode, layer)."""
  lines = [f"baseline {k}: {v:.2f}"
           for k, v in sorted(summary["baselines"].items())]
  for c in summary["part_c"]:
    cells = ", ".join(f"N={k}: {d['transfer']}/{d['n']} (target-correct "
                      f"{d['target_correct']})" for k, d in c["by_n"].items())
    lines.append(f"Part C {c['mode']:9} L{c['layer']:<3} {cells}")
  return "\n".join(lines)
