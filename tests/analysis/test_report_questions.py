"""Questions 1-2 and the per-experiment comparison rows on the report's
statistics: question 2's zero-rate bound counts distinct prompts (not cells
x prompts), question 1's best cell is chosen and estimated on disjoint
halves of the prompts, and every row compared with the original states N
and the pair count for ours and for the original."""

from __future__ import annotations

import json
from pathlib import Path

from icl_jax.analysis import reference as R
from icl_jax.analysis import report as REP
from icl_jax.analysis.report import questions, transfer
from icl_jax.analysis.report.data import Data
from icl_jax.analysis.stats import wilson_interval

PAIRS = [("uppercase", "repeat_word"), ("sentiment", "antonym"),
         ("uppercase", "first_letter")]


def cell(exp, s, t, layer, cond, hits=(), n=20, mode="faithful", **extra):
  """One result row whose prompts i in `hits` transferred (the target
  task's prompt set: query i is the same prompt in every cell)."""
  ex = [{"query": f"{t}-{i}", "output": "o",
         "label": "transfer" if i in hits else "preserve"}
        for i in range(n)]
  k = len(hits)
  return {"experiment": exp, "model": "m", "mode": mode, "source_task": s,
          "target_task": t, "layer": layer, "condition": cond, "n": n,
          "transfer": k / n, "preserve": 1 - k / n, "neither": 0.0,
          "n_layers": 24, "timing": "prefill", "examples": ex, **extra}


def data_of(tmp_path: Path, name: str, rows) -> Data:
  d = tmp_path / "runs" / "m" / name
  d.mkdir(parents=True)
  (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n"
                                           for r in rows))
  (d / "summary.json").write_text("{}")
  return Data([tmp_path / "runs"], tmp_path / "out")


def table_rows(text: str, first_only: bool = True) -> list[str]:
  """Model m's faithful rows of the text's first table (or every table)."""
  if first_only:
    text = text[text.index("| model |"):].split("\n\n")[0]
  return [l for l in text.splitlines() if l.startswith("| m | faithful |")]


def test_pooled_zero_bound_counts_distinct_prompts_not_cells(tmp_path):
  """72 cells (3 pairs x 24 layers) reuse the same 60 prompts: at 0
  transferred the bound is Wilson's at 0/60, never at 0/1440."""
  rows = [cell("main_prefill", s, t, l, "last_demo_token")
          for s, t in PAIRS for l in range(24)]
  text, out = questions.answer_single(data_of(tmp_path, "main_prefill",
                                              rows))
  (line,) = table_rows(text)
  distinct = 3 * 20  # three target tasks, 20 prompts each
  assert f"95% [0.000, {wilson_interval(0, distinct)[1]:.3f}]" in line
  assert f"{distinct} distinct prompts" in line
  assert f"per-cell bound at 0/20: {wilson_interval(0, 20)[1]:.2f}" in line
  cells_bound = wilson_interval(0, 72 * 20)[1]
  assert f"{cells_bound:.3f}" not in line  # the old cells-as-trials bound
  assert "**zero** (reproduced)" in line
  est = out[("m", "faithful", "like-for-like (prefill, K/V kept)")][
      "estimate"]
  assert est.hi > 2 * cells_bound


def test_one_real_cell_makes_single_position_not_zero(tmp_path):
  """A pooled rate near 0 does not hide a cell that transfers on held-out
  prompts: the claim is '0 at every layer'."""
  rows = [cell("main_prefill", s, t, l, "last_demo_token",
               hits=range(20) if (l, s) == (3, "sentiment") else ())
          for s, t in PAIRS for l in range(24)]
  text, _ = questions.answer_single(data_of(tmp_path, "main_prefill", rows))
  (line,) = table_rows(text)
  assert "**not zero** (not reproduced: a real effect where the original " \
      "found none) | a real effect in the best cell: sentiment->antonym " \
      "last_demo_token L3: 10/10" in line


def test_best_cell_is_chosen_and_estimated_on_disjoint_halves(tmp_path):
  """Cell L_i transfers on prompt i only: the cell chosen on one half
  transferred there, so on the held-out half it scores 0/10 (a best cell
  tested on the prompts that chose it would show 1/20 or 1/10)."""
  rows = [cell("main_prefill", *PAIRS[0], l, "all_demo", hits=(l,))
          for l in range(20)]
  picked, est = questions.best_cell(rows)
  assert picked["transfer"] == 1 / 20
  assert (est.value, est.n) == (0.0, 20)
  assert est.hi == wilson_interval(0, 10)[1]
  text, _ = questions.answer_multi(data_of(tmp_path, "main_prefill", rows))
  (line,) = table_rows(text)
  assert ": 0/10 = 0.00 [0.00, 0.28] on held-out prompts (best of 20 " \
      "cells, chosen on the other 10 prompts; 0.05 on all N=20)" in line
  # the original's 0.96 against an interval [0, 0.28]
  assert "**not reproduced** (below the original, no clear effect)" in line


def test_best_cell_keeps_a_real_effect_on_held_out_prompts():
  rows = [cell("main_prefill", *PAIRS[0], l, "all_demo",
               hits=range(20) if l == 7 else (l,)) for l in range(20)]
  picked, est = questions.best_cell(rows)
  assert picked["layer"] == 7 and est.value == 1.0
  assert "10/10 = 1.00" in est.text and "best of 20 cells" in est.text


def test_comparison_rows_state_n_and_pairs(tmp_path):
  """exp27 / exp30 / exp31 / exp32 / exp33 rows beside the original's
  numbers name our N and pair count and the original's."""
  two = PAIRS[:2]
  ctrl = [cell("controls", s, t, 8, c, n=10, hits=range(5))
          for s, t in two for c in R.EXP27_CONDITIONS]
  text = transfer.render_exp27(data_of(tmp_path / "a", "controls", ctrl),
                               ctrl)
  rows = table_rows(text)
  assert len(rows) == len(R.EXP27_CONDITIONS)
  for line in rows:
    assert "| N=10, 2 pair(s) |" in line
    assert f"| N={R.EXP27_N}, {len(R.EXP27)} pair(s) |" in line
  demos = [cell("source_demo_count", s, t, 8, "all_demo", source_k=k,
                n_positions=6 * k) for s, t in two for k in R.EXP30_K]
  text = transfer.render_exp30(data_of(tmp_path / "b", "source_demo_count",
                                       demos), demos)
  assert "| N=20, 2 pair(s) |" in table_rows(text)[0]
  assert f"| N={R.EXP30_N}, {len(R.EXP30)} pair(s) |" in text
  outs = [cell("output_positions", s, t, 8, "random_outputs", size=z)
          for s, t in two for z in R.EXP31_SIZES]
  text = transfer.render_exp31(data_of(tmp_path / "c", "output_positions",
                                       outs), outs)
  assert "| N=20, 2 pair(s) |" in table_rows(text)[0]
  assert f"| N={R.EXP31_N}, {len(R.EXP31)} pair(s) |" in text
  sent = [cell("sentiment_variants", s, t, 8, "all_demo", n=12)
          for s, t in list(R.EXP32)[:2]]
  text = transfer.render_exp32(data_of(tmp_path / "d", "sentiment_variants",
                                       sent), sent)
  for line in table_rows(text):
    assert "| N=12, 1 pair(s) |" in line
    assert f"| N={R.EXP32_N}, 1 pair(s) |" in line
  var = [cell("variable_length", s, t, 4, "all_demo", n=15)
         for s, t in list(R.EXP33_PART_B)[:2]]
  text = transfer.render_exp33(data_of(tmp_path / "e", "variable_length",
                                       var), var)
  best = [l for l in table_rows(text, False) if "->" in l]
  assert len(best) == 2 and all(
      f"| N=15, 1 pair(s) |" in l and l.count("N=15, 1 pair(s)") == 2
      for l in best)


def test_controls_on_too_few_prompts_are_not_testable(tmp_path):
  """exp27 at N=10 (e.g. true source = shuffled = 1/10): no verdict, 'not
  testable here (N=10 ...)' on every row, whatever the rates."""
  ctrl = [cell("controls", s, t, 5, c, n=10,
               hits=(0,) if c in ("true_source", "shuffled") else ())
          for s, t in PAIRS for c in R.EXP27_CONDITIONS]
  text = transfer.render_exp27(data_of(tmp_path, "controls", ctrl), ctrl)
  rows = table_rows(text)
  assert len(rows) == len(R.EXP27_CONDITIONS)
  for line in rows:
    assert line.endswith("| **not testable here** (N=10 prompts < 20) |")


def test_exp13_and_exp15_sections_state_n_and_pairs(tmp_path):
  """The generic exp13 / exp15 sections: the original's N and pairs in the
  reference sentence, ours beside it."""
  rows = [cell("instance_analysis", s, t, 5, "answer_tokens", n=12)
          for s, t in PAIRS]
  runs = data_of(tmp_path, "instance_analysis", rows).roots
  d = runs[0] / "m" / "cross_format"
  d.mkdir()
  (d / "results.jsonl").write_text(json.dumps(cell(
      "cross_format", "repeat_word", "repeat_comma", 8, "answer_tokens")) +
      "\n")
  text = REP.build_report(runs, tmp_path / "REPORT.md")
  exp13 = text.split("### exp13")[1].split("###")[0]
  assert f"original N={R.EXP13_N}, {len(R.EXP13)} pair(s)" in exp13
  assert "ours: m faithful N=12, 3 pair(s)" in exp13
  exp15 = text.split("### exp15")[1].split("###")[0]
  assert f"original N={R.EXP15_N}, {len(R.EXP15)} pair(s)" in exp15
  assert "ours: m faithful N=20, 1 pair(s)" in exp15


def test_best_cell_without_prompt_outcomes_gets_no_verdict():
  """Without per-prompt outcomes the best of K cells can only be tested on
  the prompts that chose it: shown, but not testable by the rule."""
  rows = [dict(cell("main_prefill", *PAIRS[0], l, "all_demo",
                    hits=range(18) if l == 3 else ()), examples=[])
          for l in range(6)]
  picked, est = questions.best_cell(rows)
  assert picked["layer"] == 3 and "18/20" in est.text
  assert "biased upward" in est.text and est.untestable


def test_question1_best_layer_is_held_out(tmp_path):
  """Layer l transfers on prompt l only (the pair mean is 1/20 at every
  layer on all prompts): the best layer chosen on one half of the prompts
  scores 0/10 on the other half, with the depth's bootstrap interval; the
  old in-sample column showed 0.05 at its argmax."""
  rows = [cell("main_prefill", *PAIRS[0], l, "all_demo", hits=(l,))
          for l in range(20)]
  s = questions.multi_summary(data_of(tmp_path, "main_prefill", rows), "m",
                              "faithful", rows)
  e = s["layer_est"]
  assert (e.value, e.hi) == (0.0, wilson_interval(0, 10)[1])
  assert "(best of 20 condition x layer choices on 10 prompts, estimated " \
      "on the other 10)" in e.text
  assert "bootstrap interval of the best layer's depth [" in s["depth_text"]
  text, _ = questions.answer_multi(data_of(tmp_path / "b", "main_prefill",
                                           rows))
  (line,) = table_rows(text)
  assert f"| {e.text} |" in line and "0.05 [" not in line.split("|")[5]


def test_question1_best_layer_without_outcomes_is_labelled_in_sample(
    tmp_path):
  rows = [dict(cell("main_prefill", *PAIRS[0], l, "all_demo",
                    hits=range(18) if l == 3 else ()), examples=[])
          for l in range(6)]
  s = questions.multi_summary(data_of(tmp_path, "main_prefill", rows), "m",
                              "faithful", rows)
  assert s["layer"] == 3 and "in-sample (biased upward" in s[
      "layer_est"].text
  assert s["layer_est"].untestable and "in-sample" in s["depth_text"]


def test_question2_and_summary_share_one_single_position_estimate(tmp_path):
  """Where they used to disagree (qwen2.5-0.5b aligned): one cell of 144
  transfers on half of its prompts, so the pair mean at the best layer is
  inconclusive (the summary said 'not testable') while the held-out best
  cell is a real effect (question 2 said 'not zero'). Both now read
  `questions.zero_estimate`: the same text and the same verdict."""
  from icl_jax.analysis.report import summary

  pre = [cell("main_prefill", s, t, l, "last_demo_token", mode="aligned",
              hits=range(0, 20, 2) if (s, l) == ("sentiment", 3) else ())
         for s, t in R.EXP8_PAIRS for l in range(24)]
  d2 = [cell("main_single_d2", s, t, l, "last_demo_token", timing="d2")
        for s, t in R.EXP8_PAIRS for l in range(24)]
  root = data_of(tmp_path, "main_prefill", pre).roots[0]
  d = root / "m" / "main_single_d2"
  d.mkdir()
  (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n"
                                           for r in d2))
  data = Data([root], tmp_path / "out")
  # the two old estimators on these rows disagree
  from icl_jax.analysis.report.estimates import best_layer_estimate
  from icl_jax.analysis.report.verdicts import judge
  aligned = [r for r in pre if r["mode"] == "aligned"]
  assert judge(0.0, best_layer_estimate(aligned, 24)[0], "null")[0] == \
      "not testable here"
  assert judge(0.0, questions.best_cell(aligned)[1], "null")[0] == \
      "not reproduced"
  text, _ = questions.answer_single(data)
  (row,) = [r for r in summary.summary_rows(data)
            if r[1] == "single-position transfer is 0 at every layer"]
  q2 = {l.split(" | ")[1] + l.split(" | ")[2]: l.split(" | ")
        for l in text.splitlines() if l.startswith("| m |")}
  al = q2["alignedlike-for-like (prefill, K/V kept) = the summary's"]
  fa = q2["faithfulstudy's D2 (first token only) = the summary's"]
  assert al[4] == row[3] and fa[4] == row[2]
  assert al[3].startswith("**not zero** (not reproduced")
  assert fa[3].startswith("**zero** (reproduced")
  assert row[6] == ("**artifact** (as run: reproduced; corrected: not "
                    "reproduced)")


def test_summary_reads_each_models_own_rows(tmp_path):
  """Model 'a' has an exp23 run, model 'b' only the main job: b's transfer
  claims come from its main-job rows (they used to be dropped because
  a's exp23 rows were taken as the source for every model)."""
  from icl_jax.analysis.report import summary

  stats = [cell("proper_stats", *PAIRS[0], l, "all_demo", model="a",
                hits=range(10)) for l in range(4)]
  main = [cell("main_prefill", *PAIRS[0], l, "all_demo", model="b",
               hits=range(12) if l == 2 else ()) for l in range(4)]
  root = data_of(tmp_path, "proper_stats", stats).roots[0]
  d = root / "b" / "main_prefill"
  d.mkdir(parents=True)
  (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n"
                                           for r in main))
  rows = summary.summary_rows(Data([root], tmp_path / "out"))
  claim = "uppercase->repeat_word all_demo transfers"
  assert {r[0] for r in rows if r[1] == claim} == {"a", "b"}
  (b,) = [r for r in rows if r[0] == "b" and r[1] == claim]
  assert " at L2 (best of 4 layers" in b[2]
