"""The ONE verdict rule of the report (its summary table and question 3),
with its constants, chosen before looking at any of our numbers, and the
rule's text rendered from the same constants (`rule_text`).

A claim of the original is compared with our estimate of the same quantity
(a value with a 95% interval that respects prompt reuse, `Estimate`), once
as run (faithful mode) and once corrected (aligned mode):

* effect claims (the original found a rate >= EFFECT_FLOOR):
  reproduced -- the original's value inside our interval, or
  |ours - original| <= MARGIN, or the interval wholly above it ("stronger");
  weaker -- interval above the effect floor but
  below the original's value; not reproduced -- interval below the
  original's value without a real effect (upper bound below the floor: no
  effect that matters);
* null claims (the original found ~0): reproduced -- our interval stays
  below NULL_CEILING (it excludes effects bigger than the floor plus the
  margin); not reproduced -- its lower bound is above the floor (a real
  effect); otherwise not testable (the interval is too wide);
* depth claims (a relative depth): reproduced -- the original's depth
  inside our bootstrap interval of the best layer's depth, or within
  DEPTH_MARGIN; not testable when that interval is wider than
  DEPTH_MAX_WIDTH (the best layer is not identified) or the best layer is
  the lowest / highest layer tested (but not the model's first / last);
* value claims (a correlation, an R^2): reproduced -- inside our interval
  or within MARGIN; else not reproduced;
* effect and value claims whose original is an effect that zero is not
  within MARGIN of (|value| > MARGIN) while our interval reaches below
  EFFECT_FLOOR: not testable
  when the interval also holds the original's value (it cannot tell zero
  from the effect), and "within MARGIN" does not count (no effect of the
  same size);
* direction claims (an effect stated without a number, e.g. Han's "TD
  rises with shots"): reproduced -- lower bound >= EFFECT_FLOOR; not
  reproduced -- upper bound < EFFECT_FLOOR; otherwise not testable.

The row's verdict is the as-run one, except: *artifact* when the claim
holds as run (reproduced / weaker) and is not reproduced when corrected;
*not testable here* (with why) when the model cannot do the source or
target task (baseline accuracy < BASELINE_FLOOR), when fewer than
MIN_PROMPTS prompts were scored, or when the interval cannot decide.
"""

from __future__ import annotations

from dataclasses import dataclass

from icl_jax.analysis.stats import wilson_interval

# --- the rule's constants (fixed before any of our numbers were read) ---
MARGIN = 0.15  # |ours - original| that still counts as the same size (rates)
EFFECT_FLOOR = 0.05  # a rate below this is no effect that matters
NULL_CEILING = EFFECT_FLOOR + MARGIN  # a null claim needs hi below this
DEPTH_MARGIN = 0.10  # relative depth, e.g. 0.29 +- 0.10
DEPTH_MAX_WIDTH = 0.35  # wider depth interval: the best layer is unknown
BASELINE_FLOOR = 0.50  # below this baseline accuracy the model cannot do
MIN_PROMPTS = 20  # fewer prompts per cell: not testable (0/10 -> hi 0.28)

REPRODUCED, WEAKER, NOT_REPRODUCED = "reproduced", "weaker", "not reproduced"
ARTIFACT, NOT_TESTABLE = "artifact", "not testable here"
KINDS = ("effect", "null", "depth", "value", "direction")

@dataclass
class Estimate:
  """Our value of a claim's quantity in one mode: `value` with its 95%
  interval [lo, hi], prompts per cell `n`, number of pairs, the text shown
  (value, interval, layer, strict-scored value ...), and `untestable`: why
  the mode cannot test the claim (None when it can)."""
  value: float
  lo: float
  hi: float
  n: int | None = None
  pairs: int | None = None
  text: str = ""
  untestable: str | None = None

  def show(self) -> str:
    return self.text or f"{self.value:.2f} [{self.lo:.2f}, {self.hi:.2f}]"


# The summary table's columns; every summary row (`Claim.row()`, and
# `han.han_summary_rows`) is a list of these 7 cells.
SUMMARY_HEADERS = ("model", "claim of the original",
                   "ours, as run (faithful) [95% interval]",
                   "ours, corrected (aligned) [95% interval]",
                   "original", "N (prompts per cell), pairs", "verdict")


@dataclass
class Claim:
  """One summary row: a claim of the original on one model."""
  model: str
  claim: str
  original: float
  original_text: str
  kind: str = "effect"
  faithful: Estimate | None = None
  aligned: Estimate | None = None

  def row(self) -> list:
    """The summary table's row (SUMMARY_HEADERS)."""
    show = lambda e: e.show() if e else "not run"
    sizes = list(dict.fromkeys(
        sizes_text(e.n, e.pairs) for e in (self.faithful, self.aligned)
        if e and (e.n or e.pairs)))
    return [self.model, self.claim, show(self.faithful), show(self.aligned),
            self.original_text, "; ".join(sizes) or "-",
            verdict(self.original, self.faithful, self.aligned, self.kind)]


def sizes_text(n, pairs) -> str:
  """'N=.., k pair(s)': prompts per cell and number of pairs, as every
  comparison row with the original states them (n may be a range text)."""
  return f"N={'-' if n is None else n}, {pairs} pair(s)"


def sizes(rows) -> str:
  """`sizes_text` of result rows: N (prompts per cell; a range when the
  cells differ) and the number of (source, target) pairs."""
  ns = sorted({r["n"] for r in rows if r.get("n")})
  n = "-" if not ns else str(ns[0]) if len(ns) == 1 else \
      f"{ns[0]}-{ns[-1]}"
  return sizes_text(n, len({(r.get("source_task"), r.get("target_task"))
                            for r in rows}))


def wilson_estimate(k: int, n: int, **kw) -> Estimate:
  """k/n with its Wilson interval (one cell, independent prompts)."""
  lo, hi = wilson_interval(k, n)
  return Estimate(k / n if n else float("nan"), lo, hi, n=n, **kw)


def judge(original: float, e: Estimate, kind: str = "effect"
          ) -> tuple[str, str]:
  """(label, why) of one mode's estimate against the original's value."""
  if kind not in KINDS:
    raise ValueError(f"kind {kind!r} not in {KINDS}")
  if e.untestable:
    return NOT_TESTABLE, e.untestable
  if kind != "depth" and e.n is not None and e.n < MIN_PROMPTS:
    return NOT_TESTABLE, f"N={e.n} prompts < {MIN_PROMPTS}"
  inside = e.lo <= original <= e.hi
  if kind == "depth":
    if e.hi - e.lo > DEPTH_MAX_WIDTH:
      return NOT_TESTABLE, (f"best layer not identified (depth interval "
                            f"[{e.lo:.2f}, {e.hi:.2f}])")
    near = abs(e.value - original) <= DEPTH_MARGIN
    return (REPRODUCED, "") if inside or near else (NOT_REPRODUCED, "")
  if kind == "direction":
    if e.lo >= EFFECT_FLOOR:
      return REPRODUCED, ""
    if e.hi < EFFECT_FLOOR:
      return NOT_REPRODUCED, _no_effect(e)
    if e.lo > 0:  # above zero, but not shown to reach the floor
      return NOT_TESTABLE, (f"interval [{e.lo:.2f}, {e.hi:.2f}] is above "
                            f"zero but reaches below the {EFFECT_FLOOR} "
                            "floor of an effect that matters")
    return NOT_TESTABLE, (f"interval [{e.lo:.2f}, {e.hi:.2f}] cannot tell "
                          "an effect from none")
  # The original found an effect that zero is not "within MARGIN" of
  # (|value| > MARGIN; exp19's r = -0.054 is not one) and our interval
  # reaches down to no effect: the interval cannot tell zero from the
  # original's effect when it also holds the original's value, and a value
  # "within MARGIN" of it is no effect of the same size (session 17: the
  # code had not applied this clause of the stated rule).
  undecided = (abs(original) > MARGIN and e.lo < EFFECT_FLOOR
               and e.hi > -EFFECT_FLOOR)
  if kind in ("value", "effect") and undecided and inside:
    return NOT_TESTABLE, (f"interval [{e.lo:.2f}, {e.hi:.2f}] holds both "
                          "the original's value and no effect")
  near = abs(e.value - original) <= MARGIN and not undecided
  if kind == "value":
    if inside or near:
      return REPRODUCED, ""
    # A positive effect size (Han's R^2) with a real effect below it is
    # 'weaker', as the stated rule says of every claim (session 18: values
    # had only reproduced / not reproduced).
    if original > 0 and e.lo >= EFFECT_FLOOR and e.hi < original:
      return WEAKER, ""
    return NOT_REPRODUCED, ""
  if kind == "null":
    if e.lo >= EFFECT_FLOOR:
      return NOT_REPRODUCED, "a real effect where the original found none"
    if e.hi < NULL_CEILING:
      return REPRODUCED, ""
    return NOT_TESTABLE, (f"interval [{e.lo:.2f}, {e.hi:.2f}] too wide to "
                          "tell zero from an effect")
  if inside or near:
    return REPRODUCED, ""
  if e.lo > original:
    return REPRODUCED, "stronger than the original"
  if e.lo >= EFFECT_FLOOR:
    return WEAKER, ""
  if e.hi < EFFECT_FLOOR:
    return NOT_REPRODUCED, _no_effect(e)
  if e.lo > 0:  # a small effect: above zero, not shown to reach the floor
    return NOT_REPRODUCED, (f"below the original; above zero but not shown "
                            f"to reach the {EFFECT_FLOOR} floor")
  return NOT_REPRODUCED, "below the original, no clear effect"


def _no_effect(e: Estimate) -> str:
  """Why an interval wholly below EFFECT_FLOOR is no effect that matters
  (an interval above zero still holds a small one)."""
  if e.lo > 0:
    return (f"at most a small effect: interval [{e.lo:.2f}, {e.hi:.2f}] "
            f"above zero, below the {EFFECT_FLOOR} floor")
  return "no effect"


def verdict(original: float, faithful: Estimate | None,
            aligned: Estimate | None, kind: str = "effect") -> str:
  """The row's verdict text from both modes (see the module docstring)."""
  if faithful is None and aligned is None:
    return "not run"
  f = judge(original, faithful, kind) if faithful else None
  a = judge(original, aligned, kind) if aligned else None
  if f and a and f[0] in (REPRODUCED, WEAKER) and a[0] == NOT_REPRODUCED:
    return f"**{ARTIFACT}** (as run: {f[0]}; corrected: {a[0]})"
  main, other, tag = (f, a, "corrected") if f else (a, None, "corrected only")
  text = f"**{main[0]}**" + (f" ({main[1]})" if main[1] else "")
  if f is None:
    text += f" ({tag})"
  if other and other[0] != main[0]:
    text += f"; corrected: {other[0]}" + (f" ({other[1]})" if other[1]
                                          else "")
  return text


def rule_text() -> str:
  """The verdict rule as stated once in REPORT.md, from the constants."""
  return (
      "**Verdict rule** (one rule for every row; constants fixed before "
      "reading our numbers): each claim is compared with our value and its "
      "95% interval, as run (faithful) and corrected (aligned). "
      "*reproduced*: the original's value lies inside our interval, or "
      f"|ours - original| <= {MARGIN} (absolute, rates; {DEPTH_MARGIN} for "
      "a relative depth, whose interval is a bootstrap over prompts of the "
      "best layer); an interval wholly above the original's value is "
      "reproduced too, marked 'stronger'; an effect claimed without a "
      f"number is reproduced when our lower bound >= {EFFECT_FLOOR} and not "
      f"reproduced when our upper bound < {EFFECT_FLOOR}. "
      "*weaker*: a real effect (lower bound >= "
      f"{EFFECT_FLOOR}) but the interval lies below the original's value. "
      "*not reproduced*: the interval lies below the original's value "
      f"without a real effect (no effect at all when the upper bound < "
      f"{EFFECT_FLOOR}); for a claim of zero, a lower bound >= "
      f"{EFFECT_FLOOR}. A claim of zero is reproduced when the upper bound "
      f"< {NULL_CEILING}. *artifact*: reproduced or weaker as run and not "
      "reproduced when corrected. *not testable here* (with why): the "
      "model cannot do the source or target task (baseline accuracy < "
      f"{BASELINE_FLOOR}), fewer than {MIN_PROMPTS} prompts per cell (rate, "
      "value and direction claims; a depth claim is judged by its interval "
      "instead), a "
      f"depth interval wider than {DEPTH_MAX_WIDTH}, a best layer at the "
      "edge of the layers tested (not the model's first or last), or an "
      "interval that cannot tell zero from an effect (it holds both the "
      f"original's value, when that is more than {MARGIN} from zero, and "
      f"values below {EFFECT_FLOOR}; such an estimate is not 'within the "
      "margin' either). Otherwise the row's verdict is the "
      "as-run one, with the corrected one added where it differs.\n\n"
      "Intervals: cells that reuse the same prompts are not independent, so "
      "pooled rates resample PROMPTS (cluster bootstrap, strata = pairs) "
      "and never use a Wilson interval over cells; where no prompt "
      "transferred the bootstrap is degenerate and the bound is Wilson's "
      "over the distinct prompts. A 'best layer' is picked on a random half "
      "of the prompts among K layers ('best of K') and estimated on the "
      "other half (Wilson interval on the held-out prompts).\n")
