"""Figures beyond transfer-by-layer: matrices, curves, scatter plots.

All functions write a PNG (matplotlib, Agg backend) and return its path, or
None when there is nothing to draw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from icl_jax.analysis.stats import pearson  # noqa: E402


def save_figure(fig, path, tight: bool = True, dpi: int = 110):
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
  plt.close(fig)
  return Path(path)


def panel_grid(n_panels: int):
  """Up to 3 columns of 4.6 x 3.2 in panels sharing y: (fig, axes [r,c])."""
  ncol = min(3, n_panels)
  nrow = -(-n_panels // ncol)
  return plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.2 * nrow),
                      squeeze=False, sharey=True)


def finish_grid(fig, axes, n_used: int, ylabel: str, title: str = ""):
  """Hides unused panels; y label, the title, and one shared legend below
  the panels, inside the figure: the panels are laid out again above the
  legend's measured height, so a saved figure (tight or not) never cuts it."""
  for ax in axes.flat[n_used:]:
    ax.axis("off")
  axes[0, 0].set_ylabel(ylabel)
  handles, labels = axes.flat[0].get_legend_handles_labels()
  if title:
    fig.suptitle(title, fontsize=10)
  if not handles:
    fig.tight_layout()
    return
  legend = fig.legend(handles, labels, loc="lower center",
                      ncol=min(4, len(labels)), fontsize=7,
                      bbox_to_anchor=(0.5, 0.005), frameon=False)
  fig.canvas.draw()
  height = legend.get_window_extent().height / fig.bbox.height
  fig.tight_layout(rect=(0, min(0.6, height + 0.01), 1, 1))


def integer_ticks(ax, axis: str = "x") -> None:
  """Integer-only major ticks (layers, counts): no '2.5' layer labels."""
  from matplotlib.ticker import MaxNLocator
  getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True))


# One colour per condition and one line style per mode, in every figure.
CONDITION_ORDER = ("all_demo", "output_only", "input_only", "last_demo",
                   "answer_tokens", "output_tokens", "first_query_token",
                   "last_demo_token", "query_only", "all_positions",
                   "random_outputs", "true_source", "shuffled", "random",
                   "baseline")
MODE_STYLE = {"faithful": "-", "aligned": "--"}


def condition_color(condition: str):
  """A fixed colour for each known condition (tab20 by its place in
  CONDITION_ORDER); others get a stable colour from their name."""
  import zlib
  base = condition.split("/")[0]
  i = (CONDITION_ORDER.index(base) if base in CONDITION_ORDER
       else len(CONDITION_ORDER) + zlib.crc32(base.encode()) % 5)
  return plt.cm.tab20(i % 20)


def mode_style(mode: str) -> str:
  return MODE_STYLE.get(mode, ":")


def short(name: str) -> str:
  return {"pattern_completion": "pattern", "first_letter": "first_let",
          "sentiment_goodbad": "sent_gb", "sentiment_symbol": "sent_sym",
          "repeat_word": "repeat_w"}.get(name, name)


def _draw_matrix(ax, m, rows, cols, vmin, vmax, cmap, annotate=True):
  im = ax.imshow(np.ma.masked_invalid(m), vmin=vmin, vmax=vmax, cmap=cmap)
  ax.set_xticks(range(len(cols)))
  ax.set_xticklabels([short(c) for c in cols], rotation=60, ha="right",
                     fontsize=7)
  ax.set_yticks(range(len(rows)))
  ax.set_yticklabels([short(r) for r in rows], fontsize=7)
  if annotate and m.size <= 144:
    for i in range(m.shape[0]):
      for j in range(m.shape[1]):
        if np.isfinite(m[i, j]):
          v = m[i, j]
          ax.text(j, i, f"{v:.2f}".lstrip("0") if 0 <= v < 1 else f"{v:.1f}",
                  ha="center", va="center", fontsize=6,
                  color="white" if (v - vmin) < 0.5 * (vmax - vmin) else
                  "black")
  return im


def heatmap(matrix, row_labels: Sequence[str], col_labels: Sequence[str],
            path, title: str = "", vmin: float = 0.0, vmax: float = 1.0,
            cmap: str = "viridis", xlabel: str = "target",
            ylabel: str = "source"):
  m = np.asarray(matrix, float)
  if m.size == 0:
    return None
  fig, ax = plt.subplots(figsize=(1.0 + 0.55 * m.shape[1],
                                  1.0 + 0.5 * m.shape[0]))
  im = _draw_matrix(ax, m, row_labels, col_labels, vmin, vmax, cmap)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
  if title:
    ax.set_title(title, fontsize=9)
  return save_figure(fig, path)


def heatmap_grid(matrices: Mapping[str, np.ndarray], row_labels, col_labels,
                 path, title: str = "", vmin: float = 0.0, vmax: float = 1.0,
                 cmap: str = "viridis", ncol: int = 6):
  """Small multiples: one matrix per panel (e.g. one per layer)."""
  items = list(matrices.items())
  if not items:
    return None
  ncol = min(ncol, len(items))
  nrow = -(-len(items) // ncol)
  fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.7 * nrow),
                           squeeze=False)
  im = None
  for ax, (name, m) in zip(axes.flat, items):
    im = _draw_matrix(ax, np.asarray(m, float), row_labels, col_labels, vmin,
                      vmax, cmap, annotate=False)
    ax.set_title(name, fontsize=8)
    ax.tick_params(labelsize=5)
  for ax in axes.flat[len(items):]:
    ax.axis("off")
  if im is not None:
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.02, pad=0.02)
  if title:
    fig.suptitle(title, fontsize=10)
  return save_figure(fig, path)


def curves(panels: Mapping[str, Mapping[str, tuple]], path, xlabel: str,
           ylabel: str, title: str = "", ylim=(-0.05, 1.05),
           logx: bool = False, integer_x: bool | None = None):
  """panels: {panel title: {line label: (xs, ys)}}. Integer x ticks when
  `integer_x` (default: when the x label names layers)."""
  if integer_x is None:
    integer_x = "layer" in xlabel.lower()
  items = [(k, v) for k, v in panels.items() if v]
  if not items:
    return None
  fig, axes = panel_grid(len(items))
  for ax, (name, lines) in zip(axes.flat, items):
    for label, (xs, ys) in sorted(lines.items()):
      ax.plot(list(xs), list(ys), marker=".", label=label,
              ls="--" if "aligned" in label else "-")
    ax.set_title(name, fontsize=9)
    ax.set_xlabel(xlabel)
    if ylim:
      ax.set_ylim(*ylim)
    if logx:
      ax.set_xscale("log")
    elif integer_x:
      integer_ticks(ax)
    ax.grid(alpha=0.3)
  finish_grid(fig, axes, len(items), ylabel, title)
  return save_figure(fig, path)


def scatter(series: Mapping[str, tuple], path, xlabel: str, ylabel: str,
            title: str = ""):
  """series: {label: (xs, ys)}."""
  if not series:
    return None
  fig, ax = plt.subplots(figsize=(5, 4))
  for label, (xs, ys) in series.items():
    ax.scatter(list(xs), list(ys), s=14, alpha=0.7, label=label)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  if title:
    ax.set_title(title, fontsize=9)
  return save_figure(fig, path)


def points_2d(points: Mapping[str, tuple], path, title: str = "",
              groups: Mapping[str, str] | None = None):
  """Labelled 2-D points (e.g. PCA of task vectors), coloured by group."""
  if not points:
    return None
  fig, ax = plt.subplots(figsize=(5, 4))
  names = list(points)
  gs = sorted({(groups or {}).get(n, "") for n in names})
  colors = {g: plt.cm.tab10(i % 10) for i, g in enumerate(gs)}
  for n in names:
    x, y = points[n][:2]
    g = (groups or {}).get(n, "")
    ax.scatter([x], [y], color=colors[g], s=30)
    ax.annotate(short(n), (x, y), fontsize=7, xytext=(3, 3),
                textcoords="offset points")
  ax.grid(alpha=0.3)
  ax.set_xlabel("PC1")
  ax.set_ylabel("PC2")
  if title:
    ax.set_title(title, fontsize=9)
  return save_figure(fig, path)


def estimate_vs_exact(families: Mapping[str, dict], path, title: str = ""):
  """Where a linear estimate (attribution patching) and the exact effect
  disagree, one column per family.

  families: {name: {"estimate": [R,K,N], "exact": [R,K,N], "rows": R row
  labels (layers), "cols": K column labels (positions, heads, or one)}}.
  Top: estimate vs exact for every (row, column, prompt), coloured by row,
  with the y = x line. Bottom: the mean over prompts of estimate - exact
  per (row, column) on a symmetric diverging scale (red: overestimated).
  """
  if not families:
    return None
  n = len(families)
  fig, axes = plt.subplots(2, n, figsize=(5.4 * n, 8.6), squeeze=False,
                           gridspec_kw={"height_ratios": [1, 1.25]},
                           layout="constrained")
  for j, (name, f) in enumerate(families.items()):
    est = np.asarray(f["estimate"], float)
    exact = np.asarray(f["exact"], float)
    if est.shape != exact.shape or est.ndim != 3:
      raise ValueError(f"{name}: estimate {est.shape} and exact "
                       f"{exact.shape} must both be [rows, cols, prompts]")
    R = est.shape[0]
    ax = axes[0, j]
    row_of = np.broadcast_to(np.arange(R)[:, None, None], est.shape)
    sc = ax.scatter(exact.ravel(), est.ravel(), c=row_of.ravel(), s=8,
                    alpha=0.6, cmap="viridis", vmin=0, vmax=max(R - 1, 1))
    lo = float(min(est.min(), exact.min()))
    hi = float(max(est.max(), exact.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
    r = (pearson(est.ravel(), exact.ravel())[0]
         if est.size >= 3 and est.std() > 0 and exact.std() > 0 else np.nan)
    ax.set_title(f"{name}\nPearson {r:.2f}, {est.size} values", fontsize=9)
    ax.set_xlabel("exact effect")
    ax.set_ylabel("estimate")
    ax.grid(alpha=0.3)
    cb = fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label("layer index (row)", fontsize=7)
    diff = (est - exact).mean(axis=2)  # [R, K]
    lim = float(np.abs(diff).max()) or 1.0
    ax = axes[1, j]
    im = ax.imshow(diff, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
    cols, rows = list(f["cols"]), list(f["rows"])
    step = max(1, len(cols) // 12)
    ax.set_xticks(range(0, len(cols), step))
    ax.set_xticklabels([str(c) for c in cols[::step]], fontsize=7,
                       rotation=60)
    rstep = max(1, len(rows) // 15)
    ax.set_yticks(range(0, len(rows), rstep))
    ax.set_yticklabels([str(x) for x in rows[::rstep]], fontsize=7)
    ax.set_xlabel(f.get("col_label", ""))
    ax.set_ylabel("layer")
    ax.set_title("mean over prompts of estimate - exact", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
  if title:
    fig.suptitle(title, fontsize=10)
  return save_figure(fig, path, tight=False)
