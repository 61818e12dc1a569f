r"""exp28: tokenization analysis (protocol 8.20; tokenizer only, no model).

    python experiments/tokenization.py --model=gemma3-270m

The original (Llama-3 tokenizer): per task, token counts of " " + output and
" " + input for the 5 demos and the prompt length (no special tokens); per
exp8 pair, source/target prompt lengths built with the target's first test
input, whether the per-demo output token counts match, |mean difference|,
and Pearson r between that difference and the exp8 transfer rates it
hard-coded (0.9 for uppercase->repeat_word, 0.1 for sentiment->antonym, 0
otherwise): r = -0.3523 on 6 points.

We compute the same with the model's tokenizer, correlate with the
hard-coded rates *and* with our own transfer rows when <out_dir> holds them
(main_prefill, multi_position or pair_matrix; `all_demo`, per mode at the
best layer), and add what the original did not measure -- the position
artifacts of protocol 5.2 / 11.1 on this tokenizer, for every ordered pair
of `--layout_tasks` (default: the 8 core tasks):

  faithful: BOS added?  "\n\n" one token?  drift of the computed output-line
    index vs the real output-line token per demo; how many of the target's
    query tokens the source's all_demo index set overwrites (and whether
    the answer-predicting final token is among them); how many real demo
    tokens all_demo misses; what `last_demo_token` really is;
  aligned: how many (demo, role) groups differ in token count between source
    and target (skipped with --on_mismatch=skip) and how many positions map.

Rows: condition "task_tokens" (per task), "pair_layout" (per pair, mode
faithful and aligned), "correlation" (per rate source). Writes
<out_dir>/tokenization/{results.jsonl, summary.json, pair_layout.png}.
Re-running recomputes everything (cheap). See
`icl_jax/studies/tokenization.py`.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common
from icl_jax.tasks import CORE_TASKS

flags.DEFINE_string("model", "gemma3-270m", "model whose tokenizer to use")
flags.DEFINE_string("out_dir", "runs", "results root")
flags.DEFINE_string("pairs", ",".join(f"{s}:{t}" for s, t in
                                      common.EXP8_PAIRS),
                    "pairs for the original's length/transfer correlation")
flags.DEFINE_list("layout_tasks", list(CORE_TASKS),
                  "tasks whose ordered pairs get the position analysis")
flags.DEFINE_list("tasks", list(CORE_TASKS), "tasks for the per-task table")
flags.DEFINE_enum("mode", "both", ["faithful", "aligned", "both"],
                  "modes of our transfer rows to correlate with")
F = flags.FLAGS


def main(argv):
  del argv
  from icl_jax.convert.tokenizers import load_tokenizer
  from icl_jax.studies import modes as modes_lib
  from icl_jax.studies import study, tokenization
  from icl_jax.tasks import get_task

  pairs = study.parse_pairs(F.pairs)
  modes = modes_lib.parse_modes(F.mode)
  for t in list(F.layout_tasks) + list(F.tasks):
    get_task(t)
  tok = load_tokenizer(F.model)
  result = tokenization.run(tok, model=F.model, pairs=pairs,
                            layout_tasks=F.layout_tasks, tasks=F.tasks,
                            modes=modes, out_dir=F.out_dir)
  print(tokenization.format_report(result, F.model))


if __name__ == "__main__":
  app.run(main)
