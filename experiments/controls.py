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


def main(argv):
  del argv
  from icl_jax.analysis.plots import transfer_by_layer
  from icl_jax.studies import controls
  from icl_jax.studies.layers import study_fraction_layer
  from icl_jax.tasks import get_task

  modes, pairs, n = common.parse_pair_flags()
  controls.check_controls(F.controls)
  get_task(F.random_source_task)
  common.check_conditions([F.condition], modes)
  st = common.open_pair_study(
      EXPERIMENT, modes, pairs, n,
      dict(random_source_task=F.random_source_task, condition=F.condition),
      study_layers=study_fraction_layer)
  rows = st.run(controls.build_jobs(modes, pairs, n, st.layers, F.controls,
                                    F.random_source_task, F.condition,
                                    F.seed, F.on_mismatch))
  transfer_by_layer(rows, st.path / "transfer_by_layer.png",
                    title=f"exp27 controls on {F.model}")
  transfer_by_layer(rows, st.path / "neither_by_layer.png", metric="neither",
                    title=f"exp27 controls on {F.model}: neither")
  summary = controls.summarize(rows)
  st.finish({"means": summary})
  text = controls.format_means(summary, st.layers, st.n_layers)
  if text:
    print(text)
  print(f"results under {st.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
