r"""Han et al.'s task-vector interventions on their POS / bitwise families.

    python experiments/han_task_vectors.py --model=gemma3-270m \
        --families=bitwise,pos --n=100 --seeds=0,1,2,3,4

Per family, seed and task: the task's vector (mean residual after block
--layer at every demo's answer-preceding token, over --n_source 4-shot
train-split prompts) and Null's vector, written into --n 4-shot eval prompts
of the task at the query's pre-answer token (the paper), at every demo's
pre-answer token, or both (spec section 10), by replace (h <- v) and add
(h <- h + alpha v for each --alphas), prefill only, on the public patching
API (`icl_jax.run_patches`). Accuracy (exact match) vs the clean prompts;
mean +- std over --seeds.

--layer: a block index, or -1 (default): the 4-shot mean-TD peak of each
family read from --td_dir (a han_td results directory), else the fixed
depth fraction 0.44 (Han's peaks: 0.41 bitwise, 0.47 POS). The layer used
is in every row and in summary.json.

Outputs: <out_dir>/han_task_vectors/results.jsonl, summary.json,
intervention_bars_<family>.png, vectors_<family>_s<seed>.npz. See
`icl_jax/studies/han_task_vectors.py`.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common
from icl_jax.convert.embedded import MODEL_FLAG_HELP
from icl_jax.studies import han_task_vectors as htv

flags.DEFINE_string("model", "gemma3-270m", MODEL_FLAG_HELP)
flags.DEFINE_string("out_dir", "runs", "results root directory")
flags.DEFINE_string("dtype", None, "float32 (default) or bfloat16")
flags.DEFINE_integer("n", 100, "target prompts per task and seed",
                     lower_bound=1)
flags.DEFINE_list("families", ["bitwise", "pos"], "task families")
flags.DEFINE_integer("layer", -1, "block to patch (-1: TD peak / fixed "
                     "fraction, see the module doc)", lower_bound=-1)
flags.DEFINE_string("td_dir", None, "a han_td results directory (its "
                    "4-shot mean-TD peak layer per family)")
flags.DEFINE_integer("n_source", 100, "prompts per task vector",
                     lower_bound=1)
flags.DEFINE_integer("shots", 4, "demos per prompt", lower_bound=1)
flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "replicate seeds")
flags.DEFINE_list("positions", list(htv.POSITION_SETS),
                  "where to write: query, demos, both")
flags.DEFINE_list("alphas", ["0.5", "1", "2"], "scales of the add edit")
flags.DEFINE_integer("max_new_tokens", 8, "generated tokens per prompt",
                     lower_bound=1)
flags.DEFINE_integer("batch_size", 16, "prompts per capture forward",
                     lower_bound=1)
F = flags.FLAGS


def main(argv):
  del argv
  from icl_jax.studies.study import check_choices, quiet_logs

  quiet_logs()
  check_choices(F.positions, htv.POSITION_SETS, "--positions")
  common.check_han_families(F.families)
  lm = common.load_model(htv.EXPERIMENT)
  layers = htv.layers_by_family(F.families, F.layer, F.td_dir, F.model,
                                lm.n_layers)
  _, s = htv.run(lm, model=F.model, families=F.families, layers=layers,
                 n=F.n, n_source=F.n_source, shots=F.shots,
                 seeds=[int(x) for x in F.seeds], position_sets=F.positions,
                 alphas=[float(a) for a in F.alphas], out_dir=F.out_dir,
                 max_new_tokens=F.max_new_tokens, batch_size=F.batch_size)
  print(htv.format_summary(s))


if __name__ == "__main__":
  app.run(main)
