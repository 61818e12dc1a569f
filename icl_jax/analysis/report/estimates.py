"""The report's estimates of a rate over result rows, on statistics that
respect prompt reuse (`cluster_stats`), shared by the questions
(`questions`), the summary's claims (`headlines`) and the sections:

* `pooled`: the rate pooled over cells with a prompt-resampling interval;
* `held_out_best`: the best (group, layer) -- e.g. (condition, layer) --
  chosen on a random half of the prompts and estimated on the other half,
  with the bootstrap interval of the best layer's depth;
* `best_layer_estimate`: the same over layers only (the summary's claims).
"""

from __future__ import annotations

import numpy as np

from icl_jax.analysis import cluster_stats as CS
from icl_jax.analysis.report.markdown import by, mean, pair, strict_transfer
from icl_jax.analysis.report.verdicts import Estimate, wilson_estimate


def npairs(rows) -> int:
  return len({pair(r) for r in rows})


def strict_note(rows) -> str:
  """'; strict-scored x' for faithful rows that carry the strict scorer."""
  s = [strict_transfer(r) for r in rows if r.get("mode") == "faithful"]
  s = [x for x in s if x is not None]
  return f"; strict-scored {mean(s):.2f}" if s else ""


def pooled(rows, note: str = "") -> Estimate | None:
  """Pooled rate of `rows` with a prompt-resampling interval."""
  if not rows:
    return None
  p = CS.pooled_rate(rows)
  mx = max(rows, key=lambda r: r["transfer"])
  if p is None:  # no per-prompt outcomes: Wilson at one cell's N
    n, m = min(r["n"] for r in rows), mean(r["transfer"] for r in rows)
    return wilson_estimate(round(m * n), n, pairs=npairs(rows), text=(
        f"{m:.3f} (mean of {len(rows)} cells; per-cell Wilson at N={n}, "
        f"no per-prompt outcomes; max cell {mx['transfer']:.2f}){note}"))
  return Estimate(p["mean"], p["lo"], p["hi"],
                  n=min(r["n"] for r in rows), pairs=npairs(rows),
                  text=(f"{p['mean']:.3f} [{p['lo']:.3f}, {p['hi']:.3f}] "
                        f"({p['prompts']} prompts, {p['cells']} cells; max "
                        f"cell {mx['transfer']:.2f} {pair(mx)} "
                        f"L{mx['layer']}){strict_note(rows)}{note}"))


def _matrices(rows, group):
  """([(group value, layer)], [L, P] matrices per group) or None when the
  groups do not share one set of prompt columns (pairs x N)."""
  groups = sorted(by(rows, group).items()) if group else [((None,), rows)]
  labels, mats, pair_sets = [], [], set()
  for (g,), rs in groups:
    layers, m = CS.layer_prompt_matrix(rs)  # [L, pairs * N]
    labels += [(g, l) for l in layers]
    mats.append(m)
    pair_sets.add(frozenset(pair(r) for r in rs if r.get("examples")))
  if len(pair_sets) != 1 or len({m.shape[1] for m in mats}) != 1:
    return None
  return labels, mats


def held_out_best(rows, nl, group: str | None = None) -> dict | None:
  """The best (value of `group`, layer) among the groups x layers of
  `rows` -- each a pair mean over the pairs' prompt columns -- chosen on a
  random half of the prompts and estimated on the other half
  (`cluster_stats.split_half_best`), with the bootstrap interval of the
  chosen group's best-layer depth (`best_layer_spread`).

  Returns {"estimate": Estimate, "spread", "group" (its value, None
  without a group), "layer"}, or None where the rows hold no per-prompt
  outcomes (fewer than 2 candidates or 4 prompt columns)."""
  got = _matrices(rows, group)
  if got is None:
    return None
  labels, mats = got
  m = np.vstack(mats)  # [candidates, P]
  if len(labels) < 2 or m.shape[1] < 4:
    return None
  sh = CS.split_half_best(m, list(range(len(labels))))
  g, layer = labels[sh["layer"]]
  gi = [i for i, (x, _) in enumerate(labels) if x == g]
  layers, gm = [labels[i][1] for i in gi], m[gi]
  spread = CS.best_layer_spread(gm, layers, nl or max(layers) + 1)
  at = [r for r in rows if r["layer"] == layer and
        (group is None or r.get(group) == g)]
  l0 = (f"; L0 (embedding output) {gm[layers.index(0)].mean():.2f}"
        if 0 in layers and layer != 0 else "")
  l0 += " = the embedding output" if layer == 0 else ""
  what = "layers" if group is None else f"{group} x layer choices"
  text = (f"{sh['estimate']:.2f} [{sh['lo']:.2f}, {sh['hi']:.2f}] at "
          f"{'' if g is None else f'{g} '}L{layer} (best of {len(labels)} "
          f"{what} on {sh['n_select']} prompts, estimated on the other "
          f"{sh['n_test']}){l0}{strict_note(at)}")
  e = Estimate(sh["estimate"], sh["lo"], sh["hi"],
               n=min(r["n"] for r in rows), pairs=npairs(rows), text=text)
  return {"estimate": e, "spread": spread, "group": g, "layer": layer}


def best_layer_estimate(rows, nl) -> tuple[Estimate | None, dict | None]:
  """(held-out estimate at the split-half best layer, its spread) over the
  layers of `rows` (`held_out_best` without a group); without per-prompt
  outcomes the pooled rate of all `rows` and no spread."""
  h = held_out_best(rows, nl) if rows else None
  if h is None:
    return (pooled(rows), None) if rows else (None, None)
  return h["estimate"], h["spread"]
