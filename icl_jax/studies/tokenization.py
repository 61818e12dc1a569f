"""exp28: tokenization analysis (protocol 8.20; tokenizer only, no model)
(`experiments/tokenization.py`).

Per task: token counts of " " + output / " " + input of the 5 demos and the
prompt length; per pair: source/target prompt lengths with the target's first
test input, whether the per-demo output token counts match and |mean
difference|, correlated with the original's hard-coded exp8 transfer rates
and with our own transfer rows; per ordered pair of layout tasks: the
position artifacts of the faithful index formula and the aligned mapping.
Rows: "task_tokens", "pair_lengths", "correlation", "pair_layout".
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from pathlib import Path

from icl_jax.analysis.results import read_rows

EXPERIMENT = "tokenization"
DEMO_ROLES = ("input_label", "input_colon", "input_value", "output_label",
              "output_colon", "output_value")


def n_tok(tok, text) -> int:
  """Tokens of `text` without special tokens."""
  return len(tok.encode(text, add_special_tokens=False))


def first_query(task):
  """The task's first test input (a fresh task: the first RNG call)."""
  from icl_jax.tasks import get_task

  return get_task(task).generate_test_inputs(1)[0]


def prompt_for(task, query):
  """The task's 5 fixed demos and `query` in the study's format."""
  from icl_jax.tasks import build_prompt, get_task

  return build_prompt(get_task(task).generate_demos(5), query)


def output_counts(tok, task) -> list[int]:
  """Tokens of " " + output of each of the task's 5 demos."""
  from icl_jax.tasks import get_task

  return [n_tok(tok, " " + y) for _, y in get_task(task).generate_demos(5)]


def task_row(tok, task, model):
  """Per-demo input/output token counts and the prompt length."""
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


def tokenizer_facts(tok, tasks=()) -> dict:
  """BOS added? "\\n\\n" one token alone, and inside the study's prompts
  (`tasks`' first prompts)? tokens of "\\n"."""
  with_special = tok("x\n\ny", add_special_tokens=True)["input_ids"]
  plain = tok("x\n\ny", add_special_tokens=False)["input_ids"]
  return {"adds_bos": len(with_special) > len(plain),
          "double_newline_one_token": n_tok(tok, "\n\n") == 1,
          "double_newline_in_prompts": separators_one_token(
              tok, [prompt_for(t, first_query(t)).text for t in tasks]),
          "newline_tokens": n_tok(tok, "\n")}


def double_newline_text(facts) -> str:
  """'\\n\\n' alone one token? and inside the study's prompts (k of n
  separators), in words."""
  alone = facts.get("double_newline_one_token")
  ctx = facts.get("double_newline_in_prompts") or {}
  text = f"'\\n\\n' alone is {'one token' if alone else 'several tokens'}"
  if ctx.get("separators"):
    text += (f"; inside the study's prompts {ctx['one_token']}/"
             f"{ctx['separators']} demo separators are one token")
  else:
    text += " (not checked inside prompts)"
  return text


def separators_one_token(tok, texts) -> dict:
  """How many of the "\\n\\n" demo separators in `texts` are exactly one
  token in context (a token spanning just those two characters): BPE may
  merge them with a neighbour inside a prompt although "\\n\\n" alone is
  one token."""
  n = one = 0
  for text in texts:
    spans = {tuple(o) for o in tok(text, add_special_tokens=False,
                                   return_offsets_mapping=True)
             ["offset_mapping"]}
    i = text.find("\n\n")
    while i >= 0:
      n += 1
      one += (i, i + 2) in spans
      i = text.find("\n\n", i + 2)
  return {"separators": n, "one_token": one}


def pair_length_row(tok, s, t, model, counts) -> dict:
  """The original's per-pair table: prompt lengths and output counts
  (`counts`: task_tokens rows by task, reused where present)."""
  q = first_query(t)
  ls, lt = n_tok(tok, prompt_for(s, q).text), n_tok(tok,
                                                    prompt_for(t, q).text)
  so = counts[s]["output_tokens"] if s in counts else output_counts(tok, s)
  to = counts[t]["output_tokens"] if t in counts else output_counts(tok, t)
  return {
      "experiment": EXPERIMENT, "model": model, "mode": "tokenizer",
      "source_task": s, "target_task": t, "layer": None,
      "condition": "pair_lengths", "n": 1,
      "source_prompt_tokens": ls, "target_prompt_tokens": lt,
      "output_counts_match": so == to,
      "mean_output_token_diff": abs(sum(so) / 5 - sum(to) / 5),
      "examples": []}


def _faithful_facts(tok, T, src, src_lay, tgt_lay) -> dict:
  """Where the faithful all_demo indices land for one ordered pair."""
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
  return {"mode": "faithful", "n_positions": len(f_all),
          "query_tokens_overwritten": len(overwritten),
          "final_token_overwritten": final in f_all,
          "overwritten_slots": overwritten,
          "real_demo_tokens_missed": len(real_src - f_all),
          "non_demo_tokens_hit": len(f_all - real_src),
          "output_line_drift": drift,
          "last_demo_token_role": ldt_role}


def _aligned_facts(T, src_lay, tgt_lay) -> dict:
  """Mismatched (demo, role) token groups and mapped positions."""
  groups_s, groups_t = {}, {}
  for lay, g in ((src_lay, groups_s), (tgt_lay, groups_t)):
    for r in lay.records:
      if r.segment == "demo" and r.role in DEMO_ROLES:
        g.setdefault((r.demo, r.role), []).append(r.index)
  mism = sorted(k for k in groups_s if len(groups_s[k]) !=
                len(groups_t.get(k, [])))
  s_i, _ = T.map_positions(src_lay, tgt_lay, "all_demo", "skip")
  return {"mode": "aligned", "n_positions": int(len(s_i)),
          "mismatched_groups": len(mism),
          "mismatched_roles": sorted({r for _, r in mism}),
          "query_tokens_overwritten": 0,
          "final_token_overwritten": False}


def pair_layout_rows(tok, s, t, model):
  """Faithful and aligned position facts for one ordered pair."""
  from icl_jax import tasks as T

  q = first_query(t)
  src = prompt_for(s, q)
  tgt = prompt_for(t, q)
  src_lay = T.token_layout(tok, src)
  tgt_lay = T.token_layout(tok, tgt)
  base = {"experiment": EXPERIMENT, "model": model, "source_task": s,
          "target_task": t, "layer": None, "condition": "pair_layout",
          "n": 1, "query": q, "source_tokens": len(src_lay),
          "target_tokens": len(tgt_lay), "examples": []}
  return [{**base, **_faithful_facts(tok, T, src, src_lay, tgt_lay)},
          {**base, **_aligned_facts(T, src_lay, tgt_lay)}]


def our_rates(out_dir: Path, model: str, modes):
  """{(mode, source, target): (transfer, layer, source dir)} at the best
  layer (highest mean all_demo transfer) of each results dir."""
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


def correlations(pairs, pair_rows, out_dir, model, modes) -> list[dict]:
  """r(|mean output-token diff|, transfer) against the original's rates and
  against our own transfer rows (per mode, >= 3 pairs)."""
  from icl_jax.analysis import reference as R
  from icl_jax.analysis import similarity as S

  diffs = {(r["source_task"], r["target_task"]): r["mean_output_token_diff"]
           for r in pair_rows}
  corr = []
  ref_ps = [p for p in pairs if p in R.EXP28["hardcoded_rates"]]
  if len(ref_ps) >= 3:
    corr.append({"rates": "original hard-coded exp8 rates", "mode":
                 "faithful", **S.correlate(
                     [diffs[p] for p in ref_ps],
                     [R.EXP28["hardcoded_rates"][p] for p in ref_ps])})
  ours = our_rates(Path(out_dir), model, modes)
  for mode in modes:
    ps = [p for p in pairs if (mode, *p) in ours]
    if len(ps) >= 3:
      src = {ours[(mode, *p)][2] for p in ps}
      corr.append({"rates": f"our {'/'.join(sorted(src))} (best layer)",
                   "mode": mode, "layer": ours[(mode, *ps[0])][1],
                   **S.correlate([diffs[p] for p in ps],
                                 [ours[(mode, *p)][0] for p in ps])})
  return corr


def summarize(facts, corr, layout, seconds) -> dict:
  """summary.json: tokenizer facts, correlations, faithful layout counts."""
  fl = [r for r in layout if r["mode"] == "faithful"]
  return {
      "seconds": seconds, "tokenizer": facts,
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


def run(tok, *, model, pairs, layout_tasks, tasks, modes, out_dir) -> dict:
  """Every row into <out_dir>/tokenization (recomputed each run), the plot
  and summary.json. Returns the summary plus "pair_rows" (not saved)."""
  from icl_jax.analysis.plots import layout_overwrites
  from icl_jax.analysis.results import RunDir

  t0 = time.time()
  rd = RunDir(out_dir, EXPERIMENT,
              {"model": model, "pairs": [list(p) for p in pairs],
               "layout_tasks": list(layout_tasks), "tasks": list(tasks)})
  facts = tokenizer_facts(tok, tasks)
  rows = [task_row(tok, t, model) for t in tasks]
  counts = {r["source_task"]: r for r in rows}
  # The original's per-pair table and correlation (its 6 exp8 pairs).
  pair_rows = [pair_length_row(tok, s, t, model, counts) for s, t in pairs]
  rows += pair_rows
  corr = correlations(pairs, pair_rows, out_dir, model, modes)
  for c in corr:
    rows.append({"experiment": EXPERIMENT, "model": model,
                 "mode": c["mode"], "source_task": "all",
                 "target_task": "all", "layer": c.get("layer"),
                 "condition": "correlation", "n": c["n_pairs"],
                 "examples": [], **c})
  layout = []
  for s, t in itertools.permutations(layout_tasks, 2):
    layout += pair_layout_rows(tok, s, t, model)
  rows += layout
  rd.replace_rows(rows)
  layout_overwrites(layout, list(layout_tasks), rd.path / "pair_layout.png",
                    model)
  summary = summarize(facts, corr, layout, time.time() - t0)
  rd.write_summary(summary)
  return {**summary, "pair_rows": pair_rows, "path": rd.path}


def format_report(result, model: str) -> str:
  """What the script prints: tokenizer facts, faithful artifacts, the pair
  table and the correlations."""
  facts = result["tokenizer"]
  lines = [
      f"tokenizer {model}: BOS {facts['adds_bos']}, "
      f"{double_newline_text(facts)}; last_demo_token is a "
      f"{result['last_demo_token_role']!r} token",
      f"faithful output-line drift per demo (uppercase): "
      f"{result['output_line_drift_uppercase']}",
      f"faithful all_demo overwrites target query tokens in "
      f"{result['pairs_with_query_overwrite']}/{result['layout_pairs']} "
      f"ordered pairs (the answer-predicting final token in "
      f"{result['pairs_with_final_token_overwrite']})"]
  for r in result["pair_rows"]:
    lines.append(
        f"{r['source_task']:>12} -> {r['target_task']:<12} lengths "
        f"{r['source_prompt_tokens']}/{r['target_prompt_tokens']}, output "
        f"counts match {r['output_counts_match']}, |mean diff| "
        f"{r['mean_output_token_diff']:.2f}")
  for c in result["correlations"]:
    if c.get("r") is not None:
      lines.append(f"r(|mean output-token diff|, transfer) = {c['r']:+.4f} "
                   f"[{c['rates']}, {c['mode']}, {c['n_pairs']} pairs]")
  lines.append(f"results under {result['path'].resolve()}")
  return "\n".join(lines)
