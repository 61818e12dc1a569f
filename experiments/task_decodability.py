r"""Task decodability (Han et al.) per layer, task and shot count, and its
correlation with ICL accuracy.

    python experiments/task_decodability.py --model=gemma3-270m --n=40 \
        --shots=1,4,10

Per shot count k and core task: N prompts with k demos sampled per prompt
(seeded; the same N queries at every k, so only the demonstrations change).
TD = leave-one-out kNN (k=10, Euclidean, majority vote) accuracy of the task
identity from the residual stream at the token before the answer (the final
":" of the query's "Output:"), after every block. ``TD_z`` = fraction of
task-z prompts classified as z; mean TD = mean over tasks. ICL accuracy: the
same prompts, greedy, strict scorer (exact answer after strip + first line;
the study's faithful scorer is recorded too).

Family TD (--family, default the 4 word tasks that share their inputs):
the same kNN TD computed among the family's prompts only -- Han et al.'s
setting of confusable tasks -- with its own peak layer and correlation
(4 tasks x 3 shot counts = 12 points), from the saved features.

Correlation (Han et al. section 4.2): one point per (task, shot count), x =
``TD_z`` at the peak layer of mean TD at ``--peak_shots`` shots (Han et al.
pick the layer at their default 4 shots and use it throughout), y = strict
accuracy; Pearson r, p, R^2 of the least-squares line and a bootstrap CI of r.
Also reported: the same with the per-shot peak layer, with TD averaged over
layers, and r at every layer.

Deviations from Han et al. (documented in summary.json):
* tasks: the study's 8 core tasks, not Han's 6 POS / 6 bitwise tasks. Only
  the 4 word tasks (uppercase, first_letter, repeat_word, length) share an
  input distribution (and here even the same queries and demo inputs); the
  others are told apart by their inputs alone, so TD for them is easy even
  at layer 0. No Null class.
* N = --n prompts per task (Han: 100); 8 tasks x 3 shot counts = 24 points
  (Han: 6 x 3 = 18 per family).
* prompt template: the study's "Input: x\nOutput: y\n\n" (Han's is not
  given).

Outputs: <out_dir>/task_decodability/results.jsonl (TD rows per shot x layer
x task incl. "mean"; accuracy rows per shot x task; optional held-out
logistic probe rows), summary.json (curves, peak layers, correlations, Han's
reference numbers, the family analysis), td_by_layer.png,
td_vs_accuracy.png, td_by_layer_family.png, td_vs_accuracy_family.png,
features_<k>shot.npz. See `icl_jax/studies/task_decodability.py`.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common
from icl_jax.studies import task_decodability as td
from icl_jax.studies.layers import parse_layers

common.define_task_flags(40, "prompts per task and shot count")
flags.DEFINE_list("shots", ["1", "4", "10"], "demos per prompt")
flags.DEFINE_integer("peak_shots", 4,
                     "shot count whose mean-TD peak layer is used for the "
                     "correlation (Han et al.: 4)", lower_bound=1)
flags.DEFINE_list("family",
                  ["uppercase", "first_letter", "repeat_word", "length"],
                  "a confusable sub-family (shared inputs) whose TD is also "
                  "computed among its own tasks only (Han et al.'s setting); "
                  "empty to skip")
common.define_td_flags()
F = flags.FLAGS


def main(argv):
  del argv
  from icl_jax.studies.study import quiet_logs

  quiet_logs()
  task_names = common.task_names()
  shots = td.parse_shots(F.shots)
  lm = common.load_model(td.EXPERIMENT)
  layers = parse_layers(F.layers, lm.n_layers)
  _, a = td.run(lm, model=F.model, task_names=task_names, shots=shots,
                n=F.n, layers=layers, seed=F.seed, knn=F.knn,
                peak_shots=F.peak_shots, out_dir=F.out_dir,
                logistic=F.logistic, batch_size=F.batch_size,
                max_new_tokens=F.max_new_tokens,
                logistic_max_iter=F.logistic_max_iter,
                family=[t for t in F.family if t.strip()])
  print(td.format_report(a, shots, F.out_dir))


if __name__ == "__main__":
  app.run(main)
