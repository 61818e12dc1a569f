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

Sites (`SITES`, TransformerLens-like names; `site` [C] indexes them). The
edit above applies to the residual ("resid_post", the default), or, inside
block `layer` (>= 0), to one of its components, with out[t] that
component's value:

    resid_post  block output residual [T,D] (layer -1: embedding output)
    attn_out    what the attention sub-block adds to the residual (after
                Gemma's post-attention norm)
    head_out    the summed output of the heads selected by `heads` [C,N]
                before that norm: head n's output is z_n W_O[n]
                (`BTNH,NHD->BTND`, TransformerLens' hook_result); one head
                per cell for a head sweep, or any group of heads
    mlp_out     what the MLP sub-block adds (after Gemma's post-MLP norm)

Component edits change what the block adds at the masked positions (for
head_out, the heads' sum is moved by edited - out, so the other heads stay
as they were, and unmasked positions are bit-identical). skip (c != 0) is a
residual edit only; zero / mean_ablate / replace of a component is the
component ablation or patch.
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
SITES = ("resid_post", "attn_out", "head_out", "mlp_out")
SITE_ALIASES = {"resid": "resid_post"}


def site_index(site: str) -> int:
  """The index of a site name in SITES ("resid" = "resid_post")."""
  name = SITE_ALIASES.get(site, site)
  if name not in SITES:
    raise ValueError(f"unknown site {site!r}; known: {SITES}")
  return SITES.index(name)


@dataclasses.dataclass
class CellBatch:
  """C cells as arrays over the target prompt's positions (T slots).

  Per-target cells: `target_mask` [C,N,T] and `target_seed` [C,N] give each
  of the N target prompts its own positions and its own noise draw (row
  (c, n) is edited at target_mask[c, n] with noise seeded target_seed[c, n];
  e.g. noise drawn fresh per generation, at each prompt's own index). Then
  `mask` is their union over N and `seed` is unused. Both None (default):
  every target uses `mask` and `seed`. Noise rows depend only on (seed,
  slot), not on T (jax_threefry_partitionable, the default), so a row
  equals the one-prompt run with that seed and mask.
  """

  layer: np.ndarray  # int [C]
  mask: np.ndarray  # bool [C,T]
  values: np.ndarray  # float [C,T,D]
  a: np.ndarray  # float [C]
  c: np.ndarray  # float [C]
  sigma: np.ndarray  # float [C]
  relative: np.ndarray  # bool [C]
  seed: np.ndarray  # int [C]
  decode_values: np.ndarray  # float [C,D]
  site: np.ndarray | None = None  # int [C], index into SITES (None: resid)
  heads: np.ndarray | None = None  # bool [C,N] (head_out; [C,0] otherwise)
  target_mask: np.ndarray | None = None  # bool [C,N,T] (per-target cells)
  target_seed: np.ndarray | None = None  # uint32 [C,N] (per-target cells)

  def __post_init__(self):
    C = int(self.layer.shape[0])
    if self.site is None:
      self.site = np.zeros((C,), np.int32)
    if self.heads is None:
      self.heads = np.zeros((C, 0), bool)
    if (self.target_mask is None) != (self.target_seed is None):
      raise ValueError("per-target cells need target_mask and target_seed")

  @property
  def per_target(self) -> bool:
    return self.target_mask is not None

  def __len__(self):
    return int(self.layer.shape[0])

  def take(self, idx) -> "CellBatch":
    return CellBatch(**{f.name: None if getattr(self, f.name) is None
                        else getattr(self, f.name)[idx]
                        for f in dataclasses.fields(self)})

  @classmethod
  def concat(cls, batches) -> "CellBatch":
    batches = list(batches)
    if len({b.per_target for b in batches}) > 1:
      raise ValueError("cannot concatenate per-target and shared cells")
    width = max(b.heads.shape[1] for b in batches)
    fix = lambda b, n, a: (np.pad(a, ((0, 0), (0, width - a.shape[1])))
                           if n == "heads" else a)
    return cls(**{f.name: None if getattr(batches[0], f.name) is None else
                  np.concatenate([fix(b, f.name, getattr(b, f.name))
                                  for b in batches])
                  for f in dataclasses.fields(cls)})


def make_cells(edit: str, layers, masks, d_model: int, values=None,
               sigma=0.0, relative=False, seed=0,
               decode_values=None, site="resid_post",
               heads=None) -> CellBatch:
  """Builds a CellBatch for one edit kind.

  Args:
    edit: one of EDITS.
    layers: int [C] (or scalar, broadcast).
    masks: bool [C,T], or [C,N,T]: per-target cells (each of the N target
      prompts its own positions; see CellBatch).
    values: float [C,T,D] (replace / mean_ablate: the new values; add: the
      added vectors, per position), or [C,D] / [D] broadcast over positions.
    sigma: noise scale, scalar or [C] (edit="noise").
    relative: noise relative to rms(residual) at each position.
    seed: int or [C]; per-cell noise seeds; or [C,N] per target (masks
      [C,N,T] only).
    decode_values: [C,D] added at generated tokens with every_step timing.
    site: one of SITES (all C cells), or a list of C names.
    heads: head_out only: int [C] (one head per cell) or bool [C,N] (a
      group of heads per cell).
  """
  if edit not in EDITS:
    raise ValueError(f"unknown edit {edit!r}; known: {EDITS}")
  masks = np.asarray(masks, bool)
  if masks.ndim not in (2, 3):
    raise ValueError(f"masks must be [cells, positions] or [cells, targets, "
                     f"positions], got {masks.shape}")
  per_target = None
  if masks.ndim == 3:  # per target: the union is the cell's mask
    per_target, masks = masks, masks.any(axis=1)
    t_seed = np.broadcast_to(np.asarray(seed, np.int64)[
        (...,) + (None,) * (2 - np.ndim(seed))], per_target.shape[:2])
    seed = 0
  elif np.ndim(seed) > 1:
    raise ValueError("seed [C,N] needs per-target masks [C,N,T]")
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
  sites = np.array([site_index(x) for x in np.broadcast_to(
      np.asarray(site, object), (C,))], np.int32)
  head_mask = _head_mask(heads, sites, C)
  if edit == "skip" and (sites != 0).any():
    raise ValueError("skip is a residual edit (site resid_post); ablate a "
                     "component with zero or mean_ablate")
  if ((sites != 0) & (layers < 0)).any():
    raise ValueError("component sites need a block (layer >= 0)")
  return CellBatch(
      site=sites, heads=head_mask,
      layer=layers, mask=masks, values=np.ascontiguousarray(vals),
      a=np.full((C,), a, np.float32), c=np.full((C,), c, np.float32),
      sigma=sig, relative=np.broadcast_to(np.asarray(relative, bool),
                                          (C,)).copy(),
      seed=np.broadcast_to(np.asarray(seed, np.int64), (C,)).astype(np.uint32),
      decode_values=dv, target_mask=per_target,
      target_seed=None if per_target is None else t_seed.astype(np.uint32))


def _head_mask(heads, sites, C):
  """bool [C,N] from int [C] head indices or a bool [C,N] mask."""
  is_head = sites == SITES.index("head_out")
  if heads is None:
    if is_head.any():
      raise ValueError("site head_out needs heads= (int [C] or bool [C,N])")
    return np.zeros((C, 0), bool)
  h = np.asarray(heads)
  if h.dtype == bool:
    h = np.broadcast_to(h, (C, h.shape[-1])).copy()
  else:
    idx = np.broadcast_to(h.astype(np.int64), (C,))
    if (idx < 0).any():
      raise ValueError(f"head indices must be >= 0, got {idx.tolist()}")
    h = np.zeros((C, int(idx.max()) + 1), bool)
    h[np.arange(C), idx] = True
  if (h.any(1) & ~is_head).any():
    raise ValueError("heads apply to site head_out only")
  if (is_head & ~h.any(1)).any():
    raise ValueError("a head_out cell selects no head")
  return h


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
