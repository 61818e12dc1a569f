"""exp31: how many output positions carry the transfer (protocol 8.23)
(`experiments/output_positions.py`).

Output positions are the demo output lines (faithful: the study's line-based
indices; aligned: the real output-line tokens mapped by (demo, role,
index)); input positions likewise. Part A patches random output subsets of
each size together with all inputs (one np.random.RandomState(42 + seed)
stream per mode through all pairs), plus "all_positions" and "all_outputs";
Part B structured subsets (first/last per demo, every other, first/last
demo) with all inputs.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from icl_jax.studies import plans, positions, setups
from icl_jax.studies.scoring import TaskScoring

EXPERIMENT = "output_positions"
STRUCTURED = ("first_per_demo", "last_per_demo", "every_other", "first_demo",
              "last_demo")


def parse_parts(parts) -> list[str]:
  """--parts: a non-empty subset of A, B (upper-cased)."""
  out = [p.strip().upper() for p in parts]
  if not out or any(p not in ("A", "B") for p in out):
    raise ValueError(f"--parts {parts}: use a subset of A,B")
  return out


def source_positions(tok, mode, setup, on_mismatch):
  """(inputs, outputs per demo) in source index space, and the full map.

  Returns (inputs [int], per_demo_outputs [[int]], pm_all) where pm_all
  maps every input/output source position to its target slot (with all
  slots allowed; out-of-range ones are dropped at build time).
  """
  big = 1 << 30
  ep = setup.source_episodes[0]
  text = ep.prompt().text
  k = len(ep.demos)
  lengths = [big] * len(setup.source_episodes)
  texts = [e.prompt().text for e in setup.source_episodes]
  if mode == "faithful":
    inputs = positions.faithful_indices(tok, text, "input_only")
    per_demo = [positions.faithful_indices(tok, text, f"output_line_{d}")
                for d in range(k)]
    pm_all = positions.faithful_map(tok, texts, "all_demo", big, lengths)
    return inputs, per_demo, pm_all
  pm_in = positions.aligned_map(tok, setup.source_episodes,
                                setup.target_episodes, "input_only",
                                on_mismatch)
  pm_out = positions.aligned_map(tok, setup.source_episodes,
                                 setup.target_episodes, "output_line",
                                 on_mismatch)
  lay = positions.layout(tok, ep)
  per_demo = [[s for s in pm_out.src_idx if lay.records[s].demo == d]
              for d in range(k)]
  return list(pm_in.src_idx), per_demo, pm_in.union(pm_out)


def structured_subsets(per_demo):
  """Part B's output subsets (source positions) by name."""
  outs = sorted(i for d in per_demo for i in d)
  nonempty = [d for d in per_demo if d]
  return {
      "first_per_demo": [d[0] for d in nonempty],
      "last_per_demo": [d[-1] for d in nonempty],
      "every_other": outs[::2],
      "first_demo": list(per_demo[0]) if per_demo else [],
      "last_demo": list(per_demo[-1]) if per_demo else [],
  }


def part_a_cells(layers, outs, sizes, n_subsets, rng):
  """Cells (with their subsets) for one pair; draws from the shared rng."""
  cells = []
  draws = []
  for s in sizes:
    for i in range(n_subsets):
      if s > len(outs):
        continue
      draws.append((s, i, sorted(int(x) for x in
                                 rng.choice(outs, s, replace=False))))
  for l in layers:
    for s, i, sub in draws:
      cells.append({"layer": int(l), "condition": "random_outputs",
                    "size": s, "subset": i, "_outs": sub,
                    "_inputs": True})
    cells.append({"layer": int(l), "condition": "all_positions",
                  "size": len(outs), "subset": None, "_outs": list(outs),
                  "_inputs": True})
    cells.append({"layer": int(l), "condition": "all_outputs",
                  "size": len(outs), "subset": None, "_outs": list(outs),
                  "_inputs": False})
  return cells


def part_b_cells(layers, per_demo):
  """Part B's cells: each structured subset with all inputs, per layer."""
  cells = []
  subs = structured_subsets(per_demo)
  for l in layers:
    for name in STRUCTURED:
      cells.append({"layer": int(l), "condition": name,
                    "size": len(subs[name]), "subset": None,
                    "_outs": subs[name], "_inputs": True})
  return cells


def subset_job(mode, setup, cells, inputs, pm_all, label):
  """The job patching each cell's subset (+ inputs) of the full map."""
  scoring = TaskScoring(setup.source_task, setup.target_task)

  def build(engine, targets, todo):
    """The plans of the pending cells."""
    resid, lengths = plans.capture_sources(engine, setup.source_episodes)
    out = []
    for c in todo:
      keep = list(c["_outs"]) + (list(inputs) if c["_inputs"] else [])
      sel = pm_all.select(keep)
      kept = []
      for s, t, h in zip(sel.src_idx, sel.tgt_idx, sel.have):
        h = [b for b in h if s < lengths[b]]
        if t < targets.slots and h:
          kept.append((s, t, h))
      pm = positions.PosMap([x[0] for x in kept], [x[1] for x in kept],
                            [x[2] for x in kept])
      out.append(plans.replace_plan(
          resid, c["layer"], c["condition"], pm,
          output_positions=[int(x) for x in c["_outs"]],
          with_inputs=bool(c["_inputs"])))
    return out

  return plans.Job(mode, setup, scoring, cells, build, label)


def build_jobs(tok, modes, pairs, n, layers, sizes, n_subsets, parts, seed,
               on_mismatch, log=print):
  """Part A and B jobs of every (mode, pair), in the original's RNG order."""
  jobs = []
  for mode in modes:
    rng = np.random.RandomState(42 + seed)
    objs = {}
    setups_a = setups.setup_pairs(pairs, n, queries="target", seed=seed,
                                  task_objects=objs)
    setups_b = setups.setup_pairs(pairs, n, queries="target", seed=seed,
                                  task_objects=objs)
    for sa, sb in zip(setups_a, setups_b):
      inputs, per_demo, pm_all = source_positions(tok, mode, sa, on_mismatch)
      outs = sorted(i for d in per_demo for i in d)
      label = f"{sa.source_task} -> {sa.target_task}"
      if not outs:
        log(f"[{mode}] {label}: no output positions; skipped")
        continue
      cells_a = part_a_cells(layers, outs, sizes, n_subsets, rng)
      if "A" in parts:
        too_big = [s for s in sizes if s > len(outs)]
        if too_big:
          log(f"[{mode}] {label}: sizes {too_big} exceed the "
              f"{len(outs)} output positions; skipped")
        jobs.append(subset_job(mode, sa, cells_a, inputs, pm_all,
                               f"{label} (Part A)"))
      if "B" in parts:
        i_b, d_b, pm_b = source_positions(tok, mode, sb, on_mismatch)
        jobs.append(subset_job(mode, sb, part_b_cells(layers, d_b), i_b,
                               pm_b, f"{label} (Part B)"))
  return jobs


def summarize(rows):
  """Mean transfer per (mode, layer, point): a random-subset size or a
  named condition."""
  g = defaultdict(list)
  for r in rows:
    key = r["size"] if r["condition"] == "random_outputs" else r["condition"]
    g[(r["mode"], r["layer"], str(key))].append(r["transfer"])
  return [{"mode": m, "layer": l, "point": k, "cells": len(v),
           "mean_transfer": sum(v) / len(v)}
          for (m, l, k), v in sorted(g.items())]


def format_summary(summary, n_layers_run: int) -> str:
  """The summary points, one per line, when at most 2 layers ran."""
  lines = []
  for s in summary:
    if n_layers_run <= 2:
      lines.append(f"{s['mode']:9} L{s['layer']:<3} {s['point']:>15}: mean "
                   f"transfer {s['mean_transfer']:.3f} ({s['cells']} cells)")
  return "\n".join(lines)
