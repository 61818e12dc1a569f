"""The summary table's verdicts follow the one stated rule: synthetic rows
for claims whose verdicts are reproduced / weaker / not reproduced /
artifact / not testable, the expected verdict recomputed here from an
interval computed independently (own prompt bootstrap, or by hand)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from icl_jax.analysis import cluster_stats as CS
from icl_jax.analysis import report as REP
from icl_jax.analysis.report import summary, verdicts as V
from icl_jax.analysis.report.verdicts import Estimate

N_LAYERS = 18
SENTS = ("sentiment", "sentiment_goodbad", "sentiment_symbol")
DEMO_PAIRS = [("uppercase", "repeat_word"), ("first_letter", "repeat_word"),
              ("uppercase", "sentiment")]


def _row(exp, mode, s, t, layer, cond, hits, n, model="m", **extra):
  """A row whose prompts i in `hits` transferred (queries are per target
  task, as the scripts' target prompt sets are)."""
  ex = [{"query": f"{t}-{i}", "output": "o",
         "label": "transfer" if i in hits else "preserve"} for i in range(n)]
  return {"experiment": exp, "model": model, "mode": mode, "source_task": s,
          "target_task": t, "layer": layer, "condition": cond, "n": n,
          "transfer": len(hits) / n, "preserve": 1 - len(hits) / n,
          "n_layers": N_LAYERS, "timing": "prefill", "examples": ex, **extra}


def _write(root: Path, name: str, rows):
  d = root / "m" / name
  d.mkdir(parents=True, exist_ok=True)
  (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n"
                                           for r in rows))
  (d / "summary.json").write_text("{}")


def _every(frac, n):
  """round(frac * n) prompts, spread evenly over the n."""
  return {i for i in range(n) if int((i + 1) * frac) > int(i * frac)}


@pytest.fixture
def runs(tmp_path):
  root = tmp_path / "runs"
  # exp30: k=5 transfers half the prompts (weaker than 0.933), k<=3 too
  # (a real effect where the original found 0: not reproduced)
  _write(root, "source_demo_count", [
      _row("source_demo_count", mode, s, t, 5, "all_demo",
           _every(0.5, 40), 40, source_k=k)
      for mode in ("faithful", "aligned") for s, t in DEMO_PAIRS
      for k in (1, 3, 5)])
  # exp31: all outputs transfer nothing (0.90 not reproduced: no effect)
  _write(root, "output_positions", [
      _row("output_positions", mode, s, t, 5, cond, hits, 40)
      for mode in ("faithful", "aligned") for s, t in DEMO_PAIRS
      for cond, hits in (("all_positions", _every(0.25, 40)),
                         ("all_outputs", set()))])
  # exp32: variants transfer 0.6 as run, nothing corrected (artifact)
  _write(root, "sentiment_variants", [
      _row("sentiment_variants", mode, s, t, 5, "all_demo",
           _every(0.6, 20) if mode == "faithful" else set(), 20)
      for mode in ("faithful", "aligned")
      for s, t in itertools.permutations(SENTS, 2)])
  # exp27: controls on 10 prompts (not testable); the true source transfers
  _write(root, "controls", [
      _row("controls", mode, "uppercase", "repeat_word", 5, cond, hits, 10)
      for mode in ("faithful", "aligned")
      for cond, hits in (("true_source", set(range(8))),
                         ("shuffled", {0}), ("noise", set()))])
  # main job: the headline pair transfers every prompt at L5 (reproduced)
  _write(root, "main_prefill", [
      _row("main_prefill", mode, "uppercase", "repeat_word", layer, cond,
           set(range(40)) if layer == 5 else set(), 40)
      for mode in ("faithful", "aligned") for layer in range(6)
      for cond in ("all_demo", "output_only")])
  return root


def _boot(strata: list[np.ndarray], n_boot=4000, seed=7):
  """Own percentile interval of the pooled rate: per prompt set (stratum,
  an array [cells, prompts]) resample its prompt columns with replacement;
  the rate is all resampled outcomes over their count."""
  rng = np.random.default_rng(seed)
  total = sum(m.size for m in strata)
  means = []
  for _ in range(n_boot):
    hits = 0.0
    for m in strata:
      hits += m[:, rng.integers(0, m.shape[1], m.shape[1])].sum()
    means.append(hits / total)
  lo, hi = np.percentile(means, [2.5, 97.5])
  return sum(m.sum() for m in strata) / total, lo, hi


def _wilson_hi(k, n, z=1.959964):
  p = k / n
  return (p + z * z / (2 * n) + z * math.sqrt(
      p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)


def _expected(original, v, lo, hi, null=False):
  """The stated rule, written out again for effect and null claims."""
  if null:
    return ("not reproduced" if lo >= V.EFFECT_FLOOR else "reproduced"
            if hi < V.NULL_CEILING else "not testable here")
  if lo <= original <= hi or abs(v - original) <= V.MARGIN:
    return "reproduced"
  return "weaker" if lo >= V.EFFECT_FLOOR else "not reproduced"


def _verdict(rows, claim):
  (r,) = [r for r in rows if r[1] == claim]
  return r[6]


def test_summary_verdicts_follow_the_stated_rule(runs, tmp_path):
  data = REP.Data([runs], tmp_path)
  rows = summary.summary_rows(data)
  half = np.array([float(i in _every(0.5, 40)) for i in range(40)])
  # weaker: 3 pairs x 40 prompts at 0.5, own bootstrap over prompt sets
  # (the pairs with target repeat_word share one prompt set)
  v, lo, hi = _boot([np.stack([half, half]), half[None]])
  want = _expected(0.933, v, lo, hi)
  assert want == "weaker"
  assert _verdict(rows, "5 source demos transfer").startswith(f"**{want}**")
  # not reproduced (a null claim): k=1 and k=3 transfer half the prompts
  v, lo, hi = _boot([np.stack([half] * 4), np.stack([half] * 2)])
  want = _expected(0.0, v, lo, hi, null=True)
  assert want == "not reproduced"
  assert _verdict(rows, "1-3 source demos give 0%").startswith(
      f"**{want}**")
  # not reproduced (no effect): 0 of 80 distinct prompts, Wilson's bound by
  # hand (the bootstrap of all zeros is degenerate)
  hi = _wilson_hi(0, 80)
  assert hi < V.EFFECT_FLOOR
  want = _expected(0.90, 0.0, 0.0, hi)
  assert want == "not reproduced"
  assert _verdict(rows, "all output positions transfer").startswith(
      f"**{want}**")
  # artifact: 0.6 as run (reproduces 0.583), 0 of 60 prompts corrected
  run = np.array([float(i in _every(0.6, 20)) for i in range(20)])
  v, lo, hi = _boot([np.stack([run, run])] * 3)
  assert _expected(0.583, v, lo, hi) == "reproduced"
  assert _expected(0.583, 0.0, 0.0, _wilson_hi(0, 60)) == "not reproduced"
  assert _verdict(rows, "sentiment variants transfer").startswith(
      "**artifact**")
  # not testable: controls judged on 10 prompts
  assert _verdict(rows, "controls (random source, shuffled, noise) give "
                  "0%").startswith("**not testable here** (N=10 prompts")
  # reproduced: 20/20 held-out prompts at L5, Wilson by hand includes 0.96
  lo = 1 / (1 + 1.959964 ** 2 / 20)
  assert lo <= 0.96
  line = _verdict(rows, "uppercase->repeat_word all_demo transfers")
  assert line == "**reproduced**"
  (head,) = [r for r in rows if r[1].startswith("uppercase->repeat_word "
                                                 "all_demo")]
  assert "at L5 (best of 6 layers on 20 prompts" in head[2]
  assert "L0 (embedding output) 0.00" in head[2]
  assert head[5] == "N=40, 1 pair(s)"


def test_baseline_below_the_floor_makes_a_claim_untestable(runs, tmp_path):
  _write(runs, "baseline", [
      {"experiment": "baseline", "model": "m", "mode": "faithful",
       "source_task": t, "target_task": t, "layer": None,
       "condition": "baseline", "n": 50, "accuracy_faithful": acc,
       "accuracy_strict": acc, "examples": []}
      for t, acc in (("uppercase", 0.9), ("repeat_word", 0.3))])
  rows = summary.summary_rows(REP.Data([runs], tmp_path))
  assert _verdict(rows, "uppercase->repeat_word all_demo transfers") == (
      "**not testable here** (baseline accuracy < 0.5: repeat_word 0.30)")


def test_rule_by_hand():
  """Hand-checked cases, including the issue's 0.26 against 0.96."""
  e = lambda v, lo, hi, n=50: Estimate(v, lo, hi, n=n)
  assert V.judge(0.96, e(0.26, 0.12, 0.41)) == ("weaker", "")
  assert V.judge(0.96, e(0.85, 0.70, 0.93))[0] == "reproduced"  # margin
  assert V.judge(0.96, e(0.02, 0.0, 0.04))[1] == "no effect"
  assert V.judge(0.0, e(0.0, 0.0, 0.16, n=20), "null")[0] == "reproduced"
  assert V.judge(0.0, e(0.0, 0.0, 0.28, n=10), "null")[0] == \
      "not testable here"
  assert V.judge(0.29, e(0.28, 0.0, 0.9), "depth")[0] == "not testable here"
  assert V.judge(0.29, e(0.5, 0.45, 0.55), "depth")[0] == "not reproduced"
  assert V.verdict(0.96, None, None) == "not run"
  text = V.rule_text()
  for c in (V.MARGIN, V.EFFECT_FLOOR, V.BASELINE_FLOOR, V.MIN_PROMPTS,
            V.DEPTH_MAX_WIDTH, V.NULL_CEILING):
    assert str(c) in text


def test_pooled_rate_resamples_prompts_not_cells():
  """0/20 prompts scored in 100 cells: the bound is the 20 prompts' one,
  never 0/2000's."""
  rows = [_row("x", "faithful", "a", "b", l, "c", set(), 20)
          for l in range(100)]
  p = CS.pooled_rate(rows)
  assert p["mean"] == 0 and p["prompts"] == 20 and p["cells"] == 100
  assert p["hi"] == pytest.approx(_wilson_hi(0, 20), rel=1e-3)
  layers, m = CS.layer_prompt_matrix(rows[:3])
  assert layers == [0, 1, 2] and m.shape == (3, 20)


def test_summary_is_the_reports_first_table(runs, tmp_path):
  text = REP.build_report([runs], tmp_path / "REPORT.md")
  first = next(l for l in text.splitlines() if l.startswith("|"))
  assert first == "| " + " | ".join(summary.SUMMARY_HEADERS) + " |"
  assert text.index("**Verdict rule**") < text.index(first)
  assert "survives the corrections" not in text


def test_plain_words_count_each_models_verdicts():
  from icl_jax.analysis.report import summary

  rows = [["m1", "c", "", "", "", "", "**reproduced**"],
          ["m1", "c", "", "", "", "", "**not reproduced**"],
          ["m1", "c", "", "", "", "", "**not testable here** (N=10 < 20)"],
          ["m2", "c", "", "", "", "", "**weaker**; corrected: artifact"]]
  text = summary.plain_words(rows)
  assert ("m1: 3 claims -- 1 reproduced, 1 not reproduced, "
          "1 not testable here") in text
  assert "m2: 1 claims -- 1 weaker" in text
  with pytest.raises(ValueError):
    summary.verdict_of("**holds**")


def test_direction_claims_use_the_effect_floor():
  from icl_jax.analysis.report.verdicts import Estimate, judge

  assert judge(0.0, Estimate(0.3, 0.1, 0.5, n=30), "direction")[0] == \
      "reproduced"
  assert judge(0.0, Estimate(0.0, -0.1, 0.04, n=30), "direction")[0] == \
      "not reproduced"
  assert judge(0.0, Estimate(0.1, -0.1, 0.3, n=30), "direction")[0] == \
      "not testable here"
  assert judge(0.0, Estimate(0.3, 0.1, 0.5, n=10), "direction")[0] == \
      "not testable here"
  # The reason says what the interval shows: above zero yet short of the
  # floor is not "cannot tell an effect from none" (qwen2.5-0.5b bitwise,
  # TD 1 -> 4 shots, 0.10 [0.04, 0.16]).
  assert judge(0.0, Estimate(0.10, 0.04, 0.16, n=100), "direction") == (
      "not testable here", "interval [0.04, 0.16] is above zero but reaches "
      "below the 0.05 floor of an effect that matters")
  assert judge(0.0, Estimate(0.02, 0.01, 0.03, n=100), "direction") == (
      "not reproduced", "at most a small effect: interval [0.01, 0.03] "
      "above zero, below the 0.05 floor")
  # Han's task vectors, +0.03 [+0.01, +0.05] against +0.29: below the
  # original, a small effect above zero (gemma3-270m POS).
  assert judge(0.29, Estimate(0.03, 0.01, 0.052, n=20)) == (
      "not reproduced", "below the original; above zero but not shown to "
      "reach the 0.05 floor")


def test_an_interval_holding_zero_and_the_original_cannot_decide():
  """The stated rule's 'an interval that cannot tell zero from an effect':
  Han's R^2 0.53 against ours 0.09 [0.00, 0.67] (smollm2 bitwise) is not
  testable, not 'reproduced'; a value within MARGIN of the original but
  without a real effect is no effect of the same size. Fails on the code
  before session 17 (both were 'reproduced')."""
  e = lambda v, lo, hi, n=50: Estimate(v, lo, hi, n=n)
  assert V.judge(0.53, e(0.09, 0.0, 0.67), "value") == (
      "not testable here",
      "interval [0.00, 0.67] holds both the original's value and no effect")
  assert V.judge(0.167, e(0.05, 0.0, 0.20))[0] == "not testable here"
  assert V.judge(0.167, e(0.03, 0.0, 0.12)) == (
      "not reproduced", "below the original, no clear effect")
  assert V.judge(0.53, e(0.45, 0.30, 0.60), "value")[0] == "reproduced"
  assert V.judge(0.53, e(0.09, 0.0, 0.30), "value")[0] == "not reproduced"
  # an original within MARGIN of zero (exp19: r = -0.054, its own interval
  # holds 0) is no effect zero could be told from: inside is reproduced
  assert V.judge(-0.0536, e(0.09, -0.15, 0.33), "value")[0] == "reproduced"
  assert V.judge(-0.35, e(-0.10, -0.5, 0.2), "value")[0] == \
      "not testable here"


def test_a_positive_value_with_a_real_effect_below_the_original_is_weaker():
  """Han's R^2 0.78 against ours 0.41 [0.29, 0.76]: a real effect whose
  interval lies below the original's value is 'weaker' (the stated rule),
  not 'not reproduced'; an interval that reaches no effect stays as before."""
  e = lambda v, lo, hi: V.Estimate(v, lo, hi, n=100)
  assert V.judge(0.78, e(0.41, 0.29, 0.76), "value")[0] == "weaker"
  assert V.judge(0.78, e(0.25, 0.17, 0.60), "value")[0] == "weaker"
  assert V.judge(0.53, e(0.09, 0.0, 0.30), "value")[0] == "not reproduced"
