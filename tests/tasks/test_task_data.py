"""Data completeness, answers and the registry."""

import random

import pytest

from icl_jax.tasks import BASELINE_TASKS
from icl_jax.tasks import CORE_TASKS
from icl_jax.tasks import UnknownTaskError
from icl_jax.tasks import data
from icl_jax.tasks import get_task
from icl_jax.tasks import make_episodes
from icl_jax.tasks import task_names


def test_pool_sizes_and_uniqueness():
  assert len(data.WORDS_50) == len(set(data.WORDS_50)) == 50
  assert all(len(w) == 5 for w in data.WORDS_50)
  assert len(data.LINEAR_POOL) == 55
  assert {"2", "3", "5", "7", "9"}.isdisjoint(data.LINEAR_POOL)
  labels = [lab for _, lab in data.SENTIMENT_ITEMS]
  assert len(set(w for w, _ in data.SENTIMENT_ITEMS)) == 50
  assert labels.count("positive") == labels.count("negative") == 25
  assert len(set(w for w, _, _ in data.ANTONYM_ITEMS)) == 50
  assert len(set(data.PATTERN_POOL)) == 51
  assert len(data.REPEAT_N_POOL) == len(data.SPELL_OUT_POOL) == 20


def test_pattern_pool_is_alternating_and_covers_the_described_alphabet():
  symbols = set()
  for p in data.PATTERN_POOL:
    a, b, a2, b2, a3 = p.split()
    assert a == a2 == a3 and b == b2 and a != b
    symbols |= {a, b}
  assert {"@", "#", "+", "-", "!", "?"} <= symbols
  assert any(s.isupper() for s in symbols)
  assert any(s.islower() for s in symbols)
  assert any(s.isdigit() for s in symbols)


def test_repeat_n_counts_per_n():
  counts = {}
  for item in data.REPEAT_N_POOL:
    n = int(item.split()[1])
    counts[n] = counts.get(n, 0) + 1
  assert counts == {2: 7, 3: 6, 4: 4, 5: 3}


@pytest.mark.parametrize("name,x,y", [
    ("uppercase", "honey", "HONEY"),
    ("first_letter", "honey", "h"),
    ("repeat_word", "honey", "honey honey"),
    ("length", "honey", "5"),
    ("linear_2x", "36", "72"),
    ("sentiment", "gloomy", "negative"),
    ("sentiment", "honey", "positive"),  # fallback for unknown inputs
    ("antonym", "bold", "timid"),
    ("antonym", "honey", "unknown"),  # fallback
    ("pattern_completion", "@ # @ # @", "#"),
    ("pattern_completion", "honey", "honey"),  # one-token fallback
    ("reverse", "honey", "yenoh"),
    ("pig_latin", "honey", "oneyhay"),
    ("pig_latin", "ivory", "ivoryay"),
    ("pig_latin", "crane", "anecray"),
    ("uppercase_period", "honey", "HONEY."),
    ("length_word", "elephant", "eight"),
    ("repeat_comma", "honey", "honey, honey"),
    ("reverse_spaced", "honey", "y e n o h"),
    ("sentiment_goodbad", "sad", "bad"),
    ("sentiment_symbol", "happy", "+"),
    ("repeat_n", "eagle 5", "eagle eagle eagle eagle eagle"),
    ("spell_out", "23", "twenty-three"),
    ("spell_out", "13", "thirteen"),
])
def test_answers(name, x, y):
  assert get_task(name).answer(x) == y


def test_demo_lists():
  assert get_task("pig_latin").generate_demos(5)[1] == ("brain", "ainbray")
  assert get_task("linear_2x").generate_demos(5) == [
      ("3", "6"), ("5", "10"), ("7", "14"), ("2", "4"), ("9", "18")]
  assert get_task("pattern_completion").generate_demos(2) == [
      ("A B A B A", "B"), ("1 2 1 2 1", "2")]
  assert get_task("repeat_n").generate_demos(5)[2] == (
      "cat 4", "cat cat cat cat")
  assert [y for _, y in get_task("spell_out").demos] == [
      "three", "twelve", "twenty", "seven", "fifteen"]
  with pytest.raises(ValueError, match="5 fixed demos"):
    get_task("uppercase").generate_demos(6)


def test_length_is_degenerate_on_its_pool():
  # [!] 11.2.6: every test word has 5 letters -> the answer is always "5".
  t = get_task("length")
  assert {t.answer(x) for x in t.pool} == {"5"}


def test_registry_lists_and_unknown_name():
  assert set(CORE_TASKS) <= set(task_names())
  assert BASELINE_TASKS[-2:] == ("reverse", "pig_latin")
  assert len(task_names()) == 19
  with pytest.raises(UnknownTaskError) as e:
    get_task("uppercas")
  msg = str(e.value)
  assert "'uppercas'" in msg and "uppercase" in msg and "pig_latin" in msg


def test_sampled_demos_are_seeded_and_disjoint_from_query():
  t = get_task("antonym")
  eps = make_episodes(t, n=10, k=5, demo_mode="sampled", seed=7)
  again = make_episodes(get_task("antonym"), n=10, k=5, demo_mode="sampled",
                        seed=7)
  assert eps == again
  assert [e.query for e in eps] == get_task("antonym").generate_test_inputs(10)
  for e in eps:
    inputs = [x for x, _ in e.demos]
    assert len(set(inputs)) == 5 and e.query not in inputs
    assert all(y == t.answer(x) for x, y in e.demos)
  assert len({e.demos for e in eps}) > 1  # per-query draws differ
  other = make_episodes(get_task("antonym"), n=10, k=5, demo_mode="sampled",
                        seed=8)
  assert [e.demos for e in other] != [e.demos for e in eps]


def test_sampled_shared_demos_avoid_all_queries():
  eps = make_episodes("uppercase", n=20, k=3, demo_mode="sampled_shared",
                      seed=0)
  demos = eps[0].demos
  assert all(e.demos == demos for e in eps)
  assert {x for x, _ in demos}.isdisjoint(e.query for e in eps)
  assert eps[0].expected == eps[0].query.upper()


def test_fixed_episodes_and_k_shot():
  eps = make_episodes("linear_2x", n=3, k=2)
  assert [e.query for e in eps] == ["36", "29", "55"]
  assert all(e.demos == (("3", "6"), ("5", "10")) for e in eps)
  assert eps[0].expected == "72"
  assert eps[0].prompt().text.endswith("Input: 36\nOutput:")


def test_sample_demos_does_not_touch_the_replay_rng():
  t = get_task("uppercase")
  t.sample_demos(5, random.Random(0))
  assert t.generate_test_inputs(1) == ["honey"]


def test_bad_episode_arguments():
  with pytest.raises(ValueError, match="demo_mode"):
    make_episodes("uppercase", 2, demo_mode="random")
  with pytest.raises(ValueError, match="cannot sample"):
    get_task("spell_out").sample_demos(30, random.Random(0))
