"""experiments/head_map.py end to end on the tiny model (N=2, 2 layers):
rows, plots, summary, resume."""

from __future__ import annotations

import json

from tests.experiments.test_experiment_scripts import (check_rate_rows,
                                                        read_rows, run_script)


def test_head_map_smoke(tiny_model_dir, tmp_path):
  out = tmp_path / "out"
  args = ["-m", "experiments.head_map", f"--model={tiny_model_dir}", "--n=2",
          "--mode=faithful", "--pairs=uppercase:repeat_word",
          "--aie_tasks=uppercase", f"--out_dir={out}"]
  p = run_script(args, tmp_path / "cache")
  assert p.returncode == 0, p.stderr[-4000:]
  assert "best residual" in p.stdout
  rows = read_rows(out / "head_map" / "results.jsonl")
  check_rate_rows(rows)
  # 2 layers x (4 heads + resid_post + top2 + top4) + the baseline, and
  # the global top-k groups (k = 1, 2, 4, 8) ranked by the map and by AIE
  assert len(rows) == 2 * 7 + 1 + 8
  conds = {r["condition"] for r in rows}
  assert conds == {"head0", "head1", "head2", "head3", "resid_post", "top2",
                   "top4", "baseline"} | {
                       f"g{n}_top{k}" for n in ("map", "aie")
                       for k in (1, 2, 4, 8)}
  assert all(r["experiment"] == "head_map" for r in rows)
  assert all(isinstance(r["logit_diff_change"], float) for r in rows)
  aie = read_rows(out / "head_map_aie" / "results.jsonl")
  assert len(aie) == 2 * 4 and all("aie" in r for r in aie)
  summary = json.loads((out / "head_map" / "summary.json").read_text())
  pair = summary["pairs"]["faithful uppercase->repeat_word"]
  assert pair["aie_comparison"]["n_heads"] == 8
  assert set(pair["best_layer_top_k"]) == {"1", "2", "4"}
  assert [x["k"] for x in pair["global_top_k"]["aie"]] == [1, 2, 4, 8]
  for name in ("heads_transfer", "heads_logit_diff_change", "top_k",
               "aie_vs_map", "global_top_k_transfer",
               "global_top_k_logit_diff_change"):
    png = out / "head_map" / f"{name}_faithful_uppercase_to_repeat_word.png"
    assert png.stat().st_size > 1000, png
  # Resumable: a second run computes nothing new.
  p2 = run_script(args, tmp_path / "cache")
  assert p2.returncode == 0, p2.stderr[-4000:]
  assert len(read_rows(out / "head_map" / "results.jsonl")) == 23
  assert len(read_rows(out / "head_map_aie" / "results.jsonl")) == 8
  assert "new_rows" in (out / "head_map" / "summary.json").read_text()
  assert json.loads((out / "head_map" / "summary.json").read_text())[
      "new_rows"] == 0
