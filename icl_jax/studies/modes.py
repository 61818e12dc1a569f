"""The two position modes and what each means (the one modes table).

faithful reproduces the original study as it ran (its line-based indices,
its scorers, its D2 decoder for single-position edits); aligned maps source
to target tokens by (demo, role, token index) and scores strictly.
"""

from __future__ import annotations

import dataclasses

MODES = ("faithful", "aligned")

# Study condition names -> aligned layout set names.
ALIGNED_SETS = {
    "all_demo": "all_demo", "output_only": "output_only",
    "input_only": "input_only", "last_demo": "last_demo",
    "last_demo_token": "last_demo_answer_token",
    "separator_after_demo": "last_demo_separator",
    "first_query_token": "first_query_token",
    "answer_tokens": "answer_tokens",
}
# Conditions that name one token per prompt.
SINGLE_POSITION = ("last_demo_token", "separator_after_demo",
                   "first_query_token")


@dataclasses.dataclass(frozen=True)
class ModeSpec:
  """What a mode means.

  scorer: "faithful" (the study's scorers, artifacts included) or "strict".
  single_timing / single_stop: decoder of single-position transplants:
    faithful = the study's D2 (only the first generated token sees the patch;
    a row stops at any newline, as D2 did); aligned = like-for-like with the
    multi-position experiments (patched prompt K/V persist, D3's stop rule).
  disruption: "absolute" (baseline acc - intervened acc, the original's
    number) or "relative" ((baseline - intervened) / baseline, the paper's
    definition).
  """

  mode: str
  scorer: str
  single_timing: str
  single_stop: str
  disruption: str


MODE_SPECS = {
    "faithful": ModeSpec("faithful", "faithful", "first_token", "newline",
                         "absolute"),
    "aligned": ModeSpec("aligned", "strict", "prefill", "line", "relative"),
}


def default_scorer(mode: str) -> str:
  """The scorer a mode reports by default."""
  return MODE_SPECS[mode].scorer


def parse_modes(flag: str) -> list[str]:
  """--mode: faithful | aligned | both."""
  if flag == "both":
    return list(MODES)
  if flag in MODES:
    return [flag]
  raise ValueError(f"--mode {flag!r}: use faithful, aligned or both")


def aligned_set_name(condition: str) -> str:
  """A study condition name -> the aligned layout set it means."""
  return ALIGNED_SETS.get(condition, condition)
