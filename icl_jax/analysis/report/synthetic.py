"""Han et al.'s synthetic study (section 3) in the report, from the rows of
`experiments/synthetic_emergence.py` (`icl_jax.synthetic.summary.result_rows`:
one row per evaluated step and residual layer): test loss per basis and TD
of the latent basis over training, beside the shuffled-label null, as a
table and a two-panel figure, and the run's size against the paper's.
"""

from __future__ import annotations

from collections import defaultdict

from icl_jax.analysis.report.data import SYNTHETIC_EXPERIMENTS, Data
from icl_jax.analysis.report.markdown import f2, images, md_table

FIG_DIR = ("report_figures", "han")
# The paper's model and schedule (spec section 2): what a run is compared to.
PAPER = {"n_layers": 12, "label": "12 layers, 8 heads, d=256, batch 128, "
         "80K steps"}
N_TABLE_ROWS = 10


def _runs(data: Data) -> dict[tuple, dict[int, dict[int, dict]]]:
  """{(experiment, model): {step: {layer: row}}}."""
  runs = defaultdict(lambda: defaultdict(dict))
  for exp in SYNTHETIC_EXPERIMENTS:
    for r in data.get(exp):
      if isinstance(r.get("step"), int) and isinstance(r.get("layer"), int):
        runs[(exp, r["model"])][r["step"]][r["layer"]] = r
  return runs


def _null_max(steps: dict[int, dict[int, dict]], layer: int) -> float | None:
  """The largest shuffled-label q95 at `layer` over the snapshots."""
  vals = [by_layer[layer]["null_q95"] for by_layer in steps.values()
          if by_layer.get(layer, {}).get("null_q95") is not None]
  return max(vals) if vals else None


def _first_stays_above(steps, layer: int, bar: float | None) -> int | None:
  """The first evaluated step from which TD at `layer` stays above `bar`."""
  if bar is None:
    return None
  first = None
  for step in sorted(steps):
    above = steps[step].get(layer, {}).get("td", 0.0) > bar
    first = (first if first is not None else step) if above else None
  return first


def _table(steps, last: int) -> str:
  order = sorted(steps)
  # Evenly spaced evaluations plus every snapshot (where the null exists).
  pick = {order[round(i * (len(order) - 1) / (N_TABLE_ROWS - 1))]
          for i in range(N_TABLE_ROWS)} if len(order) > 1 else set(order)
  pick = sorted(pick | {s for s in order
                        if steps[s][last].get("null_q95") is not None})
  rows = []
  for step in pick:
    by_layer = steps[step]
    r = by_layer[last]
    rows.append([step, r.get("active_rank", "-"),
                 ", ".join(f2(x) for x in r["mse_per_basis"]), f2(r["mse"]),
                 " ".join(f2(by_layer[l]["td"]) for l in sorted(by_layer)),
                 f2(r.get("null_q95"))])
  return md_table(["step", "training rank (curriculum)",
                   "test MSE per basis", "mean MSE",
                   "mean TD, embedding .. last layer",
                   "null q95 at the last layer (snapshots)"], rows)


def _figure(data: Data, model: str, steps, last: int):
  """Left: test MSE per basis over training; right: mean TD per layer, the
  shuffled-label null at the snapshots and chance. Each panel keeps its own
  legend inside its axes (two y scales, so no shared legend)."""
  import matplotlib.pyplot as plt

  from icl_jax.analysis.figures import save_figure

  fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.6))
  order = sorted(steps)
  end = steps[order[-1]][last]
  for b in range(len(end["mse_per_basis"])):
    axes[0].plot(order, [steps[s][last]["mse_per_basis"][b] for s in order],
                 label=f"basis {b + 1}")
  axes[0].set_ylabel("test MSE")
  axes[0].set_title("test MSE per basis", fontsize=8)
  for layer in sorted(steps[order[0]]):
    axes[1].plot(order, [steps[s][layer]["td"] for s in order], lw=1,
                 label="embedding" if layer == 0 else f"L{layer}")
  snaps = [s for s in order if steps[s][last].get("null_q95") is not None]
  axes[1].plot(snaps, [steps[s][last]["null_q95"] for s in snaps], "k:",
               marker="x", label="null q95, last layer")
  axes[1].axhline(end["chance"], color="0.4", ls="--", lw=1, label="chance")
  axes[1].set_ylabel("mean TD (kNN, k=10)")
  axes[1].set_title("TD of the latent basis by layer", fontsize=8)
  for ax in axes:
    ax.set_xlabel("training step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="best")
  fig.suptitle(f"Synthetic study, {model} (N={end['n']} TD samples)",
               fontsize=10)
  fig.tight_layout()
  path = save_figure(fig, data.out_dir.joinpath(
      *FIG_DIR, f"{model}.png"))
  return images(data, [path])


def render_synthetic_rows(data: Data) -> str:
  """The synthetic section from rows, or '' when no run wrote any."""
  out = []
  for (exp, model), steps in sorted(_runs(data).items()):
    order = sorted(steps)
    last = max(steps[order[-1]])
    end = steps[order[-1]][last]
    bar = _null_max(steps, last)
    first = _first_stays_above(steps, last, bar)
    size = ("the paper's size" if end.get("n_layers") == PAPER["n_layers"]
            else f"a reduced run, not the paper's {PAPER['label']}: "
            "see BUILD_NOTES.md section 7b for its deviations")
    planned = end.get("num_steps")
    if isinstance(planned, int) and order[-1] < planned:
      size += (f"; **stopped at step {order[-1]} of the {planned} planned**:"
               " a partial run, which the same command resumes")
    out.append(
        f"**{model}** (`{exp}`, {len(order)} evaluations to step "
        f"{order[-1]}; N={end['n']} TD samples; {size}). At the last "
        f"evaluation: mean test MSE {f2(end['mse'])} (per basis "
        f"{', '.join(f2(x) for x in end['mse_per_basis'])}); mean TD at the "
        f"last layer {f2(end['td'])} against chance {f2(end['chance'])} and "
        f"a shuffled-label null whose 95th percentile reaches {f2(bar)} "
        "over the snapshots. "
        + (f"TD at the last layer stays above that null from step {first} "
           "on." if first is not None else
           "TD at the last layer does not stay above that null.") + "\n")
    out.append(_table(steps, last))
    out.append(_figure(data, model, steps, last))
  return "\n".join(out)
