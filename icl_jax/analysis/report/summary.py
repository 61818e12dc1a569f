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
from icl_jax.analysis.report.han import han_summary_rows
from icl_jax.analysis.report.headlines import headline_rows
from icl_jax.analysis.report.markdown import md_table
from icl_jax.analysis.report.summary_figures import render_summary_figure
from icl_jax.analysis.report.verdicts import (ARTIFACT, NOT_REPRODUCED,
                                              NOT_TESTABLE, REPRODUCED,
                                              SUMMARY_HEADERS, WEAKER,
                                              rule_text)

# The rule's verdicts, and "not run" (a claim with no rows in either mode).
VERDICTS = (REPRODUCED, WEAKER, NOT_REPRODUCED, ARTIFACT, NOT_TESTABLE,
            "not run")


def summary_rows(data: Data) -> list[list]:
  """The transfer study's claims, then Han et al.'s (when available)."""
  rows = headline_rows(data) + [list(r) for r in han_summary_rows(data)]
  bad = [r for r in rows if len(r) != len(SUMMARY_HEADERS)]
  if bad:
    raise ValueError(f"summary rows need {len(SUMMARY_HEADERS)} cells: "
                     f"{bad[0]}")
  return rows


def verdict_of(cell: str) -> str:
  """The verdict word of a verdict cell ('**weaker** (...)' -> 'weaker')."""
  text = cell.replace("*", "").strip()
  for v in sorted(VERDICTS, key=len, reverse=True):  # "not reproduced" first
    if text.startswith(v):
      return v
  raise ValueError(f"verdict cell without a verdict of the rule: {cell!r}")


def plain_words(rows) -> str:
  """One paragraph counting the verdicts per model (rows as above)."""
  models = sorted({r[0] for r in rows})
  parts = []
  for m in models:
    counts = {v: 0 for v in VERDICTS}
    for r in rows:
      if r[0] == m:
        counts[verdict_of(r[-1])] += 1
    said = ", ".join(f"{k} {v}" for v, k in counts.items() if k)
    parts.append(f"{m}: {sum(counts.values())} claims -- {said}")
  return ("**In plain words.** Each of the original's headline claims that "
          "our runs can address is judged once per model by the rule below. "
          + "; ".join(parts) + ". 'Not testable here' is not a failure to "
          "reproduce: the row says why (too few prompts, a task the model "
          "cannot do, an interval too wide to decide).\n\n")


def render_summary(data: Data) -> str:
  """'## Summary' with the verdict rule and the table (the report's first
  table)."""
  rows = summary_rows(data)
  head = "## Summary: the original's headline claims on our models\n\n"
  if not rows:
    return head + "**Nothing to compare yet** (no result directories).\n"
  return (head + plain_words(rows) + rule_text() + "\n" +
          "'as run' = faithful mode (the study's positions, scorers and, for "
          "the single position, its D2 decoder); 'corrected' = aligned mode "
          "(token-exact positions, strict scorers). Faithful cells also give "
          "the strict-scored value where the rows carry it.\n\n" +
          md_table(SUMMARY_HEADERS, rows) + "\n" +
          render_summary_figure(data))
