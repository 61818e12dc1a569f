"""Source -> target position mapping by (demo index, role, token index).

Unlike the study's absolute-index patching, a source token is written to the
target token that plays the same part: same demo, same role, same index
within the role. Only demo tokens are ever mapped -- the query region (and
BOS) of the target is never written.

When a (demo, role) group has different token counts in source and target
(e.g. " APPLE" is one Gemma token but "AP"+"PLE" in SmolLM2, or a 2-token
number vs a 1-token word), ``on_mismatch`` decides:

  "skip"      drop the whole group (no partial matches);
  "truncate"  match the first min(n_src, n_tgt) tokens of the group;
  "refuse"    raise ``PositionMismatchError`` naming the group.

Groups present in the source set but absent from the target (e.g. the
target has fewer demos) are dropped under "skip"/"truncate" and raise under
"refuse".
"""

from __future__ import annotations

import numpy as np

from icl_jax.tasks.layout import TokenLayout

ON_MISMATCH = ("skip", "truncate", "refuse")


class PositionMismatchError(ValueError):
  pass


def _groups(layout: TokenLayout) -> dict[tuple[int, str], list[int]]:
  """(demo, role) -> token indices of every demo group, in order."""
  out: dict[tuple[int, str], list[int]] = {}
  for r in layout.records:
    if r.segment == "demo":
      out.setdefault((r.demo, r.role), []).append(r.index)
  return out


def map_positions(
    src: TokenLayout,
    tgt: TokenLayout,
    position_set: str,
    on_mismatch: str = "refuse",
) -> tuple[np.ndarray, np.ndarray]:
  """Pairs source and target token indices for a named position set.

  The set is evaluated on the source; each selected demo token
  (demo, role, j) goes to the target token (demo, role, j). Token counts are
  compared over whole (demo, role) groups, so a set that selects part of a
  group (e.g. ``last_demo_answer_token``) still requires -- or, with
  "truncate", assumes -- that the groups line up from their first token.

  Args:
    src: layout of the prompt the activations are read from.
    tgt: layout of the prompt they are written into.
    position_set: a ``layout.POSITION_SETS`` name, evaluated on the source.
    on_mismatch: "skip", "truncate" or "refuse" (see module docstring).

  Returns:
    (src_idx, tgt_idx): int32 arrays of equal length, sorted by target
    index; every tgt_idx is a demo token of ``tgt``.
  """
  if on_mismatch not in ON_MISMATCH:
    raise ValueError(
        f"on_mismatch must be one of {ON_MISMATCH}, got {on_mismatch!r}"
    )
  selected = src.mask(position_set)
  src_groups, tgt_groups = _groups(src), _groups(tgt)
  pairs: list[tuple[int, int]] = []
  for key, s_all in src_groups.items():
    picked = [j for j, i in enumerate(s_all) if selected[i]]
    if not picked:
      continue
    t_all = tgt_groups.get(key, [])
    if len(s_all) != len(t_all):
      if on_mismatch == "refuse":
        demo, role = key
        raise PositionMismatchError(
            f"position set {position_set!r}: demo {demo} role {role!r} has "
            f"{len(s_all)} source token(s) but {len(t_all)} target token(s) "
            f"(source {src.text_of(_one_hot(src, s_all))!r}, target "
            f"{tgt.text_of(_one_hot(tgt, t_all))!r}); use "
            "on_mismatch='skip' or 'truncate'"
        )
      if on_mismatch == "skip":
        continue
    pairs += [(s_all[j], t_all[j]) for j in picked if j < len(t_all)]
  pairs.sort(key=lambda p: p[1])
  src_idx = np.array([p[0] for p in pairs], dtype=np.int32)
  tgt_idx = np.array([p[1] for p in pairs], dtype=np.int32)
  return src_idx, tgt_idx


def _one_hot(layout: TokenLayout, idx) -> np.ndarray:
  m = np.zeros(len(layout), dtype=bool)
  m[list(idx)] = True
  return m
