"""Mixture of sparse linear regressions (Han et al. 2024, section 3.3, App. D.2).

Latent task = one of ``n_bases`` non-overlapping sparsity bases. Each basis
selects ``basis_rank`` of the ``n_dims`` input coordinates (default: 4 bases of
4 out of 16 dims, as contiguous blocks 0-3, 4-7, 8-11, 12-15; the paper only
says "orthogonal and non-overlapping", so the contiguous layout is an
assumption). Per sequence, with basis ``b``::

    w ~ N(0, I_D) restricted to basis b      (other coordinates are zero)
    x_i ~ N(0, I_D)
    y_i = w . x_i + eps_i,  eps_i ~ N(0, noise_var)     (noise_var = 0.01)

for ``i = 1..n_points`` (20 pairs).

Token format (the paper does not give one; we use Garg et al. 2022, which the
paper cites as its "conventional" setup): the sequence interleaves
``x_1, y_1, ..., x_K, y_K`` as ``2K`` tokens of width ``D``; a ``y`` token is
``[y, 0, ..., 0]`` (y in coordinate 0). The prediction of ``y_i`` is read at
the ``x_i`` token (even positions ``2i``), so it sees ``i`` earlier pairs.

Everything here is a pure function of a PRNG key with static shapes, so it can
be called inside ``jax.jit`` (the training loop samples each batch on device).

Shape vocabulary: B batch, K pairs (``n_points``), T = 2K tokens, D dims.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  """The data distribution. Defaults are the paper's (App. D.2)."""

  n_dims: int = 16
  n_bases: int = 4
  basis_rank: int = 4
  n_points: int = 20
  noise_var: float = 0.01

  def __post_init__(self):
    if self.n_bases * self.basis_rank > self.n_dims:
      raise ValueError(
          f"{self.n_bases} non-overlapping bases of rank {self.basis_rank} do"
          f" not fit in {self.n_dims} dims"
      )
    if self.n_points < 1 or self.basis_rank < 1 or self.n_bases < 1:
      raise ValueError(f"invalid TaskConfig: {self}")

  @property
  def seq_len(self) -> int:
    return 2 * self.n_points


@flax.struct.dataclass
class SparseRegressionBatch:
  """One batch of sequences. All arrays are jax arrays."""

  tokens: jax.Array  # [B, T, D] interleaved x_1, y_1, ..., x_K, y_K
  xs: jax.Array  # [B, K, D]
  ys: jax.Array  # [B, K] noisy targets
  w: jax.Array  # [B, D] the sparse weight vector of each sequence
  basis: jax.Array  # [B] int32, the latent task (basis index)


def basis_masks(task: TaskConfig) -> np.ndarray:
  """``[n_bases, n_dims]`` 0/1 masks; basis k = dims [k*r, (k+1)*r)."""
  masks = np.zeros((task.n_bases, task.n_dims), np.float32)
  for k in range(task.n_bases):
    masks[k, k * task.basis_rank : (k + 1) * task.basis_rank] = 1.0
  return masks


def x_positions(n_points: int) -> np.ndarray:
  """Token index of x_i (where the prediction of y_i is read): 0, 2, 4, ..."""
  return np.arange(n_points) * 2


def y_positions(n_points: int) -> np.ndarray:
  """Token index of the y_i token: 1, 3, 5, ..."""
  return np.arange(n_points) * 2 + 1


def interleave(xs: jax.Array, ys: jax.Array) -> jax.Array:
  """Garg et al. format: ``[B, K, D]`` xs and ``[B, K]`` ys -> ``[B, 2K, D]``."""
  b, k, d = xs.shape
  ys_wide = jnp.zeros_like(xs).at[..., 0].set(ys)
  return jnp.stack([xs, ys_wide], axis=2).reshape(b, 2 * k, d)


def curriculum_masks(
    task: TaskConfig, active_rank: jax.Array | int
) -> tuple[jax.Array, jax.Array]:
  """``(basis masks [n_bases, D], input mask [D])`` at a curriculum stage.

  Garg et al. (2022)-style dimension curriculum adapted to the sparse task:
  only the first ``active_rank`` coordinates of each basis block are used
  (the weight is zero elsewhere) and the input coordinates outside those
  ``n_bases * active_rank`` dims are set to zero (Garg et al. zero the
  truncated dims of x). ``active_rank >= basis_rank`` is the full task.
  ``active_rank`` may be a traced scalar (the stage is computed from the
  step inside the jitted training step).
  """
  masks = jnp.asarray(basis_masks(task))
  within = jnp.asarray(np.arange(task.n_dims) % task.basis_rank)
  keep = (within < active_rank).astype(masks.dtype)
  masks = masks * keep[None, :]
  return masks, (masks.sum(0) > 0).astype(masks.dtype)


def sample_with_bases(
    key: jax.Array,
    task: TaskConfig,
    basis: jax.Array,
    active_rank: jax.Array | int | None = None,
) -> SparseRegressionBatch:
  """Samples one sequence per entry of ``basis`` (``[B]`` ints).

  ``active_rank``: curriculum stage (see :func:`curriculum_masks`); ``None``
  (default) is the task itself.
  """
  basis = jnp.asarray(basis, jnp.int32)
  b = basis.shape[0]
  k_w, k_x, k_eps = jax.random.split(key, 3)
  masks = jnp.asarray(basis_masks(task))
  x_mask = None
  if active_rank is not None:
    masks, x_mask = curriculum_masks(task, active_rank)
  w = jax.random.normal(k_w, (b, task.n_dims)) * masks[basis]
  xs = jax.random.normal(k_x, (b, task.n_points, task.n_dims))
  if x_mask is not None:
    xs = xs * x_mask
  eps = jax.random.normal(k_eps, (b, task.n_points)) * jnp.sqrt(
      jnp.float32(task.noise_var)
  )
  ys = jnp.einsum("bkd,bd->bk", xs, w) + eps
  return SparseRegressionBatch(
      tokens=interleave(xs, ys), xs=xs, ys=ys, w=w, basis=basis
  )


def sample_batch(
    key: jax.Array,
    task: TaskConfig,
    batch_size: int,
    active_rank: jax.Array | int | None = None,
) -> SparseRegressionBatch:
  """A training batch: the basis of each sequence is uniform over the bases.

  ``active_rank``: optional curriculum stage (:func:`curriculum_masks`).
  """
  k_basis, k_rest = jax.random.split(key)
  basis = jax.random.randint(k_basis, (batch_size,), 0, task.n_bases)
  return sample_with_bases(k_rest, task, basis, active_rank)


def sample_balanced(
    key: jax.Array, task: TaskConfig, n_per_basis: int
) -> SparseRegressionBatch:
  """Exactly ``n_per_basis`` sequences of each basis, grouped by basis."""
  basis = jnp.repeat(jnp.arange(task.n_bases, dtype=jnp.int32), n_per_basis)
  return sample_with_bases(key, task, basis)
