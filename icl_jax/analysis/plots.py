"""Plots of result rows (matplotlib, Agg backend)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def transfer_by_layer(rows, path, title: str = "", metric: str = "transfer",
                      n_layers: int | None = None):
  """One panel per (source, target) pair; a line per condition and mode."""
  pairs = sorted({(r["source_task"], r["target_task"]) for r in rows})
  if not pairs:
    return None
  ncol = min(3, len(pairs))
  nrow = -(-len(pairs) // ncol)
  fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.2 * nrow),
                           squeeze=False, sharey=True)
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
  for ax in axes.flat[len(pairs):]:
    ax.axis("off")
  axes[0, 0].set_ylabel(f"{metric} rate")
  handles, labels = axes.flat[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7,
             bbox_to_anchor=(0.5, -0.02))
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout(rect=(0, 0.06, 1, 1))
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
