"""Han et al. in the report: TD by layer with chance, null band and peak; the
TD-vs-accuracy fit with its interval over tasks; task vectors beside their
null; the finetuning table's step-count wording; the summary rows; the
provenance table. Rows are synthetic with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from icl_jax.analysis import report as REP
from icl_jax.analysis.report import han, han_effects, han_finetune, provenance
from icl_jax.analysis.report.data import Data
from icl_jax.analysis.report.summary import SUMMARY_HEADERS

TASKS = ("and", "or", "xor", "nand")
LAYERS = range(8)
SHOTS = (1, 4, 10)


def td_rows(model="model-h", family="bitwise", n=20, predictive=True):
  """han_td rows: TD peaks at layer 4 and rises with shots; accuracy equals
  the task's TD at the peak (predictive) or is unrelated to it."""
  rows = []
  base = {"experiment": "han_td", "model": model, "mode": "aligned",
          "family": family, "knn": 10, "position": "final_token"}
  rng = np.random.default_rng(1)
  for k in SHOTS:
    cond = {**base, "condition": f"{family}/{k}shot", "shots": k}
    for l in LAYERS:
      tds = {t: (0.2 + 0.1 * i + 0.05 * SHOTS.index(k)) * (1.0 if l == 4
                                                           else 0.4)
             for i, t in enumerate(TASKS)}
      for t, v in tds.items():
        rows.append({**cond, "metric": "td", "source_task": t,
                     "target_task": t, "layer": l, "td": v, "n": n})
      rows.append({**cond, "metric": "td", "source_task": "null",
                   "target_task": "null", "layer": l, "td": 0.1, "n": n})
      rows.append({**cond, "metric": "td", "source_task": "mean",
                   "target_task": "mean", "layer": l,
                   "td": float(np.mean(list(tds.values()))), "n": n})
      rows.append({**cond, "metric": "td_null", "source_task": "mean",
                   "target_task": "mean", "layer": l,
                   "band_5_95": [0.1, 0.3], "n": n * 5})
      rows.append({**cond, "metric": "logistic", "source_task": "mean",
                   "target_task": "mean", "layer": l, "accuracy": 0.97,
                   "n": n * 5})
    for i, t in enumerate(TASKS):
      acc = ((0.2 + 0.1 * i + 0.05 * SHOTS.index(k)) if predictive
             else float(rng.uniform()))
      rows.append({**cond, "metric": "accuracy", "source_task": t,
                   "target_task": t, "layer": None, "accuracy": acc, "n": n})
  return rows


def tv_rows(model="model-h", family="bitwise", effect=0.0, n=20,
            null_effect=0.0):
  """han_task_vectors rows, 2 seeds: the own task's vector adds `effect`
  (+-0.05 by task) to the clean accuracy, Null's vector `null_effect`."""
  rows = []
  base = {"experiment": "han_task_vectors", "model": model,
          "mode": "aligned", "family": family, "layer": 4, "shots": 4,
          "n": n}
  for seed in (0, 1):
    for i, t in enumerate(TASKS):
      clean = 0.1 + 0.1 * i
      rows.append({**base, "seed": seed, "target_task": t,
                   "source_task": "none", "condition": f"clean:s{seed}",
                   "positions": None, "vector": None, "edit": None,
                   "alpha": None, "accuracy": clean,
                   "delta_vs_clean": None})
      for vec, acc in (("task", clean + effect + (-0.05, 0.05)[i % 2]),
                       ("null", clean + null_effect)):
        rows.append({**base, "seed": seed, "target_task": t,
                     "source_task": t if vec == "task" else "null",
                     "condition": f"query:replace:s{seed}",
                     "positions": "query", "vector": vec, "edit": "replace",
                     "alpha": None, "accuracy": acc,
                     "delta_vs_clean": acc - clean})
  return rows


def ft_rows(model="model-h", family="bitwise", gain=0.0):
  """han_finetune rows: every arm 0.25 accuracy and 0.5 TD, except ft_first,
  which adds `gain` to both (+-0.05 by task, alternating)."""
  rows = []
  for arm in ("pretrained", "ft_first", "ft_last", "prompting"):
    for i, t in enumerate(TASKS):
      up = gain + (-0.05, 0.05)[i % 2] if arm == "ft_first" and gain else 0
      rows.append({"experiment": "han_finetune", "model": model,
                   "mode": "aligned", "family": family, "source_task": t,
                   "target_task": t, "layer": 4, "condition": arm, "n": 20,
                   "accuracy": 0.25 + up, "td": 0.5 + up, "shots": 4})
  return rows


def write_run(root: Path, name: str, rows, config=None, summary=None):
  d = root / name
  d.mkdir(parents=True, exist_ok=True)
  (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n"
                                           for r in rows))
  (d / "config.json").write_text(json.dumps(config or {}))
  (d / "summary.json").write_text(json.dumps(summary or {}))
  return d


def training(first, last, steps):
  return {"training": {f"bitwise/{arm}": {"steps": steps, "loss_first":
                                          first, "loss_last_10": last}
                       for arm in ("ft_first", "ft_last")}}


def han_runs(root: Path, predictive=True, effect=0.0, loss=(0.64, 0.61),
             steps=16, gain=0.0) -> Path:
  d = root / "model-h"
  write_run(d, "han_td", td_rows(predictive=predictive))
  write_run(d, "han_task_vectors", tv_rows(effect=effect))
  write_run(d, "han_finetune", ft_rows(gain=gain),
            summary=training(*loss, steps))
  return root


def section(root: Path, tmp_path: Path) -> str:
  return "\n".join(han.han_section(Data([root], tmp_path)))


def test_td_chance_null_peak_and_probe_label(tmp_path):
  root = han_runs(tmp_path / "runs")
  data = Data([root], tmp_path)
  (exp, model, fam, a), = han.analysed_td(data)
  assert a["chance"] == 1 / 5  # 4 tasks + Null
  assert a["peak"] == {1: 4, 4: 4, 10: 4}
  text = section(root, tmp_path)
  assert "| model-h | bitwise | `han_td` | 4 | 5 (0.20) | L4 " in text
  assert "[0.10, 0.30]" in text  # the null band at the peak
  assert "logistic-probe accuracy at peak (a probe, not TD)" in text
  assert (tmp_path / "report_figures" / "han" / "td_by_layer.png").exists()


def test_fit_reports_r2_with_task_interval_and_words(tmp_path):
  good = section(han_runs(tmp_path / "a", predictive=True), tmp_path)
  fit = good.split("TD vs ICL accuracy")[1]
  assert "| 1.00 | [1.00, 1.00] |" in fit
  assert "TD predicts accuracy" in fit and "do not predict" not in fit
  assert "not independent" in good
  bad = han.td_analysis(td_rows(predictive=False), 8)["fit"]
  assert bad["interval"][0] < han.R2_FLOOR
  assert "cannot show that TD predicts accuracy" in han.fit_reading(bad)


def test_task_vectors_beside_their_null(tmp_path):
  none = section(han_runs(tmp_path / "a", effect=0.0), tmp_path)
  tv = none.split("### Task vectors")[1].split("###")[0]
  assert "task vector: no change vs clean; no different from its null" in tv
  some = section(han_runs(tmp_path / "b", effect=0.3), tmp_path)
  tv = some.split("### Task vectors")[1].split("###")[0]
  assert "task vector: raises accuracy; above its null" in tv
  assert "| +30.0 [" in tv and "(+30.0 [" in tv  # vs null; vs clean
  # Both vectors lower accuracy, the null more: above its null is not a
  # gain (gemma3-270m POS, query replace: -1.3 with the task's, -4.5 with
  # Null's).
  root = tmp_path / "c"
  write_run(root / "model-h", "han_task_vectors",
            tv_rows(effect=-0.1, null_effect=-0.3))
  tv = section(root, tmp_path).split("### Task vectors")[1].split("###")[0]
  assert "task vector: lowers accuracy; above its null" in tv
  assert "(-10.0 [" in tv and "null: " in tv


def test_finetune_table_states_steps_and_plumbing(tmp_path):
  text = section(han_runs(tmp_path / "a", loss=(0.64, 0.61)), tmp_path)
  ft = text.split("### Early- vs late-layer")[1].split("###")[0]
  assert "| 16 |" in ft and "0.85 ± 0.11" in ft  # steps; Han's ft_first TD
  assert ft.count("the loss barely moved") == 2
  text = section(han_runs(tmp_path / "b", loss=(2.0, 0.5), steps=500),
                 tmp_path)
  ft = text.split("### Early- vs late-layer")[1].split("###")[0]
  assert "500 steps" in ft and "barely moved" not in ft
  assert "Not run (needs a GPU)" in text.split("### Synthetic study")[1]


def test_finetune_contrasts_are_paired_by_task(tmp_path):
  root = han_runs(tmp_path / "a", loss=(2.0, 0.5), steps=500, gain=0.3)
  data = Data([root], tmp_path)
  by = {(e["a"], e["b"]): e for e in han_finetune.ft_effects(data)}
  e = by[("ft_first", "ft_last")]
  # +-0.05 by task around +0.3: mean exactly +30 pts, interval inside
  # [+25, +35] (resampling 4 tasks), Han bitwise 90.2 - 66.3 = +23.9 pts
  assert np.isclose(e["accuracy"][0], 30.0)
  assert 25.0 - 1e-9 <= e["accuracy"][1] < 30.0 < e["accuracy"][2] <= 35.0
  assert np.isclose(e["han_accuracy"], 90.2 - 66.3)
  assert np.isclose(e["td"][0], 0.3) and np.isclose(e["han_td"], 0.42)
  assert e["untestable"] is None and e["n"] == 20 and e["n_tasks"] == 4
  assert by[("ft_last", "pretrained")]["accuracy"] == (0.0, 0.0, 0.0)
  ft = section(root, tmp_path).split("### Early- vs late-layer")[1]
  assert "| ft_first - ft_last | +30.0 [" in ft
  assert "ft_first above ft_last" in ft and "no difference shown" in ft
  rows = [r for r in han.han_summary_rows(data) if "first third" in r[1]]
  assert len(rows) == 4  # (vs ft_last, vs pretrained) x (accuracy, TD)
  acc = next(r for r in rows if "ft_first - ft_last accuracy" in r[1])
  assert acc[3].startswith("+0.30 [") and acc[4].startswith("+0.24")
  assert "500 steps" in acc[5]
  assert "**reproduced**" in acc[-1]  # +0.30 within 0.15 of +0.24
  # vs pretrained: +0.30 [+0.25, +0.35] against Han's +0.64: weaker
  pre = next(r for r in rows if "ft_first - pretrained accuracy" in r[1])
  assert "improves on the pretrained model" in pre[1]
  assert "**weaker**" in pre[-1]


def test_finetune_contrast_not_testable_when_the_loss_barely_moved(tmp_path):
  root = han_runs(tmp_path / "a", loss=(0.64, 0.61), steps=16, gain=0.3)
  data = Data([root], tmp_path)
  e = next(e for e in han_finetune.ft_effects(data)
           if (e["a"], e["b"]) == ("ft_first", "ft_last"))
  assert "barely moved" in e["untestable"]
  assert "not a test of Han's claim" in han_finetune.ft_reading(e)
  rows = [r for r in han.han_summary_rows(data) if "first third" in r[1]]
  assert rows and all("not testable" in r[-1] for r in rows)


def test_finetune_training_record_of_an_unfinished_run(tmp_path):
  """No summary.json yet (the run is still training its next arm): the
  finished arm's steps and loss come from its lora_<family>_<arm>/info.json."""
  d = write_run(tmp_path / "runs" / "model-h", "han_finetune",
                ft_rows(gain=0.3), summary={})
  (d / "lora_bitwise_ft_first").mkdir()
  (d / "lora_bitwise_ft_first" / "info.json").write_text(json.dumps(
      {"steps": 125, "n_examples": 1002, "loss_first": 0.75,
       "loss_last_10": 0.50}))
  ft = han_finetune.render_finetune(Data([tmp_path / "runs"], tmp_path))
  assert "| ft_first | 0.80 ± 0.05 | 55.00 ± 5.00 | L4 | 20 | 125 | 1002 |" in ft
  assert "125 steps, loss 0.750 -> 0.500" in ft
  assert "ft_last: no training record" in ft  # ft_last has no info.json


def test_summary_rows_follow_the_summary_format_and_rule(tmp_path):
  rows = han.han_summary_rows(Data([han_runs(tmp_path / "r")], tmp_path))
  assert rows and all(len(r) == len(SUMMARY_HEADERS) for r in rows)
  by = {r[1].split(" (")[0]: r for r in rows}
  # R^2 = 1.0 [1.0, 1.0] vs Han's bitwise 0.528: outside, not within 0.15
  assert "not reproduced" in by["Han: TD predicts accuracy, R^2"][-1]
  # peak at L4 of 8 = depth 0.50 for every task; Han bitwise 13/32 = 0.41
  assert by["Han: TD peaks mid-depth"][3].startswith("0.50 (L4) [0.50, 0.50]")
  assert "reproduced" in by["Han: TD peaks mid-depth"][-1]
  assert "**reproduced**" in by["Han: TD rises with shots"][-1]
  assert "not reproduced" in by["Han: task vectors move accuracy"][-1]


def test_provenance_table(tmp_path):
  root = tmp_path / "runs"
  d = write_run(root / "gemma3-270m", "han_td",
                td_rows(model="gemma3-270m"),
                config={"n": 20, "seed": 3, "_provenance": {
                    "git_commit": "0123456789abcdef", "git_dirty": True}},
                summary={"seconds": 600.0, "model_sha256": "ab" * 32,
                         "finished": "2026-01-01 00:00:00"})
  (d.parent / "suite_steps.jsonl").write_text(
      json.dumps({"name": "han_td", "wall_s": 700.0}) + "\n")
  text = provenance.provenance(Data([root], tmp_path))
  row = next(l for l in text.splitlines() if l.startswith("| han_td"))
  assert "gemma3-270m.gguf (Q4_K_M" in row and "abababababab" in row
  assert "0123456789 (uncommitted changes)" in row
  assert "| 3 | n=20 | 10.0 min (suite step han_td: 11.7 min) |" in row
  assert "Report built at commit" in text


def test_report_has_han_section_not_generic_td_table(tmp_path):
  text = REP.build_report([han_runs(tmp_path / "runs")],
                          tmp_path / "REPORT.md")
  assert text.count("## Han et al.") == 1
  assert "(`han_td`)\n" not in text  # no generic section of its own
  assert "Mean accuracy by layer" not in text.split("## Han et al.")[1]


def synthetic_run(root: Path, **extra) -> Data:
  """Rows of a 2-layer synthetic run to step 300 (`extra` fields added to
  every row); TD at the last layer 0.26 -> 0.40, null q95 0.29 / 0.30."""
  steps, layers = (0, 100, 200, 300), (0, 1, 2)
  td_last = {0: 0.26, 100: 0.31, 200: 0.36, 300: 0.40}
  rows = [{"experiment": "synthetic_emergence", "model": "synthetic-2L2H-d8",
           "mode": "aligned", "source_task": "sparse_regression",
           "target_task": "sparse_regression", "layer": l,
           "condition": "td_y", "step": s, "n": 400,
           "td": td_last[s] if l == 2 else 0.25,
           "null_q95": ({0: 0.29, 300: 0.30}.get(s)), "chance": 0.25,
           "mse": 4.0 - s / 100, "mse_per_basis": [4.0 - s / 100] * 4,
           "active_rank": 4, "n_layers": 2, **extra}
          for s in steps for l in layers]
  d = root / "runs" / "synthetic_emergence"
  d.mkdir(parents=True)
  (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n"
                                           for r in rows))
  (d / "summary.json").write_text("{}")
  return Data([root / "runs"], root)


def test_synthetic_section_reads_rows_and_states_the_null(tmp_path):
  """Rows of a synthetic run: the section gives the last evaluation's loss
  and TD, the null's largest q95, the step from which the last layer's TD
  stays above it, a figure; the model is not counted among the LMs."""
  data = synthetic_run(tmp_path)
  text = han_effects.render_synthetic(data)
  assert "mean test MSE 1.00" in text
  assert "mean TD at the last layer 0.40 against chance 0.25" in text
  assert "95th percentile reaches 0.30" in text
  # 0.31 at step 100 is above 0.30 and it stays above from there
  assert "stays above that null from step 100 on" in text
  assert "a reduced run, not the paper's 12 layers" in text
  assert "stopped at step" not in text  # rows without a planned length
  assert (tmp_path / "report_figures" / "han" /
          "synthetic-2L2H-d8.png").exists()
  assert data.models() == []


def test_synthetic_section_says_a_run_stopped_short(tmp_path):
  """A paper-size run stopped (e.g. by the GPU script's time bound) before
  its planned steps is called the paper's size and partial; one that ran
  its planned steps is not called partial."""
  text = han_effects.render_synthetic(
      synthetic_run(tmp_path / "a", n_layers=12, num_steps=80_000))
  assert "the paper's size; **stopped at step 300 of the 80000" in text
  text = han_effects.render_synthetic(
      synthetic_run(tmp_path / "b", num_steps=300))
  assert "stopped at step" not in text


def test_synthetic_section_shows_baselines_device_and_td_per_basis(tmp_path):
  """With per-basis TD in the rows and a summary holding the baselines and
  the training segments, the section sets the model's MSE beside each
  baseline's (mean over the in-context examples), says where and how long
  it trained, and adds each basis's TD at the final peak layer."""
  data = synthetic_run(tmp_path, td_per_basis=[0.5, 0.25, 0.25, 0.2])
  d = tmp_path / "runs" / "synthetic_emergence"
  (d / "summary.json").write_text(json.dumps({
      "baselines_mse_by_index": {"oracle": [1.0, 0.0],
                                 "bayes_mixture": [2.0, 1.0],
                                 "lasso": [3.0, 3.0],
                                 "ridge_dense": [4.0, 2.0]},
      "segments": [{"device": "cuda:0", "backend": "gpu", "train_s": 300.0,
                    "wall_s": 330.0, "resumed_from": None},
                   {"device": "cuda:0", "backend": "gpu", "train_s": 100.0,
                    "wall_s": 120.0, "resumed_from": 200}]}))
  text = han_effects.render_synthetic(data)
  assert ("on the same test prompts: the model 1.00; oracle (ridge on the "
          "true basis) 0.50, Bayes mixture over the bases 1.50, LASSO 3.00, "
          "dense ridge 3.00.") in text
  assert ("Trained on cuda:0 (gpu): 400 s of training, 450 s of wall, in 2 "
          "invocation(s), 1 of them resumed from a checkpoint.") in text
  # Every layer but the last has mean TD 0.25 throughout; the last layer
  # ends at 0.40, so it is the peak layer the per-basis column reads.
  assert "| TD per basis at L2 (peak) |" in text
  assert "| 0.50, 0.25, 0.25, 0.20 |" in text


def test_synthetic_section_without_summary_or_per_basis_td(tmp_path):
  """Rows without per-basis TD and an empty summary: no baseline line, no
  training line, no per-basis column (nothing invented)."""
  text = han_effects.render_synthetic(synthetic_run(tmp_path))
  assert "on the same test prompts" not in text
  assert "Trained on" not in text
  assert "TD per basis" not in text


def test_peak_layer_and_depth_row_break_a_tie_alike():
  """The run's float32 'mean' row can tie two layers that the per-task
  means (float64) tell apart; the peak table and the summary's depth row
  must name the same layer (they named L20 and L21 on qwen2.5-0.5b)."""
  rows = td_rows()
  for r in rows:  # layer 5's tasks: one a little higher than layer 4's
    if r["metric"] == "td" and r["layer"] in (4, 5) and r["shots"] == 4:
      if r["source_task"] == "mean":
        r["td"] = 0.5  # a tie in the stored mean
      elif r["source_task"] != "null":
        r["td"] = 0.5 + (1e-6 if r["layer"] == 5 else 0.0)
  a = han.td_analysis(rows, 8)
  assert a["peak"][4] == a["depth"]["layer"] == 5
