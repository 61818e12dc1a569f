"""Markdown rendering helpers and the small row utilities every section
uses: tables, number formats, Wilson text, grouping, layer means, images,
the by-layer grid."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from icl_jax.analysis.report.data import Data
from icl_jax.analysis.stats import wilson_interval


def md_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
  if not rows:
    return "_(no rows)_\n"
  esc = lambda x: str(x).replace("|", "\\|").replace("\n", " ")
  lines = ["| " + " | ".join(esc(h) for h in headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
  for r in rows:
    lines.append("| " + " | ".join(esc(x) for x in r) + " |")
  return "\n".join(lines) + "\n"


def f2(x, nd=2) -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return "-"
  return f"{x:.{nd}f}"


def counts(rate: float, n: int) -> int:
  return int(round(rate * n))


def wilson_text(k: int, n: int) -> str:
  if not n:
    return "-"
  lo, hi = wilson_interval(k, n)
  return f"{k / n:.2f} [{lo:.2f}, {hi:.2f}]"


def mean(xs) -> float:
  xs = list(xs)
  return sum(xs) / len(xs) if xs else float("nan")


def pair(r) -> str:
  return f"{r.get('source_task')}->{r.get('target_task')}"


def patched(rows):
  """Cells that edited something (aligned maps can be empty when every
  token group differs in length between source and target)."""
  return [r for r in rows if r.get("n_positions", 1) != 0
          and r.get("changed", True) is not False]


def strict_transfer(r) -> float | None:
  if r.get("mode") == "aligned":
    return r.get("transfer")
  s = r.get("strict_scorer")
  return s.get("transfer") if isinstance(s, dict) else None


def short_model(m: str) -> str:
  return Path(str(m)).name if "/" in str(m) else str(m)


def depth(layer, n_layers) -> str:
  if layer is None or not n_layers:
    return "-"
  return f"{layer / n_layers:.2f}"


def by(rows, *keys):
  g = defaultdict(list)
  for r in rows:
    g[tuple(r.get(k) for k in keys)].append(r)
  return g


def layer_means(rows, metric="transfer"):
  """{layer: (mean over rows, pooled k, pooled n)}."""
  out = {}
  for (layer,), rs in by(rows, "layer").items():
    k = sum(counts(r[metric], r.get("n") or 1) for r in rs)
    n = sum(r.get("n") or 1 for r in rs)
    out[layer] = (mean(r[metric] for r in rs), k, n)
  return out


def best_layer(rows, metric="transfer"):
  lm = layer_means(rows, metric)
  if not lm:
    return None, None
  best = max(sorted(lm, key=lambda l: (l is None, l)),
             key=lambda l: lm[l][0])
  return best, lm[best]


def numeric(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def images(data: Data, paths: Sequence[Path], limit: int = 4) -> str:
  out = []
  for p in paths[:limit]:
    out.append(f"![{p.stem}]({data.rel(p)})")
  if len(paths) > limit:
    out.append("More plots: " + ", ".join(
        f"[{p.name}]({data.rel(p)})" for p in paths[limit:]))
  return ("\n\n".join(out) + "\n") if out else ""


def model_mode_rows(data: Data, rows, experiments: Sequence[str],
                    keep=None):
  """(model, mode, its rows) per model of `experiments` and mode, in order,
  skipping empty ones; `keep(row)` filters the rows first."""
  for m in data.models(experiments):
    for mode in ("faithful", "aligned"):
      x = [r for r in rows if r["model"] == m and r["mode"] == mode and
           (keep is None or keep(r))]
      if x:
        yield m, mode, x


def layers_always_shown(rows, models, data, metric) -> set:
  """Columns a subsampled layer grid keeps: each model's study layer (the
  original's depth, 8 of 28) and each (model, mode, condition)'s best
  layer, so thinning never hides the layers the text talks about."""
  from icl_jax.studies.layers import study_fraction_layer

  keep = set()
  for m in models:
    nl = data.n_layers(m) if data is not None else None
    if nl:
      keep |= set(study_fraction_layer(nl))
  groups = defaultdict(list)
  for r in rows:
    if isinstance(r.get("layer"), int) and numeric(r.get(metric)):
      groups[(r.get("model"), r.get("mode"), r.get("condition"))].append(r)
  for rs in groups.values():
    lm = layer_means(rs, metric)
    keep.add(max(sorted(lm), key=lambda l: lm[l][0]))
  return keep


def transfer_grid(rows, models, conditions, data, pair_filter=None,
                   metric="transfer", max_layers=None):
  """Mean transfer over pairs by (model, mode, condition) x layer."""
  layers = sorted({r["layer"] for r in rows if isinstance(r.get("layer"),
                                                          int)})
  if max_layers and len(layers) > max_layers:
    step = -(-len(layers) // max_layers)
    shown = set(layers[::step])
    # A row whose layers all fall between the shown columns (exp12's skip
    # groups, one layer each) keeps its own columns.
    groups = defaultdict(set)
    for r in rows:
      if isinstance(r.get("layer"), int):
        groups[(r.get("model"), r.get("mode"), r.get("condition"))].add(
            r["layer"])
    for g in groups.values():
      if not g & shown:
        shown |= g
    shown |= layers_always_shown(rows, models, data, metric) & set(layers)
    layers = sorted(shown)
  head = ["model", "mode", "condition"] + [f"L{l}" for l in layers]
  out = []
  for m in models:
    for mode in ("faithful", "aligned"):
      for c in conditions:
        rs = [r for r in rows if r.get("model") == m and r.get("mode") == mode
              and r.get("condition") == c and
              (pair_filter is None or pair_filter(r))]
        if not rs:
          continue
        lm = layer_means(rs, metric)
        out.append([short_model(m), mode, c] + [
            f2(lm[l][0]) if l in lm else "" for l in layers])
  return md_table(head, out)
