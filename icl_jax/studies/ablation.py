"""Single-task interventions scored by accuracy: exp10, exp11, exp12, exp14A.

For every (mode, task): N prompts (k fixed demos + the task's first RNG
call), their clean continuation (the baseline, D3: patched nothing, stop at
the end of the first line), then every planned edit, each a row with the
accuracy under the edit, the baseline and the disruption
(`accuracy.accuracy_rows`). A *plan* lists the edits of one (mode, task):

  EngineGroup     cells for the vectorized engine (noise, zeroing, one-block
                  skips), with their timing;
  BlockwiseGroup  attention knockouts and multi-block skips
                  (`interventions.blockwise`).

The position sets of each experiment (faithful vs aligned) live here too.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from icl_jax import tasks as T
from icl_jax.interventions.engine import common_prefix_len
from icl_jax.studies.run import Study
from icl_jax.studies.accuracy import accuracy_rows
from icl_jax.interventions.spec import CellBatch


@dataclasses.dataclass
class EngineGroup:
  """Engine cells over the N prompts of a task (per-target cells, e.g.
  noise drawn independently per prompt as the original's fresh
  `randn_like` per generation, run in the same one call)."""

  cells: CellBatch
  meta: list[dict]
  timing: str = "prefill"


@dataclasses.dataclass
class BlockwiseGroup:
  split: int
  edits: list  # [BlockwiseEdit]
  meta: list[dict]
  skip_decode: bool = False
  knock_generated: bool = True


@dataclasses.dataclass
class TaskPrompts:
  """One task's prompts, tokenized, with the engine's slot count."""

  task: str
  episodes: list
  token_ids: list[list[int]]
  slots: int  # T = common prefix + longest query (engine slot coordinates)

  @property
  def prompts(self):
    return [e.prompt().text for e in self.episodes]


def task_prompts(tok, task: str, n: int, k: int = 5) -> TaskPrompts:
  eps = T.make_episodes(T.get_task(task), n, k=k)
  ids = [tok(e.prompt().text, add_special_tokens=True)["input_ids"]
         for e in eps]
  p = common_prefix_len(ids)
  return TaskPrompts(task, eps, ids, p + max(len(s) - p for s in ids))


def run_task_ablations(study: Study, *, tasks: Sequence[str], modes, n: int,
                       plan: Callable, k: int = 5, extra: dict | None = None,
                       baseline_row: bool = True):
  """Runs `plan(mode, task_prompts) -> [EngineGroup | BlockwiseGroup]` for
  every (mode, task) and appends accuracy rows (plus a "baseline" row)."""
  from icl_jax.interventions.blockwise import (BlockwiseEdit,
                                               blockwise_generate)

  extra = dict(extra or {})
  tok = study.lm.tokenizer
  base_engine = study.engine("prefill", "line")
  # Clean continuations by prompt token ids: the modes share a task's
  # prompts (task_prompts does not depend on the mode), so the second mode
  # reuses the first's clean generations (the same program on the same
  # inputs: identical texts).
  clean_texts: dict[tuple, list[str]] = {}
  for mode in modes:
    for task in tasks:
      tp = task_prompts(tok, task, n, k)
      groups = plan(mode, tp)
      metas = [m for g in groups for m in g.meta]
      if baseline_row:
        metas = metas + [{"condition": "baseline", "layer": None}]
      keys = [study.key(**{**extra, **m, "mode": mode, "source_task": task,
                           "target_task": task, "layer": m.get("layer")})
              for m in metas]
      if not study.pending(keys):
        study.tick()
        continue
      ids_key = tuple(map(tuple, tp.token_ids))
      targets = None
      if ids_key not in clean_texts:
        targets = base_engine.prepare(token_ids=tp.token_ids)
        clean_texts[ids_key] = base_engine.baseline(targets).texts[0]
      base_texts = clean_texts[ids_key]
      common = dict(task=task, episodes=tp.episodes,
                    baseline_texts=base_texts, experiment=study.experiment,
                    model=study.model, mode=mode)
      rows = []
      for g in groups:
        if isinstance(g, EngineGroup):
          eng = study.engine(g.timing, "line")
          if eng is not base_engine:
            tg = eng.prepare(token_ids=tp.token_ids)
          else:
            if targets is None:  # clean texts came from the other mode
              targets = eng.prepare(token_ids=tp.token_ids)
            tg = targets
          res = eng.run(tg, g.cells)
          meta = [dict(m, max_residual_change=float(d),
                       n_positions=m.get("n_positions", int(c)))
                  for m, d, c in zip(g.meta, res.delta, res.n_positions)]
          rows += accuracy_rows(res.texts, meta, timing=g.timing,
                                stop="line", **common)
        else:
          # A leading no-op cell gives the clean first-token logits, so
          # every row can say whether (and how much) the edit changed them.
          res = blockwise_generate(
              study.lm, tp.token_ids, g.split, [BlockwiseEdit()] + g.edits,
              max_new_tokens=study.max_new_tokens, stop="line",
              skip_decode=g.skip_decode, knock_generated=g.knock_generated)
          change = np.abs(res.first_logits[1:] -
                          res.first_logits[:1]).max(axis=(1, 2))
          meta = [dict(m, max_first_logit_change=float(c))
                  for m, c in zip(g.meta, change)]
          rows += accuracy_rows(res.texts[1:], meta, timing="prefill"
                                if not g.skip_decode else "every_step",
                                stop="line", **common)
      if baseline_row:
        rows += accuracy_rows([base_texts], [{"condition": "baseline",
                                              "layer": None}], timing=
                              "prefill", stop="line", **common)
      for r in rows:
        for key, val in extra.items():
          r.setdefault(key, val)
        r.setdefault("k", k)
      study.add(rows)
      study.tick(note=f"{mode} {task}")


# ----------------------------------------------------------------------------
# Position sets
# ----------------------------------------------------------------------------

def faithful_demo_end(tok, prompt: str) -> int:
  """exp10's `demo_end`: tokens (no special tokens) of the prompt's lines
  minus the query's two, joined with "\\n" -- the demo text ending in a
  single "\\n". Used as absolute indices [0, demo_end) of the BOS-prefixed
  sequence: BOS and every demo token except the final "\\n\\n"."""
  lines = prompt.split("\n")
  return len(tok.encode("\n".join(lines[:-2]), add_special_tokens=False))


def demo_region(tok, tp: TaskPrompts, mode: str):
  """(knocked/zeroed token indices, first token after the region).

  faithful: [0, demo_end) as the study zeroed (BOS included); aligned: the
  demo tokens of the layout (separators included, BOS excluded)."""
  if mode == "faithful":
    ends = {faithful_demo_end(tok, p) for p in tp.prompts}
    if len(ends) != 1:
      raise ValueError(f"prompts disagree on demo_end: {sorted(ends)}")
    end = ends.pop()
    return list(range(end)), end
  lay = T.token_layout(tok, tp.episodes[0].prompt())
  idx = lay.indices(lay.mask("demo_region")).tolist()
  return idx, (max(idx) + 1 if idx else 1)


def single_position(tok, tp: TaskPrompts, condition: str, mode: str,
                    k: int = 5) -> int:
  """The target index of a single-position set (shared by the prompts)."""
  from icl_jax.studies.positions import shared_target_indices

  return shared_target_indices(tok, tp.episodes, condition, mode, k)[-1]


def single_positions(tok, tp: TaskPrompts, condition: str, mode: str,
                     k: int = 5) -> list[int]:
  """Per prompt, its own index of a single-position set (the study's
  `get_position_index` per prompt). The indices can differ between prompts
  of one task: e.g. faithful first_query_token of pattern_completion is 69
  for the query "Z Y Z Y Z" but 70 for "9 0 9 0 9" on Gemma's tokenizer
  (" Z" is one token, " 9" is a space token and a digit)."""
  from icl_jax.studies.positions import position_sets

  sets = position_sets(tok, tp.episodes, condition, mode, k)
  for e, s in zip(tp.episodes, sets):
    if not s:
      raise ValueError(f"no {condition!r} position ({mode}) in the prompt "
                       f"for query {e.query!r}")
  return [s[-1] for s in sets]


def bos_positions(tok, tp: TaskPrompts) -> list[int]:
  lay = T.token_layout(tok, tp.episodes[0].prompt())
  return lay.indices(lay.mask("bos")).tolist()


def activation_std(lm, layers, prompts: Sequence[str], batch: int = 20):
  """sigma_act per layer: std of the residual after each block over every
  element (prompt x non-special token x dimension) of `prompts` -- the
  paper's noise unit ("3 sigma of the activations, estimated from 100
  prompts"). Returns {layer: float}."""
  special = set(getattr(lm.tokenizer, "all_special_ids", []) or [])
  s1 = {l: 0.0 for l in layers}
  s2 = {l: 0.0 for l in layers}
  cnt = 0
  for i in range(0, len(prompts), batch):
    ids = [lm.tokenizer(p, add_special_tokens=True)["input_ids"]
           for p in prompts[i:i + batch]]
    arr, mask, lengths = lm.pad_left(ids)
    res = np.asarray(lm(arr, mask, return_residuals=True,
                        logits=None).residuals, np.float64)
    keep = np.zeros(arr.shape, bool)
    Tn = arr.shape[1]
    for b, s in enumerate(ids):
      for j, t in enumerate(s):
        keep[b, Tn - len(s) + j] = t not in special
    for l in layers:
      x = res[l + 1][keep]  # [M,D]
      s1[l] += x.sum()
      s2[l] += (x * x).sum()
    cnt += int(keep.sum()) * res.shape[-1]
  return {l: float(np.sqrt(max(s2[l] / cnt - (s1[l] / cnt) ** 2, 0.0)))
          for l in layers}


def skip_groups(n_layers: int, spec: str | None = None) -> dict:
  """exp12 Part B's groups: the original's early 0-7 / mid 8-15 / late
  16-23 / final 24-27 (28 layers), scaled to n layers (boundaries
  round(b * n / 28)); or `spec` "name:a-b,..." (inclusive block ranges)."""
  if spec:
    out = {}
    for item in [x for x in spec.split(",") if x.strip()]:
      try:
        name, rng = item.split(":")
        a, b = (int(v) for v in rng.split("-"))
      except ValueError as e:
        raise ValueError(f"--skip_groups item {item!r} is not name:a-b") \
            from e
      if not 0 <= a <= b < n_layers:
        raise ValueError(f"--skip_groups {item!r}: blocks outside the model "
                         f"(0..{n_layers - 1})")
      out[name.strip()] = list(range(a, b + 1))
    return out
  bounds = [round(b * n_layers / 28) for b in (0, 8, 16, 24, 28)]
  names = ("early", "mid", "late", "final")
  return {nm: list(range(bounds[i], bounds[i + 1]))
          for i, nm in enumerate(names) if bounds[i + 1] > bounds[i]}
