r"""exp31: how many output positions carry the transfer (protocol 8.23).

    python experiments/output_positions.py --model=gemma3-270m --layers=study

Pairs as exp30 (uppercase->repeat_word, uppercase->length,
repeat_word->length); source prompts use the target's test inputs; N=20.

"Output positions" are the demo output lines: faithful mode, the study's
line-based output-line indices (section 5.2: "Output", ":" and answer slots
with the drift); aligned mode, the real output-line tokens ("Output", ":",
answer tokens) mapped by (demo, role, index). "Input positions" are the
input lines likewise.

Part A (first RNG call): for each size s in --sizes (1,2,3,4,5,7,10) and
--subsets random subsets (10; one np.random.RandomState(42 + seed) stream
per mode through all pairs, `choice(outputs, s, replace=False)`, as in the
original), patch the subset *together with all input positions*
(condition "random_outputs", fields size/subset); also "all_positions"
(inputs + all outputs) and "all_outputs" (outputs only, no inputs -- the
original's "ALL = 0.90" point, which unlike the subset points excludes the
inputs).
Part B (second RNG call): inputs + structured output subsets:
"first_per_demo", "last_per_demo", "every_other", "first_demo",
"last_demo".

Every layer by default; `--layers=study` = layer_at_fraction(0.30) (the
original's layer 8). Plot: transfer vs number of output positions.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common
from icl_jax.studies.scoring import TaskScoring

PAIRS = (("uppercase", "repeat_word"), ("uppercase", "length"),
         ("repeat_word", "length"))
common.define_common_flags(default_pairs=PAIRS, default_n=20)
flags.DEFINE_string("sizes", "1,2,3,4,5,7,10", "random subset sizes")
flags.DEFINE_integer("subsets", 10, "random subsets per size",
                     lower_bound=1)
flags.DEFINE_list("parts", ["A", "B"], "parts to run (A, B)")
common.define_on_mismatch_flag()
F = flags.FLAGS
EXPERIMENT = "output_positions"
STRUCTURED = ("first_per_demo", "last_per_demo", "every_other", "first_demo",
              "last_demo")


def source_positions(tok, mode, setup, on_mismatch):
  """(inputs, outputs per demo) in source index space, and the full map.

  Returns (inputs [int], per_demo_outputs [[int]], pm_all) where pm_all
  maps every input/output source position to its target slot (with all
  slots allowed; out-of-range ones are dropped at build time).
  """
  from icl_jax.studies import positions

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
                            setup.target_episodes, "input_only", on_mismatch)
  pm_out = positions.aligned_map(tok, setup.source_episodes,
                             setup.target_episodes, "output_line",
                             on_mismatch)
  lay = positions.layout(tok, ep)
  per_demo = [[s for s in pm_out.src_idx if lay.records[s].demo == d]
              for d in range(k)]
  return list(pm_in.src_idx), per_demo, pm_in.union(pm_out)


def structured_subsets(per_demo):
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
  cells = []
  subs = structured_subsets(per_demo)
  for l in layers:
    for name in STRUCTURED:
      cells.append({"layer": int(l), "condition": name,
                    "size": len(subs[name]), "subset": None,
                    "_outs": subs[name], "_inputs": True})
  return cells


def subset_job(mode, setup, cells, inputs, pm_all, label):
  from icl_jax.studies import plans, positions

  scoring = TaskScoring(setup.source_task, setup.target_task)

  def build(engine, targets, todo):
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
  import numpy as np

  from icl_jax.studies import setups, layers

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
  from collections import defaultdict

  g = defaultdict(list)
  for r in rows:
    key = r["size"] if r["condition"] == "random_outputs" else r["condition"]
    g[(r["mode"], r["layer"], str(key))].append(r["transfer"])
  return [{"mode": m, "layer": l, "point": k, "cells": len(v),
           "mean_transfer": sum(v) / len(v)}
          for (m, l, k), v in sorted(g.items())]


def plot(rows, path, model):
  from collections import defaultdict

  from icl_jax.analysis import figures

  panels = defaultdict(dict)
  for mode in sorted({r["mode"] for r in rows}):
    for layer in sorted({r["layer"] for r in rows if r["mode"] == mode}):
      pts = defaultdict(list)
      for r in rows:
        if (r["mode"], r["layer"]) == (mode, layer) and r["condition"] in (
            "random_outputs", "all_positions"):
          pts[r["size"]].append(r["transfer"])
      xs = sorted(pts)
      if xs:
        panels[f"{mode}"][f"L{layer} ({mode})"] = (
            xs, [sum(pts[x]) / len(pts[x]) for x in xs])
  return figures.curves(panels, path, "output positions patched (+ all "
                        "inputs)", "mean transfer",
                        title=f"exp31 on {model} (rightmost point: all "
                              "outputs)")


def main(argv):
  del argv
  from icl_jax.studies import study, layers

  modes, pairs, n = common.parse_pair_flags()
  sizes = study.parse_ints(F.sizes, "--sizes", 1, None)
  n_subsets = study.check_positive(F.subsets, "--subsets")
  parts = [p.strip().upper() for p in F.parts]
  if not parts or any(p not in ("A", "B") for p in parts):
    raise ValueError(f"--parts {F.parts}: use a subset of A,B")
  st = common.open_pair_study(
      EXPERIMENT, modes, pairs, n,
      dict(sizes=sizes, subsets=n_subsets, parts=sorted(parts)),
      study_layers=layers.study_fraction_layer, key_extra=("size", "subset"))
  jobs = build_jobs(st.lm.tokenizer, modes, pairs, n, st.layers, sizes,
                    n_subsets, parts, F.seed, F.on_mismatch)
  rows = st.run(jobs)
  plot(rows, st.path / "transfer_by_positions.png", F.model)
  summary = summarize(rows)
  st.finish({"points": summary})
  for s in summary:
    if len(st.layers) <= 2:
      print(f"{s['mode']:9} L{s['layer']:<3} {s['point']:>15}: mean "
            f"transfer {s['mean_transfer']:.3f} ({s['cells']} cells)")
  print(f"results under {st.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
