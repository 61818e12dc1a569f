"""Plots of result rows (matplotlib, Agg backend)."""

from __future__ import annotations

from collections import defaultdict

from icl_jax.analysis import figures


def transfer_by_layer(rows, path, title: str = "", metric: str = "transfer",
                      n_layers: int | None = None):
  """One panel per (source, target) pair; a line per condition and mode
  (colour = condition, line style = mode, the same in every figure). The
  title gets the metric and the prompts per cell (N) from the rows."""
  fig = transfer_by_layer_figure(rows, title, metric)
  return None if fig is None else figures.save_figure(fig, path)


def transfer_by_layer_figure(rows, title: str = "",
                             metric: str = "transfer"):
  """The figure of `transfer_by_layer` (None without rows)."""
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
              ls=figures.mode_style(mode), marker=".",
              color=figures.condition_color(cond), label=f"{cond} ({mode})")
    ax.set_title(f"{s} -> {t}", fontsize=9)
    ax.set_xlabel("layer (block output)")
    figures.integer_ticks(ax)
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
  ns = sorted({r["n"] for r in rows if isinstance(r.get("n"), int)})
  n_text = (f"N={ns[0]}" if len(ns) == 1 else
            f"N={ns[0]}-{ns[-1]}" if ns else "")
  full = "; ".join(x for x in (title, f"{metric} rate", n_text) if x)
  figures.finish_grid(fig, axes, len(pairs), f"{metric} rate", full)
  return fig


def baseline_bars(records, path, title: str, threshold: float) -> None:
  """exp1: grouped bars of faithful vs strict accuracy per task, the pass
  threshold dashed."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  names = [r["source_task"] for r in records]
  x = np.arange(len(names))
  fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names)), 4))
  ax.bar(x - 0.2, [r["accuracy_faithful"] for r in records], 0.4,
         label="faithful (D1)")
  ax.bar(x + 0.2, [r["accuracy_strict"] for r in records], 0.4,
         label="strict")
  ax.axhline(threshold, color="gray", lw=0.8, ls="--")
  ax.set_xticks(x, names, rotation=45, ha="right")
  ax.set_ylim(0, 1.05)
  ax.set_ylabel("accuracy")
  ax.set_title(title)
  ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def layout_overwrites(layout_rows, tasks, path, model: str):
  """exp28: target query tokens the faithful all_demo indices overwrite,
  source x target."""
  import numpy as np

  m = source_target_matrix([r for r in layout_rows if r["mode"] == "faithful"],
                           tasks, "query_tokens_overwritten")
  return figures.heatmap(
      m, tasks, tasks, path,
      title=f"faithful all_demo: target query tokens overwritten "
            f"({model} tokenizer)", vmin=0,
      vmax=max(1.0, float(np.nanmax(m)) if m.size else 1.0), cmap="magma")


def transfer_by_positions(rows, path, model: str):
  """exp31: mean transfer vs the number of output positions patched (with
  all inputs), a curve per layer, a panel per mode."""
  panels = defaultdict(dict)
  for mode in sorted({r["mode"] for r in rows}):
    for layer in sorted({r["layer"] for r in rows if r["mode"] == mode}):
      pts = defaultdict(list)
      for r in rows:
        if (r["mode"], r["layer"]) == (mode, layer) and r["condition"] in (
            "random_outputs", "all_positions"):
          pts[r["size"]].append(r["transfer"])
      xs = sorted(pts)
      if xs:
        panels[f"{mode}"][f"L{layer} ({mode})"] = (
            xs, [sum(pts[x]) / len(pts[x]) for x in xs])
  return figures.curves(panels, path, "output positions patched (+ all "
                        "inputs)", "mean transfer",
                        title=f"exp31 on {model} (rightmost point: all "
                              "outputs)")


def source_target_matrix(rows, tasks, metric: str = "transfer"):
  """source x target matrix of `metric` (NaN where no row)."""
  import numpy as np

  idx = {t: i for i, t in enumerate(tasks)}
  m = np.full((len(tasks), len(tasks)), np.nan)
  for r in rows:
    if r["source_task"] in idx and r["target_task"] in idx:
      m[idx[r["source_task"]], idx[r["target_task"]]] = r[metric]
  return m


def pair_matrices(rows, path_dir, model: str, n_layers: int, summary,
                  task_order):
  """exp29: source x target transfer matrices per (mode, condition), at the
  study layer and the best layer (and one panel per layer when several
  ran). `summary`: `studies.pair_matrix.summarize`'s."""
  tasks = [t for t in task_order
           if any(r["source_task"] == t or r["target_task"] == t
                  for r in rows)]
  extra = sorted({r[k] for r in rows for k in ("source_task", "target_task")}
                 - set(tasks))
  tasks += extra
  out = []
  for mode in sorted({r["mode"] for r in rows}):
    for cond in sorted({r["condition"] for r in rows}):
      rs = [r for r in rows if r["mode"] == mode and r["condition"] == cond]
      layers = sorted({r["layer"] for r in rs})
      per = [p for p in summary["per_layer"]
             if p["mode"] == mode and p["condition"] == cond]
      best = max(per, key=lambda p: p["mean_transfer"])["layer"]
      shown = [l for l in dict.fromkeys([summary["study_layer"], best])
               if l in layers] or [best]
      suffix = "" if cond == "all_demo" else f"_{cond}"
      mats = {f"layer {l} (depth {l / n_layers:.2f})":
              source_target_matrix([r for r in rs if r["layer"] == l],
                                   tasks)
              for l in shown}
      out.append(figures.heatmap_grid(
          mats, tasks, tasks,
          path_dir / f"transfer_matrix_{mode}{suffix}.png",
          title=f"exp29 transfer ({mode}, {cond}) on {model}; rows = "
                "source, cols = target", ncol=2))
      if len(layers) > 1:
        out.append(figures.heatmap_grid(
            {f"L{l}": source_target_matrix(
                [r for r in rs if r["layer"] == l], tasks)
             for l in layers}, tasks, tasks,
            path_dir / f"transfer_matrix_{mode}{suffix}_by_layer.png",
            title=f"exp29 transfer by layer ({mode}, {cond}) on {model}"))
  return out


def ontology_figures(rows, modes, regimes, out_dir, model: str,
                     study_layer: int) -> None:
  """exp6: per mode the similarity matrix and PCA at the layer nearest the
  study's, and the structure curves by layer (silhouette_by_layer.png)."""
  from icl_jax.analysis import reference

  curves = {}
  for mode in modes:
    rs = sorted((r for r in rows if r["mode"] == mode), key=lambda r:
                r["layer"])
    if not rs:
      continue
    curves[f"silhouette ({mode})"] = ([r["layer"] for r in rs],
                                      [r["silhouette"] or 0 for r in rs])
    curves[f"within-between cosine ({mode})"] = (
        [r["layer"] for r in rs], [r["within"] - r["between"] for r in rs])
    pick = min(rs, key=lambda r: abs(r["layer"] - study_layer))
    figures.heatmap(pick["similarity"], pick["tasks"], pick["tasks"],
                    out_dir / f"similarity_{mode}.png",
                    title=f"task-vector cosine, {mode}, L{pick['layer']} "
                          f"({model})", vmin=min(0.0, min(
                              min(x) for x in pick["similarity"])),
                    xlabel="task", ylabel="task")
    figures.points_2d(pick["pca"], out_dir / f"pca_{mode}.png",
                      title=f"PCA of task vectors, {mode}, L{pick['layer']}",
                      groups=regimes)
  ref = reference.EXP6
  figures.curves({"exp6 structure by layer": curves},
                 out_dir / "silhouette_by_layer.png", "layer", "value",
                 title=f"exp6 on {model} (reference Llama-3B L14: "
                       f"silhouette {ref['silhouette']}, within-"
                       f"between {ref['within'] - ref['between']:.3f})",
                 ylim=None)
