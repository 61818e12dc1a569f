"""exp19's surface "template" features and pair correlations (8.17).

Per task, 10 features of its 5 demo pairs (x, y), unnormalized:

  avg_input_words   mean word count of x
  avg_output_chars  mean len(y)
  avg_output_words  mean word count of y
  frac_identity     fraction y == x
  frac_lower        fraction y.islower()
  frac_numeric      fraction y parses as a number
  frac_punct        fraction y contains punctuation ([^\\w\\s])
  frac_single_word  fraction y is one word
  frac_upper        fraction y.isupper()
  len_ratio         mean len(y) / len(x)

Pair similarity = cosine of the two feature vectors (symmetric). With the
original's exp29 transfer rates these features give r = -0.0536 and the
bootstrap CI [-0.2635, 0.1537] of the stored result exactly.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np

FEATURES = ("avg_input_words", "avg_output_chars", "avg_output_words",
            "frac_identity", "frac_lower", "frac_numeric", "frac_punct",
            "frac_single_word", "frac_upper", "len_ratio")


def _is_number(y: str) -> bool:
  try:
    float(y)
    return True
  except ValueError:
    return False


def demo_features(demos: Sequence[tuple[str, str]]) -> dict[str, float]:
  xs = [x for x, _ in demos]
  ys = [y for _, y in demos]
  m = lambda v: float(np.mean(v))
  return {
      "avg_input_words": m([len(x.split()) for x in xs]),
      "avg_output_chars": m([len(y) for y in ys]),
      "avg_output_words": m([len(y.split()) for y in ys]),
      "frac_identity": m([x == y for x, y in demos]),
      "frac_lower": m([y.islower() for y in ys]),
      "frac_numeric": m([_is_number(y) for y in ys]),
      "frac_punct": m([re.search(r"[^\w\s]", y) is not None for y in ys]),
      "frac_single_word": m([len(y.split()) == 1 for y in ys]),
      "frac_upper": m([y.isupper() for y in ys]),
      "len_ratio": m([len(y) / max(1, len(x)) for x, y in demos]),
  }


def task_features(task: str, k: int = 5) -> dict[str, float]:
  from icl_jax.tasks import get_task

  return demo_features(get_task(task).generate_demos(k))


def cosine(a, b) -> float:
  a, b = np.asarray(a, float), np.asarray(b, float)
  den = np.linalg.norm(a) * np.linalg.norm(b)
  return float(a @ b / den) if den else 0.0


def feature_similarity(features: Mapping[str, Mapping[str, float]], s: str,
                       t: str) -> tuple[float, float]:
  """(cosine, euclidean) between two tasks' feature vectors."""
  a = np.array([features[s][f] for f in FEATURES])
  b = np.array([features[t][f] for f in FEATURES])
  return cosine(a, b), float(np.linalg.norm(a - b))


def correlate(xs: Sequence[float], ys: Sequence[float]) -> dict:
  """Pearson r, R^2, two-sided p and the study's bootstrap CI of r."""
  from icl_jax.analysis import stats

  try:
    r, p = stats.pearson(xs, ys)
  except ValueError as e:
    return {"r": None, "r2": None, "p": None, "ci": None, "n_pairs": len(xs),
            "note": str(e)}
  ci = stats.bootstrap_pearson_ci(xs, ys)
  return {"r": r, "r2": r * r, "p": p, "ci": list(ci), "n_pairs": len(xs)}
