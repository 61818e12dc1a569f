"""The figure under the summary table: per model, the multi-position
transfer claims' curves -- the pair mean (pairs the model can do, as in the
summary's rows) by layer for each condition and mode, with the 95%
interval that resamples prompts (`cluster_stats.pooled_rate`) shaded. It
reads the rows the summary's transfer claims read (exp23 at N=50, else the
main job)."""

from __future__ import annotations

from icl_jax.analysis import cluster_stats as CS
from icl_jax.analysis.figures import (condition_color, finish_grid,
                                      integer_ticks, mode_style, panel_grid,
                                      save_figure)
from icl_jax.analysis.report.data import Data
from icl_jax.analysis.report.headlines import ModelRows
from icl_jax.analysis.report.markdown import images, short_model

FIG_DIR = ("report_figures", "summary")
CONDITIONS = ("all_demo", "output_only", "last_demo_token", "input_only",
              "last_demo")


def layer_curves(c: ModelRows) -> dict:
  """{(condition, mode): [(layer, mean, lo, hi), ...]} of the model's pair
  mean by layer, over the pairs it can do; {} without rows."""
  src = c.stats or c.mrows
  out = {}
  for cond in CONDITIONS:
    for mode in ("faithful", "aligned"):
      rs, _ = c.doable(c.rows(src, mode, condition=cond), mode)
      pts = []
      for layer in sorted({r["layer"] for r in rs
                           if isinstance(r.get("layer"), int)}):
        p = CS.pooled_rate([r for r in rs if r.get("layer") == layer])
        if p is not None:
          pts.append((layer, p["mean"], p["lo"], p["hi"]))
      if pts:
        out[(cond, mode)] = pts
  return out


def _panel_title(c: ModelRows) -> str:
  src = c.stats or c.mrows
  ns = sorted({r["n"] for r in src if isinstance(r.get("n"), int)})
  pairs = {(r["source_task"], r["target_task"]) for r in src}
  exp = "exp23" if c.stats else "main job"
  return (f"{c.M}: {exp}, N={'/'.join(map(str, ns))}, "
          f"mean of <= {len(pairs)} pairs")


def render_summary_figure(data: Data) -> str:
  """Markdown embedding the figure (empty without transfer rows)."""
  panels = []
  for m in data.models(("proper_stats", "main_prefill", "multi_position")):
    c = ModelRows(data, m)
    curves = layer_curves(c)
    if curves:
      panels.append((c, curves))
  if not panels:
    return ""
  fig, axes = panel_grid(len(panels))
  for ax, (c, curves) in zip(axes.flat, panels):
    for (cond, mode), pts in sorted(curves.items()):
      xs = [p[0] for p in pts]
      color = condition_color(cond)
      ax.plot(xs, [p[1] for p in pts], ls=mode_style(mode), marker=".",
              color=color, label=f"{cond} ({mode})")
      ax.fill_between(xs, [p[2] for p in pts], [p[3] for p in pts],
                      color=color, alpha=0.12, lw=0)
    ax.set_title(_panel_title(c), fontsize=8)
    ax.set_xlabel("layer (block output)")
    ax.set_ylim(-0.05, 1.05)
    integer_ticks(ax)
    ax.grid(alpha=0.3)
  # The shared legend reads the first panel: give it every line.
  first = set(panels[0][1])
  for cond, mode in sorted({k for _, cv in panels for k in cv} - first):
    axes.flat[0].plot([], [], ls=mode_style(mode), marker=".",
                      color=condition_color(cond), label=f"{cond} ({mode})")
  finish_grid(fig, axes, len(panels), "transfer rate (pair mean)",
              "Transfer by layer (pair mean); shaded: 95% "
              "interval over prompts; pairs the model cannot do "
              "left out")
  path = save_figure(fig, data.out_dir.joinpath(*FIG_DIR,
                                                "transfer_by_layer.png"))
  return ("The summary's transfer claims as curves (each point is the pair "
          "mean at one layer, not a held-out estimate: the table's best-"
          "layer values are chosen and estimated on disjoint halves of the "
          "prompts):\n\n" + images(data, [path]) +
          f"\nModels: {', '.join(short_model(c.model) for c, _ in panels)}"
          ".\n\n")
