"""The head x layer map, top-head groups and the AIE ranking
(icl_jax/studies/head_map.py) on tiny random models with SmolLM2's real
tokenizer: the map's cells against one-head-at-a-time patches built by hand
through the public API, all heads of a layer against the attn_out patch,
the AIE against a hand computation, and the rankings on hand-made rows."""

from __future__ import annotations

import numpy as np
import jax
import pytest

import icl_jax
from icl_jax.analysis import stats
from icl_jax.studies import head_map, plans, setups
from icl_jax.studies.run import Study

MAX_NEW = 3


@pytest.fixture(scope="module")
def tok():
  from icl_jax.convert.tokenizers import load_tokenizer

  return load_tokenizer("smollm2-135m")


def tiny_lm(tok, family):
  """2 layers, 4 heads (2 K/V heads), SmolLM2's vocabulary; weights x4 so
  logits are peaky (greedy choices are not near-ties)."""
  from icl_jax.models.config import config_from_hf
  from icl_jax.models.decoder import init_params
  from icl_jax.models.lm import LanguageModel

  extra = {}
  if family == "gemma3_text":  # post-norms, QK-norm, a sliding layer
    extra = dict(sliding_window=16, query_pre_attn_scalar=8,
                 layer_types=["sliding_attention", "full_attention"])
  cfg = config_from_hf(dict(
      model_type=family, vocab_size=49152, hidden_size=32,
      intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
      num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
      eos_token_id=2, bos_token_id=1, pad_token_id=2,
      tie_word_embeddings=True, **extra))
  params = init_params(cfg, jax.random.PRNGKey(0))
  params = jax.tree_util.tree_map(lambda x: x * 4.0, params)
  return LanguageModel(cfg, params, tokenizer=tok, name=f"tiny-{family}")


@pytest.fixture(scope="module")
def models(tok):
  return {f: tiny_lm(tok, f) for f in ("llama", "gemma3_text")}


@pytest.fixture(scope="module")
def setup():
  return setups.setup_pairs([("uppercase", "repeat_word")], 2)[0]


def open_study(lm, path):
  return Study(lm, experiment=head_map.EXPERIMENT, model=lm.name,
               config={"test": 1}, out_dir=str(path), max_new_tokens=MAX_NEW,
               progress=False)


def hand_values(acts, layer, pm, site, head=None):
  """Source values at the map's positions, by hand: per target position the
  mean over its source prompts (exp8's rule)."""
  i = acts.layers.index(layer)
  out = []
  for s, have in zip(pm.src_idx, pm.have):
    if site == "head_out":
      out.append(np.mean([acts.head_out[i, b, s, head] for b in have], 0))
    else:
      out.append(np.mean([getattr(acts, site)[i, b, s] for b in have], 0))
  return np.stack(out)


@pytest.mark.parametrize("family,mode", [("llama", "faithful"),
                                         ("gemma3_text", "aligned")])
def test_map_cells_equal_one_head_at_a_time(models, setup, family, mode,
                                            tmp_path):
  lm = models[family]
  st = open_study(lm, tmp_path)
  rows = head_map.run_pair(st, mode, setup, [0, 1])
  H = lm.config.n_heads
  # 2 layers x (4 heads + resid + top2 + top4) + the clean baseline.
  assert len(rows) == 2 * (H + 3) + 1
  inp = head_map.pair_inputs(lm, mode, setup)
  acts = icl_jax.capture(lm, [e.prompt().text for e in
                              setup.source_episodes], sites=["head_out"])
  pos = list(inp.pm.tgt_idx)
  assert pos and pos == rows[0]["positions"]
  by = {(r["layer"], r["condition"]): r for r in rows}
  for layer, h in [(0, 0), (0, H - 1), (1, 2)]:
    patch = icl_jax.Patch.replace(
        layer, pos, hand_values(acts, layer, inp.pm, "head_out", h),
        site="head_out", heads=h)
    one = icl_jax.run_patches(lm, inp.targets, [patch],
                              max_new_tokens=MAX_NEW,
                              answer_tokens=[list(a) for a in inp.answers],
                              baseline=True)
    row = by[(layer, f"head{h}")]
    assert [ex["raw_output"] for ex in row["examples"]] == one.texts[0]
    lp = one.answer_logprobs[0]
    np.testing.assert_allclose(row["logit_diff_per_prompt"],
                               lp[:, 0] - lp[:, 1], atol=1e-4)
    c = one.clean.answer_logprobs[0]
    np.testing.assert_allclose(
        row["logit_diff_change"],
        np.mean((lp[:, 0] - lp[:, 1]) - (c[:, 0] - c[:, 1])), atol=1e-4)
  # The last block's edits at demo positions cannot reach the query's
  # first-token logits (nothing reads them after block L-1).
  assert all(abs(by[(1, f"head{h}")]["logit_diff_change"]) < 1e-5
             for h in range(H))
  # ... while block 0's heads do move the metric.
  assert max(abs(by[(0, f"head{h}")]["logit_diff_change"])
             for h in range(H)) > 1e-4
  # The resid_post cells are exp8's output_only cells (the study's own
  # transfer job on its engine): same outputs, positions and edit size.
  job = plans.transfer_job(mode, setup, [0, 1], ["output_only"],
                           style="transfer", own_index=True)
  for r in plans.run_job(st.engine(), job, job.cells, experiment="exp8",
                         model=lm.name):
    mine = by[(r["layer"], "resid_post")]
    assert [e["raw_output"] for e in r["examples"]] == [
        e["raw_output"] for e in mine["examples"]]
    assert r["positions"] == mine["positions"]
    assert r["source_positions"] == mine["source_positions"]
    assert r["transfer"] == mine["transfer"]
    np.testing.assert_allclose(r["max_residual_change"],
                               mine["max_residual_change"], rtol=1e-5)
  # A second call recomputes nothing.
  n = len(st.rd.rows())
  head_map.run_pair(st, mode, setup, [0, 1])
  assert len(st.rd.rows()) == n


def test_global_groups_across_layers(models, setup, tmp_path):
  # gemma3 (post-norms), aligned: the global top-k groups of the map
  # ranking against the map's own cells and a HeadGroupPatch by hand.
  lm, mode = models["gemma3_text"], "aligned"
  st = open_study(lm, tmp_path)
  rows = head_map.run_pair(st, mode, setup, [0, 1])
  aie = {(l, h): float(l - h) for l in (0, 1) for h in range(4)}
  g = head_map.run_global(st, mode, setup, rows, aie, [0, 1])
  assert sorted(r["condition"] for r in g) == sorted(
      f"g{n}_top{k}" for n in ("map", "aie") for k in (1, 2, 4, 8))
  by = {r["condition"]: r for r in g}
  order = head_map.global_order(rows, aie)
  assert order["aie"][:2] == [(1, 0), (0, 0)]
  for k in (1, 2, 4, 8):
    assert [tuple(x) for x in by[f"gmap_top{k}"]["group"]] == \
        order["map"][:k]
  # k = 1: one head at one block is the map's own (engine) cell.
  (l, h), = order["map"][:1]
  one = next(r for r in rows if (r["layer"], r["condition"]) == (
      l, f"head{h}"))
  assert [e["raw_output"] for e in by["gmap_top1"]["examples"]] == [
      e["raw_output"] for e in one["examples"]]
  np.testing.assert_allclose(by["gmap_top1"]["logit_diff_per_prompt"],
                             one["logit_diff_per_prompt"], atol=1e-4)
  # k = 8 (every head of both blocks): a HeadGroupPatch with hand values.
  inp = head_map.pair_inputs(lm, mode, setup)
  acts = icl_jax.capture(lm, [e.prompt().text for e in
                              setup.source_episodes], sites=["head_out"])
  pos = list(inp.pm.tgt_idx)
  p = icl_jax.HeadGroupPatch({l: range(4) for l in (0, 1)}, pos, {
      l: sum(hand_values(acts, l, inp.pm, "head_out", h) for h in range(4))
      for l in (0, 1)})
  out = icl_jax.run_patches(lm, inp.targets, [p], max_new_tokens=MAX_NEW,
                            answer_tokens=[list(a) for a in inp.answers])
  r = by["gmap_top8"]
  assert [e["raw_output"] for e in r["examples"]] == out.texts[0]
  lp = out.answer_logprobs[0]
  np.testing.assert_allclose(r["logit_diff_per_prompt"], lp[:, 0] - lp[:, 1],
                             atol=1e-4)
  assert r["max_residual_change"] is None and r["k"] == 8
  # Resumable.
  n = len(st.rd.rows())
  head_map.run_global(st, mode, setup, rows, aie, [0, 1])
  assert len(st.rd.rows()) == n


@pytest.mark.parametrize("family", ["llama", "gemma3_text"])
def test_all_heads_of_a_layer_equal_the_attn_out_patch(models, setup,
                                                       family):
  lm = models[family]
  inp = head_map.pair_inputs(lm, "aligned", setup)
  acts = icl_jax.capture(lm, [e.prompt().text for e in
                              setup.source_episodes], components=True)
  pos = list(inp.pm.tgt_idx)
  H = lm.config.n_heads
  patches = []
  for layer in (0, 1):  # the group (any order) vs the attention output
    patches += [head_map.cell_patch(inp, layer, f"top{H}",
                                    heads=(2, 0, 3, 1)),
                icl_jax.Patch.replace(
                    layer, pos, hand_values(acts, layer, inp.pm, "attn_out"),
                    site="attn_out")]
  out = icl_jax.run_patches(lm, inp.targets, patches, max_new_tokens=MAX_NEW,
                            return_logits=True, baseline=True)
  for i in (0, 2):
    assert out.texts[i] == out.texts[i + 1]
    np.testing.assert_allclose(out.logits[i], out.logits[i + 1], rtol=1e-4,
                               atol=1e-4)
  # and the layer-0 patch does something
  assert np.abs(out.logits[0] - out.clean.logits[0]).max() > 1e-3


def test_aie_equals_a_hand_computation(models, tok):
  lm = models["llama"]
  rows = head_map.aie_rows(lm, "uppercase", 2, [0, 1], seed=0, model="t")
  assert len(rows) == 2 * lm.config.n_heads
  eps = setups.task_setup("uppercase", 2).target_episodes
  perm = rows[0]["label_permutation"]
  assert sorted(perm) == list(range(5)) and all(
      p != i for i, p in enumerate(perm))
  bad = head_map.shuffled(eps, perm)
  assert [x for x, _ in bad[0].demos] == [x for x, _ in eps[0].demos]
  assert [y for _, y in bad[0].demos] == [eps[0].demos[p][1] for p in perm]
  clean = icl_jax.capture(lm, [e.prompt().text for e in eps],
                          sites=["head_out"])
  ans = [head_map.first_token(tok, e.expected) for e in eps]
  for r in (rows[5],):
    layer, h = r["layer"], r["heads"][0]
    li = clean.layers.index(layer)
    mean = np.mean([clean.head_out[li, i, n - 1, h]
                    for i, n in enumerate(clean.lengths)], 0)
    gains = []
    for e, a in zip(bad, ans):  # one prompt at a time
      o = icl_jax.run_patches(
          lm, [e.prompt().text],
          [icl_jax.Patch.replace(layer, [-1], mean, site="head_out",
                                 heads=h)],
          max_new_tokens=1, answer_tokens=a, baseline=True)
      gains.append(np.exp(o.answer_logprobs[0, 0, 0]) -
                   np.exp(o.clean.answer_logprobs[0, 0, 0]))
    np.testing.assert_allclose(r["aie"], np.mean(gains), atol=1e-6)
  assert any(abs(r["aie"]) > 0 for r in rows)


def _row(layer, head, transfer, ld, cond=None, heads=None):
  return {"layer": layer, "condition": cond or f"head{head}",
          "site": "head_out" if cond != "resid_post" else "resid_post",
          "heads": heads or [head], "transfer": transfer,
          "logit_diff_change": ld}


def test_rankings_groups_and_comparison_on_hand_made_rows():
  assert head_map.group_ks(4) == [2, 4]
  assert head_map.group_ks(9) == [2, 4, 8, 9]
  assert head_map.group_ks(1) == []
  rows = [_row(0, 0, 0.1, 0.5), _row(0, 1, 0.3, -1.0), _row(1, 0, 0.3, 2.0),
          _row(1, 1, 0.0, 0.0),
          _row(0, None, 0.6, 3.0, cond="resid_post", heads=None),
          _row(1, None, 0.8, 4.0, cond="resid_post", heads=None)]
  rows[4]["heads"] = rows[5]["heads"] = None
  # transfer first, then the metric's change
  assert head_map.ranked_heads(rows) == [(1, 0), (0, 1), (0, 0), (1, 1)]
  cells = head_map.group_cells(rows, 2)
  assert [(c["layer"], c["condition"], c["heads"]) for c in cells] == [
      (0, "top2", (1, 0)), (1, "top2", (0, 1))]
  rows += [_row(0, None, 0.8, 1.0, cond="top2", heads=[1, 0]),
           _row(1, None, 0.5, 1.0, cond="top2", heads=[0, 1])]
  s = head_map.pair_summary(rows, 2)
  assert s["best_resid_layer"] == 1 and s["best_resid_transfer"] == 0.8
  assert s["best_layer_top_k"][1] == {"transfer": 0.3, "layer": 0}
  assert s["best_layer_top_k"][2] == {"transfer": 0.8, "layer": 0}
  assert s["first_k_reaching_resid"] == 2
  assert s["global_top_k"] == {}
  # Global rankings: by the metric's change (map), by AIE.
  assert head_map.global_ks(4) == [1, 2, 4]
  assert head_map.global_ks(72) == [1, 2, 4, 8, 16, 32, 64, 72]
  aie0 = {(0, 0): 0.0, (0, 1): 0.5, (1, 0): -1.0, (1, 1): 0.5}
  o = head_map.global_order(rows, aie0)
  assert o["map"] == [(1, 0), (0, 0), (1, 1), (0, 1)]
  assert o["aie"] == [(0, 1), (1, 1), (0, 0), (1, 0)]
  assert [(c["condition"], c["group"]) for c in head_map.global_cells(
      rows, None)][:2] == [("gmap_top1", ((1, 0),)),
                           ("gmap_top2", ((1, 0), (0, 0)))]
  glob = [dict(_row(None, None, t, ld, cond=f"gmap_top{k}"), ranking="map",
               k=k, group=[[1, 0]]) for k, t, ld in ((2, 0.9, 5.0),
                                                     (1, 0.5, 1.0))]
  s = head_map.pair_summary(rows + glob, 2)
  assert [x["k"] for x in s["global_top_k"]["map"]] == [1, 2]
  assert s["global_first_k_reaching_resid"] == {"map": 2}
  assert s["best_resid_logit_diff_change"] == 4.0
  # AIE comparison: the same order -> rho 1, overlap 1; reversed -> -1.
  same = {(1, 0): 4.0, (0, 1): 3.0, (0, 0): 2.0, (1, 1): 1.0}
  c = head_map.compare(rows, same, top=2)
  assert c["top2_overlap"] == 1.0
  assert c["top_aie"] == [[1, 0], [0, 1]]
  rev = {k: -v for k, v in same.items()}
  c = head_map.compare(rows, rev, top=2)
  assert c["top2_overlap"] == 0.0
  assert stats.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
  assert stats.spearman([1, 1, 2], [5, 5, 9]) == pytest.approx(1.0)
  assert stats.spearman([1, 1, 1], [1, 2, 3]) is None
