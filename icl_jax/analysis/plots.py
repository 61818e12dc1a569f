"""Plots of result rows (matplotlib, Agg backend)."""

from __future__ import annotations

from collections import defaultdict

from icl_jax.analysis import figures


def transfer_by_layer(rows, path, title: str = "", metric: str = "transfer",
                      n_layers: int | None = None):
  """One panel per (source, target) pair; a line per condition and mode."""
  pairs = sorted({(r["source_task"], r["target_task"]) for r in rows})
  if not pairs:
    return None
  fig, axes = figures.panel_grid(len(pairs))
  for ax, (s, t) in zip(axes.flat, pairs):
    lines = defaultdict(list)
    for r in rows:
      if (r["source_task"], r["target_task"]) == (s, t):
        cond = r["condition"]
        if r.get("timing", "prefill") != "prefill":
          cond += f"/{r['timing']}"
        lines[(r["mode"], cond)].append((r["layer"], r[metric]))
    for (mode, cond), pts in sorted(lines.items()):
      pts.sort()
      ax.plot([p[0] for p in pts], [p[1] for p in pts],
              ls="-" if mode == "faithful" else "--", marker=".",
              label=f"{cond} ({mode})")
    ax.set_title(f"{s} -> {t}", fontsize=9)
    ax.set_xlabel("layer (block output)")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
  figures.finish_grid(fig, axes, len(pairs), f"{metric} rate", title,
                      legend_y=-0.02)
  return figures.save_figure(fig, path, tight=False)
