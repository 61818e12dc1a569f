"""RNG call-order replay (protocol section 2): first 20 of calls 1 and 2."""

import pytest

from icl_jax.tasks import get_task

WORDS_1 = ("honey frost badge stone lemon fjord ivory queen lunar youth noble"
           " dream tower knife vivid urban river globe robin grape").split()
WORDS_2 = ("crane pixel uncle queen badge lunar house grape wheat knife kayak"
           " river urban eagle youth fjord index zebra honey trend").split()
LINEAR_1 = [36, 29, 55, 17, 22, 26, 56, 59, 41, 25, 15, 39, 47, 50, 35, 60, 8,
            27, 52, 10]
LINEAR_2 = [21, 53, 36, 22, 4, 15, 32, 60, 58, 17, 8, 1, 31, 49, 38, 41, 34,
            14, 55, 47]
SENTIMENT_1 = ("disgusted depressed gloomy bitter grateful envious inspired"
               " jealous pessimistic confident resentful devastated peaceful"
               " fearful agitated serene loving amused sorrowful happy").split()
SENTIMENT_2 = ("affectionate despondent furious jealous gloomy pessimistic sad"
               " happy miserable fearful optimistic loving serene thrilled"
               " confident envious generous worried disgusted"
               " vindictive").split()
ANTONYM_1 = ("true alive bright dry hard generous wise loud win smooth rise"
             " cheap early strong ancient arrive clean love teach tall").split()
ANTONYM_2 = ("create complex full loud bright win old tall sharp strong east"
             " clean arrive clear smooth generous maximum sweet true"
             " accept").split()
PATTERN_1 = ["Z Y Z Y Z", "w x w x w", "o p o p o", "9 0 9 0 9", "K L K L K",
             "a c a c a", "W X W X W", "5 6 5 6 5", "B C B C B", "i j i j i",
             "F G F G F", "s t s t s", "a b a b a", "I J I J I", "6 7 6 7 6",
             "4 5 4 5 4", "7 8 7 8 7", "y z y z y", "S T S T S", "C D C D C"]
PATTERN_2 = ["! ? ! ? !", "H I H I H", "c d c d c", "5 6 5 6 5", "o p o p o",
             "D E D E D", "E F E F E", "C D C D C", "g h g h g", "I J I J I",
             "u v u v u", "7 8 7 8 7", "+ - + - +", "@ # @ # @", "i j i j i",
             "1 0 1 0 1", "r t r t r", "F G F G F", "O N O N O", "4 5 4 5 4"]


@pytest.mark.parametrize(
    "task,first,second",
    [(name, WORDS_1, WORDS_2) for name in (
        "uppercase", "first_letter", "repeat_word", "length", "reverse",
        "pig_latin")]
    + [("linear_2x", [str(i) for i in LINEAR_1], [str(i) for i in LINEAR_2]),
       ("sentiment", SENTIMENT_1, SENTIMENT_2),
       ("antonym", ANTONYM_1, ANTONYM_2),
       ("pattern_completion", PATTERN_1, PATTERN_2)],
)
def test_first_two_calls_reproduce_protocol_sequences(task, first, second):
  t = get_task(task)
  call1 = t.generate_test_inputs(50)
  call2 = t.generate_test_inputs(50)
  assert call1[:20] == first
  assert call2[:20] == second
  assert len(call1) == 50 and len(set(call1)) == 50  # a permutation prefix


def test_n_only_truncates_the_same_permutation():
  a, b = get_task("uppercase"), get_task("uppercase")
  assert a.generate_test_inputs(5) == b.generate_test_inputs(50)[:5]
  # ...and both advanced the RNG by exactly one call:
  assert a.generate_test_inputs(20) == WORDS_2 == b.generate_test_inputs(20)


def test_each_task_object_owns_its_rng_and_reset_replays():
  a = get_task("sentiment")
  a.generate_test_inputs(10)
  fresh = get_task("sentiment")  # independent of ``a``'s state
  assert fresh.generate_test_inputs(20) == SENTIMENT_1
  a.reset()
  assert a.generate_test_inputs(20) == SENTIMENT_1


def test_sentiment_label_variants_share_the_sentiment_sequence():
  for name in ("sentiment_goodbad", "sentiment_symbol"):
    assert get_task(name).generate_test_inputs(20) == SENTIMENT_1


def test_exp15_sampled_demos_and_inputs():
  # Demos drawn by rng.sample(WORDS, 5) with each task's own Random(42).
  expect = {
      "uppercase_period": ["brain", "hello", "ghost", "flame", "queen"],
      "length_word": ["apple", "hi", "house", "banana", "moon"],
      "repeat_comma": ["dance", "apple", "juice", "house", "river"],
      "reverse_exp15": ["brain", "hello", "ghost", "flame", "piano"],
      "reverse_spaced": ["brain", "hello", "ghost", "flame", "piano"],
  }
  for name, inputs in expect.items():
    assert [x for x, _ in get_task(name).demos] == inputs, name
  assert get_task("length_word").demos[1] == ("hi", "two")
  assert get_task("reverse_spaced").demos[0] == ("brain", "n i a r b")
  # "20 of 20 -> includes the demo words" (custom reverse's test inputs).
  inputs = get_task("reverse_exp15").generate_test_inputs(20)
  assert len(inputs) == 20 and {"brain", "piano"} <= set(inputs)
  assert len(get_task("length_word").generate_test_inputs(20)) == 16
