"""The head-map section of the report: one line per (model, mode, pair)
with the best residual layer, head cells, groups, global groups and the AIE
comparison, all recomputed from synthetic rows with known answers."""

from __future__ import annotations

from icl_jax.analysis.report import build, heads
from icl_jax.analysis.report.data import Data
from tests.analysis.test_report_han import write_run

L, H, N = 4, 3, 10


def map_rows(model="model-x", mode="faithful"):
  """Residual transfers 0.6 at L1 (change 10), 0.3 at L0 and L2, 0 at L3;
  head (L2, h1) has the largest change (2.5) and transfers 0.1; layer 2's
  top-2 group transfers 0.2 (change 3); global groups change up to 4."""
  base = {"experiment": "head_map", "model": model, "mode": mode,
          "source_task": "uppercase", "target_task": "repeat_word", "n": N}
  rows = []
  for l in range(L):
    t = {0: 0.3, 1: 0.6, 2: 0.3, 3: 0.0}[l]
    rows.append({**base, "layer": l, "condition": "resid_post",
                 "site": "resid_post", "heads": None, "transfer": t,
                 "logit_diff_change": 10.0 if l == 1 else 5.0 - l})
    for h in range(H):
      best = (l, h) == (2, 1)
      rows.append({**base, "layer": l, "condition": f"head{h}",
                   "site": "head_out", "heads": [h],
                   "transfer": 0.1 if best else 0.0,
                   "logit_diff_change": 2.5 if best else 0.1 * l + 0.01 * h})
    for k in (2, 3):
      rows.append({**base, "layer": l, "condition": f"top{k}",
                   "site": "head_out", "heads": list(range(k)),
                   "transfer": 0.2 if (l, k) == (2, 2) else 0.0,
                   "logit_diff_change": 3.0 if (l, k) == (2, 2) else 1.0})
  for rank in ("map", "aie"):
    for k in (1, 2, 4, 8, 12):
      rows.append({**base, "layer": None, "condition": f"g{rank}_top{k}",
                   "ranking": rank, "k": k, "group": [], "transfer": 0.0,
                   "logit_diff_change": k / 3.0})
  rows.append({**base, "layer": None, "condition": "baseline",
               "transfer": 0.0, "logit_diff_change": None})
  return rows


def aie_rows(model="model-x"):
  """AIE largest for (L3, h2), then (L2, h1); the rest tiny, favouring low
  layers (so its top 10 drops (L3, h0), (L3, h1) where the map's drops
  (L0, h0), (L0, h1): overlap 8/10)."""
  out = []
  for task in ("a", "b"):
    for l in range(L):
      for h in range(H):
        v = {(3, 2): 0.5, (2, 1): 0.4}.get((l, h), 0.001 * (L * H - l * H - h))
        out.append({"experiment": "head_map_aie", "model": model,
                    "mode": None, "source_task": None, "target_task": task,
                    "layer": l, "condition": f"head{h}", "site": "head_out",
                    "heads": [h], "n": N, "aie": v})
  return out


def test_head_map_line_recomputes_the_map(tmp_path):
  root = tmp_path / "runs"
  write_run(root, "head_map", map_rows() + map_rows(mode="aligned"))
  write_run(root, "head_map_aie", aie_rows())
  data = Data([root], tmp_path)
  text = heads.render_head_map(data, data.get("head_map"))
  line = next(x for x in text.splitlines() if "| faithful |" in x)
  cells = [c.strip() for c in line.strip("|").split("|")]
  assert cells[:4] == ["model-x", "faithful", "uppercase->repeat_word", "10"]
  assert cells[4] == "L1: 0.60 [0.31, 0.83]"       # Wilson of 6/10
  assert cells[5] == "L0-L2"                        # transfer > 0 at L0-L2
  assert cells[6] == "1/12 (max 0.10)"
  assert cells[7] == "L2 h1: 2.50"
  assert cells[8] == "0.20, 3.00"
  assert cells[9] == "0.00"
  assert cells[10] == "4.00 (40%)"                  # 12/3 against 10
  assert cells[11].startswith("0.8, ")
  assert "0/10: up to 0.28" in text
  assert sum("| aligned |" in x for x in text.splitlines()) == 1


def test_aie_section_and_registration(tmp_path):
  root = tmp_path / "runs"
  write_run(root, "head_map_aie", aie_rows())
  data = Data([root], tmp_path)
  text = heads.render_head_map_aie(data, data.get("head_map_aie"))
  assert "| model-x | a, b | 10 | L3 h2 0.500; L2 h1 0.400; L0 h0 0.012" in text
  assert build.EXTRA_RENDERERS["head_map"] is heads.render_head_map
  assert build.EXTRA_RENDERERS["head_map_aie"] is heads.render_head_map_aie


def test_map_without_aie_rows_has_no_comparison(tmp_path):
  root = tmp_path / "runs"
  write_run(root, "head_map", map_rows())
  data = Data([root], tmp_path)
  line = next(x for x in heads.render_head_map(
      data, data.get("head_map")).splitlines() if "| faithful |" in x)
  assert line.rstrip(" |").endswith("-")
