"""Plots and the experiment's summary, on a fabricated log (no training)."""

import numpy as np

from icl_jax import synthetic as syn
from icl_jax.synthetic import plots
from icl_jax.synthetic.summary import summarize_run


def _fake_log(n_layers=2, nb=4, k=20):
  cfg = syn.TrainConfig(
      model=syn.GPT2RegressorConfig(n_layers=n_layers, n_heads=2, d_model=8),
      num_steps=400,
  ).to_dict()
  ev, tr = [], []
  for i, step in enumerate(range(0, 401, 100)):
    drop = 4.0 / (1 + i)
    td = np.linspace(0.25, 0.25 + 0.15 * i, n_layers + 1)
    ev.append({
        "step": step, "epoch": step / 800, "mse": drop,
        "mse_per_basis": [drop] * nb,
        "mse_by_index": (np.ones((nb, k)) * drop).tolist(),
        "td_y": td.tolist(), "td_x": td.tolist(),
        "td_y_per_basis": np.repeat(td[:, None], nb, 1).tolist(),
        "td_x_per_basis": np.repeat(td[:, None], nb, 1).tolist(),
    })
    if step:
      tr.append({"step": step, "epoch": step / 800, "loss": drop,
                 "loss_per_basis": [drop] * nb, "n_steps": 100})
  return {"config": cfg, "eval": ev, "train": tr, "param_count": 123,
          "segments": [{"start_step": 0, "end_step": 400, "train_s": 1.0,
                        "wall_s": 2.0}]}


def test_plots_write_files(tmp_path):
  log = _fake_log()
  assert plots.plot_emergence(log, tmp_path / "e.png").stat().st_size > 0
  rng = np.random.default_rng(0)
  snaps = [{"step": s, "labels": np.repeat(np.arange(4), 10),
            "feat_y": rng.normal(size=(3, 40, 8)),
            "feat_x": rng.normal(size=(3, 40, 8)),
            "td_y": np.full(3, 0.3), "td_x": np.full(3, 0.3)} for s in (0, 400)]
  assert plots.plot_projection(snaps, [1, 2], tmp_path / "p.png", 800).exists()
  base = {"oracle": np.ones(20), "lasso": np.ones(20) * 2}
  assert plots.plot_mse_vs_examples(log, base, tmp_path / "m.png").exists()


def test_pca_2d_finds_main_axes():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 5)) * np.array([10.0, 3.0, 0.1, 0.1, 0.1])
  proj, ratio = plots.pca_2d(x)
  assert proj.shape == (200, 2)
  assert ratio.sum() > 0.99 and ratio[0] > ratio[1]


def test_summarize():
  s = summarize_run(_fake_log(), n_rows=3)
  assert [r["step"] for r in s["table"]] == [0, 200, 400]
  assert s["final"]["td_argmax_layer"] == 2
  assert s["first_step_td_ge_0.5_by_layer"][2] == 200
  assert s["first_step_td_ge_0.5_by_layer"][0] is None
  assert s["chance_td"] == 0.25 and s["steps_done"] == 400


def test_result_rows_one_per_step_and_layer_with_null_at_snapshots():
  from icl_jax.synthetic.summary import EXPERIMENT, model_name, result_rows

  log = _fake_log(n_layers=2)
  config = syn.TrainConfig.from_dict(log["config"])
  rows = result_rows(log, config, null_q95={"400": [0.3, 0.31, 0.32]})
  assert len(rows) == 5 * 3  # 5 evaluated steps x (embedding + 2 layers)
  assert {r["experiment"] for r in rows} == {EXPERIMENT}
  assert {r["model"] for r in rows} == {model_name(config)} == {
      "synthetic-2L2H-d8"}
  last = [r for r in rows if r["step"] == 400]
  assert [r["layer"] for r in last] == [0, 1, 2]
  assert [r["null_q95"] for r in last] == [0.3, 0.31, 0.32]
  assert all(r["null_q95"] is None for r in rows if r["step"] != 400)
  # TD and loss are the log's, per layer and per step
  assert last[2]["td"] == round(0.25 + 0.15 * 4, 4)
  assert last[0]["mse"] == 0.8 and last[0]["mse_per_basis"] == [0.8] * 4
  assert rows[0]["n"] == 4 * config.n_td_per_basis and rows[0]["chance"] == 0.25
  assert {r["num_steps"] for r in rows} == {400}  # the planned length
  keys = {(r["step"], r["layer"]) for r in rows}
  assert len(keys) == len(rows)  # no duplicated cell


def test_write_results_rewrites_rows_and_marks_the_run_finished(tmp_path):
  import json

  from icl_jax.synthetic.summary import write_results

  log = _fake_log(n_layers=2)
  config = syn.TrainConfig.from_dict(log["config"])
  summary = summarize_run(log)
  for _ in range(2):  # a resumed run writes again: no duplicated rows
    write_results(tmp_path, log, config, summary)
  rows = [json.loads(x) for x in
          (tmp_path / "results.jsonl").read_text().splitlines()]
  assert len(rows) == 15
  s = json.loads((tmp_path / "summary.json").read_text())
  assert s["seconds"] == 2.0 and s["finished"] and "icl_jax" in s["code"]
