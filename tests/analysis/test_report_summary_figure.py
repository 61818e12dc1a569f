"""The figure under REPORT.md's summary table: the pair mean by layer per
condition and mode, with a prompt-resampling interval."""

from __future__ import annotations

import pytest

from icl_jax.analysis import report as REP
from icl_jax.analysis.report.data import Data
from icl_jax.analysis.report.headlines import ModelRows
from icl_jax.analysis.report.summary_figures import layer_curves
from tests.analysis.test_report import synthetic  # noqa: F401 (fixture)


def test_summary_embeds_transfer_curves(synthetic, tmp_path):  # noqa: F811
  text = REP.build_report([synthetic], tmp_path / "REPORT.md")
  summary = text.split("## What was run")[0]
  link = "report_figures/summary/transfer_by_layer.png"
  assert f"]({link})" in summary
  assert (tmp_path / link).stat().st_size > 1000


def test_curves_are_pair_means_with_prompt_intervals(synthetic, tmp_path):  # noqa: F811
  curves = layer_curves(ModelRows(Data([synthetic], tmp_path), "model-a"))
  assert set(curves) == {(c, m) for c in ("all_demo", "output_only")
                         for m in ("faithful", "aligned")}
  faithful = {l: (m, lo, hi) for l, m, lo, hi in curves[("all_demo",
                                                         "faithful")]}
  aligned = {l: (m, lo, hi) for l, m, lo, hi in curves[("all_demo",
                                                        "aligned")]}
  assert sorted(faithful) == list(range(18))
  # uppercase->repeat_word 0.9 at the mode's best layer, the other pair 0.
  assert faithful[5][0] == pytest.approx(0.45)
  assert faithful[5][1] < 0.45 < faithful[5][2] < 0.6
  assert aligned[9][0] == pytest.approx(0.45) and aligned[5][0] == 0.0
  assert faithful[0][0] == 0.0 and faithful[0][2] > 0  # Wilson at 0/40
