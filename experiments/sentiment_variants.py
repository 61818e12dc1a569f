r"""exp32: sentiment label variants (protocol 8.24).

    python experiments/sentiment_variants.py --model=gemma3-270m --layers=study

Three tasks share the sentiment demo words and test pool and differ only in
the label: sentiment (positive/negative), sentiment_goodbad (good/bad),
sentiment_symbol (+/-). Part A: clean accuracy of each (condition
"baseline"). Part B: `all_demo` transfer for the 6 ordered variant pairs --
source and target prompts both use the *source's* test inputs, so the
prompts are position-aligned -- and the controls sentiment->antonym and
uppercase->sentiment (both prompts use the target's inputs). N=20, every
layer (default) or `--layers=study` (layer_at_fraction(0.30) = the
original's layer 8).

Scoring as in the original in faithful mode (goodbad: label substring;
symbol: output starts with the symbol; sentiment: substring with a
"positive" fallback); strict (aligned mode) requires the exact label.
Note the ~50% floor of binary labels: a constant output in the source label
space already "transfers" on about half of the inputs (protocol 11.2.5).
"""

from __future__ import annotations

from absl import app, flags

from experiments import common

VARIANTS = ("sentiment", "sentiment_goodbad", "sentiment_symbol")
VARIANT_PAIRS = (("sentiment", "sentiment_goodbad"),
                 ("sentiment_goodbad", "sentiment"),
                 ("sentiment", "sentiment_symbol"),
                 ("sentiment_symbol", "sentiment"),
                 ("sentiment_goodbad", "sentiment_symbol"),
                 ("sentiment_symbol", "sentiment_goodbad"))
CONTROLS = (("sentiment", "antonym"), ("uppercase", "sentiment"))
common.define_common_flags(default_pairs=VARIANT_PAIRS + CONTROLS,
                           default_n=20)
flags.DEFINE_boolean("baselines", True, "Part A: clean accuracy of the "
                     "three variants")
common.define_on_mismatch_flag()
F = flags.FLAGS
EXPERIMENT = "sentiment_variants"


def is_variant_pair(s, t):
  return s in VARIANTS and t in VARIANTS


def build_jobs(modes, pairs, n, layers, seed, on_mismatch):
  from icl_jax.studies import plans, setups

  jobs = []
  for mode in modes:
    objs = {}  # one Task object per task across the pairs (RNG replay)
    for s, t in pairs:
      q = "source" if is_variant_pair(s, t) else "target"
      setup = setups.setup_pairs([(s, t)], n, queries=q, seed=seed,
                                task_objects=objs)[0]
      jobs.append(plans.transfer_job(
          mode, setup, layers, ["all_demo"], on_mismatch=on_mismatch,
          extra={"queries": q}))
  return jobs


def summarize(rows):
  from collections import defaultdict

  base = {(r["mode"], r["target_task"]): r["preserve"] for r in rows
          if r["condition"] == "baseline"}
  g = defaultdict(list)
  for r in rows:
    if r["condition"] != "baseline":
      g[(r["mode"], r["layer"])].append(r)
  per_layer = []
  for (mode, layer), rs in sorted(g.items()):
    var = [r["transfer"] for r in rs
           if is_variant_pair(r["source_task"], r["target_task"])]
    per_layer.append({
        "mode": mode, "layer": layer,
        "variant_mean_transfer": sum(var) / len(var) if var else None,
        "pairs": {f"{r['source_task']}->{r['target_task']}":
                  (r["transfer"], r["preserve"], r["neither"]) for r in rs}})
  return {"baselines": {f"{m}/{t}": v for (m, t), v in base.items()},
          "per_layer": per_layer}


def main(argv):
  del argv
  from icl_jax.analysis.plots import transfer_by_layer
  from icl_jax.studies.layers import study_fraction_layer

  modes, pairs, n = common.parse_pair_flags()
  st = common.open_pair_study(EXPERIMENT, modes, pairs, n,
                              dict(baselines=F.baselines),
                              study_layers=study_fraction_layer)
  if F.baselines:  # Part A: clean accuracy, one batched generation
    st.run_baselines(VARIANTS, n)
  rows = st.run(build_jobs(modes, pairs, n, st.layers, F.seed,
                           F.on_mismatch))
  transfer_by_layer([r for r in rows if r["condition"] != "baseline"],
                    st.path / "transfer_by_layer.png",
                    title=f"exp32 sentiment variants on {F.model}")
  summary = summarize(rows)
  st.finish(summary)
  for k, v in sorted(summary["baselines"].items()):
    print(f"baseline {k}: {v:.2f}")
  for p in summary["per_layer"]:
    if p["variant_mean_transfer"] is not None:
      print(f"{p['mode']:9} L{p['layer']:<3} mean variant transfer "
            f"{p['variant_mean_transfer']:.3f}")
  print(f"results under {st.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
