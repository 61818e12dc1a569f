"""Verdict rules: when an effect exists, when a rate is zero, when a depth
claim holds, and the as-run / corrected survival wording (stated once in
the report, applied everywhere).

Thresholds: an effect "exists" when the Wilson 95% lower bound of the best
cell is >= 0.20 ("weak" when >= 0.05); a rate "is zero" when no prompt
transferred, "near zero" when the pooled rate is < 0.02 and no cell exceeds
0.20; a depth claim holds within +-0.10.
"""

from __future__ import annotations

from icl_jax.analysis.report.markdown import counts, depth
from icl_jax.analysis.stats import wilson_interval

EFFECT_LB = 0.20
WEAK_LB = 0.05
ZERO_RATE = 0.02
DEPTH_TOL = 0.10


def verdict_effect(k: int, n: int) -> str:
  if not n:
    return "not run"
  lo = wilson_interval(k, n)[0]
  return "yes" if lo >= EFFECT_LB else ("weak" if lo >= WEAK_LB else "no")


def cell_best(rows, **filt):
  rs = [r for r in rows if all(r.get(k) == v for k, v in filt.items())]
  if not rs:
    return None
  return max(rs, key=lambda r: r["transfer"])


def fmt_cell(r, nl):
  if r is None:
    return "not run"
  return (f"{r['transfer']:.2f} (L{r['layer']}, depth {depth(r['layer'], nl)}"
          f", N={r['n']})")


def effect(r):
  return verdict_effect(counts(r["transfer"], r["n"]), r["n"]) if r else None


def survival(f_ok, a_ok):
  if f_ok is None and a_ok is None:
    return "not run"
  if f_ok and a_ok:
    return "holds as run and survives the corrections"
  if f_ok and a_ok is False:
    return "holds as run only; gone after the corrections"
  if f_ok is False and a_ok:
    return "not reproduced as run; present after the corrections"
  if f_ok is False and a_ok is False:
    return "not reproduced on this model"
  return "holds as run" if f_ok else (
      "survives the corrections" if a_ok else "partly run")


def mode_row(model_label: str, claim: str, judge) -> list:
  """[model, claim, faithful text, aligned text, survival] of a claim whose
  `judge(mode) -> (ok, text)` is applied to both modes."""
  fo, ftx = judge("faithful")
  ao, atx = judge("aligned")
  return [model_label, claim, ftx, atx, survival(fo, ao)]
