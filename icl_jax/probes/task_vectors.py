"""Task vectors (Han et al., App. C): mean activations, and their injection.

Extraction: the task vector at layer l is the mean of the residual stream over
a set of positions, e.g. the token before each demo answer, pooled over the
prompts of one task. Every selected (prompt, position) counts once, so with
the same number of demos per prompt this equals "mean over demos, then mean
over prompts".

Injection (primitive only; the intervention engine applies it during the
forward pass): ``replace`` writes the vector at the masked positions
(Hendel-style; the paper's primary reading), ``add`` adds ``alpha * vector``.

Shapes: residuals ``[L, B, T, D]`` (layers, prompts, tokens, d_model), masks
``[B, T]`` bool. Sums accumulate in float32 whatever the residual dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_HI = jax.lax.Precision.HIGHEST


def task_vector(resid, mask) -> jax.Array:
  """Mean activation over the masked positions, per layer.

  Args:
    resid: ``[L, B, T, D]`` residual stream.
    mask: ``[B, T]`` bool, positions to average.

  Returns:
    ``[L, D]`` float32. NaN if ``mask`` selects nothing (0/0).
  """
  w = mask.astype(jnp.float32)  # [B, T]
  total = jnp.einsum("lbtd,bt->ld", resid.astype(jnp.float32), w, precision=_HI)
  return total / jnp.sum(w)


def task_vectors_per_class(resid, mask, labels, num_classes: int) -> jax.Array:
  """One task vector per class (task) and layer.

  Args:
    resid: ``[L, B, T, D]``.
    mask: ``[B, T]`` bool.
    labels: ``[B]`` int class of each prompt, in ``[0, num_classes)``.
    num_classes: ``C``.

  Returns:
    ``[C, L, D]`` float32; NaN rows for classes with no selected position.
  """
  w = mask.astype(jnp.float32)  # [B, T]
  y1h = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)  # [B, C]
  total = jnp.einsum("lbtd,bt,bc->cld", resid.astype(jnp.float32), w, y1h,
                     precision=_HI)
  count = jnp.einsum("bt,bc->c", w, y1h)  # [C]
  return total / count[:, None, None]


def inject(resid_at_layer, vector, position_mask, mode: str = "replace",
           alpha: float = 1.0) -> jax.Array:
  """Writes a vector into one layer's residual stream at masked positions.

  Args:
    resid_at_layer: ``[B, T, D]``.
    vector: ``[D]`` (or anything broadcastable to ``[B, T, D]``, e.g.
      ``[B, 1, D]`` for one vector per prompt).
    position_mask: ``[B, T]`` bool; other positions are returned unchanged.
    mode: ``"replace"`` (h <- v) or ``"add"`` (h <- h + alpha * v).
    alpha: scale for ``"add"``; ignored by ``"replace"``.

  Returns:
    ``[B, T, D]`` in ``resid_at_layer``'s dtype.
  """
  dtype = resid_at_layer.dtype
  m = position_mask[..., None]  # [B, T, 1]
  v = jnp.broadcast_to(jnp.asarray(vector), resid_at_layer.shape)
  if mode == "replace":
    return jnp.where(m, v.astype(dtype), resid_at_layer)
  if mode == "add":
    # Add in float32 then round once, so bf16 residuals are not double-rounded.
    added = resid_at_layer.astype(jnp.float32) + alpha * v.astype(jnp.float32)
    return jnp.where(m, added.astype(dtype), resid_at_layer)
  raise ValueError(f"mode must be 'replace' or 'add', got {mode!r}")
