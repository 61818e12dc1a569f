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
Re-running recomputes everything (cheap).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from absl import app, flags

from experiments import common
from icl_jax.analysis.results import read_rows
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
EXPERIMENT = "tokenization"


def n_tok(tok, text):
  return len(tok.encode(text, add_special_tokens=False))


def first_query(task):
  from icl_jax.tasks import get_task

  return get_task(task).generate_test_inputs(1)[0]


def prompt_for(task, query):
  from icl_jax.tasks import build_prompt, get_task

  return build_prompt(get_task(task).generate_demos(5), query)


def task_row(tok, task, model):
  from icl_jax.tasks import get_task

  demos = get_task(task).generate_demos(5)
  spec = prompt_for(task, first_query(task))
  out_counts = [n_tok(tok, " " + y) for _, y in demos]
  in_counts = [n_tok(tok, " " + x) for x, _ in demos]
  return {"experiment": EXPERIMENT, "model": model, "mode": "tokenizer",
          "source_task": task, "target_task": task, "layer": None,
          "condition": "task_tokens", "n": 5,
          "output_tokens": out_counts, "input_tokens": in_counts,
          "mean_output_tokens": sum(out_counts) / 5,
          "mean_input_tokens": sum(in_counts) / 5,
          "prompt_tokens_no_special": n_tok(tok, spec.text),
          "examples": []}


def tokenizer_facts(tok):
  with_special = tok("x\n\ny", add_special_tokens=True)["input_ids"]
  plain = tok("x\n\ny", add_special_tokens=False)["input_ids"]
  return {"adds_bos": len(with_special) > len(plain),
          "double_newline_one_token": n_tok(tok, "\n\n") == 1,
          "newline_tokens": n_tok(tok, "\n")}


def pair_layout_rows(tok, s, t, model):
  """Faithful and aligned position facts for one ordered pair."""
  from icl_jax import tasks as T

  q = first_query(t)
  src = prompt_for(s, q)
  tgt = prompt_for(t, q)
  src_lay = T.token_layout(tok, src)
  tgt_lay = T.token_layout(tok, tgt)
  fp = T.faithful_positions(tok, src.text)
  f_all = set(fp["all_demo"])
  query_slots = [r.index for r in tgt_lay.records if r.segment == "query"]
  final = len(tgt_lay) - 1
  overwritten = sorted(i for i in f_all if i in set(query_slots))
  real_src = set(src_lay.indices(src_lay.mask("all_demo")).tolist())
  drift = []
  for k in range(src.n_demos):
    comp = fp.get(f"output_line_{k}", [])
    real = src_lay.indices(src_lay.role_mask(
        ["output_label", "output_colon", "output_value"], [k])).tolist()
    drift.append(comp[0] - real[0] if comp and real else None)
  ldt = T.get_position_index(tok, src.text, "last_demo_token")
  ldt_role = src_lay.records[ldt].role if ldt < len(src_lay) else "none"
  base = {"experiment": EXPERIMENT, "model": model, "source_task": s,
          "target_task": t, "layer": None, "condition": "pair_layout",
          "n": 1, "query": q, "source_tokens": len(src_lay),
          "target_tokens": len(tgt_lay), "examples": []}
  faithful = {
      **base, "mode": "faithful", "n_positions": len(f_all),
      "query_tokens_overwritten": len(overwritten),
      "final_token_overwritten": final in f_all,
      "overwritten_slots": overwritten,
      "real_demo_tokens_missed": len(real_src - f_all),
      "non_demo_tokens_hit": len(f_all - real_src),
      "output_line_drift": drift,
      "last_demo_token_role": ldt_role}
  groups_s, groups_t = {}, {}
  for lay, g in ((src_lay, groups_s), (tgt_lay, groups_t)):
    for r in lay.records:
      if r.segment == "demo" and r.role in (
          "input_label", "input_colon", "input_value", "output_label",
          "output_colon", "output_value"):
        g.setdefault((r.demo, r.role), []).append(r.index)
  mism = sorted(k for k in groups_s if len(groups_s[k]) !=
                len(groups_t.get(k, [])))
  s_i, _ = T.map_positions(src_lay, tgt_lay, "all_demo", "skip")
  aligned = {**base, "mode": "aligned", "n_positions": int(len(s_i)),
             "mismatched_groups": len(mism),
             "mismatched_roles": sorted({r for _, r in mism}),
             "query_tokens_overwritten": 0,
             "final_token_overwritten": False}
  return [faithful, aligned]


def our_rates(out_dir: Path, model: str, modes):
  """{(mode, source, target): (transfer, layer, source dir)} at the best
  layer (highest mean all_demo transfer) of each results dir."""
  from collections import defaultdict

  found = {}
  for exp in ("main_prefill", "multi_position", "pair_matrix"):
    p = out_dir / exp / "results.jsonl"
    if not p.exists():
      continue
    rows = read_rows(p)
    rows = [r for r in rows if r.get("condition") == "all_demo"
            and r.get("model") == model and r.get("mode") in modes
            and r.get("timing", "prefill") == "prefill"]
    by = defaultdict(list)
    for r in rows:
      by[(r["mode"], r["layer"])].append(r)
    for mode in modes:
      layers = {l: rs for (m, l), rs in by.items() if m == mode}
      if not layers:
        continue
      best = max(sorted(layers), key=lambda l: sum(
          r["transfer"] for r in layers[l]) / len(layers[l]))
      for r in layers[best]:
        found.setdefault((mode, r["source_task"], r["target_task"]),
                         (r["transfer"], best, exp))
  return found


def main(argv):
  del argv
  from icl_jax.analysis import figures
  from icl_jax.analysis import reference as R
  from icl_jax.analysis import similarity as S
  from icl_jax.analysis.results import RunDir
  from icl_jax.convert.tokenizers import load_tokenizer
  from icl_jax.studies import study, modes
  from icl_jax.tasks import get_task

  t0 = time.time()
  pairs = study.parse_pairs(F.pairs)
  modes = modes.parse_modes(F.mode)
  for t in list(F.layout_tasks) + list(F.tasks):
    get_task(t)
  tok = load_tokenizer(F.model)
  rd = RunDir(F.out_dir, EXPERIMENT,
              {"model": F.model, "pairs": [list(p) for p in pairs],
               "layout_tasks": list(F.layout_tasks),
               "tasks": list(F.tasks)})
  facts = tokenizer_facts(tok)
  rows = [task_row(tok, t, F.model) for t in F.tasks]
  counts = {r["source_task"]: r for r in rows}
  # The original's per-pair table and correlation (its 6 exp8 pairs).
  pair_rows = []
  for s, t in pairs:
    q = first_query(t)
    ls, lt = n_tok(tok, prompt_for(s, q).text), n_tok(tok,
                                                      prompt_for(t, q).text)
    so = counts[s]["output_tokens"] if s in counts else [
        n_tok(tok, " " + y) for _, y in get_task(s).generate_demos(5)]
    to = counts[t]["output_tokens"] if t in counts else [
        n_tok(tok, " " + y) for _, y in get_task(t).generate_demos(5)]
    pair_rows.append({
        "experiment": EXPERIMENT, "model": F.model, "mode": "tokenizer",
        "source_task": s, "target_task": t, "layer": None,
        "condition": "pair_lengths", "n": 1,
        "source_prompt_tokens": ls, "target_prompt_tokens": lt,
        "output_counts_match": so == to,
        "mean_output_token_diff": abs(sum(so) / 5 - sum(to) / 5),
        "examples": []})
  rows += pair_rows
  diffs = {(r["source_task"], r["target_task"]): r["mean_output_token_diff"]
           for r in pair_rows}
  corr = []
  ref_ps = [p for p in pairs if p in R.EXP28["hardcoded_rates"]]
  if len(ref_ps) >= 3:
    corr.append({"rates": "original hard-coded exp8 rates", "mode":
                 "faithful", **S.correlate(
                     [diffs[p] for p in ref_ps],
                     [R.EXP28["hardcoded_rates"][p] for p in ref_ps])})
  ours = our_rates(Path(F.out_dir), F.model, modes)
  for mode in modes:
    ps = [p for p in pairs if (mode, *p) in ours]
    if len(ps) >= 3:
      src = {ours[(mode, *p)][2] for p in ps}
      corr.append({"rates": f"our {'/'.join(sorted(src))} (best layer)",
                   "mode": mode, "layer": ours[(mode, *ps[0])][1],
                   **S.correlate([diffs[p] for p in ps],
                                 [ours[(mode, *p)][0] for p in ps])})
  for c in corr:
    rows.append({"experiment": EXPERIMENT, "model": F.model,
                 "mode": c["mode"], "source_task": "all",
                 "target_task": "all", "layer": c.get("layer"),
                 "condition": "correlation", "n": c["n_pairs"],
                 "examples": [], **c})
  layout = []
  for s, t in itertools.permutations(F.layout_tasks, 2):
    layout += pair_layout_rows(tok, s, t, F.model)
  rows += layout
  rd.replace_rows(rows)
  # Plot: query tokens overwritten by faithful all_demo (source x target).
  import numpy as np

  lt = list(F.layout_tasks)
  m = np.full((len(lt), len(lt)), np.nan)
  for r in layout:
    if r["mode"] == "faithful":
      m[lt.index(r["source_task"]), lt.index(r["target_task"])] = \
          r["query_tokens_overwritten"]
  figures.heatmap(m, lt, lt, rd.path / "pair_layout.png",
                  title=f"faithful all_demo: target query tokens overwritten "
                        f"({F.model} tokenizer)", vmin=0,
                  vmax=max(1.0, float(np.nanmax(m)) if m.size else 1.0),
                  cmap="magma")
  fl = [r for r in layout if r["mode"] == "faithful"]
  summary = {
      "seconds": time.time() - t0, "tokenizer": facts,
      "correlations": corr,
      "pairs_with_query_overwrite": sum(r["query_tokens_overwritten"] > 0
                                        for r in fl),
      "pairs_with_final_token_overwrite": sum(r["final_token_overwritten"]
                                              for r in fl),
      "layout_pairs": len(fl),
      "output_line_drift_uppercase": next(
          (r["output_line_drift"] for r in fl
           if r["source_task"] == "uppercase"), None),
      "last_demo_token_role": fl[0]["last_demo_token_role"] if fl else None,
  }
  rd.write_summary(summary)
  print(f"tokenizer {F.model}: BOS {facts['adds_bos']}, '\\n\\n' one token "
        f"{facts['double_newline_one_token']}; last_demo_token is a "
        f"{summary['last_demo_token_role']!r} token")
  print(f"faithful output-line drift per demo (uppercase): "
        f"{summary['output_line_drift_uppercase']}")
  print(f"faithful all_demo overwrites target query tokens in "
        f"{summary['pairs_with_query_overwrite']}/{len(fl)} ordered pairs "
        f"(the answer-predicting final token in "
        f"{summary['pairs_with_final_token_overwrite']})")
  for r in pair_rows:
    print(f"{r['source_task']:>12} -> {r['target_task']:<12} lengths "
          f"{r['source_prompt_tokens']}/{r['target_prompt_tokens']}, output "
          f"counts match {r['output_counts_match']}, |mean diff| "
          f"{r['mean_output_token_diff']:.2f}")
  for c in corr:
    if c.get("r") is not None:
      print(f"r(|mean output-token diff|, transfer) = {c['r']:+.4f} "
            f"[{c['rates']}, {c['mode']}, {c['n_pairs']} pairs]")
  print(f"results under {rd.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
