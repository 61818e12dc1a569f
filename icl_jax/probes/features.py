"""Hidden states at chosen token positions, for probes and task vectors.

``collect(lm, token_ids, index_sets)`` runs the prompts through the model in
left-padded batches (residuals on, logits off) and returns, for every named
position set, the residual stream at those positions: ``[R, M, D]`` (residual
indices x prompts x d_model). A position set gives each prompt a list of
absolute token indices (index t = the t-th token of the BOS-prefixed
sequence); several indices are averaged (e.g. the token before every demo
answer -> one mean vector per prompt), one index is taken as is.

Residual indices follow the model: 0 = embedding output, i = output of block
i-1; the study's "layer L" is index L+1.

Batching: prompts are sorted by length and cut into batches of
``batch_size`` (the last batch is padded with copies of its last prompt, so
every batch has the same shape); sequence lengths are padded to a multiple of
``pad_to_multiple``, so few distinct shapes are compiled. Left padding does
not change the results beyond kernel rounding (positions come from the
attention mask). The gather is an einsum with a ``[S, B, T]`` weight matrix
on the device; only ``[S, R, B, D]`` comes back to the host.

Position helpers: :func:`layout_index_sets` (aligned positions from real
token offsets, ``icl_jax.tasks.token_layout``) and
:func:`faithful_index_sets` (the study's index formulas,
``icl_jax.tasks.faithful_positions``). Both return the token ids they were
computed on, so positions and the forward pass can never disagree.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

_HI = jax.lax.Precision.HIGHEST


@functools.partial(jax.jit, static_argnames=("keep",))
def _pool(resid, weights, keep):
  """resid ``[L+1, B, T, D]``, weights ``[S, B, T]`` -> ``[S, R, B, D]``."""
  r = resid[jnp.asarray(keep)] if keep is not None else resid
  return jnp.einsum("rbtd,sbt->srbd", r.astype(jnp.float32), weights,
                    precision=_HI)


def position_weights(index_lists: Sequence[Sequence[int]],
                     lengths: Sequence[int], width: int) -> np.ndarray:
  """Averaging weights ``[B, width]`` for left-padded rows.

  Row b puts ``1/len(index_lists[b])`` on each listed absolute index
  (shifted by the row's left padding ``width - lengths[b]``).

  Raises:
    ValueError: an index outside its prompt, or an empty index list.
  """
  w = np.zeros((len(index_lists), width), np.float32)
  for b, (idx, n) in enumerate(zip(index_lists, lengths)):
    idx = np.asarray(list(idx), np.int64)
    if idx.size == 0:
      raise ValueError(f"prompt {b}: empty position set")
    if idx.min() < 0 or idx.max() >= n:
      raise ValueError(
          f"prompt {b}: positions {idx.tolist()} outside its {n} tokens")
    np.add.at(w[b], width - n + idx, 1.0 / idx.size)
  return w


def collect(
    lm,
    token_ids: Sequence[Sequence[int]],
    index_sets: Mapping[str, Sequence[Sequence[int]]],
    *,
    residual_indices: Sequence[int] | None = None,
    batch_size: int = 16,
    pad_to_multiple: int = 16,
    progress: bool = False,
) -> dict[str, np.ndarray]:
  """Residuals at named position sets for every prompt.

  Args:
    lm: a ``LanguageModel`` (``icl_jax.load``).
    token_ids: ``M`` token id lists (with the tokenizer's BOS if any).
    index_sets: name -> ``M`` lists of absolute token indices; each prompt's
      vector is the mean over its listed positions.
    residual_indices: residual indices to keep (default all ``L+1``).
    batch_size: prompts per forward.
    pad_to_multiple: sequence-length bucket.
    progress: print one line per batch.

  Returns:
    name -> float32 ``[R, M, D]`` in the order of ``token_ids``.
  """
  m = len(token_ids)
  names = list(index_sets)
  for name in names:
    if len(index_sets[name]) != m:
      raise ValueError(f"position set {name!r} has {len(index_sets[name])} "
                       f"entries for {m} prompts")
  keep = None if residual_indices is None else tuple(
      int(i) for i in residual_indices)
  n_res = lm.n_layers + 1 if keep is None else len(keep)
  out = {n: np.zeros((n_res, m, lm.config.d_model), np.float32)
         for n in names}
  order = np.argsort([len(s) for s in token_ids], kind="stable")
  n_batches = -(-m // batch_size)
  for bi in range(n_batches):
    rows = order[bi * batch_size:(bi + 1) * batch_size]
    padded = np.concatenate(
        [rows, np.full(batch_size - len(rows), rows[-1])]) if len(
            rows) < batch_size else rows
    seqs = [token_ids[i] for i in padded]
    ids, mask, lengths = lm.pad_left(seqs, pad_to_multiple)
    width = ids.shape[1]
    weights = np.stack([
        position_weights([index_sets[n][i] for i in padded], lengths, width)
        for n in names])  # [S, B, T]
    res = lm(ids, mask, return_residuals=True, logits=None).residuals
    pooled = np.asarray(_pool(res, jnp.asarray(weights), keep))  # [S,R,B,D]
    for s, name in enumerate(names):
      out[name][:, rows] = pooled[s, :, :len(rows)]
    if progress:
      print(f"  features: batch {bi + 1}/{n_batches} (T={width})",
            flush=True)
  return out


def layout_index_sets(tokenizer, specs, names: Sequence[str]):
  """Aligned positions of named ``TokenLayout`` sets for prompt specs.

  Besides ``TokenLayout.mask`` names, ``"pre_answer_tokens"`` selects the
  token before each demo answer (every demo's output colon: the positions a
  task vector is averaged over, Han et al. App. C).

  Returns:
    ``(token_ids [M lists], {name: [M index lists]})``.
  """
  from icl_jax.tasks import token_layout

  ids, sets = [], {n: [] for n in names}
  for spec in specs:
    lay = token_layout(tokenizer, spec)
    ids.append([int(t) for t in lay.token_ids])
    for n in names:
      if n == "pre_answer_tokens":
        mask = lay.role_mask(["output_colon"])
      else:
        mask = lay.mask(n)
      sets[n].append([int(i) for i in lay.indices(mask)])
  return ids, sets


def faithful_index_sets(tokenizer, texts: Sequence[str],
                        names: Sequence[str]):
  """The study's positions (``faithful_positions``) of prompt texts.

  Returns:
    ``(token_ids [M lists], {name: [M index lists]})``; indices that fall
    outside a prompt are dropped (the original's rule).
  """
  from icl_jax.tasks import faithful_positions

  ids, sets = [], {n: [] for n in names}
  for text in texts:
    seq = [int(t) for t in tokenizer(text, add_special_tokens=True)[
        "input_ids"]]
    ids.append(seq)
    pos = faithful_positions(tokenizer, text)
    for n in names:
      sets[n].append([i for i in pos[n] if 0 <= i < len(seq)])
  return ids, sets
