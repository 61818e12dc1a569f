r"""The engine's generations/s by sweep size: is a small sweep slower per
generation?

    python benchmarks/sweep_batch.py           # writes results/sweep_batch.json

Issue 17's study-size suite ran 10 of its steps below half the engine's
headline rate inside the engine, and those steps plan few generations per
sweep (pair_matrix 20 per (mode, pair), against the headline's 1,440 in one
call). This benchmark varies only the sweep's size on the headline's
workload (`benchmarks/sweep.py`: exp8 faithful, uppercase -> repeat_word,
gemma3-270m, greedy, 8 new tokens, stop at the end of the first line) and
times each variant side by side in one process:

  headline           4 conditions x 18 layers x 20 targets, one `run`
                     (the engine runs one device batch per layer: 4 x 20 =
                     80 rows)
  cells_per_layer_2  2 conditions: batches of 2 x 20 = 40 rows
  cells_per_layer_1  1 condition: batches of 20 rows
  targets_10         4 conditions, 10 targets: batches of 40 rows
  targets_5          4 conditions, 5 targets: batches of 20 rows
  run_per_layer      the headline's cells, one `run` per layer (18 calls of
                     80 rows; targets prepared once)
  sweep_per_layer    the same with `prepare` per call (the targets' clean
                     run repeated per call, as a step that sweeps per layer)
  sweep_of_20        1 condition x 1 layer x 20 targets per call (prepare +
                     run), over the 18 layers: pair_matrix's size per call

Every variant's time includes `prepare` (the targets' clean run), as the
headline does; building the cells (the source capture) is excluded. Each
variant runs once to compile, then --repeats timed passes (median). The
rows of every variant equal the headline's rows for the same (condition,
layer, target) (checked: a variant that disagrees raises), so only the
sweep's shape differs. `icl_jax.models.work_meter` batches are recorded
per variant (rows per device batch, seconds net of compiling).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

from absl import app, flags

CONDITIONS = ("all_demo", "output_only", "input_only", "last_demo")

flags.DEFINE_string("model", "gemma3-270m", "model")
flags.DEFINE_string("pair", "uppercase:repeat_word", "source:target task")
flags.DEFINE_integer("n", 20, "target prompts of the headline variant")
flags.DEFINE_integer("max_new_tokens", 8, "new tokens per generation")
flags.DEFINE_integer("repeats", 2, "timed passes per variant (median)")
flags.DEFINE_list("variants", ["headline", "cells_per_layer_2",
                               "cells_per_layer_1", "targets_10",
                               "targets_5", "run_per_layer",
                               "sweep_per_layer", "sweep_of_20"],
                  "variants to time (headline is always run first)")
flags.DEFINE_string("out", str(Path(__file__).parent / "results" /
                               "sweep_batch.json"), "output JSON")
F = flags.FLAGS

# variant -> (conditions, targets as a fraction of --n, calls):
# calls "one" = one run; "per_layer" = one run per layer, prepared once;
# "prepare_per_layer" = prepare + run per layer.
VARIANTS = {
    "headline": (CONDITIONS, 1, "one"),
    "cells_per_layer_2": (CONDITIONS[:2], 1, "one"),
    "cells_per_layer_1": (CONDITIONS[:1], 1, "one"),
    "targets_10": (CONDITIONS, 2, "one"),
    "targets_5": (CONDITIONS, 4, "one"),
    "run_per_layer": (CONDITIONS, 1, "per_layer"),
    "sweep_per_layer": (CONDITIONS, 1, "prepare_per_layer"),
    "sweep_of_20": (CONDITIONS[:1], 1, "prepare_per_layer"),
}


def _load():
  return [round(x, 2) for x in os.getloadavg()]


def main(argv):
  del argv
  import jax

  import icl_jax
  from icl_jax.interventions.engine import Engine
  from icl_jax.models import work_meter
  from icl_jax.studies import plans, setups

  unknown = set(F.variants) - set(VARIANTS)
  if unknown:
    raise app.UsageError(f"unknown variant(s) {sorted(unknown)}; "
                         f"one of {sorted(VARIANTS)}")
  lm = icl_jax.load(F.model)
  engine = Engine(lm, max_new_tokens=F.max_new_tokens, stop="line",
                  timing="prefill")
  _ = lm.stop_tables  # built once, not timed
  src, tgt = F.pair.split(":")
  setup = setups.setup_pairs([(src, tgt)], F.n)[0]
  prompts = [e.prompt().text for e in setup.target_episodes]
  layers = list(range(lm.n_layers))

  def cells_for(targets, conditions, layer_list):
    """The faithful transfer cells and their (condition, layer) keys."""
    job = plans.transfer_job("faithful", setup, layer_list, list(conditions),
                             style="transfer", own_index=True)
    ps = job.build(engine, targets, job.cells)
    keys = [(x.condition, int(x.layer)) for x in ps]
    return plans.plans_to_cells(ps, targets.slots, lm.config.d_model), keys

  def variant_work(name):
    """[(prompts, [(cells, keys) per call])]; the sweeps one pass runs."""
    conditions, div, calls = VARIANTS[name]
    sub = prompts[:len(prompts) // div]
    targets = engine.prepare(prompts=sub)
    if calls == "one":
      return sub, [cells_for(targets, conditions, layers)]
    return sub, [cells_for(targets, conditions, [l]) for l in layers]

  def one_pass(name, sub, work):
    """Runs the variant; {(condition, layer, target): tokens}."""
    calls = VARIANTS[name][2]
    rows = {}
    targets = None
    for cells, keys in work:
      if targets is None or calls == "prepare_per_layer":
        targets = engine.prepare(prompts=sub)
      res = engine.run(targets, cells)
      for c, key in enumerate(keys):
        for i in range(len(sub)):
          rows[key + (i,)] = res.tokens[c, i, :res.n_gen[c, i]].tolist()
    return rows

  order = ["headline"] + [v for v in F.variants if v != "headline"]
  results, reference = {}, None
  for name in order:
    sub, work = variant_work(name)
    n_gen = sum(len(keys) for _, keys in work) * len(sub)
    t = time.perf_counter()
    rows = one_pass(name, sub, work)  # compiles this shape
    cold_s = time.perf_counter() - t
    if reference is None:
      reference = rows
    bad = [k for k, v in rows.items() if reference[k] != v]
    if bad:
      raise RuntimeError(f"{name}: {len(bad)} rows differ from the "
                         f"headline's, e.g. {bad[0]}")
    times, loads = [], [_load()]
    work_meter.reset()
    for _ in range(F.repeats):
      t = time.perf_counter()
      one_pass(name, sub, work)
      times.append(time.perf_counter() - t)
      loads.append(_load())
    med = statistics.median(times)
    eng = work_meter.totals().get("engine", {})
    results[name] = {
        "conditions": len(VARIANTS[name][0]), "targets": len(sub),
        "calls_per_pass": len(work), "calls": VARIANTS[name][2],
        "generations": n_gen, "times_s": [round(x, 3) for x in times],
        "median_s": round(med, 3), "generations_per_s": round(n_gen / med, 2),
        "cold_pass_s": round(cold_s, 1), "loadavg": loads,
        "engine_batches": eng.get("batches", {})}
    results[name]["ratio_to_headline"] = round(
        results[name]["generations_per_s"]
        / results["headline"]["generations_per_s"], 3)
    print(f"{name:18s} {n_gen:5d} gens in {med:7.2f} s = "
          f"{n_gen / med:6.2f} gen/s  x{results[name]['ratio_to_headline']:.2f}"
          f"  (load {loads[-1][0]})", flush=True)
  doc = {"model": F.model, "pair": F.pair, "n": F.n,
         "max_new_tokens": F.max_new_tokens, "repeats": F.repeats,
         "cpus": os.cpu_count(), "jax_devices": [str(d) for d in jax.devices()],
         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
         "what": "median wall of a warm pass, prepare (clean run) included, "
                 "cell building excluded; rows identical to the headline "
                 "variant's", "variants": results}
  Path(F.out).parent.mkdir(parents=True, exist_ok=True)
  Path(F.out).write_text(json.dumps(doc, indent=1))
  print(f"wrote {F.out}")


if __name__ == "__main__":
  app.run(main)
