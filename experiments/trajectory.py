r"""exp7 (trajectory): how the task representation evolves across layers.

    python experiments/trajectory.py --model=gemma3-270m --n=20 --mode=both

Protocol section 8.7: 20 prompts per core task (160), the hidden state at
``last_demo_token`` after every block; a logistic probe
(LogisticRegression(C=1, lbfgs, multinomial, max_iter=1000), unscaled
features) fitted *and scored on the same 160 samples* (training accuracy);
representational change between consecutive layers
``1 - mean_i cos(h_L[i], h_L+1[i])``; crystallization = first layer with
accuracy >= 0.8 / 0.9 / 0.95; a separate probe for the "procedural" regime
(uppercase, first_letter, repeat_word: the only regime with >= 2 tasks).

Modes:

* faithful -- as run: fixed demos, the study's ``last_demo_token`` (the
  "\n\n" token, protocol 5.1). Its vector is identical for every prompt of a
  task (it precedes the query), so the training accuracy is 1.0 at every
  layer and "crystallization" is layer 0 by construction.
* aligned -- sampled demos per prompt, ``last_demo_answer_token``.

Both modes report the study's training accuracy and a held-out accuracy
(5-fold, the same C=1 probe; pooled, with a Wilson CI). With d_model >= 160
samples any non-duplicated data is linearly separable, so the training
accuracy is ~1.0 whatever the features encode; the held-out accuracy is the
informative number.

--probe_scaling: as_run = the original's unscaled features (ill-conditioned:
on gemma3-270m no fit had converged after 100 L-BFGS iterations; the cap is
the original's 1000, tens of minutes per mode on a 2-core CPU); standardized
= StandardScaler on each fit's training rows first, scikit-learn's default
stopping rule (max |grad| < 1e-4; <= 39 iterations on gemma3-270m); by_mode
(default) = as_run in faithful mode, standardized in aligned mode (the
modes rule: faithful as run, aligned corrected). summary.json records the
scaling, fit seconds and iteration counts per mode and subset.

Outputs: <out_dir>/trajectory/results.jsonl (row per mode x subset x probe
x layer: accuracy, n, cosine change to the next layer), summary.json,
trajectory.png. See `icl_jax/studies/trajectory.py`.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common
from icl_jax.studies import trajectory
from icl_jax.studies.layers import parse_layers
from icl_jax.studies.modes import parse_modes

common.define_probe_flags(20, "prompts per task (the study: 20)")
flags.DEFINE_enum("probe_scaling", "by_mode", list(trajectory.PROBE_SCALINGS),
                  "probe features: as_run (unscaled, the original's), "
                  "standardized, or by_mode (faithful as run, aligned "
                  "standardized)")
F = flags.FLAGS


def main(argv):
  del argv
  from icl_jax.studies.study import quiet_logs

  quiet_logs()
  lm = common.load_model(trajectory.EXPERIMENT)
  layers = parse_layers(F.layers, lm.n_layers)
  mode_list = parse_modes(F.mode)
  _, summary = trajectory.run(lm, model=F.model, mode_list=mode_list, n=F.n,
                              k=F.k, layers=layers, seed=F.seed,
                              out_dir=F.out_dir, batch_size=F.batch_size,
                              probe_scaling_spec=F.probe_scaling)
  print(trajectory.format_summary(summary, mode_list))


if __name__ == "__main__":
  app.run(main)
