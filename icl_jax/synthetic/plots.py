"""Figures for the synthetic emergence study (matplotlib, Agg backend).

Layer labels: residual index ``i`` (0 = embeddings, ``i`` = output of block
``i`` counting from 1), which is the paper's 1-indexed "layer i" (its
"layer 5" = index 5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from icl_jax.analysis.figures import save_figure  # noqa: E402

BASIS_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
                "tab:brown", "tab:pink", "tab:gray")


def layer_name(i: int) -> str:
  return "emb" if i == 0 else f"L{i}"


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``[M, D] -> ([M, 2] projection, explained-variance ratios [2])``."""
  x = np.asarray(x, np.float64)
  x = x - x.mean(axis=0, keepdims=True)
  _, s, vt = np.linalg.svd(x, full_matrices=False)
  var = s**2
  ratio = var[:2] / max(var.sum(), 1e-30)
  return x @ vt[:2].T, ratio


def _epoch_axis(ax, steps_per_epoch: int):
  sec = ax.secondary_xaxis(
      "top",
      functions=(lambda s: s / steps_per_epoch, lambda e: e * steps_per_epoch),
  )
  sec.set_xlabel(f"epoch (assumed {steps_per_epoch} steps)")


def plot_emergence(
    log: dict[str, Any], path: str | Path, td_position: str = "y",
    title: str | None = None,
) -> Path:
  """Per-basis loss and TD per layer over training, on one figure."""
  cfg = log["config"]
  spe = cfg["steps_per_epoch"]
  nb = cfg["task"]["n_bases"]
  ev = sorted(log["eval"], key=lambda e: e["step"])
  tr = sorted(log["train"], key=lambda e: e["step"])
  steps = np.array([e["step"] for e in ev])
  mse = np.array([e["mse_per_basis"] for e in ev])  # [E, nb]
  td = np.array([e[f"td_{td_position}"] for e in ev])  # [E, L+1]

  key_b = f"td_{td_position}_per_basis"
  has_b = all(key_b in e for e in ev)
  fig, axes = plt.subplots(3 if has_b else 2, 1, figsize=(9, 11 if has_b else 8),
                           sharex=True)
  ax = axes[0]
  if tr:
    tsteps = np.array([e["step"] for e in tr])
    tloss = np.array([e["loss_per_basis"] for e in tr])
    for b in range(nb):
      ax.plot(tsteps, tloss[:, b], color=BASIS_COLORS[b % 8], alpha=0.25, lw=0.8)
  for b in range(nb):
    ax.plot(steps, mse[:, b], color=BASIS_COLORS[b % 8], lw=2,
            label=f"basis B{b + 1} (test)")
  ax.set_yscale("log")
  ax.set_ylabel("MSE (test: thick; train: faint)")
  ax.legend(loc="upper right", fontsize=8)
  ax.grid(alpha=0.3)
  _epoch_axis(ax, spe)
  ax.set_title(title or "Per-basis loss (task decoding) and TD (task encoding)")

  ax = axes[1]
  n_res = td.shape[1]
  cmap = plt.get_cmap("viridis")
  for i in range(n_res):
    ax.plot(steps, td[:, i], color=cmap(i / max(n_res - 1, 1)), lw=1.5,
            label=layer_name(i))
  ax.axhline(1.0 / nb, color="k", ls=":", lw=1, label=f"chance {1 / nb:.2f}")
  ax.set_ylim(0, 1.05)
  ax.set_ylabel(f"mean TD (kNN k={cfg['td_k']}, {td_position}_K token)")
  ax.legend(loc="upper left", fontsize=7, ncol=2)
  ax.grid(alpha=0.3)
  if has_b:
    ax = axes[2]
    td_b = np.array([e[key_b] for e in ev])  # [E, L+1, nb]
    best = int(np.argmax(td[-1]))
    for b in range(nb):
      ax.plot(steps, td_b[:, best, b], color=BASIS_COLORS[b % 8], lw=1.5,
              label=f"B{b + 1}")
    ax.axhline(1.0 / nb, color="k", ls=":", lw=1)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"TD per basis at {layer_name(best)}")
    ax.legend(loc="upper left", fontsize=7, ncol=4)
    ax.grid(alpha=0.3)
  # Curriculum stage changes (training data only; test/TD sets = full task).
  changes = []
  for prev, cur in zip(tr, tr[1:]):
    if "active_rank" in cur and cur.get("active_rank") != prev.get("active_rank"):
      changes.append((prev["step"], cur["active_rank"]))
  if changes:
    for a in axes:
      for s_change, _ in changes:
        a.axvline(s_change, color="gray", ls="--", lw=0.8)
    for s_change, rank in changes:
      axes[0].annotate(f"train rank {rank}", (s_change, 1.0),
                       xycoords=("data", "axes fraction"), fontsize=7,
                       ha="left", va="top", color="gray")
  axes[-1].set_xlabel("training step")
  fig.tight_layout()
  return save_figure(fig, path, tight=False, dpi=120)


def plot_projection(
    snapshots: Sequence[dict[str, Any]],
    layers: Sequence[int],
    path: str | Path,
    steps_per_epoch: int,
    position: str = "y",
) -> Path:
  """PCA 2-D of residuals: rows = layers, columns = snapshot steps."""
  nrows, ncols = len(layers), len(snapshots)
  fig, axes = plt.subplots(
      nrows, ncols, figsize=(3.2 * ncols, 3.0 * nrows), squeeze=False
  )
  for c, snap in enumerate(snapshots):
    labels = np.asarray(snap["labels"])
    feats = np.asarray(snap[f"feat_{position}"])
    td = np.asarray(snap[f"td_{position}"])
    for r, layer in enumerate(layers):
      ax = axes[r, c]
      proj, ratio = pca_2d(feats[layer])
      for b in np.unique(labels):
        sel = labels == b
        ax.scatter(proj[sel, 0], proj[sel, 1], s=6, alpha=0.7,
                   color=BASIS_COLORS[int(b) % 8], label=f"B{int(b) + 1}")
      step = int(snap["step"])
      ax.set_title(
          f"step {step} (ep {step / steps_per_epoch:g}), {layer_name(layer)}\n"
          f"TD={td[layer]:.2f}, PC var {ratio.sum():.0%}",
          fontsize=8,
      )
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0 and c == 0:
        ax.legend(fontsize=7, markerscale=2)
  fig.suptitle(f"PCA of residuals at the {position}_K token", fontsize=10)
  fig.tight_layout()
  return save_figure(fig, path, tight=False, dpi=120)


def plot_mse_vs_examples(
    log: dict[str, Any],
    baselines: dict[str, np.ndarray],
    path: str | Path,
    steps: Sequence[int] | None = None,
) -> Path:
  """Test MSE versus number of in-context examples, with baselines."""
  ev = {e["step"]: e for e in log["eval"]}
  final = max(ev)
  nb = log["config"]["task"]["n_bases"]
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  ax = axes[0]
  by_index = np.array(ev[final]["mse_by_index"])  # [nb, K]
  k = np.arange(by_index.shape[1])
  for b in range(nb):
    ax.plot(k, by_index[b], color=BASIS_COLORS[b % 8], lw=2,
            label=f"model B{b + 1}")
  styles = {"oracle": ("k", ":"), "bayes_mixture": ("k", "--"),
            "ridge_dense": ("0.55", "-."), "lasso": ("0.55", ":")}
  for name, curve in baselines.items():
    color, ls = styles.get(name, ("k", "-"))
    ax.plot(k, curve, color=color, ls=ls, lw=1.3, label=name)
  ax.set_title(f"step {final}: per basis")
  ax2 = axes[1]
  for s in steps or sorted(ev):
    if s in ev:
      ax2.plot(k, np.mean(ev[s]["mse_by_index"], axis=0), lw=1.5,
               label=f"step {s}")
  for name, curve in baselines.items():
    color, ls = styles.get(name, ("k", "-"))
    ax2.plot(k, curve, color=color, ls=ls, lw=1.3)
  ax2.set_title("mean over bases, over training (black/grey: baselines)")
  for a in axes:
    a.set_yscale("log")
    a.set_xlabel("number of in-context examples before the query")
    a.set_ylabel("test MSE")
    a.grid(alpha=0.3)
    a.legend(fontsize=7)
  fig.tight_layout()
  return save_figure(fig, path, tight=False, dpi=120)


def load_snapshots(run_dir: str | Path, steps: Sequence[int] | None = None):
  """Snapshot dicts from ``run_dir/snapshots`` (all, or the given steps)."""
  out = []
  for f in sorted((Path(run_dir) / "snapshots").glob("step_*.npz")):
    with np.load(f) as z:
      snap = {key: z[key] for key in z.files}
    if steps is None or int(snap["step"]) in steps:
      out.append(snap)
  return out
