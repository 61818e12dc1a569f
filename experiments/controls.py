r"""exp27: controls for multi-position transfer (protocol 8.19, ref. 9.5).

    python experiments/controls.py --model=gemma3-270m --layers=study

For the six exp8 pairs, N=20, `all_demo` positions, at every layer (default)
or `--layers=study` (layer_at_fraction(0.30) = the original's layer 8):
true source, random source (a third task's activations at its own
positions; `--random_source_task`, default pattern_completion as in the
original; a pair that contains it uses the first core task outside the
pair), shuffled (the true vectors permuted among the true positions) and
norm-matched Gaussian noise. Every control is judged with the true source
task's scorer. See `icl_jax/studies/controls.py`.

Reading the result: a control that breaks the target ("neither" high)
shows that wrong content at those positions disrupts the prompt, not that it
leaves the target intact; compare preserve/neither, not only transfer.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common

common.define_common_flags(default_pairs=common.EXP8_PAIRS, default_n=20)
flags.DEFINE_list("controls", ["true_source", "random_source", "shuffled",
                               "noise"], "control cells to run")
flags.DEFINE_string("random_source_task", "pattern_completion",
                    "the third task of the random-source control")
flags.DEFINE_string("condition", "all_demo", "position set")
common.define_on_mismatch_flag()
F = flags.FLAGS
EXPERIMENT = "controls"


def third_task_for(pair, preferred):
  from icl_jax.tasks import CORE_TASKS

  if preferred not in pair:
    return preferred
  return next(t for t in CORE_TASKS if t not in pair)


def build_jobs(modes, pairs, n, layers, controls, third, condition, seed,
               on_mismatch):
  from icl_jax.studies import setups
  from icl_jax.studies.controls import controls_job
  from icl_jax.tasks import get_task, make_episodes

  jobs = []
  for mode in modes:
    objs = {}
    for i, setup in enumerate(setups.setup_pairs(pairs, n, seed=seed,
                                                task_objects=objs)):
      third_task = third_task_for((setup.source_task, setup.target_task),
                                  third)
      key = "__third__" + third_task  # its own Task object and RNG stream
      objs.setdefault(key, get_task(third_task))
      third_eps = make_episodes(objs[key], n)
      jobs.append(controls_job(mode, setup, third_eps, third_task, layers,
                               condition=condition, seed=seed, pair_index=i,
                               on_mismatch=on_mismatch, controls=controls))
  return jobs


def summarize(rows):
  from collections import defaultdict

  g = defaultdict(list)
  for r in rows:
    g[(r["mode"], r["layer"], r["condition"])].append(r)
  return [{"mode": m, "layer": l, "control": c, "pairs": len(rs),
           "mean_transfer": sum(r["transfer"] for r in rs) / len(rs),
           "mean_preserve": sum(r["preserve"] for r in rs) / len(rs),
           "mean_neither": sum(r["neither"] for r in rs) / len(rs)}
          for (m, l, c), rs in sorted(g.items())]


def main(argv):
  del argv
  from icl_jax.analysis.plots import transfer_by_layer
  from icl_jax.studies.controls import CONTROLS
  from icl_jax.studies.layers import study_fraction_layer
  from icl_jax.tasks import get_task

  modes, pairs, n = common.parse_pair_flags()
  bad = [c for c in F.controls if c not in CONTROLS]
  if bad:
    raise ValueError(f"--controls: unknown {bad}; known: {list(CONTROLS)}")
  get_task(F.random_source_task)
  common.check_conditions([F.condition], modes)
  st = common.open_pair_study(
      EXPERIMENT, modes, pairs, n,
      dict(random_source_task=F.random_source_task, condition=F.condition),
      study_layers=study_fraction_layer)
  rows = st.run(build_jobs(modes, pairs, n, st.layers, F.controls,
                           F.random_source_task, F.condition, F.seed,
                           F.on_mismatch))
  transfer_by_layer(rows, st.path / "transfer_by_layer.png",
                    title=f"exp27 controls on {F.model}")
  transfer_by_layer(rows, st.path / "neither_by_layer.png", metric="neither",
                    title=f"exp27 controls on {F.model}: neither")
  summary = summarize(rows)
  st.finish({"means": summary})
  for s in summary:
    if len(st.layers) <= 3 or s["layer"] in study_fraction_layer(st.n_layers):
      print(f"{s['mode']:9} L{s['layer']:<3} {s['control']:14} transfer "
            f"{s['mean_transfer']:.3f} preserve {s['mean_preserve']:.3f} "
            f"neither {s['mean_neither']:.3f}")
  print(f"results under {st.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
