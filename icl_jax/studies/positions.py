"""Position maps: which source tokens feed which target slots (the one
implementation of faithful and aligned positions).

faithful: the study's absolute indices (`tasks.faithful_positions`), per
index the mean over the source prompts that have it; aligned: (demo, role,
token index) matching of token layouts, never into the query.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np

from icl_jax import tasks as T
from icl_jax.studies.modes import ALIGNED_SETS, MODES, aligned_set_name


class PlanError(ValueError):
  """A plan that cannot be built (unknown position set, no positions...)."""


@dataclasses.dataclass
class PosMap:
  """Source index -> target slot, and the source prompts averaged per slot."""

  src_idx: list[int]
  tgt_idx: list[int]
  have: list[list[int]]  # per position: contributing source prompt indices

  def __len__(self):
    return len(self.tgt_idx)

  def select(self, keep: Iterable[int]) -> "PosMap":
    """The positions whose *source* index is in `keep`."""
    keep = set(int(k) for k in keep)
    j = [i for i, s in enumerate(self.src_idx) if s in keep]
    return PosMap([self.src_idx[i] for i in j], [self.tgt_idx[i] for i in j],
                  [self.have[i] for i in j])

  def union(self, other: "PosMap") -> "PosMap":
    seen = dict(zip(self.tgt_idx, range(len(self.tgt_idx))))
    out = PosMap(list(self.src_idx), list(self.tgt_idx), list(self.have))
    for s, t, h in zip(other.src_idx, other.tgt_idx, other.have):
      if t not in seen:
        out.src_idx.append(s)
        out.tgt_idx.append(t)
        out.have.append(h)
    order = np.argsort(out.tgt_idx, kind="stable")
    return PosMap([out.src_idx[i] for i in order],
                  [out.tgt_idx[i] for i in order],
                  [out.have[i] for i in order])


def split_demo(condition: str):
  """"output_line@2" -> ("output_line", 2)."""
  if "@" in condition:
    name, k = condition.split("@", 1)
    try:
      return name, int(k)
    except ValueError:
      raise PlanError(f"position set {condition!r}: demo after '@' must be "
                      "an integer") from None
  return condition, None


def check_condition(condition: str, mode: str, tok=None, example_text=None,
                    k: int = 5) -> None:
  """Raises PlanError for a position set unknown in `mode`."""
  if mode == "aligned":
    name, _ = split_demo(condition)
    if aligned_set_name(name) not in T.POSITION_SETS:
      raise PlanError(
          f"unknown aligned position set {condition!r}; known: "
          f"{sorted(set(T.POSITION_SETS) | set(ALIGNED_SETS))} (optionally "
          "'name@k' for demo k only)")
  elif mode == "faithful":
    known = None
    if tok is not None and example_text is not None:
      known = set(T.faithful_positions(tok, example_text, n_demos=k))
    else:
      known = set(T.LINE_CONDITIONS) | set(T.POSITION_TYPES) | {
          "answer_tokens"}
    ok = condition in known or any(
        condition == f"{p}_{i}" for p in ("input_line", "output_line",
                                          "answer_tokens") for i in range(64))
    if not ok:
      raise PlanError(
          f"unknown faithful position set {condition!r}; known: "
          f"{sorted(known)}")
  else:
    raise PlanError(f"unknown mode {mode!r}; known: {MODES}")


def faithful_indices(tok, text: str, condition: str, k: int = 5) -> list[int]:
  pos = T.faithful_positions(tok, text, n_demos=k)
  if condition not in pos:
    raise PlanError(f"unknown faithful position set {condition!r}; known: "
                    f"{sorted(pos)}")
  return list(pos[condition])


def faithful_map(tok, source_texts: Sequence[str], condition: str,
                 n_slots: int, source_lengths: Sequence[int],
                 k: int = 5) -> PosMap:
  """The study's rule: per source prompt its own indices (section 5.2), the
  same absolute indices in the target, indices past the target dropped."""
  sets = [set(faithful_indices(tok, t, condition, k)) for t in source_texts]
  idx = sorted(i for i in set().union(*sets) if 0 <= i < n_slots)
  have = [[b for b, s in enumerate(sets) if i in s and i < source_lengths[b]]
          for i in idx]
  keep = [j for j, h in enumerate(have) if h]
  return PosMap([idx[j] for j in keep], [idx[j] for j in keep],
                [have[j] for j in keep])


def layout(tok, ep):
  """The token layout of an episode (or a PromptSpec)."""
  spec = ep.prompt() if hasattr(ep, "prompt") else ep
  return T.token_layout(tok, spec)


def aligned_map(tok, source_eps, target_eps, condition: str,
                on_mismatch: str = "truncate") -> PosMap:
  """(demo, role, token index) matching of source and target tokens.

  Every source prompt must map to the same target slots (shared demo block),
  and every target prompt must have the same slots; otherwise raises.
  """
  name, demo = split_demo(condition)
  name = aligned_set_name(name)
  tgt_layouts = [layout(tok, e) for e in target_eps]
  src_layouts = [layout(tok, e) for e in source_eps]
  maps = []
  for sl in src_layouts:
    s_i, t_i = map_one(sl, tgt_layouts[0], name, demo, on_mismatch)
    maps.append((tuple(s_i), tuple(t_i)))
  for tl in tgt_layouts[1:]:
    s_i, t_i = map_one(src_layouts[0], tl, name, demo, on_mismatch)
    if (tuple(s_i), tuple(t_i)) != maps[0]:
      raise PlanError(
          f"position set {condition!r} maps to different token positions in "
          "different target prompts (their demo blocks differ); aligned mode "
          "needs target prompts that share the demo block -- split them into "
          "groups with identical demos")
  ref = maps[0]
  if any(m != ref for m in maps[1:]):
    raise PlanError(
        f"position set {condition!r} selects different tokens in different "
        "source prompts (their demo blocks differ); use source prompts that "
        "share the demo block")
  s_i, t_i = ref
  all_b = list(range(len(source_eps)))
  return PosMap(list(s_i), list(t_i), [all_b for _ in s_i])


def map_one(src_layout, tgt_layout, name, demo, on_mismatch):
  if demo is None:
    s_i, t_i = T.map_positions(src_layout, tgt_layout, name, on_mismatch)
    return [int(x) for x in s_i], [int(x) for x in t_i]
  s_all, t_all = T.map_positions(src_layout, tgt_layout, name, on_mismatch)
  keep = src_layout.mask(name, demo=demo)
  pairs = [(int(s), int(t)) for s, t in zip(s_all, t_all) if keep[s]]
  return [p[0] for p in pairs], [p[1] for p in pairs]


def target_positions(tok, mode: str, target_eps, condition: str,
                     n_slots: int, k: int = 5) -> list[int]:
  """Positions evaluated on the target prompts (source-free edits)."""
  sets = []
  for e in target_eps:
    if mode == "faithful":
      text = e.prompt().text
      idx = [i for i in faithful_indices(tok, text, condition, k)
             if 0 <= i < n_slots]
    else:
      name, demo = split_demo(condition)
      lay = layout(tok, e)
      idx = [int(i) for i in
             np.flatnonzero(lay.mask(aligned_set_name(name), demo=demo))]
    sets.append(tuple(idx))
  if any(s != sets[0] for s in sets[1:]):
    raise PlanError(
        f"position set {condition!r} falls on different slots in different "
        "target prompts (e.g. query positions with queries of different "
        "token lengths); choose demo positions or prompts of equal layout")
  return list(sets[0])


def position_sets(tok, episodes, condition: str, mode: str,
                  k: int = 5) -> list[list[int]]:
  """Per episode, the token indices of `condition` in its own prompt.

  faithful: the study's finders (`faithful_positions`, absolute indices into
  the BOS-prefixed sequence); aligned: the named layout set
  (`ALIGNED_SETS` maps the study's names, e.g. last_demo_token -> the last
  demo's final answer token).
  """
  out = []
  for e in episodes:
    if mode == "faithful":
      out.append(faithful_indices(tok, e.prompt().text, condition, k))
    elif mode == "aligned":
      lay = T.token_layout(tok, e.prompt())
      out.append(lay.indices(lay.mask(aligned_set_name(condition))).tolist())
    else:
      raise ValueError(f"unknown mode {mode!r}; known: {MODES}")
  return out


def shared_target_indices(tok, episodes, condition: str, mode: str,
                          k: int = 5) -> list[int]:
  """The indices of `condition` in the target prompts, which must agree.

  The engine patches one mask per cell over all target prompts; with the
  study's fixed demos every demo/first-query position is the same index in
  every prompt of a task. Prompts that disagree raise (run them as separate
  target sets).
  """
  sets = position_sets(tok, episodes, condition, mode, k)
  first = sets[0]
  for e, s in zip(episodes, sets):
    if s != first:
      raise ValueError(
          f"target prompts disagree on {condition!r} ({mode}): {first} for "
          f"{episodes[0].query!r} but {s} for {e.query!r}")
  return first
