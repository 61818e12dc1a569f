r"""Generic vectorized ablation / patching sweep.

    # source -> target activation patching, every layer, both modes
    python experiments/sweep.py --pairs=uppercase:repeat_word \
        --positions=all_demo,output_only --n=20

    # noise at the query word (relative to the residual's RMS), layers 0-8
    python experiments/sweep.py --target=uppercase --edit=noise --sigma=3 \
        --relative_noise --positions=first_query_token --layers=0,2,4,6,8

    # your own prompts (see icl_jax/studies/prompt_files.py)
    python experiments/sweep.py --source=src.txt --target=tgt.txt \
        --mode=aligned --positions=output_only --experiment=my_sweep

What varies (one engine sweep per (mode, pair): every layer x position set
is one batch of cells):

  --model       any supported model (embedded name, .gguf, HF directory)
  --pairs       source:target task pairs, or --source/--target: a task name
                or a prompt file (.txt with marked spans, .jsonl); the
                format is documented in icl_jax/studies/prompt_files.py
  --edit        replace (source activations; the study's transplant), add
                (source activations x --scale added), noise (Gaussian,
                --sigma, --relative_noise = in units of the residual's RMS at
                each position), zero, mean_ablate (the mean clean residual of
                the target prompts at that layer), skip (block output :=
                block input)
  --positions   position sets. faithful: the study's index formulas
                (all_demo, output_only, input_only, last_demo, input_line_k,
                output_line_k, last_demo_token, separator_after_demo,
                first_query_token, answer_tokens[_k]); aligned: token-exact
                sets (all_demo, output_only = answer tokens, output_line,
                input_values, labels, separators, last_demo_answer_token,
                last_demo_separator, query_value, final_token, ...; "name@k"
                = demo k only). "all_tokens" = every prompt token (for
                source-free edits).
  --timing      prefill (edit the prompt forward; patched K/V persist: the
                study's D3), first_token (only the first generated token
                sees the edit: the study's D2), every_step (prefill + the
                edit at every generated token; add/noise only)
  --layers      all (default), study, or a comma list
  --mode        faithful | aligned | both

Prompt files (full spec in icl_jax/studies/prompt_files.py):

  .txt    one prompt per line, "\n" escapes, demo answers in [[...]], demo
          inputs in {{...}} (optional), the query input in <<...>>
          (optional); optional TAB columns: target answer(s), then the
          answer(s) that count as transfer (alternatives " || "):
          Input: {{apple}}\nOutput: [[APPLE]]\n\nInput: <<honey>>\nOutput:<TAB>HONEY<TAB>honey honey
  .jsonl  {"demos": [["apple", "APPLE"], ...], "query": "honey",
           "answer": "HONEY", "source_answer": "honey honey"}

Scoring: with tasks, the tasks' faithful (faithful mode) or strict (aligned
mode) scorers, source-first classification; with prompt files, exact match
against the answer columns of the target file (column 2: target answers,
column 3: what counts as transfer). Source-free edits report transfer 0 and
preserve = target accuracy.

Results: <out_dir>/<experiment>/results.jsonl (DESIGN.md rows, resumable),
summary.json, transfer_by_layer.png (preserve_by_layer.png for source-free
edits).
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from experiments import common

common.define_common_flags(default_pairs=(("uppercase", "repeat_word"),),
                           default_n=10)
flags.DEFINE_string("source", None, "source task or prompt file "
                    "(overrides --pairs)")
flags.DEFINE_string("target", None, "target task or prompt file "
                    "(overrides --pairs)")
flags.DEFINE_enum("edit", "replace", ["replace", "add", "noise", "zero",
                                      "mean_ablate", "skip"], "the edit")
flags.DEFINE_list("positions", ["all_demo"], "position sets")
flags.DEFINE_enum("timing", "prefill", ["prefill", "first_token",
                                        "every_step"], "when the edit applies")
flags.DEFINE_float("sigma", 1.0, "noise scale")
flags.DEFINE_boolean("relative_noise", False, "noise in units of the "
                     "residual RMS at each position")
flags.DEFINE_float("scale", 1.0, "multiplier of source values (add)")
flags.DEFINE_string("experiment", "sweep", "results subdirectory name")
common.define_on_mismatch_flag()
flags.DEFINE_enum("prompt_format", "study", ["study", "arrow"],
                  "prompt format of task prompts and .jsonl files")
flags.DEFINE_integer("k", 5, "demos per task prompt", lower_bound=1)
flags.DEFINE_enum("source_queries", "own", ["own", "target", "source"],
                  "task prompts: whose test inputs the source/target use")
F = flags.FLAGS


def main(argv):
  del argv
  from icl_jax.analysis.plots import transfer_by_layer
  from icl_jax.analysis.results import check_path_part
  from icl_jax.studies import modes as modes_lib
  from icl_jax.studies import study, sweep
  from icl_jax.studies.prompt_files import file_digest

  study.quiet_logs()
  check_path_part(F.experiment, "--experiment")  # stays under --out_dir
  modes = modes_lib.parse_modes(F.mode)
  n = study.check_positive(F.n, "--n")
  study.check_positive(F.max_new_tokens, "--max_new_tokens")
  fmt = sweep.prompt_format(F.prompt_format)
  sweep.check_options(modes, F.edit, F.timing, F.positions)
  sides = sweep.resolve_sides(F.pairs, F.source, F.target, n, fmt)
  sweep.check_sides(sides, F.edit, fmt, modes)
  config = dict(
      sides=[[s[0], t[0]] for s, t in sides],
      files={x: file_digest(x) for x in (F.source, F.target)
             if x and Path(x).is_file()}, n=n, edit=F.edit,
      positions=list(F.positions), sigma=F.sigma,
      relative_noise=F.relative_noise, scale=F.scale, k=F.k,
      source_queries=F.source_queries, prompt_format=F.prompt_format,
      on_mismatch=F.on_mismatch, seed=F.seed)
  st = study.open_study(experiment=F.experiment, model=F.model,
                        out_dir=F.out_dir, config=config, layers=F.layers,
                        modes=modes, dtype=F.dtype,
                        max_new_tokens=F.max_new_tokens, timing=F.timing,
                        check=sweep.position_check(modes, F.positions, F.k))
  jobs = sweep.make_jobs(st, modes, sides, list(F.positions), n, F.edit,
                         F.sigma, F.relative_noise, F.scale, F.k,
                         F.source_queries, F.on_mismatch, F.seed, fmt)
  rows = st.run(jobs)
  metric = sweep.metric_of(F.edit)
  transfer_by_layer(rows, st.path / f"{metric}_by_layer.png", metric=metric,
                    title=f"{F.experiment}: {F.edit} on {F.model}")
  st.finish()
  best = sweep.format_best(rows, metric)
  if best:
    print(best)
  print(f"results under {st.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
