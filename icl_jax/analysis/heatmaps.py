"""Heatmaps of result rows (transfer by layer x pair, disruption by task x
layer, ...), one panel per group of rows. matplotlib, Agg backend."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np


def _getter(spec) -> Callable[[dict], object]:
  if callable(spec):
    return spec
  if isinstance(spec, (tuple, list)):
    keys = tuple(spec)
    return lambda r: " / ".join(str(r.get(k)) for k in keys)
  return lambda r: r.get(spec)


def _order(labels: Sequence) -> list:
  uniq = list(dict.fromkeys(labels))
  if all(isinstance(v, (int, float)) and not isinstance(v, bool)
         for v in uniq):
    return sorted(uniq)
  return uniq


def heatmap(rows: Sequence[dict], path, *, x, y, value, panel=("mode",),
            title: str = "", vmin: float | None = 0.0,
            vmax: float | None = 1.0, cmap: str = "viridis",
            xlabel: str = "", ylabel: str = "", annotate: bool | None = None,
            max_panels: int = 12):
  """Draws mean(`value`) on a y x x grid, one panel per `panel` group.

  x, y, value, panel: a row key, a tuple of keys (joined labels) or a
  function of the row. Rows whose value is None are skipped. Labels keep
  their order of appearance unless all are numbers (then sorted). Returns
  the path, or None when there is nothing to draw.
  """
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  gx, gy, gv, gp = _getter(x), _getter(y), _getter(value), _getter(panel)
  groups: dict = defaultdict(list)
  for r in rows:
    v = gv(r)
    if v is None:
      continue
    groups[gp(r)].append((gx(r), gy(r), float(v)))
  if not groups:
    return None
  keys = list(groups)[:max_panels]
  ncol = min(3, len(keys))
  nrow = -(-len(keys) // ncol)
  # Size panels by their grid.
  dims = []
  for k in keys:
    xs = _order([p[0] for p in groups[k]])
    ys = _order([p[1] for p in groups[k]])
    dims.append((xs, ys))
  label = max(len(str(v)) for d in dims for v in d[1])
  w = max(3.2, min(12.0, 0.42 * max(len(d[0]) for d in dims) + 1.6 +
                   0.07 * label))
  h = max(2.4, min(14.0, 0.3 * max(len(d[1]) for d in dims) + 1.6))
  fig, axes = plt.subplots(nrow, ncol, figsize=(w * ncol, h * nrow),
                           squeeze=False, constrained_layout=True)
  im = None
  for ax, k, (xs, ys) in zip(axes.flat, keys, dims):
    acc = defaultdict(list)
    for px, py, v in groups[k]:
      acc[(px, py)].append(v)
    grid = np.full((len(ys), len(xs)), np.nan)
    for (px, py), vals in acc.items():
      grid[ys.index(py), xs.index(px)] = float(np.mean(vals))
    im = ax.imshow(grid, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                   interpolation="nearest")
    ax.set_xticks(range(len(xs)))
    ax.set_xticklabels([str(v) for v in xs], fontsize=7,
                       rotation=90 if len(xs) > 12 or any(
                           len(str(v)) > 4 for v in xs) else 0)
    ax.set_yticks(range(len(ys)))
    ax.set_yticklabels([str(v) for v in ys], fontsize=7)
    ax.set_title(str(k), fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    show = annotate if annotate is not None else (
        len(xs) * len(ys) <= 400 and len(xs) <= 30)
    if show:
      for i in range(len(ys)):
        for j in range(len(xs)):
          if not np.isnan(grid[i, j]):
            r, g, b, _ = im.cmap(im.norm(grid[i, j]))
            light = 0.299 * r + 0.587 * g + 0.114 * b > 0.55
            ax.text(j, i, _fmt(grid[i, j]), ha="center", va="center",
                    fontsize=5.5, color="k" if light else "w")
  for ax in axes.flat[len(keys):]:
    ax.axis("off")
  if im is not None:
    fig.colorbar(im, ax=list(axes.flat[:len(keys)]), shrink=0.8)
  if title:
    fig.suptitle(title, fontsize=10)
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def _fmt(v: float) -> str:
  if v == int(v):
    return str(int(v))
  return f"{v:.2f}".replace("0.", ".", 1)


def pair_label(r: dict) -> str:
  return f"{r['source_task']}->{r['target_task']}"
