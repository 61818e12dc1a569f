"""The summary table REPORT.md opens with: every headline claim of the
study (and of Han et al. where `report.han` supplies rows), the original's
number, ours per model and mode with its interval, N and the pair count,
and a verdict from the one rule (`verdicts`), stated above the table.

Row format (also for other sections' claims, e.g. `han.han_summary_rows`):
a list of 7 cells in the order of `verdicts.SUMMARY_HEADERS` --
  [model, claim, ours as run (faithful), ours corrected (aligned),
   original, "N=.., k pair(s)", verdict]
where the two "ours" cells hold the value with its 95% interval and the
verdict cell is `verdicts.verdict(original, faithful, aligned, kind)` on
`verdicts.Estimate`s: build rows as `verdicts.Claim(...).row()`.
"""

from __future__ import annotations

from icl_jax.analysis.report.data import Data
from icl_jax.analysis.report.headlines import headline_rows
from icl_jax.analysis.report.markdown import md_table
from icl_jax.analysis.report.verdicts import SUMMARY_HEADERS, rule_text

try:  # Han et al.'s section is optional: the summary works without it
  from icl_jax.analysis.report.han import han_summary_rows
except ImportError:
  han_summary_rows = None


def summary_rows(data: Data) -> list[list]:
  """The transfer study's claims, then Han et al.'s (when available)."""
  rows = headline_rows(data)
  if han_summary_rows is not None:
    rows += [list(r) for r in han_summary_rows(data)]
  bad = [r for r in rows if len(r) != len(SUMMARY_HEADERS)]
  if bad:
    raise ValueError(f"summary rows need {len(SUMMARY_HEADERS)} cells: "
                     f"{bad[0]}")
  return rows


def render_summary(data: Data) -> str:
  """'## Summary' with the verdict rule and the table (the report's first
  table)."""
  rows = summary_rows(data)
  head = "## Summary: the original's headline claims on our models\n\n"
  if not rows:
    return head + "**Nothing to compare yet** (no result directories).\n"
  return (head + rule_text() + "\n" +
          "'as run' = faithful mode (the study's positions, scorers and, for "
          "the single position, its D2 decoder); 'corrected' = aligned mode "
          "(token-exact positions, strict scorers). Faithful cells also give "
          "the strict-scored value where the rows carry it.\n\n" +
          md_table(SUMMARY_HEADERS, rows))
