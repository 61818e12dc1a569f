"""Task-vector injection at each prompt's final token, through the engine.

The intervention engine applies one position mask per cell to all N prompts
of a target set, in absolute slot coordinates. The final token (the ":" that
predicts the answer) sits at slot ``length - 1``, which differs between
prompts of different token lengths, so prompts are grouped by length: one
target set per group, whose cells mark the group's final slot. Groups are
padded to a multiple of ``bucket`` prompts (copies of the last prompt,
dropped from the results) so that few distinct shapes are compiled.

Each cell is one (layer, vector): ``replace`` writes the vector at the final
token after block ``layer`` (h <- v); ``add`` adds ``alpha * v``. The edit is
applied on the prompt forward only (the engine's ``prefill`` timing; the
patched K/V stay in the cache during decoding).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass
class InjectionResult:
  """Greedy continuations with and without each injection.

  Attributes:
    texts: ``[V][Lsel][N]`` continuations, vector x layer x prompt, in the
      order of the prompts given.
    baseline: ``[N]`` clean continuations.
    changed: ``[V, Lsel]`` bool, whether the edit changed the residual at
      all (the engine's ``delta > 0``) in every length group.
  """

  texts: list
  baseline: list
  changed: np.ndarray


def group_by_length(lengths: Sequence[int]) -> dict[int, list[int]]:
  """Prompt indices per token length, in increasing length."""
  groups: dict[int, list[int]] = {}
  for i, n in enumerate(lengths):
    groups.setdefault(int(n), []).append(i)
  return dict(sorted(groups.items()))


def inject_final_token(engine, prompts: Sequence[str], vectors, layers,
                       mode: str = "replace", alpha: float = 1.0,
                       bucket: int = 8) -> InjectionResult:
  """Injects each vector at each prompt's final token, at each layer.

  Args:
    engine: an ``icl_jax.interventions.engine.Engine``.
    prompts: ``N`` target prompt texts.
    vectors: ``[V, Lsel, D]`` one vector per (condition, layer); the layer
      axis matches ``layers``.
    layers: ``Lsel`` block indices (the edit is after block ``layer``).
    mode: ``"replace"`` or ``"add"``.
    alpha: scale of ``add`` (ignored by ``replace``).
    bucket: pad each length group to a multiple of this many prompts.

  Returns:
    :class:`InjectionResult`.
  """
  from icl_jax.interventions.spec import make_cells

  if mode not in ("replace", "add"):
    raise ValueError(f"mode must be 'replace' or 'add', got {mode!r}")
  vectors = np.asarray(vectors, np.float32)
  layers = [int(l) for l in layers]
  n_v, n_l = vectors.shape[:2]
  if n_l != len(layers):
    raise ValueError(f"vectors have {n_l} layers, layers has {len(layers)}")
  tok = engine.lm.tokenizer
  lengths = [len(tok(p, add_special_tokens=True)["input_ids"])
             for p in prompts]
  n = len(prompts)
  texts = [[[None] * n for _ in layers] for _ in range(n_v)]
  baseline = [None] * n
  changed = np.ones((n_v, n_l), bool)
  scale = alpha if mode == "add" else 1.0
  for length, idx in group_by_length(lengths).items():
    pad = -len(idx) % bucket
    rows = idx + [idx[-1]] * pad
    targets = engine.prepare(prompts=[prompts[i] for i in rows])
    assert (targets.lengths == length).all()
    # Cells: vector-major, then layer.
    vals = (scale * vectors).reshape(n_v * n_l, -1)
    masks = np.zeros((n_v * n_l, targets.slots), bool)
    masks[:, length - 1] = True
    cell_layers = np.tile(np.asarray(layers, np.int32), n_v)
    cells = make_cells(mode, cell_layers, masks, engine.cfg.d_model,
                       values=vals)
    res = engine.run(targets, cells)
    base = engine.baseline(targets)
    for j, i in enumerate(idx):
      baseline[i] = base.texts[0][j]
      for v in range(n_v):
        for li in range(n_l):
          texts[v][li][i] = res.texts[v * n_l + li][j]
    changed &= np.asarray(res.changed).reshape(n_v, n_l)
  return InjectionResult(texts, baseline, changed)
