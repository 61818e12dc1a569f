r"""Task vectors (Han et al., App. C): extraction and injection at the query.

    python experiments/task_vectors.py --model=gemma3-270m --n=30 \
        --layers=4,6,9,12 --edit=replace --target_shots=0

Extraction: for every core task, ``--n_source`` prompts with
``--source_shots`` demos sampled per prompt (disjoint from the target
queries); the task vector at layer l is the mean residual after block l over
the token before each demo answer (each demo's ":" after "Output") of every
prompt -- "mean over demos, then over prompts".

Injection: target prompts of the same task (the first RNG call's queries,
with ``--target_shots`` demos: 0 = Hendel-style zero-shot "Input: q\nOutput:",
> 0 = one sampled demo block shared by the task's prompts, as in Han et
al.'s few-shot patching), the vector written at the query's final token
(the ":" before the answer) after block l, through the intervention engine
(``--edit=replace``: h <- v; ``add``: h <- h + alpha v), prefill only.

Conditions per (task, layer):
  none           no injection (the clean prompt)
  task           the task's own vector (Han's positive intervention)
  null_mean      the mean of all tasks' vectors (a task-agnostic vector of
                 the same kind and scale)
  null_shuffled  the vector of the task's random-label prompts: the same
                 demo inputs with the demo outputs permuted among the demos
                 (a derangement), i.e. the task's output format without its
                 input-output rule (the analogue of Han's Null class, "inputs
                 paired with random outputs")

Accuracy: greedy, strict scorer (the faithful scorer is recorded too).
Outputs: <out_dir>/task_vectors/results.jsonl (row per task x layer x
condition with accuracy, Wilson CI, n, delta vs none, fraction of outputs
changed, examples), summary.json, task_vectors.png, vectors.npz. See
`icl_jax/studies/task_vectors.py`.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common
from icl_jax.studies import task_vectors as tv
from icl_jax.studies.layers import parse_layers

common.define_task_flags(
    30, "target prompts per task", layers="mid",
    layers_help="'mid' (depth fractions .2/.35/.5/.65), 'all' or a comma "
                "list of block indices")
flags.DEFINE_integer("n_source", 20, "source prompts per task (vectors)",
                     lower_bound=1)
flags.DEFINE_integer("source_shots", 5, "demos per source prompt",
                     lower_bound=1)
flags.DEFINE_integer("target_shots", 0, "demos per target prompt",
                     lower_bound=0)
flags.DEFINE_enum("edit", "replace", ["replace", "add"], "injection mode")
flags.DEFINE_float("alpha", 1.0, "scale of --edit=add")
flags.DEFINE_list("nulls", ["null_mean", "null_shuffled"],
                  "null conditions (null_mean, null_shuffled)")
flags.DEFINE_integer("batch_size", 16, "source prompts per forward",
                     lower_bound=1)
F = flags.FLAGS


def main(argv):
  del argv
  from icl_jax.studies.study import quiet_logs

  quiet_logs()
  task_names = common.task_names()
  tv.check_nulls(F.nulls)
  if F.layers == "mid":
    F.layers = tv.MID_LAYERS
  lm = common.load_model(tv.EXPERIMENT)
  layers = parse_layers(F.layers, lm.n_layers)
  _, s = tv.run(lm, model=F.model, task_names=task_names, n=F.n,
                n_source=F.n_source, source_shots=F.source_shots,
                target_shots=F.target_shots, layers=layers, edit=F.edit,
                alpha=F.alpha, nulls=F.nulls, seed=F.seed, out_dir=F.out_dir,
                max_new_tokens=F.max_new_tokens, batch_size=F.batch_size)
  print(tv.format_summary(s))


if __name__ == "__main__":
  app.run(main)
