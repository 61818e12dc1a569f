"""Statistics over reused prompts: cluster bootstrap, split-half best layer,
argmax stability."""

import numpy as np
import pytest

from icl_jax.analysis import cluster_stats as CS


def test_prompt_outcomes_reads_each_prompts_label():
  rows = [{"examples": [{"label": "transfer"}, {"label": "preserve"}]},
          {"examples": [{"label": "neither"}, {"label": "transfer"}]}]
  _, m = CS.prompt_outcomes(rows)
  assert m.tolist() == [[1, 0], [0, 1]]
  with pytest.raises(ValueError):
    CS.prompt_outcomes(rows + [{"examples": [{"label": "transfer"}]}])


def test_reused_prompts_do_not_shrink_the_interval():
  """100 cells that all score the same 20 prompts identically carry the
  information of one cell: the interval is exactly the one-cell interval,
  not the 2000-trial one."""
  one = np.zeros((1, 20))
  one[0, :2] = 1
  many = np.repeat(one, 100, axis=0)
  assert CS.cluster_bootstrap(many, seed=3) == CS.cluster_bootstrap(one,
                                                                    seed=3)
  mean, lo, hi = CS.cluster_bootstrap(many, seed=3)
  assert mean == pytest.approx(0.1) and hi > 0.2 and lo == 0.0


def test_strata_resample_within_each_prompt_set():
  m = np.concatenate([np.ones((3, 10)), np.zeros((3, 10))], axis=1)
  strata = np.r_[np.zeros(10), np.ones(10)]
  assert CS.cluster_bootstrap(m, strata) == (0.5, 0.5, 0.5)
  _, lo, hi = CS.cluster_bootstrap(m)  # one stratum: the share varies
  assert lo < 0.5 < hi


def test_missing_cells_are_left_out():
  m = np.array([[1.0, np.nan], [0.0, 1.0]])
  assert CS.cluster_bootstrap(m)[0] == pytest.approx(2 / 3)


def test_split_half_best_is_unbiased_where_the_in_sample_max_is_not():
  """20 layers of pure noise (every layer 10%): the argmax layer's
  in-sample mean is inflated; its held-out estimate is not."""
  inflated, held = [], []
  for seed in range(200):
    x = (np.random.default_rng(seed).uniform(size=(20, 40)) < 0.1) * 1.0
    r = CS.split_half_best(x, list(range(20)), seed=seed)
    assert r["n_select"] + r["n_test"] == 40
    inflated.append(r["selection_mean"])
    held.append(r["estimate"])
    assert r["lo"] <= r["estimate"] <= r["hi"]
  assert np.mean(inflated) > 0.2
  assert np.mean(held) == pytest.approx(0.1, abs=0.02)


def test_split_half_finds_a_real_best_layer():
  x = np.zeros((6, 30))
  x[4] = 1.0
  r = CS.split_half_best(x, [0, 2, 4, 6, 8, 10], seed=1)
  assert r["layer"] == 8 and r["estimate"] == 1.0


def test_best_layer_spread():
  clear = np.zeros((5, 20))
  clear[2, :15] = 1
  s = CS.best_layer_spread(clear, list(range(5)), n_layers=10)
  assert s["layer"] == 2 and s["win_share"] == {2: 1.0}
  assert s["depth_lo"] == s["depth_hi"] == 0.2
  flat = (np.random.default_rng(0).uniform(size=(10, 20)) < 0.2) * 1.0
  s = CS.best_layer_spread(flat, list(range(10)), n_layers=10)
  assert s["depth_hi"] - s["depth_lo"] >= 0.5
  assert sum(s["win_share"].values()) == pytest.approx(1.0)
