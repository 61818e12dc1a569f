r"""Han et al.'s early- vs late-layer LoRA finetuning and prompting arms
(their Table 1) on the POS / bitwise families.

    python experiments/han_finetune.py --model=gemma3-270m \
        --families=bitwise,pos                # full protocol (10K samples)
    python experiments/han_finetune.py --model=gemma3-270m \
        --families=bitwise --reduced          # CPU: 64 samples, 16 steps

Arms: pretrained; ft_first / ft_last: LoRA (rank 16, alpha 16, dropout 0.1
on q k v o gate up down) on the first / last third of the blocks, trained
with Optax AdamW on --n_train mixed-task 4-shot train-split prompts, loss on
the answer tokens only (orbax checkpoints under the run directory; an
interrupted run resumes); prompting: the task named in the prompt. Each arm:
4-shot exact-match accuracy per task on --n_eval eval prompts per task, and
TD_z (leave-one-out kNN, k=10, Null a class) at --layer.

--layer: a block index, or -1 (default): the 4-shot mean-TD peak of each
family read from --td_dir (a han_td results directory), else the depth
fraction 0.44 (Han: 0.41 bitwise, 0.47 POS).

--reduced (CPU): n_train 64, batch 4, 16 steps, n_eval 10, unless those
flags are given explicitly. Outputs: <out_dir>/han_finetune/results.jsonl,
summary.json (Table 1, training sizes and times, Han's numbers),
table1.md, table1.png, lora_<family>_<arm>/ (checkpoints, train_log.json,
info.json). See `icl_jax/studies/han_finetune.py`.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common
from icl_jax.convert.embedded import MODEL_FLAG_HELP
from icl_jax.studies import han_finetune as hft
from icl_jax.studies import han_task_vectors as htv

flags.DEFINE_string("model", "gemma3-270m", MODEL_FLAG_HELP)
flags.DEFINE_string("out_dir", "runs", "results root directory")
flags.DEFINE_string("dtype", None, "float32 (default) or bfloat16")
flags.DEFINE_list("families", ["bitwise", "pos"], "task families")
flags.DEFINE_list("arms", list(hft.ARMS), "arms to run")
flags.DEFINE_integer("layer", -1, "TD layer (-1: see the module doc)",
                     lower_bound=-1)
flags.DEFINE_string("td_dir", None, "a han_td results directory")
flags.DEFINE_bool("reduced", False, "the reduced CPU configuration")
flags.DEFINE_integer("n_train", 10_000, "training prompts per family",
                     lower_bound=1)
flags.DEFINE_integer("n_eval", 100, "eval prompts per task", lower_bound=1)
flags.DEFINE_integer("shots", 4, "demos per prompt", lower_bound=1)
flags.DEFINE_integer("batch_size", 8, "training batch", lower_bound=1)
flags.DEFINE_integer("epochs", 1, "passes over the training prompts",
                     lower_bound=1)
flags.DEFINE_integer("steps", None, "training steps (default: epochs x "
                     "n_train / batch_size)", lower_bound=1)
flags.DEFINE_float("lr", 1e-4, "AdamW learning rate")
flags.DEFINE_float("weight_decay", 0.0, "AdamW weight decay")
flags.DEFINE_integer("rank", 16, "LoRA rank", lower_bound=1)
flags.DEFINE_float("alpha", 16.0, "LoRA alpha")
flags.DEFINE_float("dropout", 0.1, "LoRA dropout")
flags.DEFINE_enum("loss_on", "all_answers", ["all_answers", "query"],
                  "answer tokens in the loss")
flags.DEFINE_integer("ckpt_every", 50, "steps between checkpoints",
                     lower_bound=1)
flags.DEFINE_integer("max_new_tokens", 8, "generated tokens per prompt",
                     lower_bound=1)
flags.DEFINE_integer("seed", 0, "seed of data, adapters and dropout")
F = flags.FLAGS

REDUCED = {"n_train": 64, "batch_size": 4, "steps": 16, "n_eval": 10}


def main(argv):
  del argv
  from icl_jax.studies.study import check_choices, quiet_logs

  quiet_logs()
  check_choices(F.arms, hft.ARMS, "--arms")
  common.check_han_families(F.families)
  if F.reduced:
    for k, v in REDUCED.items():
      if not F[k].present:
        F[k].value = v
  lm = common.load_model(hft.EXPERIMENT)
  layers = htv.layers_by_family(F.families, F.layer, F.td_dir, F.model,
                                lm.n_layers)
  _, t = hft.run(lm, model=F.model, families=F.families, arms=F.arms,
                 layers=layers, n_train=F.n_train, n_eval=F.n_eval,
                 shots=F.shots, batch_size=F.batch_size, lr=F.lr,
                 weight_decay=F.weight_decay, rank=F.rank, alpha=F.alpha,
                 dropout=F.dropout, epochs=F.epochs, steps=F.steps,
                 seed=F.seed, loss_on=F.loss_on, out_dir=F.out_dir,
                 max_new_tokens=F.max_new_tokens, ckpt_every=F.ckpt_every)
  print(hft.table1_markdown(t, F.model))


if __name__ == "__main__":
  app.run(main)
