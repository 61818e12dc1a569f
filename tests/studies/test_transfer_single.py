"""Single-position transplants, pair setup options and study helpers."""

from __future__ import annotations

import numpy as np
import jax
import pytest

from tests.conftest import tiny_llama_lm
from icl_jax import tasks as T
from icl_jax.studies import (ablation, accuracy, layers, plans, positions,
                             setups, single_position)
from icl_jax.interventions.engine import Engine


@pytest.fixture(scope="module")
def tok():
  from icl_jax.convert.tokenizers import load_tokenizer

  return load_tokenizer("smollm2-135m")


@pytest.fixture(scope="module")
def lm(tok):
  """A tiny random llama with SmolLM2's real tokenizer (vocab 49152)."""
  return tiny_llama_lm(tok)


def test_setup_pairs_options_replay_the_rng():
  # Default (exp8): source call, then target call, per pair.
  a = setups.setup_pairs([("uppercase", "repeat_word")], 3)[0]
  assert [e.query for e in a.source_episodes] == ["honey", "frost", "badge"]
  assert [e.query for e in a.target_episodes] == ["honey", "frost", "badge"]
  # queries="shared_target": only the target is called, one source prompt.
  b = setups.setup_pairs([("uppercase", "linear_2x")], 3,
                           queries="shared_target", n_source=1)[0]
  assert [e.query for e in b.target_episodes] == ["36", "29", "55"]
  assert [e.query for e in b.source_episodes] == ["36"]
  assert b.source_episodes[0].task == "uppercase"
  # queries="shared_source": target prompts get the source's inputs.
  c = setups.setup_pairs([("linear_2x", "uppercase")], 2,
                           queries="shared_source")[0]
  assert [e.query for e in c.target_episodes] == ["36", "29"]
  # source_calls="once": the source is called once before the pairs, so a
  # task that is first a source and then a target gets its 2nd call.
  d = setups.setup_pairs([("uppercase", "sentiment"),
                            ("first_letter", "uppercase")], 2,
                           source_calls="once")
  assert [e.query for e in d[1].target_episodes] == ["crane", "pixel"]
  assert [e.query for e in d[0].source_episodes] == ["honey", "frost"]
  e = setups.setup_pairs([("uppercase", "sentiment")], 2, k=2, k_source=1)
  assert len(e[0].source_episodes[0].demos) == 1
  assert len(e[0].target_episodes[0].demos) == 2
  with pytest.raises(ValueError, match="queries"):
    setups.setup_pairs([("uppercase", "sentiment")], 2,
                         queries="both")


def test_target_indices_are_shared_and_checked(tok):
  eps = T.make_episodes(T.get_task("uppercase"), 4)
  f = positions.shared_target_indices(tok, eps, "last_demo_token", "faithful")
  a = positions.shared_target_indices(tok, eps, "last_demo_token", "aligned")
  ids = tok(eps[0].prompt().text)["input_ids"]
  # faithful: the separator before the query ("\n\n" on Llama/Gemma; the
  # first "\n" on SmolLM2, which does not merge newlines); aligned: the
  # last answer token just before it.
  assert "\n" in tok.decode([ids[f[0]]]) and not tok.decode(
      [ids[f[0]]]).strip()
  assert a[-1] < f[0] and "E" in tok.decode([ids[a[-1]]])
  sets = positions.position_sets(tok, eps, "first_query_token", "faithful")
  assert len({tuple(s) for s in sets}) == 1
  with pytest.raises(ValueError, match="disagree"):
    mixed = eps[:1] + T.make_episodes(T.get_task("uppercase"), 1, k=3)
    positions.shared_target_indices(tok, mixed, "last_demo_token", "faithful")


def test_single_positions_are_per_prompt(tok):
  from icl_jax.studies import ablation, positions

  tp = ablation.task_prompts(tok, "pattern_completion", 4)
  own = [s[-1] for s in positions.position_sets(
      tok, tp.episodes, "first_query_token", "faithful")]
  got = ablation.single_positions(tok, tp, "first_query_token", "faithful")
  assert got == own and len(set(got)) == 2  # "9 0 9 0 9" is one token later
  with pytest.raises(ValueError, match="disagree"):
    ablation.single_position(tok, tp, "first_query_token", "faithful")


@pytest.mark.parametrize("mode", ["faithful", "aligned"])
def test_single_position_cells_use_each_prompts_own_index(lm, tok, mode):
  """The source vector is the mean over source prompts at each prompt's own
  position; it is written at the *target's* own position (exp3)."""
  setup = setups.setup_pairs([("linear_2x", "first_letter")], 3)[0]
  engine = Engine(lm, max_new_tokens=2)
  targets = engine.prepare(
      prompts=[e.prompt().text for e in setup.target_episodes])
  for cond in ("last_demo_token", "first_query_token"):
    job = plans.transfer_job(mode, setup, [0, 1], [cond], style="transfer",
                             own_index=True)
    ps = job.build(engine, targets, job.cells)
    cells = plans.plans_to_cells(ps, targets.slots, lm.config.d_model)
    src_sets = positions.position_sets(tok, setup.source_episodes, cond, mode)
    tgt = positions.shared_target_indices(tok, setup.target_episodes, cond,
                                         mode)
    resid, _ = engine.capture(prompts=[e.prompt().text
                                       for e in setup.source_episodes])
    for c, layer in enumerate([0, 1]):
      assert np.nonzero(cells.mask[c])[0].tolist() == [tgt[-1]]
      want = np.mean([resid[layer + 1, b, s[-1]]
                      for b, s in enumerate(src_sets)], axis=0)
      np.testing.assert_allclose(cells.values[c, tgt[-1]], want, rtol=1e-6)
      assert list(ps[c].tgt_idx) == [tgt[-1]]
      assert ps[c].meta["source_positions"] == sorted(
          {s[-1] for s in src_sets})
    if cond == "last_demo_token":
      # linear_2x and first_letter prompts differ in length: the source's
      # position is not the target's.
      assert src_sets[0][-1] != tgt[-1]


def test_interpolation_metrics_and_localization():
  rows = [{"mode": "faithful", "target_task": "a", "source_task": "b",
           "layer": 3, "condition": f"interp:alpha={al:.2f}", "alpha": al,
           "preserve": p}
          for al, p in zip([0, .25, .5, .75, 1], [0, 0, .5, 1, 1])]
  (m,) = single_position.interpolation_metrics(rows)
  assert m["midpoint_slope"] == pytest.approx(2.0)
  assert m["transition_width"] == 0.0  # only alpha 0.5 lies in (0.2, 0.8)
  assert m["linear_correlation"] > 0.9
  flat = [dict(r, preserve=1.0) for r in rows]
  assert single_position.interpolation_metrics(flat)[0][
      "linear_correlation"] == 0.0
  loc = single_position.localization(
      [{"mode": "m", "source_task": "s", "target_task": "t", "condition": "c",
        "layer": l, "transfer": v} for l, v in enumerate([0, .5, 0, 0])])
  assert loc[0]["peak_layer"] == 1
  assert loc[0]["localization_index"] == pytest.approx(np.var([0, .5, 0, 0]))


def test_layer_grids_and_groups():
  assert layers.study_layers("transplant", 28) == [14]
  assert layers.study_layers("demo_zeroing", 28) == [4, 8, 12, 16, 20]
  assert layers.study_layers("noise_tracing", 28) == list(range(0, 28, 2))
  assert layers.study_layers("noise_tracing", 16) == list(range(16))
  assert layers.study_layers("instance_analysis", 26) == [8]
  assert layers.study_layers("query_transplant", 28)[-1] == 27
  assert layers.study_layers("transplant", 18) == [9]
  assert layers.parse_layers("2,0", 4, "transplant") == [0, 2]
  with pytest.raises(ValueError, match="outside the model"):
    layers.parse_layers("0,9", 4, "transplant")
  assert ablation.skip_groups(28) == {
      "early": list(range(0, 8)), "mid": list(range(8, 16)),
      "late": list(range(16, 24)), "final": list(range(24, 28))}
  assert ablation.skip_groups(18)["final"] == [15, 16, 17]
  assert ablation.skip_groups(6, "x:1-2") == {"x": [1, 2]}
  with pytest.raises(ValueError, match="outside"):
    ablation.skip_groups(6, "x:1-9")
  assert accuracy.disruption(0.8, 0.2, "absolute") == pytest.approx(0.6)
  assert accuracy.disruption(0.8, 0.2, "relative") == pytest.approx(0.75)
  assert accuracy.disruption(0.0, 0.0, "relative") is None


def test_faithful_demo_end_keeps_the_last_separator(tok):
  eps = T.make_episodes(T.get_task("uppercase"), 2)
  text = eps[0].prompt().text
  end = ablation.faithful_demo_end(tok, text)
  ids = tok(text)["input_ids"]  # SmolLM2 adds no BOS
  # [0, end): the demo text ending in a single "\n" (on a BOS + merged
  # "\n\n" tokenizer: BOS and every demo token but the final "\n\n"); on
  # SmolLM2 (no BOS, no merge) the second "\n" is left.
  assert tok.decode(ids[:end]).endswith("FLAME\n")
  assert tok.decode([ids[end]]) == "\n"
  assert tok.decode(ids[end + 1:]).startswith("Input: ")
