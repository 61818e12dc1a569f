"""Figures of the forward-only probe studies (localization, trajectory, task
decodability, task vectors): matplotlib, Agg backend, one PNG each."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def localization_curves(rows, path, model: str, n_layers: int,
                        probes, reference=None) -> None:
  """exp2: probe accuracy by layer, a panel per (probe, mode), a line per
  position; `reference` (the study's first-query curve, depth-scaled) is
  drawn in the faithful centroid panel."""
  modes = [m for m in ("faithful", "aligned")
           if any(r["mode"] == m for r in rows)]
  probes = [p for p in probes if any(r["probe"] == p for r in rows)]
  fig, axes = plt.subplots(len(probes), len(modes),
                           figsize=(5.2 * len(modes), 3.6 * len(probes)),
                           squeeze=False, sharey=True)
  for i, probe in enumerate(probes):
    for j, mode in enumerate(modes):
      ax = axes[i, j]
      sel = [r for r in rows if r["mode"] == mode and r["probe"] == probe]
      for pos in dict.fromkeys(r["condition"] for r in sel):
        pts = sorted((r["layer"], r["accuracy"]) for r in sel
                     if r["condition"] == pos)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".",
                label=pos)
      if mode == "faithful" and probe == "centroid" and reference:
        xs = [l * n_layers / len(reference) for l in range(len(reference))]
        ax.plot(xs, reference, color="gray", ls=":",
                label="study first_query (Llama-3B, depth-scaled)")
      ax.axhline(1 / 8, color="k", lw=0.6, ls="--")
      ax.set_title(f"{mode}, {probe} probe", fontsize=9)
      ax.set_xlabel("layer (block output)")
      ax.set_ylim(0, 1.05)
      ax.grid(alpha=0.3)
      ax.legend(fontsize=6, loc="lower right")
    axes[i, 0].set_ylabel("task-identity accuracy")
  fig.suptitle(f"exp2 localization on {model} (chance 1/8 dashed)",
               fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def trajectory_curves(rows, path, model: str, n_layers: int, position,
                      reference) -> None:
  """exp7: probe accuracy by layer (left) and the cosine change to the next
  layer (right) beside the study's depth-scaled `reference`; `position`
  maps a mode to its position name."""
  fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
  for key in sorted({(r["mode"], r["source_task"], r["probe"])
                     for r in rows}):
    pts = sorted((r["layer"], r["accuracy"]) for r in rows
                 if (r["mode"], r["source_task"], r["probe"]) == key)
    a1.plot([p[0] for p in pts], [p[1] for p in pts], marker=".",
            ls="-" if key[0] == "faithful" else "--",
            label=f"{key[0]} {key[1]} {key[2]}")
  a1.axhline(1 / 8, color="k", lw=0.6, ls=":")
  a1.set_ylim(0, 1.05)
  a1.set_xlabel("layer (block output)")
  a1.set_ylabel("probe accuracy")
  a1.legend(fontsize=6)
  a1.grid(alpha=0.3)
  for mode in dict.fromkeys(r["mode"] for r in rows):
    pts = sorted((r["layer"], r["cos_change_to_next"]) for r in rows
                 if r["mode"] == mode and r["source_task"] == "all"
                 and r["probe"] == "train_accuracy"
                 and r["cos_change_to_next"] is not None)
    a2.plot([p[0] for p in pts], [p[1] for p in pts], marker=".",
            label=f"{mode} ({position[mode]})")
  xs = [l * n_layers / (len(reference) + 1) for l in range(len(reference))]
  a2.plot(xs, reference, color="gray", ls=":",
          label="study (Llama-3B, depth-scaled)")
  a2.set_xlabel("layer L (change L -> L+1)")
  a2.set_ylabel("1 - mean cos")
  a2.legend(fontsize=7)
  a2.grid(alpha=0.3)
  fig.suptitle(f"exp7 trajectory on {model}", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def td_curves(analysis, rows, task_names, path, model: str,
              n_layers: int) -> None:
  """Task decodability: mean TD per layer (and the logistic probe), TD_z
  per task at the reference shot count, and r(TD_z, accuracy) per layer."""
  layers = analysis["layers"]
  shots = analysis["shots"]
  ref_k = analysis["correlation"]["td_at_peak_layer"]["peak_of_shots"]
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  for k in shots:
    axes[0].plot(layers, analysis["mean_td_by_layer"][str(k)], marker=".",
                 label=f"{k}-shot kNN TD")
    if "logistic_by_layer" in analysis:
      axes[0].plot(layers, analysis["logistic_by_layer"][str(k)], ls=":",
                   label=f"{k}-shot logistic (held-out)")
  axes[0].axhline(1 / len(task_names), color="k", lw=0.6, ls="--")
  axes[0].set_title("mean TD per layer (chance dashed)", fontsize=9)
  for t in task_names:
    pts = sorted((r["layer"], r["td"]) for r in rows
                 if r["metric"] == "td" and r["shots"] == ref_k
                 and r["source_task"] == t)
    axes[1].plot([p[0] for p in pts], [p[1] for p in pts], marker=".",
                 label=t)
  axes[1].set_title(f"TD_z per task, {ref_k}-shot", fontsize=9)
  by = analysis["correlation"]["by_layer"]
  axes[2].plot([b["layer"] for b in by],
               [np.nan if b["r"] is None else b["r"] for b in by], marker=".")
  axes[2].axhline(0, color="k", lw=0.6)
  axes[2].set_title("Pearson r(TD_z, accuracy) at each layer "
                    f"({len(analysis['points'])} points)", fontsize=9)
  for ax in axes:
    ax.set_xlabel("layer (block output)")
    ax.grid(alpha=0.3)
  for ax in axes[:2]:
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=6)
  fig.suptitle(f"Task decodability on {model} ({n_layers} layers)",
               fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def td_scatter(analysis, task_names, path) -> None:
  """Task decodability: TD_z at the peak layer vs strict accuracy, one
  point per (task, shot count), with the least-squares line."""
  shots = analysis["shots"]
  c = analysis["correlation"]["td_at_peak_layer"]
  fig, ax = plt.subplots(figsize=(6, 4.6))
  markers = {k: m for k, m in zip(shots, "os^vDP")}
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for p in analysis["points"]:
    ax.scatter(p["td"], p["accuracy"], marker=markers[p["shots"]],
               color=colors[task_names.index(p["task"]) % len(colors)])
  for i, t in enumerate(task_names):
    ax.scatter([], [], color=colors[i % len(colors)], label=t)
  for k in shots:
    ax.scatter([], [], marker=markers[k], color="gray", label=f"{k}-shot")
  if c.get("slope") is not None:
    xs = np.linspace(0, 1, 20)
    ax.plot(xs, c["slope"] * xs + c["intercept"], color="k", lw=0.8)
    ax.set_title(f"TD at layer {c['layer']} vs strict accuracy: "
                 f"r={c['r']:.3f}, R^2={c['R2']:.3f}, n={c['n_points']}",
                 fontsize=9)
  ax.set_xlabel("TD_z (leave-one-out 10-NN)")
  ax.set_ylabel("ICL accuracy (strict)")
  ax.set_xlim(-0.02, 1.02)
  ax.set_ylim(-0.02, 1.02)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6, loc="upper left")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def task_vector_accuracy(summary, path, model: str, conditions) -> None:
  """Task-vector injection: mean accuracy by layer per condition (left) and
  per task at the best layer (right)."""
  layers = summary["layers"]
  fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
  for c in conditions:
    ys = [summary["mean_accuracy"][c][str(l)] for l in layers]
    a1.plot(layers, ys, marker="o", label=c)
  a1.axhline(summary["mean_accuracy_none"], color="k", ls="--",
             label="none (no injection)")
  a1.set_xlabel("layer (block output) of the injection")
  a1.set_ylabel("mean strict accuracy over tasks")
  a1.set_ylim(-0.02, 1.02)
  a1.grid(alpha=0.3)
  a1.legend(fontsize=7)
  best = summary["best_layer"]
  tasks = list(summary["per_task_at_best_layer"])
  width = 0.8 / (len(conditions) + 1)
  for j, c in enumerate(["none"] + list(conditions)):
    a2.bar([i + j * width for i in range(len(tasks))],
           [summary["per_task_at_best_layer"][t][c] for t in tasks], width,
           label=c)
  a2.set_xticks([i + 0.4 for i in range(len(tasks))], tasks, rotation=45,
                ha="right", fontsize=7)
  a2.set_ylim(0, 1.02)
  a2.set_title(f"per task at layer {best}", fontsize=9)
  a2.legend(fontsize=7)
  fig.suptitle(f"task-vector injection on {model} ({summary['edit']}, "
               f"{summary['target_shots']}-shot targets)", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
