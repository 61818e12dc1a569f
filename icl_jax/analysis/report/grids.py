"""Per-pair exp8 grids in the original's format (protocol 9.2): one table
per model and mode, pair x layer, each cell "transfer / preserve"
(exclusive classification) for all_demo, output_only, input_only and
last_demo, and the mean over the pairs by condition x layer. The same
table renders the original's grids (`grid_table` on `reference.EXP8`) and
ours (`cells_of` on result rows), so the two read alike.

Ours come from the first experiment that ran the model with the
multi-position conditions: exp8 (`multi_position`), else exp23
(`proper_stats`, N=50, all four conditions), else the main job
(`main_prefill`, all_demo / output_only only). Layers: the study's 4-layer
grid (`studies.layers.parse_layers("study")`) where the rows hold all of
it, else every layer they hold (never a thinned subset)."""

from __future__ import annotations

from icl_jax.analysis import reference as R
from icl_jax.analysis.report.data import Data
from icl_jax.analysis.report.markdown import md_table, mean, short_model
from icl_jax.analysis.report.verdicts import sizes

GRID_SOURCES = ("multi_position", "proper_stats", "main_prefill")
CONDITIONS = tuple(R.EXP8_CONDITIONS)  # all_demo, output_only, input_only,
#                                        last_demo (the original's order)


def grid_rows(data: Data, model: str) -> tuple[str | None, list[dict]]:
  """(experiment, rows of `model`) of the first of GRID_SOURCES with
  multi-position cells of that model (prefill decoder)."""
  for name in GRID_SOURCES:
    rs = [r for r in data.get(name) if r.get("model") == model and
          r.get("condition") in CONDITIONS and
          r.get("timing", "prefill") == "prefill" and
          isinstance(r.get("layer"), int)]
    if rs:
      return name, rs
  return None, []


def grid_layers(rows, n_layers: int | None) -> tuple[list[int], str]:
  """(layers shown, how they were chosen): the study's 4-layer grid where
  the rows hold every layer of it, else every layer of the rows."""
  from icl_jax.studies.layers import parse_layers

  have = sorted({r["layer"] for r in rows})
  if n_layers:
    study = parse_layers("study", n_layers)
    if set(study) <= set(have):
      return study, "the study's 4-layer grid (depths 0.30/0.44/0.52/0.59)"
  return have, "every layer run"


def cells_of(rows) -> dict:
  """{(source, target, layer, condition): (transfer, preserve)} of result
  rows (one row per cell; a resumed duplicate is averaged)."""
  acc: dict[tuple, list] = {}
  for r in rows:
    key = (r["source_task"], r["target_task"], r["layer"], r["condition"])
    acc.setdefault(key, []).append((r["transfer"], r.get("preserve")))
  return {k: (mean(t for t, _ in v),
              None if any(p is None for _, p in v) else mean(p for _, p in v))
          for k, v in acc.items()}


def pairs_of(cells: dict) -> list[tuple[str, str]]:
  """The cells' pairs: the original's six exp8 pairs first, in its order."""
  have = {(s, t) for s, t, _, _ in cells}
  return ([p for p in R.EXP8_PAIRS if p in have] +
          sorted(have - set(R.EXP8_PAIRS)))


def tp(v) -> str:
  """'transfer / preserve' of a cell value (None = not run)."""
  if v is None:
    return "-"
  t, p = v
  return f"{t:.2f} / " + ("-" if p is None else f"{p:.2f}")


def grid_table(cells: dict, layers, conditions=CONDITIONS) -> str:
  """The original's per-pair table: pair x layer rows, a 'transfer /
  preserve' cell per condition."""
  out = []
  for s, t in pairs_of(cells):
    for layer in layers:
      out.append([f"{s}->{t}", layer] + [
          tp(cells.get((s, t, layer, c))) for c in conditions])
  return md_table(["pair", "layer", *conditions], out)


def mean_table(cells: dict, layers, conditions=CONDITIONS) -> str:
  """Mean transfer over the pairs by condition x layer (the original's
  'Mean transfer over the 6 pairs'), with the pair count per cell."""
  out = []
  for c in conditions:
    line = [c]
    for layer in layers:
      v = [x[0] for (s, t, l, cc), x in cells.items()
           if l == layer and cc == c]
      line.append(f"{mean(v):.3f} ({len(v)})" if v else "not run")
    out.append(line)
  return md_table(["condition"] + [f"L{l}" for l in layers], out)


def render_grids(data: Data) -> str:
  """The appendix: every model's grids per mode, in the original's
  format."""
  parts = []
  models = [m for m in data.models(GRID_SOURCES) if grid_rows(data, m)[1]]
  if not models:
    return "No multi-position rows.\n"
  for m in models:
    name, rows = grid_rows(data, m)
    layers, how = grid_layers(rows, data.n_layers(m))
    for mode in ("faithful", "aligned"):
      x = [r for r in rows if r["mode"] == mode and r["layer"] in layers]
      if not x:
        continue
      cells = cells_of(x)
      missing = [c for c in CONDITIONS if not any(
          r["condition"] == c for r in x)]
      parts.append(
          f"**{short_model(m)} {mode}** (`{name}` rows, {sizes(x)}; layers "
          f"{', '.join(map(str, layers))} of {data.n_layers(m)} = {how})"
          " -- each cell is transfer / preserve (exclusive classification)"
          + (f"; not run in this experiment: {', '.join(missing)}"
             if missing else "") + "\n")
      parts.append(grid_table(cells, layers))
      parts.append("Mean transfer over the pairs (pairs per cell in "
                   "brackets):\n")
      parts.append(mean_table(cells, layers))
  return "\n".join(parts)
