"""Han et al.'s synthetic study (section 3) in the report, from the rows of
`experiments/synthetic_emergence.py` (`icl_jax.synthetic.summary.result_rows`:
one row per evaluated step and residual layer): test loss per basis and TD
of the latent basis over training, beside the shuffled-label null, as a
table and a two-panel figure, and the run's size against the paper's.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from icl_jax.analysis.report.data import SYNTHETIC_EXPERIMENTS, Data
from icl_jax.analysis.report.markdown import f2, images, md_table

FIG_DIR = ("report_figures", "han")
# The paper's model and schedule (spec section 2): what a run is compared to.
PAPER = {"n_layers": 12, "label": "12 layers, 8 heads, d=256, batch 128, "
         "80K steps"}
N_TABLE_ROWS = 10
# The summary's baselines (`synthetic.baseline_mse_by_index`, on the same
# test prompts as the model), in the order the report names them.
BASELINES = (("oracle", "oracle (ridge on the true basis)"),
             ("bayes_mixture", "Bayes mixture over the bases"),
             ("lasso", "LASSO"), ("ridge_dense", "dense ridge"))


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


def _summary(steps) -> dict:
  """The run's summary.json (device, segments, baselines); {} if absent."""
  row = next(iter(next(iter(steps.values())).values()))
  try:
    return json.loads((Path(row["_dir"]) / "summary.json").read_text())
  except (KeyError, OSError, ValueError):
    return {}


def _training_line(summ: dict) -> str:
  """Where and how long the run trained, from summary.json `segments`."""
  segs = [s for s in summ.get("segments") or [] if isinstance(s, dict)]
  if not segs:
    return ""
  devices = sorted({f"{s.get('device', '?')} ({s.get('backend', '?')})"
                    for s in segs})
  train = sum(float(s.get("train_s") or 0.0) for s in segs)
  wall = sum(float(s.get("wall_s") or 0.0) for s in segs)
  resumed = sum(1 for s in segs if s.get("resumed_from") is not None)
  return (f"Trained on {', '.join(devices)}: {train:.0f} s of training, "
          f"{wall:.0f} s of wall, in {len(segs)} invocation(s)"
          + (f", {resumed} of them resumed from a checkpoint" if resumed
             else "") + ". ")


def _baselines_line(summ: dict, end: dict) -> str:
  """The model's last test MSE beside the baselines' on the same prompts,
  both averaged over the in-context examples."""
  by_index = summ.get("baselines_mse_by_index")
  if not isinstance(by_index, dict):
    return ""
  parts = [f"{label} {f2(sum(by_index[k]) / len(by_index[k]))}"
           for k, label in BASELINES if by_index.get(k)]
  if not parts:
    return ""
  return ("Test MSE averaged over the in-context examples, on the same test "
          f"prompts: the model {f2(end['mse'])}; " + ", ".join(parts) + ". ")


def _peak_layer(steps) -> int:
  """The layer of highest mean TD at the last evaluation (ties: lowest)."""
  end = steps[max(steps)]
  return max(sorted(end), key=lambda l: end[l]["td"])


def _has_td_per_basis(steps, layer: int) -> bool:
  return all(steps[s].get(layer, {}).get("td_per_basis") is not None
             for s in steps)


def _table(steps, last: int) -> str:
  """Evenly spaced evaluations and the snapshots: loss per basis, mean TD
  per layer and, beside the loss, each basis's TD at the peak layer (Han's
  coupled emergence: a basis's loss falls as its TD rises)."""
  order = sorted(steps)
  peak = _peak_layer(steps)
  per_basis = _has_td_per_basis(steps, peak)
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
                 ", ".join(f2(x) for x in r["mse_per_basis"]), f2(r["mse"])]
                + ([", ".join(f2(x) for x in by_layer[peak]["td_per_basis"])]
                   if per_basis else []) + [
                 " ".join(f2(by_layer[l]["td"]) for l in sorted(by_layer)),
                 f2(r.get("null_q95"))])
  return md_table(["step", "training rank (curriculum)",
                   "test MSE per basis", "mean MSE"]
                  + ([f"TD per basis at L{peak} (peak)"] if per_basis else [])
                  + [
                   "mean TD, embedding .. last layer",
                   "null q95 at the last layer (snapshots)"], rows)


def _figure(data: Data, model: str, steps, last: int):
  """Left: test MSE per basis over training; middle (when the rows carry
  it): each basis's TD at the peak layer, in the same colours, so a basis's
  loss drop and TD rise line up by eye; right: mean TD per layer, the
  shuffled-label null at the snapshots and chance. Each panel keeps its own
  legend inside its axes (different y scales, so no shared legend)."""
  import matplotlib.pyplot as plt

  from icl_jax.analysis.figures import save_figure

  peak = _peak_layer(steps)
  per_basis = _has_td_per_basis(steps, peak)
  fig, axes = plt.subplots(1, 3 if per_basis else 2,
                           figsize=(13.5 if per_basis else 9.6, 3.6))
  order = sorted(steps)
  end = steps[order[-1]][last]
  for b in range(len(end["mse_per_basis"])):
    axes[0].plot(order, [steps[s][last]["mse_per_basis"][b] for s in order],
                 color=f"C{b}", label=f"basis {b + 1}")
    if per_basis:
      axes[1].plot(order, [steps[s][peak]["td_per_basis"][b] for s in order],
                   color=f"C{b}", label=f"basis {b + 1}")
  if per_basis:
    axes[1].axhline(end["chance"], color="0.4", ls="--", lw=1,
                    label="chance")
    axes[1].set_ylabel(f"TD at L{peak} (kNN, k=10)")
    axes[1].set_title(f"TD per basis at L{peak}, the final peak layer",
                      fontsize=8)
  axes[0].set_ylabel("test MSE")
  axes[0].set_title("test MSE per basis", fontsize=8)
  ax_td = axes[-1]
  layers = sorted(steps[order[0]])
  for layer in layers:  # a sequential colour map: depth reads as colour
    ax_td.plot(order, [steps[s][layer]["td"] for s in order], lw=1,
               color=plt.cm.viridis(layer / max(1, layers[-1])),
               label="embedding" if layer == 0 else f"L{layer}")
  snaps = [s for s in order if steps[s][last].get("null_q95") is not None]
  ax_td.plot(snaps, [steps[s][last]["null_q95"] for s in snaps], "k:",
             marker="x", label="null q95, last layer")
  ax_td.axhline(end["chance"], color="0.4", ls="--", lw=1, label="chance")
  ax_td.set_ylabel("mean TD (kNN, k=10)")
  ax_td.set_title("TD of the latent basis by layer", fontsize=8)
  for ax in axes:
    ax.set_xlabel("training step")
    ax.grid(alpha=0.3)
    if ax is not ax_td:
      ax.legend(fontsize=6, loc="best")
  # One line per layer: the legend goes beside the panel, not over it.
  ax_td.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
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
    summ = _summary(steps)
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
           "TD at the last layer does not stay above that null.") + " "
        + _baselines_line(summ, end) + _training_line(summ) + "\n")
    out.append(_table(steps, last))
    out.append(_figure(data, model, steps, last))
  return "\n".join(out)
