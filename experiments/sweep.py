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
from icl_jax.studies.scoring import AnswerScoring, TaskScoring

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

SOURCE_EDITS = ("replace", "add")


class MixedScoring:
  """Transfer from the target file's 3rd column or the source task;
  preserve from the target file's answers or the target task."""

  def __init__(self, source, target, source_is_task, target_is_task):
    from icl_jax.tasks import get_task

    self.source_task, self.target_task = source, target
    self._task = TaskScoring(source if source_is_task else None,
                                   target) if target_is_task else None
    self._src = get_task(source) if source_is_task else None
    self._file = AnswerScoring(source, target)
    self.target_is_task = target_is_task

  def judge(self, ep, text):
    from icl_jax import tasks as T

    if self.target_is_task:
      return self._task.judge(ep, text)
    j = self._file.judge(ep, text)
    if not ep.expected_source and self._src is not None:
      j.src_faithful = T.is_correct(self._src, text, ep.query, "faithful")
      j.src_strict = T.is_correct(self._src, text, ep.query, "strict")
    return j


def resolve_side(arg, n, fmt, k):
  """(name, is_task, prompts or None)."""
  from icl_jax.studies import prompt_files
  from icl_jax.tasks import UnknownTaskError, get_task

  try:
    get_task(arg)
    return arg, True, None
  except UnknownTaskError:
    if not prompt_files.looks_like_file(arg) and not Path(arg).exists():
      raise
  prompts = prompt_files.load_prompt_file(arg, fmt)
  return Path(arg).stem, False, prompts[:n]


def make_jobs(st, modes, sides, positions, n, edit, sigma, relative, scale,
              k, source_queries, on_mismatch, seed, fmt):
  import numpy as np

  from icl_jax.studies import positions, setups, modes
  from icl_jax.tasks import get_task, make_episodes

  jobs = []
  for mode in modes:
    objs = {}
    for (src, src_task, src_prompts), (tgt, tgt_task, tgt_prompts) in sides:
      if src_task and tgt_task and src is not None:
        setup = setups.setup_pairs([(src, tgt)], n, k_source=k, k=k,
                                  queries=source_queries, seed=seed,
                                  task_objects=objs)[0]
      else:
        if tgt_task:
          tgt_eps = make_episodes(objs.setdefault(tgt, get_task(tgt)),
                                  n, k=k)
        else:
          tgt_eps = tgt_prompts
        src_eps = None
        if src is not None:
          src_eps = (make_episodes(objs.setdefault(src, get_task(src)), n,
                                   k=k) if src_task else src_prompts)
        setup = setups.PairSetup(src, tgt, src_eps, tgt_eps)
      if fmt.name != "study":
        setup = _reformat(setup, fmt)
      scoring = MixedScoring(src, tgt, src_task, tgt_task)
      jobs.append(_job(mode, setup, scoring, st.layers, positions, edit,
                       sigma, relative, scale, on_mismatch, k, seed, np))
  return jobs


def _reformat(setup, fmt):
  """Task episodes rendered in another prompt format."""
  import dataclasses

  from icl_jax.studies.prompt_files import FilePrompt
  from icl_jax.tasks import build_prompt

  def conv(eps):
    if eps is None:
      return None
    out = []
    for e in eps:
      if isinstance(e, FilePrompt):
        out.append(e)
        continue
      out.append(FilePrompt(build_prompt(e.demos, e.query, fmt),
                            (e.expected,) if e.expected else (), (), e.task))
    return out

  return dataclasses.replace(setup, source_episodes=conv(
      setup.source_episodes), target_episodes=conv(setup.target_episodes))


def _job(mode, setup, scoring, layers, positions, edit, sigma, relative,
         scale, on_mismatch, k, seed, np):
  from icl_jax.studies import plans, positions

  cells = [{"layer": int(l), "condition": p} for p in positions
           for l in layers]

  def build(engine, targets, todo):
    tok = engine.lm.tokenizer
    out = []
    resid = lengths = None
    maps = {}
    for c in todo:
      layer, pos = c["layer"], c["condition"]
      meta = {"edit": edit}
      if edit in SOURCE_EDITS:
        if resid is None:
          resid, lengths = plans.capture_sources(engine,
                                                 setup.source_episodes)
        if pos not in maps:
          maps[pos] = plans.position_map(engine, mode, setup.source_episodes,
                                         setup.target_episodes, pos,
                                         targets.slots, lengths, k,
                                         on_mismatch)
        p = plans.replace_plan(resid, layer, pos, maps[pos], edit=edit,
                               scale=scale)
        p.meta.update(meta)
        if engine.timing == "every_step" and len(p.tgt_idx):
          p.decode_values = np.asarray(p.values).mean(0)
        out.append(p)
        continue
      if pos not in maps:
        if pos == "all_tokens":
          maps[pos] = list(range(targets.slots))
        else:
          maps[pos] = positions.target_positions(tok, mode,
                                             setup.target_episodes, pos,
                                             targets.slots, k)
      idx = maps[pos]
      values = None
      if edit == "mean_ablate":
        r = targets.residual(layer + 1)  # [N,T,D]
        valid = np.arange(targets.slots)[None] < targets.lengths[:, None]
        values = r[valid].mean(0)
      out.append(plans.Plan(layer, pos, idx, edit=edit, values=values,
                            sigma=sigma if edit == "noise" else 0.0,
                            relative=relative,
                            seed=int(seed * 1000003 + layer * 101 +
                                     positions_index(pos)), meta=meta))
    return out

  label = f"{setup.source_task or '-'} -> {setup.target_task} ({edit})"
  return plans.Job(mode, setup, scoring, cells, build, label)


def file_digest(path) -> str:
  """Content hash of a prompt file (a changed file = another config)."""
  import hashlib

  return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]


def positions_index(name: str) -> int:
  return sum(ord(ch) for ch in name) % 9973


def main(argv):
  del argv
  from icl_jax.analysis.plots import transfer_by_layer
  from icl_jax.analysis.results import check_path_part
  from icl_jax.studies import study, positions, modes
  from icl_jax.tasks import ARROW_FORMAT, STUDY_FORMAT

  study.quiet_logs()
  check_path_part(F.experiment, "--experiment")  # stays under --out_dir
  modes = modes.parse_modes(F.mode)
  n = study.check_positive(F.n, "--n")
  study.check_positive(F.max_new_tokens, "--max_new_tokens")
  fmt = ARROW_FORMAT if F.prompt_format == "arrow" else STUDY_FORMAT
  if F.timing == "every_step" and F.edit not in ("add", "noise"):
    raise ValueError("--timing=every_step needs --edit=add or noise")
  if not F.positions:
    raise ValueError("--positions is empty")
  for p in F.positions:
    for m in modes:
      if p != "all_tokens":
        positions.check_condition(p, m)
  if F.positions and "all_tokens" in F.positions and F.edit in SOURCE_EDITS:
    raise ValueError("position set 'all_tokens' is for source-free edits")
  if F.target or F.source:
    if not F.target:
      raise ValueError("--source needs --target")
    tgt = resolve_side(F.target, n, fmt, F.k)
    src = (resolve_side(F.source, n, fmt, F.k) if F.source
           else (None, False, None))
    sides = [(src, tgt)]
  else:
    sides = [((s, True, None), (t, True, None))
             for s, t in study.parse_pairs(F.pairs)]
  for (s, _, _), _t in sides:
    if F.edit in SOURCE_EDITS and s is None:
      raise ValueError(f"--edit={F.edit} needs a source (--source or "
                       "--pairs)")
  if fmt.name != "study" and "faithful" in modes:
    raise ValueError("faithful mode's index formula assumes the study's "
                     "prompt format; use --mode=aligned with "
                     "--prompt_format=arrow")

  def check(lm):
    # Faithful position names against the tokenizer's own position table.
    from icl_jax.tasks import build_prompt, get_task

    if "faithful" in modes:
      example = build_prompt(get_task("uppercase").generate_demos(F.k),
                             "honey").text
      for p in F.positions:
        if p != "all_tokens":
          positions.check_condition(p, "faithful", lm.tokenizer, example, F.k)

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
                        check=check)
  jobs = make_jobs(st, modes, sides, list(F.positions), n, F.edit, F.sigma,
                   F.relative_noise, F.scale, F.k, F.source_queries,
                   F.on_mismatch, F.seed, fmt)
  rows = st.run(jobs)
  metric = "transfer" if F.edit in SOURCE_EDITS else "preserve"
  transfer_by_layer(rows, st.path / f"{metric}_by_layer.png", metric=metric,
                    title=f"{F.experiment}: {F.edit} on {F.model}")
  st.finish()
  by = {}
  for r in rows:
    k = (r["mode"], r["source_task"], r["target_task"], r["condition"])
    if k not in by or r[metric] > by[k][metric]:
      by[k] = r
  for (mode, s, t, c), r in sorted(by.items(), key=str):
    print(f"{mode:9} {s or '-'} -> {t} {c:14} best layer {r['layer']:>3}: "
          f"transfer {r['transfer']:.2f} preserve {r['preserve']:.2f} "
          f"neither {r['neither']:.2f} (n={r['n']})")
  print(f"results under {st.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
