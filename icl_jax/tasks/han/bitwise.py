"""Han et al.'s bitwise family: a hidden operator on two 5-digit binaries.

Input ``"10110 01101"``, answer the 5-digit result; Null's answer is 5 random
digits. Pools: 10,000 training and 500 evaluation pairs, drawn with fixed
seeds. There are only 2^10 = 1024 distinct pairs, so the 10K training draws
cover nearly all of them and cannot be disjoint from evaluation: [ASSUMPTION]
training draws are i.i.d. (with repeats), the 500 evaluation pairs are
distinct from each other only.

[ASSUMPTION] Input format (two numbers joined by one space) as the spec's
example in section 3.3; pairs are uniform over all 2^10 bit patterns.
"""

from __future__ import annotations

import functools
import random

WIDTH = 5
OPERATORS = {
    "and": lambda a, b: a & b,
    "nand": lambda a, b: 1 - (a & b),
    "or": lambda a, b: a | b,
    "nor": lambda a, b: 1 - (a | b),
    "xor": lambda a, b: a ^ b,
    "xnor": lambda a, b: 1 - (a ^ b),
}
TASKS = tuple(OPERATORS) + ("null",)
POOL_SIZES = {"train": 10_000, "eval": 500}
POOL_SEEDS = {"train": 1, "eval": 2}


def apply(op: str, x: str) -> str:
  """The operator's digit-wise result on ``x = "abcde fghij"``."""
  a, b = x.split()
  fn = OPERATORS[op]
  return "".join(str(fn(int(p), int(q))) for p, q in zip(a, b))


def _rand_bits(rng: random.Random) -> str:
  return "".join(rng.choice("01") for _ in range(WIDTH))


@functools.lru_cache(maxsize=2)
def pool(split: str) -> tuple[str, ...]:
  """The ``split``'s fixed inputs (10K train / 500 eval, seeded)."""
  rng = random.Random(POOL_SEEDS[split])
  out: list[str] = []
  seen: set[str] = set()
  while len(out) < POOL_SIZES[split]:
    x = f"{_rand_bits(rng)} {_rand_bits(rng)}"
    if split == "eval" and x in seen:
      continue  # evaluation pairs are distinct
    seen.add(x)
    out.append(x)
  return tuple(out)


def answer(x: str, task: str, rng: random.Random) -> str:
  """The answer of ``task`` for input ``x`` (Null: 5 random digits)."""
  if task == "null":
    return _rand_bits(rng)
  return apply(task, x)
