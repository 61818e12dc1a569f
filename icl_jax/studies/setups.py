"""Episode setups: the prompts of each (source, target) pair, built with the
study's RNG call order (the one setup builder)."""

from __future__ import annotations

import dataclasses
from typing import Sequence

from icl_jax import tasks as T

# queries= choices of `setup_pairs`:
#   own            each side its own test inputs (exp8/23/27/29);
#   target         source prompts use the target's test inputs (exp30/31/33B);
#   source         target prompts use the source's test inputs (exp32);
#   shared_source  only the source task's RNG is called; both sides use its
#                  inputs (exp15 Part A);
#   shared_target  only the target task's RNG is called; both sides use its
#                  inputs (exp13, exp15 Part B).
QUERIES = ("own", "target", "source", "shared_source", "shared_target")


@dataclasses.dataclass
class PairSetup:
  """Prompts of one (source, target) pair (source None: target-only)."""

  source_task: str | None
  target_task: str
  source_episodes: list | None
  target_episodes: list


def setup_pairs(pairs: Sequence[tuple[str, str]], n: int, *, k: int = 5,
                k_source: int | None = None, queries: str = "own",
                source_calls: str = "per_pair", n_source: int | None = None,
                demo_mode: str = "fixed", seed: int = 0,
                task_objects: dict | None = None) -> list[PairSetup]:
  """Episodes for each pair, replaying the study's call order.

  One Task object per task for the whole list (pass `task_objects` to share
  them, and so their RNG state, across calls); per pair the source task's
  test-input RNG is called, then the target's (see QUERIES for `queries`).
  source_calls: "per_pair" (above) or "once": every distinct source task's
    RNG is called once, before any pair, in order of first appearance
    (exp3/exp4 computed one task vector per task at start-up); each pair
    then calls only its target's RNG.
  k: demos per target prompt; k_source: per source prompt (default k).
  n_source: source episodes (the first n_source queries; default n).
  """
  if queries not in QUERIES:
    raise ValueError(f"queries must be one of {QUERIES}, got {queries!r}")
  if source_calls not in ("per_pair", "once"):
    raise ValueError(f"source_calls must be 'per_pair' or 'once', got "
                     f"{source_calls!r}")
  objs = task_objects if task_objects is not None else {}

  def task(name):
    if name not in objs:
      objs[name] = T.get_task(name)
    return objs[name]

  n_src = n if n_source is None else int(n_source)
  k_src = k if k_source is None else int(k_source)
  once: dict[str, list[str]] = {}
  if source_calls == "once":
    for s, _ in pairs:
      if s not in once:
        once[s] = task(s).generate_test_inputs(n)

  def source_inputs(s):
    return once[s] if s in once else task(s).generate_test_inputs(n)

  out = []
  for s, t in pairs:
    if queries == "shared_source":
      src_q = tgt_q = source_inputs(s)
    elif queries == "shared_target":
      src_q = tgt_q = task(t).generate_test_inputs(n)
    else:
      src_q = source_inputs(s)
      tgt_q = task(t).generate_test_inputs(n)
      if queries == "target":
        src_q = tgt_q
      elif queries == "source":
        tgt_q = src_q
    out.append(PairSetup(
        s, t,
        T.make_episodes(task(s), n_src, k=k_src, demo_mode=demo_mode,
                        seed=seed, queries=list(src_q[:n_src])),
        T.make_episodes(task(t), n, k=k, demo_mode=demo_mode, seed=seed + 1,
                        queries=list(tgt_q))))
  return out


def task_setup(task: str, n: int, k: int = 5, queries=None,
               task_objects: dict | None = None) -> PairSetup:
  """A target-only setup (baselines, source-free edits)."""
  objs = task_objects if task_objects is not None else {}
  obj = objs.setdefault(task, T.get_task(task))
  eps = T.make_episodes(obj, n, k=k, queries=queries)
  return PairSetup(None, task, None, eps)
