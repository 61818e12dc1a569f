"""Han et al.'s POS family: the first word of a part-of-speech class.

Each kept sentence of the Penn Treebank sample (see :mod:`pos_data`) contains
all six classes; a task's answer is the first word whose tag is in the class,
with punctuation glued to it removed; Null pairs the sentence with a random
word of it.

[ASSUMPTION] (spec 3.2) PTB tag groups: Noun = NN NNS NNP NNPS; Adjective =
JJ JJR JJS; Verb = VB VBD VBG VBN VBP VBZ; Adverb = RB RBR RBS; Preposition =
IN (TO excluded); Pronoun = PRP PRP$ (WP excluded).
[ASSUMPTION] Punctuation stripping: the characters in ``_STRIP`` are removed
from both ends of a token; a trailing "." only from the sentence's last token
(inside a sentence it belongs to an abbreviation such as "Nov." or "Inc.").
[ASSUMPTION] The 80/20 split shuffles the kept sentences with
``random.Random(0)``; the first 80% are train.
"""

from __future__ import annotations

import functools
import random

from icl_jax.tasks.han import pos_data

CLASSES = {
    "noun": ("NN", "NNS", "NNP", "NNPS"),
    "adjective": ("JJ", "JJR", "JJS"),
    "verb": ("VB", "VBD", "VBG", "VBN", "VBP", "VBZ"),
    "adverb": ("RB", "RBR", "RBS"),
    "preposition": ("IN",),
    "pronoun": ("PRP", "PRP$"),
}
TASKS = tuple(CLASSES) + ("null",)
SPLIT_SEED = 0
TRAIN_FRACTION = 0.8
_STRIP = ",;:!?\"'`()[]{}"


def clean_word(token: str, last: bool = False) -> str:
  """``token`` without the punctuation glued to its ends (see module doc)."""
  word = token.strip(_STRIP)
  if last:
    word = word.rstrip(".").strip(_STRIP)
  return word


def words(sentence: str) -> list[str]:
  """Cleaned words of ``sentence``, aligned 1:1 with its tags."""
  toks = sentence.split()
  return [clean_word(t, i == len(toks) - 1) for i, t in enumerate(toks)]


def first_of_class(sentence: str, tags, task: str) -> str | None:
  """The first (cleaned, non-empty) word of ``task``'s class, or None."""
  group = CLASSES[task]
  for word, tag in zip(words(sentence), tags):
    if tag in group and word:
      return word
  return None


def keep(sentence: str, tags) -> bool:
  """True when the tokens align with the tags and every class is present."""
  if len(sentence.split()) != len(tags):
    return False
  return all(first_of_class(sentence, tags, t) is not None for t in CLASSES)


@functools.lru_cache(maxsize=4)
def _splits(rows: tuple) -> dict[str, tuple]:
  kept = [(s, tuple(t)) for s, t in rows if keep(s, t)]
  random.Random(SPLIT_SEED).shuffle(kept)
  cut = int(round(TRAIN_FRACTION * len(kept)))
  return {"train": tuple(kept[:cut]), "eval": tuple(kept[cut:])}


def split_sentences(split: str, rows=None) -> tuple:
  """Kept ``(sentence, tags)`` of ``split`` ("train" | "eval")."""
  rows = pos_data.load_penn() if rows is None else tuple(rows)
  return _splits(rows)[split]


def answer(sentence: str, tags, task: str, rng: random.Random) -> str:
  """The answer of ``task`` for one sentence (Null: a random word of it)."""
  if task == "null":
    return rng.choice([w for w in words(sentence) if w])
  out = first_of_class(sentence, tags, task)
  if out is None:
    raise ValueError(f"no {task} in {sentence!r}")
  return out
