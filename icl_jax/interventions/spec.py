"""Patch specs as arrays: an intervention is data, not a hook.

A cell edits the residual stream after block `layer` (residual index
layer+1; layer = -1 edits the embedding output) at the prompt positions where
`mask` is true. Every edit is one affine form, applied per masked position t:

    new[t] = a * out[t] + c * in[t] + values[t] + sigma * s[t] * eps[t]

where out/in are block `layer`'s output/input residuals, eps ~ N(0, I)
(seeded per cell), and s[t] = rms(out[t]) when `relative` (noise relative to
the residual's scale at that position), else 1. The named edits:

    replace(values)   a=0, c=0           (e.g. source activations)
    add(vector)       a=1, c=0           (task / function vectors)
    noise(sigma)      a=1, c=0, values=0 (absolute or relative Gaussian)
    zero()            a=0, c=0, values=0
    mean_ablate(mean) a=0, c=0, values=mean
    skip()            a=0, c=1, values=0 (block output := block input)

`decode_values` [D] is what `every_step` timing adds at each generated
token (with the same a, c, sigma); prompt positions use `values`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

EDITS = ("replace", "add", "noise", "zero", "mean_ablate", "skip")
# When the edit applies during generation:
#   prefill     - on the prompt forward only; patched K/V persist in the cache
#                 (the study's multi-position semantics, D3).
#   first_token - the first generated token comes from the patched prompt
#                 forward; later tokens from the clean prompt (the study's
#                 single-position decoder D2, for faithful mode).
#   every_step  - prefill, plus the edit applied to every generated token's
#                 residual at `layer` (steering).
TIMINGS = ("prefill", "first_token", "every_step")


@dataclasses.dataclass
class CellBatch:
  """C cells as arrays over the target prompt's positions (T slots)."""

  layer: np.ndarray  # int [C]
  mask: np.ndarray  # bool [C,T]
  values: np.ndarray  # float [C,T,D]
  a: np.ndarray  # float [C]
  c: np.ndarray  # float [C]
  sigma: np.ndarray  # float [C]
  relative: np.ndarray  # bool [C]
  seed: np.ndarray  # int [C]
  decode_values: np.ndarray  # float [C,D]

  def __len__(self):
    return int(self.layer.shape[0])

  def take(self, idx) -> "CellBatch":
    return CellBatch(**{f.name: getattr(self, f.name)[idx]
                        for f in dataclasses.fields(self)})

  @classmethod
  def concat(cls, batches) -> "CellBatch":
    return cls(**{f.name: np.concatenate([getattr(b, f.name) for b in batches])
                  for f in dataclasses.fields(cls)})


def make_cells(edit: str, layers, masks, d_model: int, values=None,
               sigma=0.0, relative=False, seed=0,
               decode_values=None) -> CellBatch:
  """Builds a CellBatch for one edit kind.

  Args:
    edit: one of EDITS.
    layers: int [C] (or scalar, broadcast).
    masks: bool [C,T].
    values: float [C,T,D] (replace / mean_ablate: the new values; add: the
      added vectors, per position), or [C,D] / [D] broadcast over positions.
    sigma: noise scale, scalar or [C] (edit="noise").
    relative: noise relative to rms(residual) at each position.
    seed: int or [C]; per-cell noise seeds.
    decode_values: [C,D] added at generated tokens with every_step timing.
  """
  if edit not in EDITS:
    raise ValueError(f"unknown edit {edit!r}; known: {EDITS}")
  masks = np.asarray(masks, bool)
  if masks.ndim != 2:
    raise ValueError(f"masks must be [cells, positions], got {masks.shape}")
  C, T = masks.shape
  layers = np.broadcast_to(np.asarray(layers, np.int32), (C,)).copy()
  vals = np.zeros((C, T, d_model), np.float32)
  if values is not None:
    v = np.asarray(values, np.float32)
    if v.ndim == 1:
      v = v[None, None, :]
    elif v.ndim == 2:
      v = v[:, None, :]
    vals = np.broadcast_to(v, (C, T, d_model)).astype(np.float32)
  elif edit in ("replace", "add", "mean_ablate"):
    raise ValueError(f"edit {edit!r} needs values")
  if not np.isfinite(vals).all():
    raise ValueError("patch values contain NaN or inf")
  a = {"replace": 0.0, "add": 1.0, "noise": 1.0, "zero": 0.0,
       "mean_ablate": 0.0, "skip": 0.0}[edit]
  c = 1.0 if edit == "skip" else 0.0
  if edit in ("noise", "zero", "skip"):
    vals = np.zeros((C, T, d_model), np.float32)
  sig = np.broadcast_to(np.asarray(sigma if edit == "noise" else 0.0,
                                   np.float32), (C,)).copy()
  dv = (np.zeros((C, d_model), np.float32) if decode_values is None else
        np.broadcast_to(np.asarray(decode_values, np.float32),
                        (C, d_model)).copy())
  return CellBatch(
      layer=layers, mask=masks, values=np.ascontiguousarray(vals),
      a=np.full((C,), a, np.float32), c=np.full((C,), c, np.float32),
      sigma=sig, relative=np.broadcast_to(np.asarray(relative, bool),
                                          (C,)).copy(),
      seed=np.broadcast_to(np.asarray(seed, np.int64), (C,)).astype(np.uint32),
      decode_values=dv)


def apply_edit(out, inp, mask, values, a, c, sigma, relative, noise):
  """Applies one cell's edit (jnp; no batch axis).

  Args:
    out, inp: [T,D] block output / input residuals.
    mask: bool [T]; values: [T,D]; a, c, sigma: scalars; relative: bool;
    noise: [T,D] standard normal draws.
  Returns:
    (edited [T,D], max |edited - out| over the cell).
  """
  import jax.numpy as jnp

  of = out.astype(jnp.float32)
  rms = jnp.sqrt(jnp.mean(of * of, axis=-1, keepdims=True))
  scale = jnp.where(relative, rms, 1.0)
  new = (a * of + c * inp.astype(jnp.float32) + values.astype(jnp.float32)
         + sigma * scale * noise)
  edited = jnp.where(mask[:, None], new.astype(out.dtype), out)
  delta = jnp.max(jnp.abs(edited.astype(jnp.float32) - of), initial=0.0)
  return edited, delta
