"""Figures a reader can use: legends inside the saved canvas, integer layer
ticks, one colour per condition and one line style per mode."""

import numpy as np
import pytest

from icl_jax.analysis import figures, plots


def _rows(pairs=4, layers=18, conditions=("all_demo", "output_only",
                                           "input_only", "last_demo")):
  rng = np.random.default_rng(0)
  tasks = ["uppercase", "repeat_word", "antonym", "sentiment", "length"]
  out = []
  for i in range(pairs):
    for mode in ("faithful", "aligned"):
      for cond in conditions:
        for layer in range(layers):
          out.append(dict(source_task=tasks[i], target_task=tasks[i + 1],
                          mode=mode, condition=cond, layer=layer, n=20,
                          transfer=float(rng.uniform())))
  return out


def _inside(inner, outer, tol=1.0):
  return (inner.x0 >= outer.x0 - tol and inner.y0 >= outer.y0 - tol
          and inner.x1 <= outer.x1 + tol and inner.y1 <= outer.y1 + tol)


def test_multi_panel_legend_inside_canvas_and_integer_layer_ticks(tmp_path):
  fig = plots.transfer_by_layer_figure(_rows(), title="gemma3-270m")
  fig.canvas.draw()
  renderer = fig.canvas.get_renderer()
  (legend,) = fig.legends
  box = legend.get_window_extent(renderer)
  assert _inside(box, fig.bbox), (box, fig.bbox)
  # The legend does not cover any panel (tick labels included).
  for ax in fig.axes:
    if ax.axison:
      assert ax.get_tightbbox(renderer).y0 >= box.y1 - 1.0
  for ax in fig.axes:
    if not ax.axison:
      continue
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
  title = fig._suptitle.get_text()
  assert "gemma3-270m" in title and "transfer rate" in title and "N=20" in title
  # The PNG written without cropping is the figure's own canvas.
  path = figures.save_figure(fig, tmp_path / "f.png", tight=False)
  import matplotlib.image as mpimg
  h, w = mpimg.imread(path).shape[:2]
  assert (w, h) == pytest.approx(tuple(fig.get_size_inches() * 110), abs=1)


def test_condition_colour_and_mode_style_are_fixed():
  fig = plots.transfer_by_layer_figure(_rows(pairs=2))
  seen = {}
  for ax in fig.axes:
    for line in ax.get_lines():
      cond, mode = line.get_label().rsplit(" (", 1)
      mode = mode.rstrip(")")
      style = (tuple(line.get_color()), line.get_linestyle())
      assert seen.setdefault((cond, mode), style) == style
  colours = {c: s[0] for (c, _), s in seen.items()}
  assert len(set(colours.values())) == len(colours)  # one per condition
  assert {s[1] for (_, m), s in seen.items() if m == "faithful"} == {"-"}
  assert {s[1] for (_, m), s in seen.items() if m == "aligned"} == {"--"}
  for (c, _), s in seen.items():
    assert s[0] == tuple(figures.condition_color(c))


def test_curves_over_layers_get_integer_ticks(tmp_path):
  import matplotlib.pyplot as plt
  path = figures.curves({"p": {"a (faithful)": ([0, 1, 2, 3, 4, 5],
                                                [0.1] * 6)}},
                        tmp_path / "c.png", "layer", "rate")
  assert path.exists()
  plt.close("all")


def test_estimate_vs_exact_draws_each_family_and_checks_shapes(tmp_path):
  rng = np.random.default_rng(1)
  exact = rng.normal(size=(4, 3, 2))
  fam = {"resid": {"estimate": exact * 0.5, "exact": exact,
                   "rows": [-1, 0, 1, 2], "cols": [7, 8, 9],
                   "col_label": "position"},
         "mlp": {"estimate": exact[:, :1], "exact": exact[:, :1],
                 "rows": [0, 1, 2, 3], "cols": ["mlp"]}}
  path = figures.estimate_vs_exact(fam, tmp_path / "a.png", title="t")
  assert path.exists() and path.stat().st_size > 0
  assert figures.estimate_vs_exact({}, tmp_path / "b.png") is None
  with pytest.raises(ValueError, match="resid"):
    figures.estimate_vs_exact(
        {"resid": dict(fam["resid"], estimate=exact[:, :2])},
        tmp_path / "c.png")
